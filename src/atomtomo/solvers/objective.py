r"""The objective a grid-free solver minimises, and its exact local changes.

For atoms at positions :math:`x_i` with species :math:`s_i` (weights :math:`w_{s_i}`):

.. math::

    F(x, s) = \tfrac12 \lVert A(x, w) - y \rVert^2 + \alpha \, \kappa \, V(x, s),
    \qquad \kappa = \frac{E_1}{\varepsilon}, \quad E_1 = \tfrac12 \lVert a(0) \rVert^2 .

:math:`E_1` is the data energy of one isolated unit atom and :math:`\varepsilon` the depth of one
bond of the potential :math:`V`, so ``alpha`` is dimensionless and portable between data sets:
``alpha = 1`` makes one bond cost as much as the data term of one atom.

Besides the value and gradient, :class:`AtomObjective` gives the *exact* change of ``F`` from
the three discrete operations of the solver, all vectorised:

* adding one atom of species ``k`` at a candidate point ``g`` (with ``r = A(x, w) - y``):
  :math:`\Delta = w_k \langle r, a_g\rangle + \tfrac12 w_k^2 \lVert a_g\rVert^2 + \alpha\kappa\,\Delta V_{\rm ins}`;
* removing atom ``i``: :math:`\Delta = -w_i \langle r, a_i\rangle + \tfrac12 w_i^2 \lVert a_i\rVert^2 + \alpha\kappa\,\Delta V_{\rm rem}`;
* changing the species of atom ``i`` from weight ``w`` to ``w'``:
  :math:`\Delta = (w' - w) \langle r, a_i\rangle + \tfrac12 (w' - w)^2 \lVert a_i\rVert^2`
  (plus the energy change for species-dependent potentials).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, minimize
from scipy.spatial import cKDTree

from ..configuration import Configuration
from ..hull_prior import HullPressure
from ..potentials import make_potential
from ..prior import Prior
from ..stopping import lbfgs_callback
from .problem import Problem


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_threaded_blas():
    """Context in which BLAS runs on one thread.

    scipy's L-BFGS-B does many tiny BLAS calls per step; with OpenBLAS's thread pool each one
    pays a synchronisation, which made the solver 7x slower on 2 idle cores, and far worse on a
    loaded machine (measured: 0.69 s vs 0.09 s for the same 580 iterations).
    """
    return _blas_controller().limit(limits=1, user_api="blas")


def near_mask(positions, centres, reach: float) -> np.ndarray:
    """Mask of the ``positions`` within ``reach`` of any of the ``centres``."""
    if len(centres) == 0:
        return np.zeros(len(positions), bool)
    return cKDTree(centres).query_ball_point(positions, reach, return_length=True) > 0


@dataclass
class AtomState:
    """Atoms being optimised: positions ``(n, d)`` and species indices ``(n,)``."""

    positions: np.ndarray
    species: np.ndarray

    @property
    def n(self) -> int:
        return len(self.positions)

    def copy(self) -> AtomState:
        return AtomState(self.positions.copy(), self.species.copy())

    def add(self, points, species) -> AtomState:
        return AtomState(
            np.vstack([self.positions, np.reshape(points, (-1, self.positions.shape[1]))]),
            np.concatenate([self.species, np.atleast_1d(species).astype(int)]),
        )

    def remove(self, index) -> AtomState:
        keep = np.ones(self.n, bool)
        keep[index] = False
        return AtomState(self.positions[keep], self.species[keep])


class AtomObjective:
    """``F(x, s)`` for a :class:`Problem`, a potential and a dimensionless ``alpha``.

    Parameters
    ----------
    problem : Problem
    potential : atomtomo.potentials.Potential
    alpha : float
        Dimensionless weight of the energy term (see module docstring).
    """

    def __init__(self, problem: Problem, potential, alpha: float = 0.0):
        self.problem = problem
        self.model = problem.model
        self.data = problem.data
        self.box = np.asarray(problem.box, float)
        self.potential = potential
        self.species_names = list(problem.species_weights)
        self.species_weights = np.array([problem.species_weights[s] for s in self.species_names])
        self.atom_energy = self.model.atom_data_energy()
        self.set_alpha(alpha)
        self.n_evaluations = 0

    def set_alpha(self, alpha: float) -> None:
        self.alpha = float(alpha)
        eps = float(getattr(self.potential, "epsilon", 0.0) or 0.0)
        self.energy_scale = self.alpha * self.atom_energy / eps if (self.alpha > 0 and eps > 0) else 0.0

    @property
    def uses_energy(self) -> bool:
        return self.energy_scale > 0

    # -- helpers ------------------------------------------------------------------------------
    def weights(self, state: AtomState) -> np.ndarray:
        return self.species_weights[state.species]

    def species_of(self, state: AtomState):
        return np.array(self.species_names, dtype=object)[state.species]

    def residual(self, state: AtomState) -> np.ndarray:
        return self.model.project(state.positions, self.weights(state)) - self.data

    def configuration(self, state: AtomState) -> Configuration:
        return Configuration(
            state.positions.copy(), self.species_of(state), dict(self.problem.species_weights)
        )

    def state_from(self, config: Configuration) -> AtomState:
        index = {s: k for k, s in enumerate(self.species_names)}
        species = np.array([index.get(s, 0) for s in config.species], dtype=int)
        pos = np.clip(np.asarray(config.positions, float), self.box[:, 0], self.box[:, 1])
        return AtomState(pos, species)

    # -- value and gradient ------------------------------------------------------------------
    def terms(self, state: AtomState) -> dict:
        """``objective``, ``data`` (0.5 ||r||^2), ``discrepancy`` (||r||), ``energy`` (V)."""
        r = self.residual(state)
        data = 0.5 * float(np.sum(r * r))
        energy = 0.0
        if self.uses_energy and state.n > 1:
            energy = float(self.potential.energy_and_gradient(state.positions, self.species_of(state))[0])
        return {
            "objective": data + self.energy_scale * energy,
            "data": data,
            "discrepancy": float(np.sqrt(2 * data)),
            "energy": energy,
        }

    def value(self, state: AtomState) -> float:
        return self.terms(state)["objective"]

    def value_and_gradient(self, positions, species, data=None, context=None):
        """``F`` and ``dF/dx`` at ``positions`` (n, d) for fixed species.

        ``data`` replaces the measured data (a local optimisation passes the data minus the
        projection of the atoms it keeps fixed); ``context`` are extra fixed atoms
        ``(positions, species)`` that interact through the potential but do not move.
        """
        self.n_evaluations += 1
        w = self.species_weights[species]
        f, g, _ = self.model.data_term(positions, w, self.data if data is None else data)
        if self.uses_energy:
            pos, spec, n = positions, species, len(positions)
            if context is not None and len(context[0]):
                pos = np.vstack([positions, context[0]])
                spec = np.concatenate([species, context[1]])
            if len(pos) > 1:
                e, ge = self.potential.energy_and_gradient(
                    pos, np.array(self.species_names, dtype=object)[spec]
                )
                f += self.energy_scale * e
                g = g + self.energy_scale * ge[:n]
        return f, g

    # -- the three discrete operations -------------------------------------------------------
    def insertion_scores(self, state: AtomState, candidates, self_energy, corr=None,
                         prior: bool = True):
        """Exact change of ``F`` from adding one atom at each candidate, best species each.

        ``corr``: the residual's correlation with the candidates, if already known.
        ``prior=False``: the change of the data term alone (where the data ask for an atom).
        Returns ``(delta (m,), species (m,))``.
        """
        if corr is None:
            corr = self.model.correlate(self.residual(state), candidates)
        w = self.species_weights[:, None]
        delta = w * corr[None, :] + 0.5 * w * w * self_energy[None, :]  # (n_species, m)
        if prior and self.uses_energy and state.n > 0:
            names = self.species_of(state)
            for k, name in enumerate(self.species_names):
                delta[k] += self.energy_scale * self.potential.insertion_energy(
                    state.positions, candidates, names, name
                )
        best = np.argmin(delta, axis=0)
        return delta[best, np.arange(delta.shape[1])], best

    def removal_scores(self, state: AtomState, residual=None) -> np.ndarray:
        """Exact change of ``F`` from removing each atom alone."""
        if state.n == 0:
            return np.zeros(0)
        r = self.residual(state) if residual is None else residual
        w = self.weights(state)
        corr = self.model.correlate(r, state.positions)
        delta = -w * corr + 0.5 * w * w * self.model.self_energy(state.positions)
        if self.uses_energy and state.n > 1:
            delta += self.energy_scale * self.potential.removal_energy(
                state.positions, self.species_of(state)
            )
        return delta

    def species_scores(self, state: AtomState, residual=None):
        """Exact data-term change from giving each atom each species: ``(n, n_species)``."""
        r = self.residual(state) if residual is None else residual
        w = self.weights(state)[:, None]
        corr = self.model.correlate(r, state.positions)[:, None]
        e = self.model.self_energy(state.positions)[:, None]
        dw = self.species_weights[None, :] - w
        return dw * corr + 0.5 * dw * dw * e

    # -- continuous moves --------------------------------------------------------------------
    def relax(self, state: AtomState, max_iterations: int = 200, movable=None) -> AtomState:
        """L-BFGS-B over positions inside the box (species fixed).

        ``movable``: optional boolean mask; the other atoms stay where they are, and cost
        nothing per evaluation: their projection is subtracted from the data once, and only
        those within the potential's reach of a movable atom (or in its ``global_context``)
        take part in the energy.
        """
        if state.n == 0:
            return state.copy()
        d = state.positions.shape[1]
        mask = np.ones(state.n, bool) if movable is None else np.asarray(movable, bool)
        if not mask.any():
            return state.copy()
        species = state.species
        data, context = None, None
        if not mask.all():
            fixed_pos, fixed_sp = state.positions[~mask], species[~mask]
            data = self.data - self.model.project(fixed_pos, self.species_weights[fixed_sp])
            if self.uses_energy:
                near = near_mask(fixed_pos, state.positions[mask], self._interaction_range())
                # plus those a global term (the hull pressure) couples at any distance
                far = self.potential.global_context(fixed_pos)
                if far is not None:
                    near |= far
                context = (fixed_pos[near], fixed_sp[near])
        movable_species = species[mask]

        def fun(flat):
            f, g = self.value_and_gradient(flat.reshape(-1, d), movable_species, data, context)
            return f, g.ravel()

        lo = np.tile(self.box[:, 0], int(mask.sum()))
        hi = np.tile(self.box[:, 1], int(mask.sum()))
        # Stop when a step changes F by less than 1e-9 atom data energies, or no gradient
        # component exceeds 1e-7 E_1 / sigma (a position change of ~1e-7 sigma): far below
        # anything the solver compares (its tolerance is 1e-4 E_1), and it saves most of the
        # iterations that the default tolerances spend on rounding noise.
        x0 = state.positions[mask].ravel()
        start = fun(x0)
        pending = [start]  # L-BFGS-B's first call is at x0: answer it with `start`

        def fun_start_cached(flat):
            if pending and np.array_equal(flat, x0):
                return pending.pop()
            pending.clear()
            return fun(flat)

        f0 = start[0]
        ftol = 1e-9 * self.atom_energy / max(abs(f0), self.atom_energy, 1.0)
        gtol = 1e-7 * self.atom_energy / self.model.sigma
        with single_threaded_blas():
            res = minimize(
                fun_start_cached,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=Bounds(lo, hi),
                options={"maxiter": max_iterations, "ftol": ftol, "gtol": gtol, "maxcor": 20},
                callback=lbfgs_callback,
            )
        pos = state.positions.copy()
        pos[mask] = res.x.reshape(-1, d)
        # L-BFGS-B never returns a worse point than it started from, but guard against NaN.
        if not np.all(np.isfinite(pos)):
            return state.copy()
        return AtomState(pos, species.copy())

    def _interaction_range(self) -> float:
        """Distance beyond which atoms do not interact through the potential."""
        cutoff = getattr(self.potential, "cutoff_distance", None)
        if cutoff:
            return float(cutoff)
        bond = getattr(self.potential, "bond_length", None) or 1.0
        return 2.5 * float(bond)

    def prune(self, state: AtomState, tol: float = 0.0) -> tuple[AtomState, int]:
        """Remove atoms while a removal lowers ``F``; then improve species. Returns (state, n removed)."""
        removed = 0
        while state.n > 0:
            delta = self.removal_scores(state)
            i = int(np.argmin(delta))
            if delta[i] >= -tol:
                break
            state = state.remove(i)
            removed += 1
        if len(self.species_names) > 1 and state.n > 0:
            for _ in range(state.n):
                scores = self.species_scores(state)
                i, k = np.unravel_index(np.argmin(scores), scores.shape)
                if scores[i, k] >= -tol:
                    break
                state = state.copy()
                state.species[i] = k
        return state, removed


def search_quality(problem: Problem, found: Configuration, truth: Configuration, alpha: float,
                   potential: str = "lj", hull: float = 0.0) -> float:
    """How far a search stopped above the true configuration, in units of one atom's data energy.

    ``(F(found) - F(relaxed truth)) / E_1``, with ``F`` the objective at ``alpha`` with
    ``potential`` (plus the hull pressure ``hull``, :mod:`atomtomo.hull_prior`, when positive)
    and the truth relaxed by the same local optimiser. At or below 0 the search
    found a configuration at least as good as the truth by the objective it minimises (a wrong
    answer there is the objective's fault, not the search's).
    """
    prior = make_potential(potential, problem.bond_length, problem.ndim)
    if hull > 0:
        prior = Prior(prior, [HullPressure.in_bonds(hull, prior)])
    objective = AtomObjective(problem, prior, alpha)
    relaxed = objective.relax(objective.state_from(truth), max_iterations=1000)
    return (objective.value(objective.state_from(found)) - objective.value(relaxed)) \
        / objective.atom_energy
