"""ADCG: alternating descent conditional gradient for atoms (Boyd, Schiebinger & Recht 2017).

The loop, as in the paper (and nboyd/SparseInverseProblems.jl ``ADCG.jl``), over a small model
interface — here :class:`~atomtomo.solvers.objective.AtomObjective`, which knows the data term,
the prior and their exact local changes:

1. *add* (the linear minimisation oracle): score every point of a coarse candidate grid by the
   exact change of the objective from adding one atom there (data term plus alpha times the
   energy change, best species) and add the best — or several well-separated ones for large
   problems — if that lowers the objective;
2. *move*: L-BFGS-B over all positions inside the box, with analytic gradients of both terms;
3. *prune*: remove atoms whose removal lowers the objective; change species where that helps;
4. *stop* when no addition lowers the objective (by more than ``tol``), or at the guards.

The greedy loop is only the start: with few angles it stops in poor local minima, so
:func:`reconstruct_adcg` follows it with the global search of
:mod:`atomtomo.solvers.global_search` (basin hopping with jump, re-pairing, lattice and cluster
moves), each hop polished by the same add/move/prune steps.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..errors import InputError
from ..forward import grid_points
from ..potentials import POTENTIALS
from .grid import PixelGrid
from .objective import AtomObjective, AtomState, near_mask
from .options import (boolean, choice, non_negative_float, non_negative_int, parse_options,
                      positive_float, positive_int)
from .problem import Problem, Reconstruction


def candidate_axes(problem: Problem, spacing: float | None = None, max_points: int | None = None):
    """Axes of the cell-centred tensor grid of candidate points covering the box.

    Default spacing: the blurred atom width ``sqrt(sigma^2 + Delta^2 / 12)``, but no coarser than
    a quarter bond length, and coarsened to at most ``max_points`` points (default 40 000 in 2D,
    250 000 in 3D): the move step refines positions continuously, the grid only has to land in
    the right basin.
    """
    box = np.asarray(problem.box, float)
    d = problem.ndim
    if spacing is None:
        spacing = np.hypot(problem.sigma, problem.geometry.pixel_size / np.sqrt(12))
        if problem.bond_length:
            spacing = min(spacing, problem.bond_length / 4)
    if max_points is None:
        max_points = 40_000 if d == 2 else 250_000
    return PixelGrid.with_spacing(box, spacing, max_points).axes


class Candidates:
    """The candidate grid of the add step, with its self-energies ``||a(g)||^2`` precomputed.

    Correlating a residual with the whole grid uses the separable fast path of
    :meth:`ForwardModel.correlate_grid` where the geometry allows it.
    """

    def __init__(self, model, axes):
        self.model = model
        self.axes = [np.asarray(a, float) for a in axes]
        self.points = grid_points(self.axes)
        self.self_energy = model.self_energy_grid(self.axes)
        self.correlate = model.grid_correlator(self.axes)  # residual -> correlation per point

    def insertion_scores(self, objective, state, prior: bool = True):
        """:meth:`AtomObjective.insertion_scores` of ``state`` at every grid point (``prior=False``:
        the data term alone); returns ``(delta, species)``."""
        return objective.insertion_scores(state, self.points, self.self_energy,
                                          corr=self.correlate(objective.residual(state)),
                                          prior=prior)


def select_additions(points, delta, species, batch: int, separation: float, tol: float):
    """Indices of up to ``batch`` candidates with ``delta < -tol``, best first, each at least
    ``separation`` from the ones chosen before it."""
    order = smallest(delta, max(50 * batch, 200))
    chosen = []
    for idx in order:
        if delta[idx] >= -tol or len(chosen) >= batch:
            break
        if chosen and np.min(np.linalg.norm(points[chosen] - points[idx], axis=1)) < separation:
            continue
        chosen.append(idx)
    return np.array(chosen, dtype=int)


def smallest(values, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest ``values``, in increasing order (O(m + k log k))."""
    values = np.asarray(values)
    k = min(int(k), values.size)
    if k <= 0:
        return np.zeros(0, int)
    part = np.argpartition(values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return part[np.argsort(values[part], kind="stable")]


def adcg_iteration(objective: AtomObjective, state: AtomState, candidates: Candidates, *,
                   batch: int = 1, separation: float = 0.0, tol: float = 0.0,
                   max_atoms: int | None = None):
    """One add-move-prune iteration. Returns ``(state, n_added)``; ``n_added = 0`` means converged.

    The objective never increases: an addition is kept only when it lowers ``F``, L-BFGS-B and
    pruning only lower it.
    """
    f0 = objective.value(state)
    delta, species = candidates.insertion_scores(objective, state)
    if max_atoms is not None:
        batch = min(batch, max_atoms - state.n)
    picks = select_additions(candidates.points, delta, species, batch, separation, tol)
    if len(picks) == 0:
        return state, 0
    trial = state.add(candidates.points[picks], species[picks])
    if len(picks) > 1 and objective.value(trial) >= f0 - tol:
        picks = picks[:1]  # the batch interfered with itself: fall back to the single best
        trial = state.add(candidates.points[picks], species[picks])
    if trial.n > LOCAL_MOVE_ABOVE:
        # Large problems: move the new atoms and their neighbourhood to convergence, then
        # everything briefly; each full evaluation costs O(n).
        trial = objective.relax(trial, movable=_near(trial, state.n, 3 * max(separation, 1e-12)))
        trial = objective.relax(trial, max_iterations=15)
    else:
        trial = objective.relax(trial)
    trial, _ = objective.prune(trial, tol)
    if objective.value(trial) > f0:  # numerical safety net; cannot happen in exact arithmetic
        return state, 0
    return trial, len(picks)


#: Above this many atoms the move step after an addition is local first (see adcg_iteration).
LOCAL_MOVE_ABOVE = 150


def _near(state: AtomState, first_new: int, reach: float):
    """Mask of the atoms within ``reach`` of any atom with index >= ``first_new``."""
    mask = near_mask(state.positions, state.positions[first_new:], reach)
    mask[first_new:] = True
    return mask


def adcg(objective: AtomObjective, state: AtomState, candidates: Candidates, *,
         max_iterations: int = 1000, max_atoms: int | None = None, batch: int = 1,
         separation: float = 0.0, tol: float = 0.0, callback=None) -> AtomState:
    """The ADCG loop: add, move, prune until no addition lowers the objective."""
    for iteration in range(max_iterations):
        if max_atoms is not None and state.n >= max_atoms:
            break
        state, added = adcg_iteration(objective, state, candidates, batch=batch,
                                      separation=separation, tol=tol, max_atoms=max_atoms)
        if callback is not None:
            callback(iteration, state)
        if added == 0:
            break
    return state


# -------------------------------------------------------------------------------------------
# The method behind `atomtomo reconstruct --method adcg`.
# -------------------------------------------------------------------------------------------

_OPTIONS = {
    "potential": choice(*POTENTIALS),
    "hops": non_negative_int,
    "patience": positive_int,
    "batch": positive_int,
    "grid_spacing": positive_float,
    "max_atoms": positive_int,
    "temperature": positive_float,
    "time_limit": positive_float,
    "tol": non_negative_float,
    "sweeps": non_negative_int,
    "lattice_start": boolean,
    "lattice_prior": non_negative_float,
    "pairing": boolean,
    "grains": boolean,
    "reseed": boolean,
    "strain": boolean,
    "strain_refit": boolean,
    "dislocation": boolean,
    "lattice_refit": boolean,
    "hull": non_negative_float,
    "layers": choice("auto", "on", "off"),
    "restarts": positive_int,
    "jobs": positive_int,
    "scheduler": str,  # address of a Dask scheduler for the planes of a plane-by-plane run
}


def reconstruct_adcg(problem: Problem, *, alpha=0.0, seed: int = 0, callback=None,
                     initial=None, max_iterations: int | None = None, checkpoint=None,
                     resume: bool = False, field=None, **options) -> Reconstruction:
    """Grid-free reconstruction: ADCG followed by a global basin-hopping search.

    Parameters
    ----------
    problem : Problem
    alpha : float or "auto"
        Dimensionless weight of the energy term (see :mod:`atomtomo.solvers.objective`).
        ``"auto"`` chooses it by the discrepancy principle (:mod:`atomtomo.solvers.alpha`).
    seed : int
        Seed of the global search; the same seed gives the same result.
    callback : callable, optional
        Called after every iteration with a dict record (see :class:`SearchDriver`).
    initial : Configuration, optional
        Starting configuration (default: empty, atoms are added by the add step).
    max_iterations : int, optional
        Guard on the number of ADCG iterations (default: 4 x the expected atom count + 50).
    checkpoint : path, optional
        Save the full search state there after every iteration (atomically).
    resume : bool
        Continue from ``checkpoint`` if it exists.
    **options
        potential ("lj" default, "none", "emt"), hops (global-search budget), patience, batch
        (atoms added per iteration; default grows with the expected count), grid_spacing,
        max_atoms, temperature (initial annealing and basin-hopping temperature, in atom data
        energies), sweeps (simulated-annealing sweeps over positions before basin hopping),
        lattice_start (2D: also start from lattices fitted to the data; default on when the
        bond length is known), lattice_prior (2D: weight ``beta``, in bonds, of a well at every
        site of a lattice fitted to the search's atoms, added to the potential for a second
        search; default 3 for two angles with a pair prior when both projections run along
        zone axes, else 0, off; see :mod:`atomtomo.lattice_prior`), strain (with a
        lattice prior: a third search stage with the well moved to the sites the atoms'
        neighbours predict, which follow a dislocation's or a defect's strain; default on),
        strain_refit (the strain stage judges every proposal under the sites its own atoms
        predict, not those of the configuration the stage started from; default off, measured
        in docs/solver.md), lattice_refit (the lattice stage judges every proposal under the
        lattice refitted to its own atoms, not the one fitted when the stage began; default
        off, measured in docs/solver.md), dislocation (with a lattice prior: a last stage that
        fits crystals with an edge dislocation to the data and searches again under a well at
        the sites of each that fits clearly better than one crystal, see :mod:`.dislocation_fit`;
        with two angles it also turns the lattice stage on where the column test misses the
        zone axes but the fitted crystal's rows run along both beams; default on in 2D with the
        bond length and an energy term, where the data hold 12 atoms or more),
        pairing (2D, two angles, pair potential: a
        basin-hopping move that anneals the pairing of the two projections' coordinates under
        the pair potential, see :mod:`.pair_annealing`; default on), hull (2D: weight ``h``,
        in bonds per bond length squared, of a pressure on the atoms' convex hull added to the
        potential, see :mod:`atomtomo.hull_prior`; default 3 for two angles with a pair prior
        when both projections run along zone axes, :mod:`.zone_axes`, else 0), layers (3D
        single-axis data of a crystal whose planes lie across the tilt axis: "auto" (default)
        reconstructs plane by plane in 2D and polishes the stack in 3D when the data split into
        planes, "on" requires it, "off" never; see :mod:`.layers`), restarts (independent
        searches with seeds ``seed, seed + 1, ...``; the one with the lowest objective is the
        result, see :mod:`.restarts`; default 2 where the lattice stage runs with the default
        budget, else 1), jobs (worker processes for the planes of a plane-by-plane run, default
        one per core available, and for the restarts, default one per restart up to the available cores), reseed (once the search is over, when
        its misfit misses the discrepancy target of the file's noise level, take out and refill
        the atoms around where the data are worst explained, see :mod:`.region_reseed`;
        default on in 2D with the default budget), time_limit (seconds for the global
        search), tol.
    """
    from .global_search import SearchDriver  # noqa: PLC0415 (keeps module import light)
    from .restarts import default_restarts, run_restarts  # noqa: PLC0415

    options = parse_options("ADCG", _OPTIONS, options)
    layered = _layered_run(problem, options.pop("layers", "auto"), initial, options,
                           alpha=alpha, seed=seed, callback=callback, checkpoint=checkpoint,
                           resume=resume, max_iterations=max_iterations)
    if layered is not None:
        return layered.run()
    jobs, restarts = options.pop("jobs", None), options.pop("restarts", None)
    options.pop("scheduler", None)  # only the planes of a plane-by-plane run go to a cluster
    start = time.perf_counter()
    run = dict(alpha=alpha, seed=seed, initial=initial, max_iterations=max_iterations,
               checkpoint=checkpoint, resume=resume, callback=callback, field=field, **options)
    driver = SearchDriver(problem, **run)
    if restarts is None:
        restarts = default_restarts(driver, options)
    if restarts > 1:
        result = run_restarts(driver, problem, restarts, jobs or min(restarts, _cores()), run)
    else:
        result = driver.run()
    result.info["runtime_s"] = round(time.perf_counter() - start + driver.previous_runtime, 3)
    return result


def _cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _layered_run(problem, mode, initial, options, **run):
    """The plane-by-plane run (:mod:`.layers`) when ``mode`` and the data call for it, else None."""
    from .layers import LayeredRun, find_layers  # noqa: PLC0415

    if mode == "off":
        return None
    why_not = None
    if problem.ndim != 3 or not problem.geometry.single_axis:
        why_not = "it needs 3D single-axis data"
    elif initial is not None:
        why_not = "it does not take an initial configuration"
    elif options.get("potential") == "emt":
        why_not = "the planes are solved in 2D, where EMT does not exist"
    if why_not is None:
        layers = find_layers(problem)
        if layers is not None:
            return LayeredRun(problem, layers, solve=reconstruct_adcg, options=options, **run)
        why_not = ("the data do not split into planes across the tilt axis (the rows' profile "
                   "is not a set of resolved planes one atom wide)")
    if mode == "on":
        raise InputError(f"ADCG option layers=on: {why_not}")
    return None
