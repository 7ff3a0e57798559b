"""The core of the solver: the candidate grid and the ADCG loop (Boyd, Schiebinger & Recht 2017).

The loop, as in the paper (and nboyd/SparseInverseProblems.jl ``ADCG.jl``), over a small model
interface -- here :class:`~atomtomo.solvers.objective.AtomObjective`, which knows the data term,
the prior and their exact local changes (``value``, ``insertion_scores``, ``relax``, ``prune``):

1. *add* (the linear minimisation oracle): score every point of a coarse candidate grid by the
   exact change of the objective from adding one atom there (data term plus alpha times the
   energy change, best species) and add the best -- or several well-separated ones for large
   problems -- if that lowers the objective;
2. *move*: L-BFGS-B over all positions inside the box, with analytic gradients of both terms;
3. *prune*: remove atoms whose removal lowers the objective; change species where that helps;
4. *stop* when no addition lowers the objective (by more than ``tol``), or at the guards.

The greedy loop is only the start: with few angles it stops in poor local minima, so the method
(:func:`atomtomo.solvers.adcg.reconstruct_adcg`) follows it with the global search of
:mod:`atomtomo.solvers.global_search`, each hop polished by the same add/move/prune steps.
"""

from __future__ import annotations

import numpy as np

from ..forward import grid_points
from ..stopping import should_stop
from .grid import PixelGrid
from .objective import AtomObjective, AtomState, near_mask
from .problem import Problem


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
        if should_stop():
            break
        if max_atoms is not None and state.n >= max_atoms:
            break
        state, added = adcg_iteration(objective, state, candidates, batch=batch,
                                      separation=separation, tol=tol, max_atoms=max_atoms)
        if callback is not None:
            callback(iteration, state)
        if added == 0:
            break
    return state
