r"""Grid discretisation of the box, its system operator Psi, and SIRT and FISTA on it.

The grid
--------
:class:`PixelGrid` divides the box into ``shape`` equal cells; grid point ``k`` is the centre of
cell ``k`` (cell-centred), axis 0 is ``x``, and flat indices are row-major over
``meshgrid(*axes, indexing="ij")``.

The system operator
-------------------
A grid image ``w`` (one value per grid point) stands for the density
``sum_k w_k N(g_k, sigma^2 I)``: an atom-shaped Gaussian blob, of the problem's ``sigma``, at
every grid point. Column ``k`` of :math:`\Psi` is therefore the projection, by the spec's
detector model, of a unit atom at ``g_k``, and :math:`\Psi w` is exactly what
:meth:`ForwardModel.project` gives for atoms of weights ``w`` at the grid points: *a grid image
of atom-shaped blobs projects like the atoms do*. A grid image is a mass per grid point, in the
unit of the species weights (one atom of weight 1 sitting on a grid point is the image 1 there).

Why the analytic model and not astra's pixel projectors: astra's ``line``/``strip``/``linear``
projectors model square pixels of constant density and a detector that integrates along ideal
lines. Neither the Gaussian atom profile nor the spec's pixel-averaging detector is in them, so a
grid image reconstructed with them does not project like the atoms, and the comparison with the
grid-free method would mix a model error into the discretisation error. The analytic columns are
exact, cheap, and share every number with the grid-free solver.

How it is stored:

* **2D**: a ``scipy.sparse`` CSR matrix (:attr:`GridOperator.matrix`), built in one vectorised
  pass from the model's support windows (:meth:`ForwardModel._window`): each column has
  ``n_angles x support`` entries. Small (a 128 x 128 grid at 3 angles: ~1 M entries) and the
  fastest to apply; it is also what astra's ``sparse_matrix`` projector takes, which is how the
  tests compare our SIRT with astra's own CPU SIRT on the same system matrix.
* **3D**: matrix-free (``matrix = None``). A 3D column has ``n_angles x support^2`` entries, so a
  stored matrix is ~20 x larger than the problem. For the single-axis geometry an atom's
  projection is separable, ``B(c_c - u) B(c_r - y)`` with ``u`` depending on ``(x, z)`` only, so
  :math:`\Psi` is a tensor product: one sparse matrix ``U`` (rows ``(angle, column)``, columns
  ``(x, z)``) and one sparse matrix ``V`` (rows ``y``, columns detector rows), and
  ``Psi w = U W V`` costs two sparse-dense products, as does the adjoint (the same factorisation
  as :meth:`ForwardModel.correlate_grid`). General detector frames fall back to
  :meth:`ForwardModel.project` / :meth:`ForwardModel.correlate` at the grid points.

Both are :class:`scipy.sparse.linalg.LinearOperator` instances on flat vectors (data raveled in
``geometry.data_shape`` order, images in grid order).

Algorithms
----------
:func:`sirt`: :math:`w \leftarrow w + \lambda C \Psi^\top R (y - \Psi w)` from ``w = 0``, with
``C = diag(1 / Psi^T 1)`` and ``R = diag(1 / Psi 1)`` (zero where a sum is zero), optionally
clipped at zero after every step: astra's ``SIRT`` without / with ``MinConstraint = 0``.
Without clipping the result is linear in ``y``.

:func:`fista`: :math:`\min_{w \ge 0} \tfrac12 \lVert \Psi w - y \rVert^2 + \lambda \lVert w
\rVert_1` (Beck & Teboulle 2009), step ``1 / L`` with ``L`` the largest eigenvalue of
:math:`\Psi^\top\Psi` from power iteration, gradient-based adaptive restart (O'Donoghue & Candes
2015), stopped on the relative change of ``w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._checks import positive_number
from ..errors import InputError
from ..forward import ForwardModel, grid_points
from ..stopping import should_stop


# -- the grid ----------------------------------------------------------------------------------
@dataclass
class PixelGrid:
    """A cell-centred grid of ``shape`` cells over ``box``.

    Attributes
    ----------
    box : (ndim, 2) ndarray
        ``[lo, hi]`` per axis.
    shape : tuple of int
        Cells per axis (axis 0 = x).
    """

    box: np.ndarray
    shape: tuple

    def __post_init__(self):
        box = np.asarray(self.box, dtype=float)
        if box.ndim != 2 or box.shape[1] != 2 or box.shape[0] not in (2, 3):
            raise InputError(f"grid box must have shape (2, 2) or (3, 2), got {box.shape}")
        if not np.all(np.isfinite(box)) or np.any(box[:, 1] <= box[:, 0]):
            raise InputError("grid box must be finite with lo < hi on every axis")
        shape = tuple(int(n) for n in np.atleast_1d(self.shape))
        if len(shape) != len(box) or any(n < 1 for n in shape):
            raise InputError(f"grid shape {shape} does not fit a {len(box)}D box")
        self.box, self.shape = box, shape

    @classmethod
    def with_spacing(cls, box, spacing, max_points: int | None = None) -> PixelGrid:
        """The grid over ``box`` whose cells are as close to ``spacing`` wide as the box allows,
        coarsened if needed to at most ``max_points`` points."""
        box = np.asarray(box, dtype=float)
        spacing = positive_number(spacing, "grid spacing")
        extent = box[:, 1] - box[:, 0]
        if max_points is not None:
            spacing = max(spacing, float(np.prod(extent) / max_points) ** (1 / len(box)))
        return cls(box, tuple(max(1, int(np.round(e / spacing))) for e in extent))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def spacing(self) -> np.ndarray:
        """Cell width per axis."""
        return (self.box[:, 1] - self.box[:, 0]) / np.array(self.shape)

    @property
    def axes(self) -> list:
        """Grid-point coordinates per axis (cell centres)."""
        return [lo + h * (np.arange(n) + 0.5)
                for (lo, _), h, n in zip(self.box, self.spacing, self.shape)]

    @property
    def points(self) -> np.ndarray:
        """All grid points ``(size, ndim)``, row-major."""
        return grid_points(self.axes)

    def position(self, index) -> np.ndarray:
        """Coordinates of (possibly fractional) multi-indices ``(..., ndim)``."""
        return self.box[:, 0] + (np.asarray(index, dtype=float) + 0.5) * self.spacing

    def nearest(self, positions) -> np.ndarray:
        """Flat index of the grid point nearest to each position (clipped into the grid)."""
        pos = np.asarray(positions, dtype=float).reshape(-1, self.ndim)
        idx = np.floor((pos - self.box[:, 0]) / self.spacing).astype(np.int64)
        idx = np.clip(idx, 0, np.array(self.shape) - 1)
        return np.ravel_multi_index(tuple(idx.T), self.shape)


# -- the system operator -----------------------------------------------------------------------
class GridOperator(LinearOperator):
    r""":math:`\Psi`: grid image (flat, ``grid.size``) -> projections (flat, ``n_data``).

    Use :func:`grid_operator` to build one. ``matrix`` is the CSR matrix in 2D, None in 3D.
    """

    def __init__(self, model: ForwardModel, grid: PixelGrid):
        geo = model.geometry
        if grid.ndim != geo.ndim:
            raise InputError(f"a {grid.ndim}D grid does not fit a {geo.ndim}D geometry")
        self.model, self.grid = model, grid
        self.n_data = int(np.prod(geo.data_shape))
        super().__init__(dtype=np.float64, shape=(self.n_data, grid.size))
        self.matrix = None
        self._separable = None
        if geo.ndim == 2:
            self.matrix = _matrix_2d(model, grid)
            self._matrix_t = self.matrix.T.tocsr()
        elif geo.single_axis:
            U, V = _separable_factors(model, grid)
            # Transposes stored in CSR too: CSR products are the fast ones in scipy.
            self._separable = (U, V, U.T.tocsr(), V.T.tocsr())
        self._row_sums = self._col_sums = None

    # LinearOperator interface
    def _matvec(self, w):
        return self._matmat(np.reshape(w, (-1, 1)))[:, 0]

    def _rmatvec(self, r):
        return self._rmatmat(np.reshape(r, (-1, 1)))[:, 0]

    def _matmat(self, W):
        W = np.asarray(W, dtype=float)
        if self.matrix is not None:
            return np.asarray(self.matrix @ W)
        if self._separable is not None:
            return np.stack([self._project_separable(W[:, j]) for j in range(W.shape[1])], 1)
        pts = self._points
        return np.stack([self.model.project(pts, W[:, j]).ravel() for j in range(W.shape[1])], 1)

    def _rmatmat(self, R):
        R = np.asarray(R, dtype=float)
        if self.matrix is not None:
            return np.asarray(self._matrix_t @ R)
        shape = self.model.geometry.data_shape
        if self._separable is not None:
            return np.stack([self._backproject_separable(R[:, j].reshape(shape))
                             for j in range(R.shape[1])], 1)
        pts = self._points
        return np.stack([self.model.correlate(R[:, j].reshape(shape), pts)
                         for j in range(R.shape[1])], 1)

    @cached_property
    def _points(self):
        # general 3D frames: products go point by point through the model; build the grid once
        return self.grid.points

    def _adjoint(self):
        return LinearOperator(shape=(self.shape[1], self.shape[0]), dtype=self.dtype,
                              matvec=self._rmatvec, rmatvec=self._matvec,
                              matmat=self._rmatmat, rmatmat=self._matmat)

    # separable 3D single-axis path: p[a] = V^T W_(y,xz) U_a^T
    def _project_separable(self, w):
        U, _, _, Vt = self._separable
        nx, ny, nz = self.grid.shape
        n_angles, n_rows, n_cols = self.model.geometry.data_shape
        wt = np.reshape(w, (nx, ny, nz)).transpose(1, 0, 2).reshape(ny, nx * nz)
        q = U @ wt.T  # (A * n_cols, ny)
        p = (Vt @ q.T).T  # (A * n_cols, n_rows)
        return p.reshape(n_angles, n_cols, n_rows).transpose(0, 2, 1).ravel()

    def _backproject_separable(self, r):
        _, V, Ut, _ = self._separable
        nx, ny, nz = self.grid.shape
        n_angles, n_rows, n_cols = self.model.geometry.data_shape
        rt = np.asarray(r).transpose(0, 2, 1).reshape(n_angles * n_cols, n_rows)
        q = (V @ rt.T).T  # (A * n_cols, ny)
        g = (Ut @ q).T  # (ny, nx * nz)
        return g.reshape(ny, nx, nz).transpose(1, 0, 2).ravel()

    # sums of rows and columns (SIRT's weights), cached
    @property
    def row_sums(self) -> np.ndarray:
        """``Psi 1``: the projection of a uniform unit image."""
        if self._row_sums is None:
            self._row_sums = self.matvec(np.ones(self.shape[1]))
        return self._row_sums

    @property
    def column_sums(self) -> np.ndarray:
        """``Psi^T 1``: per grid point, the summed projection of its blob."""
        if self._col_sums is None:
            self._col_sums = self.rmatvec(np.ones(self.shape[0]))
        return self._col_sums

    def norm_squared(self, iterations: int = 50, seed: int = 0) -> float:
        """Largest eigenvalue of ``Psi^T Psi`` by power iteration (an estimate from below;
        callers wanting a safe Lipschitz constant scale it up slightly)."""
        rng = np.random.default_rng(seed)
        v = rng.random(self.shape[1]) + 0.5
        v /= np.sqrt(_sq(v))
        lam = 0.0
        for _ in range(int(iterations)):
            u = self.rmatvec(self.matvec(v))
            lam_new = float(np.sqrt(_sq(u)))
            if lam_new == 0.0:
                return 0.0
            v = u / lam_new
            if abs(lam_new - lam) <= 1e-6 * lam_new:
                lam = lam_new
                break
            lam = lam_new
        return lam


def _matrix_2d(model: ForwardModel, grid: PixelGrid) -> sp.csr_matrix:
    """The 2D system matrix from the model's support windows, chunked to cap memory."""
    geo = model.geometry
    (n_det,) = geo.detector_shape
    pts = grid.points
    rows, cols, vals = [], [], []
    for sl in model._chunks(len(pts)):
        idx, val = model._window(geo.detector_coordinates(pts[sl]), n_det)  # (A, m, K)
        keep = val != 0.0  # drops the clipped window entries outside the detector
        r = np.arange(geo.n_angles)[:, None, None] * n_det + idx
        c = np.broadcast_to(np.arange(sl.start, sl.stop)[None, :, None], idx.shape)
        rows.append(r[keep])
        cols.append(c[keep])
        vals.append(val[keep])
    mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(geo.n_angles * n_det, len(pts)))
    mat.sum_duplicates()
    return mat


def _separable_factors(model: ForwardModel, grid: PixelGrid):
    """``U`` (A * n_cols, nx * nz) and ``V`` (ny, n_rows) of a 3D single-axis geometry."""
    geo = model.geometry
    n_rows, n_cols = geo.detector_shape
    xs, ys, zs = grid.axes
    iv, bv = model._window(ys, n_rows)  # (ny, K)
    V = sp.csr_matrix((bv.ravel(), (np.repeat(np.arange(len(ys)), bv.shape[1]), iv.ravel())),
                      shape=(len(ys), n_rows))
    e_u = geo.directions[:, 0, :]
    u = (e_u[:, 0, None, None] * xs[None, :, None] + e_u[:, 2, None, None] * zs[None, None, :])
    u = u.reshape(geo.n_angles, -1)
    iu, bu = model._window(u, n_cols)  # (A, nxz, K)
    rows = np.arange(geo.n_angles)[:, None, None] * n_cols + iu
    cols = np.broadcast_to(np.arange(u.shape[1])[None, :, None], iu.shape)
    U = sp.csr_matrix((bu.ravel(), (rows.ravel(), cols.ravel())),
                      shape=(geo.n_angles * n_cols, u.shape[1]))
    V.eliminate_zeros()
    U.eliminate_zeros()
    return U, V


def grid_operator(model: ForwardModel, grid: PixelGrid) -> GridOperator:
    r""":math:`\Psi` of ``grid`` under ``model`` (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from atomtomo import ForwardModel, Geometry
    >>> geo = Geometry.from_angles(2, np.radians([0, 90]), 48, 1 / 32)
    >>> model = ForwardModel(geo, sigma=0.03)
    >>> grid = PixelGrid([[-0.5, 0.5], [-0.5, 0.5]], (16, 16))
    >>> psi = grid_operator(model, grid)
    >>> w = np.zeros(grid.size); w[37] = 1.0
    >>> bool(np.allclose(psi @ w, model.project(grid.points[[37]]).ravel()))
    True
    """
    return GridOperator(model, grid)


# -- SIRT ----------------------------------------------------------------------------------------
def _safe_inverse(v):
    out = np.zeros_like(v, dtype=float)
    np.divide(1.0, v, out=out, where=v > 0)
    return out


def _check_iterations(iterations):
    try:
        iterations = int(iterations)
    except (TypeError, ValueError):
        raise InputError(f"iterations must be an integer, got {iterations!r}") from None
    if iterations < 0:
        raise InputError(f"iterations must be >= 0, got {iterations}")
    return iterations


def sirt(problem, grid: PixelGrid, iterations: int = 100, relaxation: float = 1.0,
         nonnegative: bool = False, *, operator: GridOperator | None = None,
         callback=None) -> np.ndarray:
    r"""SIRT image of ``problem.data`` on ``grid``.

    :math:`w \leftarrow w + \lambda C \Psi^\top R (y - \Psi w)` from zero, ``iterations`` times;
    with ``nonnegative`` the image is clipped at 0 after every step (astra's SIRT with
    ``MinConstraint = 0``). Without it the result is linear in the data.

    Parameters
    ----------
    problem : Problem
        Only ``model`` and ``data`` are used.
    grid : PixelGrid
    iterations : int
    relaxation : float
        ``lambda``; SIRT converges for ``0 < lambda < 2``.
    nonnegative : bool
    operator : GridOperator, optional
        A prebuilt :func:`grid_operator` of ``(problem.model, grid)``.
    callback : callable, optional
        ``callback(iteration, w)`` after every step (``w`` flat, not to be modified).

    Returns
    -------
    ndarray of shape ``grid.shape``
    """
    iterations = _check_iterations(iterations)
    relaxation = positive_number(relaxation, "SIRT relaxation")
    psi = grid_operator(problem.model, grid) if operator is None else operator
    y = np.ravel(np.asarray(problem.data, dtype=float))
    if y.size != psi.shape[0]:
        raise InputError(f"data of size {y.size} do not match the geometry ({psi.shape[0]})")
    inv_row = _safe_inverse(psi.row_sums)
    step = relaxation * _safe_inverse(psi.column_sums)
    w = np.zeros(psi.shape[1])
    for it in range(iterations):
        if should_stop():
            break
        w += step * psi.rmatvec(inv_row * (y - psi.matvec(w)))
        if nonnegative:
            np.maximum(w, 0.0, out=w)
        if callback is not None:
            callback(it, w)
    return w.reshape(grid.shape)


# -- FISTA ---------------------------------------------------------------------------------------
def fista(psi: GridOperator, data, lam: float, *, max_iterations: int = 500,
          tol: float = 1e-5, lipschitz: float | None = None, callback=None):
    r"""Non-negative lasso :math:`\min_{w \ge 0} \tfrac12 \lVert \Psi w - y \rVert^2 + \lambda
    \sum_k w_k` by FISTA with adaptive restart.

    Parameters
    ----------
    psi : GridOperator (or any LinearOperator)
    data : array_like
        ``y``, any shape with ``psi.shape[0]`` values.
    lam : float
        ``lambda >= 0``.
    max_iterations : int
    tol : float
        Stop when ``||w_k+1 - w_k|| <= tol * max(||w_k+1||, tiny)``.
    lipschitz : float, optional
        ``L >= ||Psi||^2``; default: power iteration, times 1.01.
    callback : callable, optional
        ``callback(iteration, w, objective)`` after every step; ``objective`` is the value at the
        extrapolated point's gradient evaluation (one step behind, free to compute).

    Returns
    -------
    w : ndarray (flat)
    info : dict
        ``iterations``, ``objective`` (at ``w``), ``lipschitz``, ``restarts``, ``converged``.
    """
    y = np.ravel(np.asarray(data, dtype=float))
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise InputError(f"FISTA lambda must be >= 0, got {lam}")
    max_iterations = _check_iterations(max_iterations)
    if lipschitz is None:
        lipschitz = 1.01 * psi.norm_squared() if hasattr(psi, "norm_squared") else None
    if not lipschitz or lipschitz <= 0:
        raise InputError("the grid operator is zero: does the box project onto the detector?")
    step = 1.0 / lipschitz
    n = psi.shape[1]
    w = np.zeros(n)
    z, t = w.copy(), 1.0
    restarts, converged, it = 0, False, 0
    for it in range(1, max_iterations + 1):
        if should_stop():
            break
        r = psi.matvec(z) - y
        grad = psi.rmatvec(r)
        w_new = np.maximum(z - step * (grad + lam), 0.0)
        if callback is not None:
            callback(it, w_new, 0.5 * _sq(r) + lam * float(z.sum()))
        diff = w_new - w
        if _sq(diff) <= tol * tol * max(_sq(w_new), 1e-300):
            w = w_new
            converged = True
            break
        # Restart the momentum when it points uphill (gradient scheme of O'Donoghue & Candes).
        if float(np.einsum("i,i->", z - w_new, diff)) > 0:
            t, restarts = 1.0, restarts + 1
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        z = w_new + ((t - 1) / t_new) * diff
        w, t = w_new, t_new
    r = psi.matvec(w) - y
    info = {"iterations": it, "objective": 0.5 * _sq(r) + lam * float(w.sum()),
            "lipschitz": float(lipschitz), "restarts": restarts, "converged": converged}
    return w, info


def _sq(v) -> float:
    """``||v||^2`` without BLAS (whose threads stall on a loaded shared machine)."""
    return float(np.einsum("i,i->", v, v))


def grid_objective(psi: GridOperator, w, data, lam: float = 0.0) -> float:
    """``0.5 ||Psi w - y||^2 + lam * sum(w)``."""
    r = psi.matvec(np.ravel(w)) - np.ravel(data)
    return 0.5 * _sq(r) + float(lam) * float(np.sum(w))


def total_mass(problem) -> float:
    r"""Total weight of the atoms on the detector, from spec section 2's identity:
    ``sum(y) * Delta^(ndim - 1) / n_angles`` (0 if negative)."""
    geo = problem.geometry
    mass = float(np.sum(problem.data)) * geo.pixel_size ** (geo.ndim - 1) / geo.n_angles
    return max(mass, 0.0)


def estimated_atom_count(problem) -> float:
    r"""Number of atoms implied by the data's total mass: :func:`total_mass` divided by the
    mean species weight."""
    mass = total_mass(problem)
    weights = np.array(list(problem.species_weights.values()), dtype=float)
    mean_w = float(np.mean(weights)) if len(weights) else 1.0
    return mass / mean_w
