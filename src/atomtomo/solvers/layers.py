r"""Layer by layer: a 3D single-axis tilt series of a crystal as a stack of 2D problems.

Why. In a single-axis tilt series (spec section 2: tilt axis ``y``) every projection sees the
same coordinate along the axis, ``v = y``, on its detector rows. When the tilt axis runs along
a lattice direction — the usual set-up for zone-axis series — the atoms sit in planes
``y = y_k`` perpendicular to it, and the row profile of the data

.. math::

    q(c_r) = \frac{1}{n_a} \sum_a \sum_c p[a, r, c] \, \Delta = \sum_i w_i \, B(c_r - y_i)

(the same for every angle) shows one peak per plane. If every atom of plane ``k`` sits at its
height ``y_k``, the data factor exactly:

.. math::

    p[a, r, c] = \sum_k B(c_r - y_k) \, P_k[a, c], \qquad
    P_k[a, c] = \sum_{i \in k} w_i \, B(c_c - (x_i, z_i) \cdot (\cos\theta_a, \sin\theta_a)),

where ``P_k`` is the spec's 2D projection of the plane's atoms at ``(x, z)``. So the planes'
2D tilt series are the least-squares solution over the rows, ``P = (G^T G)^{-1} G^T p`` with
``G[r, k] = B(c_r - y_k)``, noise ``sigma_n sqrt((G^T G)^{-1}_{kk})``; unlike summing each
plane's band of rows, this also removes the tails of the neighbouring planes (6 % of an atom's
peak, eight times the noise, when planes are 3.8 sigma apart, enough to make a 45-atom plane's
search fail). Each plane is then a 2D problem at the same angles, where the lattice starts, the
re-pair and pairing moves and the two-angle budget apply — none of which exists in 3D — and
which is small, so the search is fast. The planes are reassembled in 3D and polished together:
an ADCG pass under the full 3D objective (add, move, prune; the ``alpha`` ladder for
``--alpha auto``), which lets atoms leave their plane's height.

Where. The planes are independent 2D problems: :class:`LayeredRun` solves them with the solve
function it is given (the solver passes :func:`~atomtomo.solvers.adcg.reconstruct_adcg`; this
module imports no solver), in worker processes (``jobs``, default one per core) or on a running
Dask cluster (``scheduler``); the result does not depend on where a plane ran.

When. :func:`find_layers` fits the row profile with one pixel-averaged Gaussian per plane,
``q(y) = sum_k m_k B(y - y_k)``, started at its peaks and given a further component wherever
the fit leaves more than the noise floor unexplained (planes across a <110> axis are only 2.7
atom widths apart, and one lighter than its neighbour is a shoulder of the profile, not a
peak), and accepts the data as layered only when
the planes are resolved (adjacent heights at least :data:`MIN_GAP` atom widths apart) and the
fit explains the profile (residual at most :data:`MAX_RESIDUAL` of it); otherwise the solver
works on the 3D problem directly. The 2D problems use the file's bond length as the in-plane
nearest-neighbour distance, which holds for fcc planes perpendicular to
<100> (the in-plane square lattice has the bond length as its spacing); for other planes the
lattice starts fit a wrong spacing and the pair prior is slightly off, and the 3D polish is what
corrects it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..configuration import Configuration
from ..errors import InputError
from ..forward import ForwardModel, pixel_kernel, pixel_kernel_derivative
from ..geometry import Geometry
from ..potentials import PairPotential, make_potential
from ..prior import Prior
from .checkpoint import check_settings, digest, read_checkpoint, write_checkpoint
from .objective import AtomObjective
from .problem import Problem, Reconstruction

#: Adjacent planes closer than this many atom widths ``sqrt(sigma^2 + Delta^2 / 12)`` are not
#: resolved by the rows (their profiles overlap by more than a third at the midpoint).
MIN_GAP = 2.5

#: Atoms of adjacent planes closer than this many bond lengths sit on top of each other: the
#: plane is searched again in its neighbours' field (:meth:`LayeredRun._restack`).
CLASH = 0.85

#: The planes' fit must leave at most this fraction of the row profile's norm unexplained.
#: Measured (1 % noise): 0.007-0.081 for fcc and bcc particles of 55-561 atoms (planes flat,
#: relaxed around vacancies and an interstitial, turned by 1 degree, or across <110>);
#: 0.23-0.67 for the same particles at odd orientations, atoms at random heights, and the
#: measured AET particles of ../shared in their own frames. With planes added where the profile
#: is least explained (shoulders, see :func:`find_layers`): 0.009-0.013 on the measured Pd@Pt
#: decahedron cropped to 8 and 11 A about its five-fold axis, 0.148 on 40 atoms at random heights.
MAX_RESIDUAL = 0.1

#: A peak of the rows' profile counts as a plane candidate only above this many standard
#: deviations of the profile's noise (when the file gives ``noise_std``) and above 0.3 atoms.
#: The noise of the profile grows with the detector width: for a 2057-atom particle at 1 %
#: noise it is 0.16 atoms, and a 3.2-sigma maximum in the empty last row of the detector,
#: above the fixed 0.3-atom floor alone, got a component that ran off the rows and made the
#: whole detection fail.
PEAK_NOISE = 4.0


@dataclass
class Layer:
    """One plane of atoms perpendicular to the tilt axis: its height ``y`` and its weight
    ``atoms`` in units of the lightest species (about the number of atoms), fitted to the rows'
    profile."""

    y: float
    atoms: float


def row_profile(problem: Problem) -> np.ndarray:
    """``q[r]``: the data summed over columns and averaged over angles (weight per unit length)."""
    return problem.data.sum(axis=2).mean(axis=0) * problem.geometry.pixel_size


def _peaks(q, floor):
    """Rows of the local maxima of ``q`` above ``floor`` (plateaus give their first row)."""
    left = np.r_[-np.inf, q[:-1]]
    right = np.r_[q[1:], -np.inf]
    return np.flatnonzero((q > left) & (q >= right) & (q > floor))


def _suppress(peaks, q, y, gap):
    """The highest peaks, each at least ``gap`` from every higher one (a plane turned slightly
    off the axis has a broad, flat top that noise splits into several maxima)."""
    kept = []
    for p in peaks[np.argsort(-q[peaks], kind="stable")]:
        if all(abs(y[p] - y[k]) >= gap for k in kept):
            kept.append(p)
    return np.array(sorted(kept), dtype=int)


def _fit_planes(q, y, heights, masses, sigma, delta):
    """Least-squares ``(masses, heights)`` of ``q(y) = sum_k m_k B(y - y_k)``, and the residual."""
    from scipy.optimize import least_squares

    k = len(heights)

    def residual(params):
        return pixel_kernel(y[:, None] - params[None, k:], sigma, delta) @ params[:k] - q

    fit = least_squares(residual, np.r_[masses, heights], x_scale="jac")
    return fit.x[:k], fit.x[k:], fit.fun


def _merge(masses, heights, close):
    """Merge each component ``k`` with ``k + 1`` where ``close[k]`` (heights sorted)."""
    m, h = list(masses), list(heights)
    for k in np.flatnonzero(close)[::-1]:
        total = m[k] + m[k + 1]
        h[k] = (m[k] * h[k] + m[k + 1] * h[k + 1]) / total
        m[k] = total
        del m[k + 1], h[k + 1]
    return np.array(m), np.array(h)


def _settle(q, y, masses, heights, sigma, delta, w_min, gap):
    """Fit the planes from ``(masses, heights)``, dropping components lighter than half an atom
    and merging those closer than ``gap``, until neither happens; ``(masses, heights, misfit)``
    sorted by height, or None when nothing is left."""
    for _ in range(6):
        masses, heights, misfit = _fit_planes(q, y, heights, masses, sigma, delta)
        order = np.argsort(heights)
        masses, heights = masses[order], heights[order]
        keep = masses >= 0.5 * w_min
        close = np.diff(heights[keep]) < gap
        if keep.all() and not close.any():
            break
        # drop noise; merge components the fit pulled together (a plane turned slightly off the
        # axis is broader than one atom and the fit splits it): their weighted mean height
        masses, heights = _merge(masses[keep], heights[keep], close)
        if len(heights) == 0:
            return None
    return masses, heights, misfit


def find_layers(problem: Problem) -> list[Layer] | None:
    """The planes of atoms perpendicular to the tilt axis, or None if the data are not layered.

    Only 3D single-axis geometries can be layered. Planes lighter than half an atom are noise
    and dropped (the rest is fitted again).
    """
    geometry = problem.geometry
    if geometry.ndim != 3 or not geometry.single_axis:
        return None
    q = row_profile(problem)
    delta, sigma = geometry.pixel_size, problem.sigma
    y = geometry.pixel_centres(axis=0)
    width = np.sqrt(sigma ** 2 + delta ** 2 / 12)
    w_min = min(problem.species_weights.values())
    one_atom = w_min / (np.sqrt(2 * np.pi) * width)  # peak of one atom's row profile
    floor = 0.3 * one_atom
    if problem.noise_std is not None:  # the profile's noise: data summed over columns, averaged
        n_angles, _, n_columns = problem.data.shape
        noise = float(problem.noise_std) * delta * np.sqrt(n_columns / n_angles)
        floor = max(floor, PEAK_NOISE * noise)
    peaks = _suppress(_peaks(q, floor), q, y, MIN_GAP * width)
    if len(peaks) == 0:
        return None
    masses, heights = q[peaks] / one_atom * w_min, y[peaks]
    settled = _settle(q, y, masses, heights, sigma, delta, w_min, MIN_GAP * width)
    if settled is None:
        return None
    masses, heights, misfit = settled
    # A plane next to a heavier one shows as a shoulder, not a maximum (the measured particle's
    # planes are 1.37 A apart, 2.7 atom widths): add a component where the profile is least
    # explained, as long as that leaves more than noise and the new fit still resolves the planes.
    for _ in range(len(y)):
        missing = -misfit
        row = int(np.argmax(missing))
        if missing[row] <= floor:
            break
        trial = _settle(q, y, np.r_[masses, missing[row] / one_atom * w_min], np.r_[heights, y[row]],
                        sigma, delta, w_min, MIN_GAP * width)
        if (trial is None or len(trial[1]) <= len(heights)
                or np.any(np.diff(trial[1]) < MIN_GAP * width)
                or np.linalg.norm(trial[2]) >= 0.9 * np.linalg.norm(misfit)):
            break
        masses, heights, misfit = trial
    if np.any(np.diff(heights) < MIN_GAP * width):
        return None
    # a fit that ran away (components far outside the rows, weights above the whole profile's)
    total = float(np.sum(q) * delta)
    if (np.any(heights < y[0]) or np.any(heights > y[-1])
            or np.any(masses > 1.2 * total) or np.any(masses < 0)):
        return None
    if np.linalg.norm(misfit) > MAX_RESIDUAL * np.linalg.norm(q):
        return None
    return [Layer(float(h), float(m / w_min)) for h, m in zip(heights, masses)]


def plane_problems(problem: Problem, layers: list[Layer]) -> list[Problem]:
    """The 2D problem of every plane: its projections unmixed from the rows by least squares,
    positions ``(x, z)``."""
    geometry = problem.geometry
    delta = geometry.pixel_size
    k = len(layers)
    t = geometry.pixel_centres(axis=0)[:, None] - np.array([l.y for l in layers])[None, :]
    # G[r, k] = B(c_r - y_k), plus B' columns that absorb atoms slightly off their plane's height
    # (first order in the offset: relaxed surfaces and defects are not perfectly flat)
    rows = np.hstack([pixel_kernel(t, problem.sigma, delta),
                      pixel_kernel_derivative(t, problem.sigma, delta) * problem.sigma])
    n_a, n_r, n_c = problem.data.shape
    stacked = np.moveaxis(problem.data, 1, 0).reshape(n_r, n_a * n_c)
    planes, *_ = np.linalg.lstsq(rows, stacked, rcond=None)
    planes = planes[:k].reshape(k, n_a, n_c)
    spread = np.sqrt(np.diag(np.linalg.pinv(rows.T @ rows))[:k])
    e_u = geometry.directions[:, 0, :]
    flat = Geometry.from_directions(2, e_u[:, [0, 2]], (n_c,), delta, angles=geometry.angles)
    model = ForwardModel(flat, problem.sigma)
    box = np.asarray(problem.box, float)[[0, 2]]
    return [Problem(model=model, data=planes[j], box=box,
                    species_weights=dict(problem.species_weights),
                    bond_length=problem.bond_length,
                    noise_std=None if problem.noise_std is None
                    else float(problem.noise_std) * float(spread[j]),
                    length_unit=problem.length_unit)
            for j in range(k)]


def lift(config2d: Configuration, y: float) -> Configuration:
    """A plane's 2D atoms ``(x, z)`` placed at height ``y`` in 3D."""
    p = np.asarray(config2d.positions, float).reshape(-1, 2)
    pos = np.column_stack([p[:, 0], np.full(len(p), y), p[:, 1]])
    return Configuration(pos, list(config2d.species), dict(config2d.species_weights))


def stack(configs, weights) -> Configuration:
    """One configuration holding all of ``configs`` (3D)."""
    if not configs:
        return Configuration(np.zeros((0, 3)), [], dict(weights))
    pos = np.concatenate([c.positions for c in configs])
    species = [s for c in configs for s in c.species]
    return Configuration(pos, species, dict(weights))


class NeighbourField:
    """The energy of a plane's atoms with fixed atoms of the planes around it, as a one-body
    term of the plane's 2D problem (the interface of :class:`~atomtomo.lattice_prior.LatticeWell`).

    A plane at height ``y`` with 2D points ``p = (x, z)`` sees ``U(p) = sum_j phi(|P - X_j|)``,
    ``P = (x, y, z)``, over the fixed 3D atoms ``X_j`` within the pair potential's cutoff, with
    gradient ``sum_j phi'(r)/r (P - X_j)`` restricted to ``(x, z)``.
    """

    def __init__(self, potential, fixed, height):
        self.potential = potential  # a 3D PairPotential
        self.fixed = np.asarray(fixed, float).reshape(-1, 3)
        self.height = float(height)
        self.tree = cKDTree(self.fixed)

    def _pairs(self, points):
        p = np.asarray(points, float).reshape(-1, 2)
        lifted = np.column_stack([p[:, 0], np.full(len(p), self.height), p[:, 1]])
        if len(p) == 0 or len(self.fixed) == 0:
            return len(p), np.zeros(0, int), np.zeros((0, 3))
        hits = cKDTree(lifted).sparse_distance_matrix(self.tree, self.potential.cutoff_radius,
                                                      output_type="ndarray")
        return len(p), hits["i"], lifted[hits["i"]] - self.fixed[hits["j"]]

    def atom_energies(self, points):
        n, i, d = self._pairs(points)
        phi = self.potential.pair_terms(np.einsum("ij,ij->i", d, d))[0]
        return np.bincount(i, phi, n)

    def energy_and_gradient(self, points):
        n, i, d = self._pairs(points)
        phi, dphi_r = self.potential.pair_terms(np.einsum("ij,ij->i", d, d))
        f = dphi_r[:, None] * d[:, [0, 2]]
        grad = np.column_stack([np.bincount(i, f[:, 0], n), np.bincount(i, f[:, 1], n)])
        return float(phi.sum()), grad


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LayeredRun:
    """Reconstruct each plane in 2D, then polish the stack in 3D; resumable plane by plane.

    Parameters
    ----------
    problem : Problem
        The 3D single-axis problem.
    layers : list of Layer
        Its planes (:func:`find_layers`).
    solve : callable
        ``solve(problem, **run) -> Reconstruction`` with the signature of
        :func:`~atomtomo.solvers.adcg.reconstruct_adcg` (which is what the solver passes): used
        for every plane, for a plane searched again in its neighbours' field (keyword ``field``)
        and for the 3D polish. It must be a module-level function so that worker processes and
        Dask workers can unpickle it; this module imports no solver of its own.
    alpha, seed, callback, checkpoint, resume, max_iterations
        As for ``solve``.
    options : dict
        The solver's options; ``jobs`` (worker processes for the planes, default one per core
        available) and ``scheduler`` (address of a running Dask scheduler: the planes are
        submitted to its cluster instead) are taken out here.

    Notes
    -----
    The checkpoint ``FILE`` holds the finished planes; a plane (or the 3D polish) being worked on
    checkpoints to ``FILE.layerK`` (``FILE.polish``) through the usual solver checkpoint, so a
    resumed run loses at most one iteration per plane in progress (planes on a Dask cluster do
    not checkpoint their own progress: the workers may not share this file system). Each plane's
    result depends only on its data, the seed and the options, so the output is the same
    whether the planes run here, in worker processes or on a cluster.
    """

    def __init__(self, problem, layers, *, solve, alpha, seed, callback, checkpoint, resume,
                 options, max_iterations=None):
        if not callable(solve):
            raise TypeError(f"solve must be callable, got {solve!r}")
        self.problem, self.layers, self.solve = problem, layers, solve
        self.alpha, self.seed, self.callback = alpha, seed, callback
        self.options = dict(options)
        jobs = self.options.pop("jobs", None)
        self.jobs = int(jobs) if jobs else available_cores()
        self.scheduler = self.options.pop("scheduler", None)
        self.max_iterations = max_iterations
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.resume = resume
        self.done = {}  # plane index -> 3D configuration of the finished plane
        self.layer_info = {}  # plane index -> what its run reported
        self.history = []
        self.previous_runtime = 0.0
        self.settings = {
            "sigma": float(problem.sigma), "seed": int(seed),
            "alpha": alpha if isinstance(alpha, str) else float(alpha),
            "max_iterations": max_iterations,
            "layers": [round(l.y, 9) for l in layers],
            "data": digest(problem.data),
            **{k: v for k, v in self.options.items() if k != "time_limit"},
        }
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            self._load()

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> Reconstruction:
        t0 = time.perf_counter()
        n = len(self.layers)
        planes = plane_problems(self.problem, self.layers)
        todo = [k for k in range(n) if k not in self.done]
        # max_atoms and batch are about the whole particle: the planes keep their own defaults
        per_plane = {k: v for k, v in self.options.items() if k not in ("max_atoms", "batch")}
        # The lattice stage fits a square or hexagonal lattice; a plane of a 3D crystal may be
        # neither (fcc {110} planes are rectangular), so planes use it only when asked to.
        per_plane.setdefault("lattice_prior", 0.0)
        run = dict(alpha=self.alpha, seed=self.seed, resume=self.resume,
                   max_iterations=self.max_iterations, **per_plane)
        if self.scheduler is not None and todo:
            self._run_on_cluster(planes, todo, run, t0)
        elif self.jobs > 1 and len(todo) > 1:
            self._run_in_processes(planes, todo, run, t0)
        else:
            for k in todo:
                result = self.solve(planes[k], checkpoint=self._part(f"layer{k}"),
                                    callback=self._relay(k), **run)
                self._finish(k, result, t0)
        self._restack(planes, per_plane, t0)
        # The 3D polish: ADCG add/move/prune from the stacked planes under the 3D objective (and
        # the alpha ladder for "auto"); no global search, the planes' searches did that.
        stacked = self._stacked()
        polish = {k: v for k, v in self.options.items()
                  if k in ("potential", "batch", "grid_spacing", "max_atoms", "tol", "time_limit")}
        part = self._part("polish")
        self._announce(f"3D polish of {len(stacked.positions)} atoms", t0)
        t_polish = time.perf_counter()
        result = self.solve(
            self.problem, alpha=self.alpha, seed=self.seed, initial=stacked,
            callback=self._relay(None), checkpoint=part, resume=self.resume,
            hops=0, sweeps=0, lattice_start=False, **polish)
        t_polish = time.perf_counter() - t_polish
        if part is not None:
            part.unlink(missing_ok=True)
        self.history.extend({"layer": "3D", **h} for h in result.history)
        runtime = self.previous_runtime + time.perf_counter() - t0
        info = dict(result.info)
        planes_info = [self.layer_info[k] for k in range(n)]
        # iterations and hops count the planes' searches and the 3D polish together
        info.update(layers=n, layer_atoms=",".join(str(i["n_atoms"]) for i in planes_info),
                    layer_times=",".join(f"{i.get('runtime_s', 0.0):.3g}" for i in planes_info),
                    polish_s=round(t_polish, 3),
                    start="layers", runtime_s=round(runtime, 3),
                    iterations=info["iterations"] + sum(i["iterations"] for i in planes_info),
                    hops=sum(i["hops"] for i in planes_info))
        restacked = [str(i["layer"]) for i in planes_info if i.get("restacked")]
        if restacked:
            info["restacked_planes"] = ",".join(restacked)
        if isinstance(self.alpha, str):
            info["layer_alphas"] = ",".join(f"{i['alpha']:g}" for i in planes_info)
        hulls = [i.get("hull", 0.0) for i in planes_info]
        if any(hulls):  # planes' searches used the hull pressure (two zone axes); the polish not
            info["layer_hull"] = ",".join(f"{h:g}" for h in hulls)
        return Reconstruction(result.configuration, info, self.history)

    def _run_in_processes(self, planes, todo, run, t0):
        """The planes in ``jobs`` local worker processes, the largest first (the longest jobs
        start first, so the last one to finish is a small one)."""
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # a worker runs one plane at a time: no nested pools for the planes' restarts
        run = {**run, "jobs": 1}
        order = sorted(todo, key=lambda k: -self.layers[k].atoms)
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(todo))) as pool:
            futures = {pool.submit(self.solve, planes[k], checkpoint=self._part(f"layer{k}"),
                                   **run): k for k in order}
            for future in as_completed(futures):
                self._finish(futures[future], future.result(), t0)

    def _run_on_cluster(self, planes, todo, run, t0):
        """The planes on the Dask cluster of the scheduler at ``self.scheduler``."""
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise InputError("--scheduler needs dask.distributed: pip install "
                             "'atomtomo[dist]'") from None
        try:
            client = Client(self.scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"--scheduler {self.scheduler}: cannot connect ({err})") from None
        run = {**run, "jobs": 1, "resume": False}
        order = sorted(todo, key=lambda k: -self.layers[k].atoms)
        try:
            futures = [client.submit(self.solve, planes[k], checkpoint=None, pure=False, **run)
                       for k in order]
            plane_of = {f.key: k for f, k in zip(futures, order)}
            for future in as_completed(futures, loop=client.loop):
                self._finish(plane_of[future.key], future.result(), t0)
        finally:
            client.close()

    def _restack(self, planes, per_plane, t0):
        """Re-solve, in the field of its neighbours, each plane whose atoms sit on a neighbouring
        plane's atoms (closer than :data:`CLASH` bond lengths).

        Each plane is searched alone, under a 2D pair prior; where that prior is wrong for the
        plane (the rectangular planes of fcc across <110>, which it would pack hexagonally) a
        plane can end with atoms right above its neighbour's, which no crystal has. With a prior
        (alpha > 0 and a pair potential) such a plane is searched again with its neighbours' atoms as a fixed one-body field
        (:class:`NeighbourField`); of the clashing planes, the one whose objective in that field
        drops most takes its new arrangement, and the check is repeated.
        """

        bond = self.problem.bond_length
        if not bond or (not isinstance(self.alpha, str) and self.alpha <= 0):
            return
        pair = make_potential(self.options.get("potential", "lj"), bond, 3,
                              species=list(self.problem.species_weights))
        if not isinstance(pair, PairPotential) or pair.epsilon <= 0:
            return
        for _ in range(len(self.layers)):  # each round fixes one plane
            clashing = self._clashing()
            if clashing:
                self._announce(f"planes {', '.join(str(k + 1) for k in clashing)} clash with a "
                               "neighbour: searching them again in their neighbours' field", t0)
            trials = [self._resolve_in_field(k, planes[k], pair, per_plane) for k in clashing]
            trials = [t for t in trials if t[0] > 0]
            if not trials:
                return
            _, k, result = max(trials, key=lambda t: t[0])
            self.done[k] = lift(result.configuration, self.layers[k].y)
            self.layer_info[k].update(n_atoms=result.info["n_atoms"], restacked=True)
            self._save(t0)

    def _clashing(self):
        """Indices of the planes with an atom closer than CLASH bond lengths to an atom of an
        adjacent plane."""
        n, reach = len(self.layers), CLASH * self.problem.bond_length
        out = set()
        for k in range(n - 1):
            a, b = self.done[k].positions, self.done[k + 1].positions
            if len(a) and len(b) and cKDTree(b).query(a)[0].min() < reach:
                out.update((k, k + 1))
        return sorted(out)

    def _resolve_in_field(self, k, plane, pair, per_plane):
        """Search plane ``k`` again in its neighbours' field: ``(drop of its objective in that
        field, k, result)``. When two planes clash, the one whose new search drops its objective
        more is the one in the wrong arrangement: the other one pays with its data fit."""

        n = len(self.layers)
        near = [self.done[j].positions for j in (k - 1, k + 1) if 0 <= j < n]
        field = NeighbourField(pair, np.concatenate(near), self.layers[k].y)
        alpha = self.layer_info[k]["alpha"]
        run = {key: v for key, v in per_plane.items() if key not in ("jobs", "restarts")}
        result = self.solve(plane, alpha=alpha, seed=self.seed, field=field, restarts=1, jobs=1,
                            **run)
        # both arrangements judged by the plane's data, pair prior and the field, each relaxed
        flat = make_potential(self.options.get("potential", "lj"), self.problem.bond_length, 2,
                              species=list(self.problem.species_weights))
        objective = AtomObjective(plane, Prior(flat, [field]), alpha)
        mine = self.done[k]
        old = objective.relax(objective.state_from(Configuration(
            mine.positions[:, [0, 2]], list(mine.species), dict(self.problem.species_weights))))
        new = objective.relax(objective.state_from(result.configuration))
        return objective.value(old) - objective.value(new), k, result

    def _finish(self, k, result, t0):
        """Record plane ``k``'s result, checkpoint, and drop the plane's own checkpoint."""
        layer = self.layers[k]
        self.done[k] = lift(result.configuration, layer.y)
        self.layer_info[k] = {"layer": k + 1, "y": layer.y, "n_atoms": result.info["n_atoms"],
                              "alpha": result.info["alpha"], "hops": result.info["hops"],
                              "iterations": result.info["iterations"],
                              "runtime_s": result.info["runtime_s"],
                              "hull": result.info.get("hull", 0.0)}
        self.history.extend({"layer": k + 1, **h} for h in result.history)
        self._save(t0)
        part = self._part(f"layer{k}")
        if part is not None:
            part.unlink(missing_ok=True)
        if self.callback is not None and (self.jobs > 1 or self.scheduler is not None):
            # workers cannot call back: report each finished plane here
            whole = self._stacked()
            elapsed = self.previous_runtime + time.perf_counter() - t0
            self.callback({"iteration": len(self.done),
                           "phase": f"plane {k + 1}/{len(self.layers)} done "
                                    f"({len(self.done)} of {len(self.layers)}; "
                                    f"{result.info['n_atoms']} atoms in "
                                    f"{result.info['runtime_s']:.0f} s; {elapsed:.0f} s so far)",
                           "n_atoms": len(whole.positions), "positions": whole.positions,
                           "species": whole.species, "milestone": True})

    def _announce(self, what, t0):
        """A progress record between the planes' searches and the polish (which report their own
        iterations only in one process)."""
        if self.callback is None:
            return
        whole = self._stacked()
        elapsed = self.previous_runtime + time.perf_counter() - t0
        self.callback({"iteration": len(self.done), "phase": f"{what} ({elapsed:.0f} s so far)",
                       "n_atoms": len(whole.positions), "positions": whole.positions,
                       "species": whole.species, "milestone": True})

    def _stacked(self, extra=()):
        """The finished planes (in order) and ``extra`` configurations, as one 3D configuration."""
        return stack([self.done[k] for k in sorted(self.done)] + list(extra),
                     self.problem.species_weights)

    def _relay(self, k):
        """Pass a sub-run's records on, with the finished planes and plane ``k`` in 3D
        (``k`` None: the 3D polish)."""
        if self.callback is None:
            return None
        label = f"plane {k + 1}/{len(self.layers)}" if k is not None else "3D polish"

        def relay(record):
            record = dict(record)
            record["phase"] = f"{label}: {record.get('phase', '')}"
            if k is not None and "positions" in record:
                here = Configuration(record["positions"], list(record["species"]),
                                     dict(self.problem.species_weights))
                whole = self._stacked([lift(here, self.layers[k].y)])
                record["positions"], record["species"] = whole.positions, whole.species
                record["n_atoms"] = len(whole.positions)
            self.callback(record)

        return relay

    # -- checkpoints ----------------------------------------------------------------------------
    def _part(self, name):
        if self.checkpoint is None:
            return None
        return self.checkpoint.with_name(f"{self.checkpoint.name}.{name}")

    def _save(self, t0):
        if self.checkpoint is None:
            return
        meta = {"layered": True, "settings": self.settings,
                "layer_info": {str(k): v for k, v in self.layer_info.items()},
                "runtime": self.previous_runtime + time.perf_counter() - t0}
        arrays = {}
        for k, c in self.done.items():
            arrays[f"layer{k}_positions"] = c.positions
            arrays[f"layer{k}_species"] = np.array([str(s) for s in c.species])
        write_checkpoint(self.checkpoint, meta, arrays)

    def _load(self):
        meta, arrays = read_checkpoint(self.checkpoint)
        if not meta.get("layered"):
            raise InputError(f"checkpoint {self.checkpoint} belongs to another run (not a "
                             "layer-by-layer one); start without --resume")
        check_settings(self.checkpoint, meta["settings"], self.settings)
        self.layer_info = {int(k): v for k, v in meta["layer_info"].items()}
        self.previous_runtime = meta["runtime"]
        weights = self.problem.species_weights
        self.done = {k: Configuration(arrays[f"layer{k}_positions"],
                                      list(arrays[f"layer{k}_species"]), dict(weights))
                     for k in self.layer_info}
        # a plane finished just before the crash may have left its own checkpoint behind
        for k in self.done:
            part = self._part(f"layer{k}")
            if part is not None:
                part.unlink(missing_ok=True)
