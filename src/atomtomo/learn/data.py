r"""Training data for the locator, simulated on the fly with the project's own pipeline.

One sample: a random 2D lattice with defects (:func:`atomtomo.phantoms.random_defect_lattice`:
lattice kind, spacing, rotation, offset, defects, jitter) in the unit box ``[-0.5, 0.5]^2``,
projected by the analytic :class:`~atomtomo.forward.ForwardModel` at the model's angles,
Gaussian noise of standard deviation ``noise * max |projection|`` (as
:func:`atomtomo.noise.add_gaussian_noise` with ``relative=noise``), and reconstructed by SIRT on
the model's ``G x G`` pixel grid over the box.

SIRT is the expensive part, and it is linear: started from zero, ``K`` iterations of

.. math:: x \leftarrow x + \lambda\, C A^\top R\, (y - A x),
          \qquad C = \mathrm{diag}(1 / A^\top \mathbf{1}),\; R = \mathrm{diag}(1 / A \mathbf{1}),

give ``x_K = M y`` with a fixed matrix ``M``. With ``G_R = R^{1/2} A C A^\top R^{1/2} = U
\mathrm{diag}(\mu) U^\top``,

.. math:: M = C A^\top R^{1/2}\, U\, \mathrm{diag}\!\left(\frac{1 - (1 - \lambda \mu)^K}{\mu}\right)
          U^\top R^{1/2},

so :class:`SirtMap` precomputes ``M`` once per angle set (one eigendecomposition of an
``n_data x n_data`` matrix) and reconstructs a whole batch with one matrix product.
``A`` is the project's grid operator (:func:`atomtomo.solvers.grid.grid_operator`: column ``k``
is the projection of a unit atom at grid centre ``k``), and the map reproduces
:func:`atomtomo.solvers.grid.sirt` to rounding error (checked in ``tests/test_learned.py``);
inference calls ``sirt`` itself.

Augmentation: the symmetries of the square (flips, transposition) that map the set of projection
directions onto itself (modulo sign) map a sample's SIRT image onto the SIRT image of the
transformed phantom, so they are applied for free (all 8 for angles ``k 180/n`` with ``n`` even).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import positive_number
from ..errors import InputError
from ..forward import ForwardModel
from ..geometry import Geometry

#: Acquisition of the training data, relative to the unit box (width 1): atom ``sigma``,
#: detector ``pixel_size`` and ``n_det`` pixels (a detector 1.5 box widths wide, so that
#: rotated lattices stay on it), the SIRT grid ``grid x grid`` and its iteration count.
DEFAULT_ACQUISITION = {
    "sigma": 0.02,
    "pixel_size": 1 / 64,
    "n_det": 96,
    "grid": 64,
    "sirt_iterations": 100,
    "sirt_relaxation": 1.0,
}

#: The unit box the network works in.
UNIT_BOX = np.array([[-0.5, 0.5], [-0.5, 0.5]])

#: Largest number of true atoms per sample kept in a padded batch.
MAX_ATOMS = 160


def acquisition(angles, noise=0.01, **overrides) -> dict:
    """The acquisition record of a model: angles (radians), noise and :data:`DEFAULT_ACQUISITION`
    with ``overrides``; JSON-serialisable."""
    angles = np.atleast_1d(np.asarray(angles, dtype=float))
    if angles.ndim != 1 or len(angles) == 0 or not np.all(np.isfinite(angles)):
        raise InputError("angles must be a non-empty list of finite numbers (radians)")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise InputError(f"noise must be a non-negative fraction, got {noise}")
    unknown = set(overrides) - set(DEFAULT_ACQUISITION)
    if unknown:
        raise InputError(f"unknown acquisition option(s) {sorted(unknown)}; "
                         f"valid: {', '.join(DEFAULT_ACQUISITION)}")
    acq = dict(DEFAULT_ACQUISITION)
    acq.update({k: v for k, v in overrides.items() if v is not None})
    acq["grid"] = int(acq["grid"])
    acq["n_det"] = int(acq["n_det"])
    acq["sirt_iterations"] = int(acq["sirt_iterations"])
    for key in ("sigma", "pixel_size", "sirt_relaxation"):
        acq[key] = positive_number(acq[key], key)
    if acq["grid"] < 8 or acq["n_det"] < 2 or acq["sirt_iterations"] < 1:
        raise InputError("grid must be >= 8, n_det >= 2 and sirt_iterations >= 1")
    acq["angles"] = [float(a) for a in angles]
    acq["noise"] = noise
    acq["box"] = UNIT_BOX.tolist()
    return acq


def unit_model(acq) -> ForwardModel:
    """The forward model of the training data (unit box)."""
    geo = Geometry.from_angles(2, np.asarray(acq["angles"]), acq["n_det"], acq["pixel_size"])
    return ForwardModel(geo, acq["sigma"])


# -- SIRT ---------------------------------------------------------------------------------------
def pixel_grid(box, shape):
    """The project's :class:`~atomtomo.solvers.grid.PixelGrid` (axis 0 = x, row-major)."""
    from ..solvers.grid import PixelGrid

    return PixelGrid(np.asarray(box, dtype=float), tuple(int(n) for n in shape))


def system_matrix(model: ForwardModel, box, shape) -> sp.csr_matrix:
    """Sparse ``(n_data, G0 * G1)`` matrix of the project's grid operator
    (:func:`atomtomo.solvers.grid.grid_operator`): column ``k`` = projection of a unit atom at
    the centre of pixel ``k`` (2D)."""
    from ..solvers.grid import grid_operator

    return sp.csr_matrix(grid_operator(model, pixel_grid(box, shape)).matrix)


class SirtMap:
    """``K`` SIRT iterations from zero as one precomputed linear map (see the module docstring).

    Parameters
    ----------
    A : sparse matrix (n_data, n_grid)
    shape : (int, int)
        Grid shape; ``n_grid = shape[0] * shape[1]``.
    iterations : int
    relaxation : float
    """

    def __init__(self, A, shape, iterations, relaxation=1.0):
        from ..solvers.grid import _safe_inverse  # SIRT's row and column sums

        A = sp.csr_matrix(A, dtype=float)
        self.shape = tuple(shape)
        self.iterations, self.relaxation = int(iterations), float(relaxation)
        inv_row = _safe_inverse(np.asarray(A.sum(axis=1)).ravel())
        inv_col = _safe_inverse(np.asarray(A.sum(axis=0)).ravel())
        sqrt_r = np.sqrt(inv_row)
        # G_R = R^1/2 A C A^T R^1/2, small and dense (n_data x n_data), eigenvalues in [0, 1].
        ac = A @ sp.diags(np.sqrt(inv_col))
        gram = (ac @ ac.T).toarray() * sqrt_r[:, None] * sqrt_r[None, :]
        mu, U = np.linalg.eigh(gram)
        mu = np.clip(mu, 0.0, None)
        lam, k = self.relaxation, self.iterations
        q = lam * mu
        with np.errstate(divide="ignore", invalid="ignore"):
            # 1 - (1 - q)^k, accurately for small q; plain power where 1 - q <= 0 (lam > 1).
            damp = np.where(q < 1, -np.expm1(k * np.log1p(-np.minimum(q, 1 - 1e-16))),
                            1 - np.power(1 - q, k))
            h = np.where(mu > 1e-12, damp / mu, lam * k)
        left = (A.T @ (sqrt_r[:, None] * U)) * inv_col[:, None]  # C A^T R^1/2 U
        self.matrix = ((left * h[None, :]) @ (U.T * sqrt_r[None, :])).astype(np.float32)

    def __call__(self, data) -> np.ndarray:
        """SIRT images: one data set (any shape of ``n_data`` values) -> ``shape``; a batch
        (B, ...) -> (B, *shape)."""
        y = np.asarray(data, dtype=np.float32)
        n_data = self.matrix.shape[1]
        single = y.size == n_data
        out = y.reshape(-1, n_data) @ self.matrix.T
        out = out.reshape(-1, *self.shape)
        return out[0] if single else out


def sirt_reconstructor(model: ForwardModel, box, shape, iterations, relaxation=1.0):
    """``data -> SIRT image`` on a ``shape`` grid over ``box`` by the project's
    :func:`~atomtomo.solvers.grid.sirt` (what inference uses), with the operator built once."""
    from ..solvers.grid import grid_operator, sirt
    from ..solvers.problem import Problem

    grid = pixel_grid(box, shape)
    op = grid_operator(model, grid)
    box = np.asarray(box, dtype=float)

    def reconstruct(data):
        problem = Problem(model=model, data=np.asarray(data, dtype=float), box=box)
        return sirt(problem, grid, iterations=int(iterations), relaxation=float(relaxation),
                    operator=op)

    return reconstruct


def unit_atom_peak(model: ForwardModel, box, shape, reconstruct) -> float:
    """Peak of the SIRT image of one unit atom at the pixel centre nearest the box centre.

    Images are divided by it, so that an isolated, well-resolved atom has height ~1 whatever
    the angles, sigma and grid; ``reconstruct(data) -> image``.
    """
    centres = pixel_grid(box, shape).points
    mid = np.asarray(box, float).mean(axis=1)
    centre = centres[np.argmin(np.sum((centres - mid) ** 2, axis=1))]
    image = reconstruct(model.project(centre[None, :], [1.0]))
    peak = float(np.max(image))
    if not np.isfinite(peak) or peak <= 0:
        raise InputError("the SIRT image of a single atom is empty: is the box on the detector?")
    return peak


# -- symmetries ---------------------------------------------------------------------------------
#: The 8 symmetries of the square as (transpose, flip_x, flip_y): x -> (swap, then negate).
SQUARE_SYMMETRIES = [(t, fx, fy) for t in (False, True) for fx in (False, True) for fy in (False, True)]


def _transform_points(points, sym):
    t, fx, fy = sym
    p = points[..., ::-1] if t else points
    return p * np.array([-1.0 if fx else 1.0, -1.0 if fy else 1.0])


def transform_image(image, sym):
    """Apply a square symmetry to images (..., G, G) (axis -2 = x, -1 = y) like the points."""
    t, fx, fy = sym
    out = np.swapaxes(image, -1, -2) if t else image
    if fx:
        out = out[..., ::-1, :]
    if fy:
        out = out[..., :, ::-1]
    return out


def valid_symmetries(angles, tol=1e-6) -> list:
    """Square symmetries that map the projection directions onto themselves modulo sign."""
    e = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    valid = []
    for sym in SQUARE_SYMMETRIES:
        # The transformed phantom seen along e is the original seen along T^T e = T^-1 e; if T
        # maps the finite direction set into itself (mod sign) it is a bijection, so T^-1 does.
        f = _transform_points(e, sym)
        d = np.abs(f @ e.T)  # |cos| between transformed and original directions
        if np.all(np.max(d, axis=1) > 1 - tol):
            valid.append(sym)
    return valid


# -- samples ------------------------------------------------------------------------------------
class SampleGenerator:
    """Simulated training samples for one acquisition.

    Parameters
    ----------
    acq : dict
        From :func:`acquisition`.
    lattice_options : dict, optional
        Passed to :func:`atomtomo.phantoms.random_defect_lattice`.
    """

    def __init__(self, acq, lattice_options=None):
        self.acq = acq
        self.model = unit_model(acq)
        shape = (acq["grid"], acq["grid"])
        self.sirt = SirtMap(system_matrix(self.model, UNIT_BOX, shape), shape,
                            acq["sirt_iterations"], acq["sirt_relaxation"])
        self.scale = 1.0 / unit_atom_peak(self.model, UNIT_BOX, shape, self.sirt)
        self.lattice_options = dict(lattice_options or {})

    def phantoms(self, rng, n):
        from ..phantoms import random_defect_lattice

        return [random_defect_lattice(rng, **self.lattice_options) for _ in range(n)]

    def __call__(self, rng, n) -> dict:
        """``n`` samples: images (n, G, G) float32, positions (n, MAX_ATOMS, 2) float32 (unit
        box, zero-padded), mask (n, MAX_ATOMS) bool, spacing (n,) float32."""
        configs = self.phantoms(rng, n)
        data = np.stack([self.model.project(c.positions, c.weights).ravel() for c in configs])
        noise = self.acq["noise"]
        if noise > 0:
            std = noise * np.max(np.abs(data), axis=1, keepdims=True)
            data = data + std * rng.standard_normal(data.shape)
        images = self.sirt(data).reshape(n, *self.sirt.shape) * np.float32(self.scale)
        positions = np.zeros((n, MAX_ATOMS, 2), np.float32)
        mask = np.zeros((n, MAX_ATOMS), bool)
        for i, c in enumerate(configs):  # per sample, not per atom
            m = min(c.n_atoms, MAX_ATOMS)
            positions[i, :m] = c.positions[:m]
            mask[i, :m] = True
        spacing = np.array([c.info["spacing"] for c in configs], np.float32)
        return {"images": images.astype(np.float32), "positions": positions, "mask": mask,
                "spacing": spacing}


class SamplePool:
    """A pool of precomputed samples, partly refreshed as training goes, with free symmetry
    augmentation.

    Parameters
    ----------
    generator : SampleGenerator
    size : int
        Number of samples held.
    rng : numpy.random.Generator
    chunk : int
        Samples simulated per call of the generator.
    """

    def __init__(self, generator, size, rng, chunk=256):
        self.generator, self.rng, self.chunk = generator, rng, int(chunk)
        self.symmetries = valid_symmetries(np.asarray(generator.acq["angles"]))
        parts = [generator(rng, min(self.chunk, size - i)) for i in range(0, size, self.chunk)]
        self.samples = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self._next = 0

    def __len__(self):
        return len(self.samples["images"])

    def refresh(self, n):
        """Replace the ``n`` oldest samples by new ones."""
        n = min(int(n), len(self))
        if n <= 0:
            return
        new = self.generator(self.rng, n)
        idx = (self._next + np.arange(n)) % len(self)
        for k, v in new.items():
            self.samples[k][idx] = v
        self._next = int((self._next + n) % len(self))

    def batch(self, size) -> dict:
        """A random batch (numpy arrays), each sample under a random valid symmetry."""
        idx = self.rng.integers(len(self), size=size)
        out = {k: v[idx].copy() for k, v in self.samples.items()}
        m = max(1, int(out["mask"].sum(axis=1).max()))  # trim the padding to this batch
        out["positions"], out["mask"] = out["positions"][:, :m], out["mask"][:, :m]
        which = self.rng.integers(len(self.symmetries), size=size)
        for s, sym in enumerate(self.symmetries):  # loop over the <= 8 symmetries
            sel = which == s
            if sym == (False, False, False) or not np.any(sel):
                continue
            out["images"][sel] = transform_image(out["images"][sel], sym)
            out["positions"][sel] = _transform_points(out["positions"][sel], sym)
        return out
