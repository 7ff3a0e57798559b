"""The proposals of basin hopping: each move is ``(state, rng) -> (state, changed)``.

A move perturbs a configuration (a copy; the one given is not changed) and returns the indices of
the atoms it changed, which the hop relaxes locally before the full polish. Each move has a
``weight(state)``: its share among the moves, zero where it cannot apply (scipy's
``basinhopping`` calls this ``take_step``; here there are several, drawn by weight). The moves read
the search they serve (:class:`~atomtomo.solvers.global_search.SearchDriver` or anything with
``objective``, ``candidates``, ``problem``, ``length_scale``, ``potential`` and
``pairing_applies``) when they run, since a stage may change the objective's prior.

* :class:`Jump` -- remove the atoms that fit worst (smallest removal gain) and re-insert as many
  at the best-scoring candidate points (sampled among the top few);
* :class:`Repair` -- give two atoms each other's coordinate along one projection direction while
  keeping it along another: this leaves two projections unchanged, so it crosses exactly the
  ridges the local optimiser cannot;
* :class:`LatticeMove` -- move a badly fitting atom to an empty site of the local lattice (sites
  that continue a neighbour chain or complete a parallelogram of neighbours, :func:`neighbour_sites`);
* :class:`Shift` -- displace a small group of neighbouring atoms together;
* :class:`Pairing` (two angles in 2D, pair potential) -- anneal the pairing of all the atoms'
  coordinates of the two projections under the prior alone (:mod:`.pair_annealing`): every
  pairing fits the data equally, so this re-pairs whole chains of atoms at once, which single
  re-pairs reach only uphill.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .core import smallest
from .pair_annealing import anneal_pairing

#: Weight of the pairing move (two angles in 2D, pair potential) among the hops' moves.
PAIRING = 0.2

#: Below this ``|det|`` of two projection directions they are too close to re-pair along.
MIN_DETERMINANT = 0.15


def neighbour_sites(positions, bond_length, box, min_gap=0.6):
    """Empty sites of the local lattice: ``2 x_j - x_k`` (continue a chain of neighbours) and
    ``x_k + x_l - x_j`` (complete a parallelogram), at least ``min_gap * bond_length`` from every
    atom and inside the box."""
    n = len(positions)
    if n < 2 or not bond_length:
        return np.zeros((0, positions.shape[1] if positions.ndim == 2 else 2))
    tree = cKDTree(positions)
    pairs = tree.query_pairs(1.25 * bond_length, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, positions.shape[1]))
    j, k = pairs[:, 0], pairs[:, 1]
    sites = [2 * positions[j] - positions[k], 2 * positions[k] - positions[j]]
    # Parallelograms: for pairs (j,k) and (j,l) sharing j, propose x_k + x_l - x_j.
    both = np.concatenate([pairs, pairs[:, ::-1]])
    order = np.argsort(both[:, 0], kind="stable")
    both = both[order]
    starts = np.searchsorted(both[:, 0], np.arange(n))
    ends = np.searchsorted(both[:, 0], np.arange(n), side="right")
    deg = ends - starts
    if deg.max() >= 2:
        # All neighbour pairs (k, l) of each centre j, vectorised over a padded table.
        dmax = deg.max()
        table = np.full((n, dmax), -1)
        slot = np.arange(len(both)) - starts[both[:, 0]]
        table[both[:, 0], slot] = both[:, 1]
        a, b = np.triu_indices(dmax, 1)
        kk, ll = table[:, a], table[:, b]
        ok = (kk >= 0) & (ll >= 0)
        centre = np.broadcast_to(np.arange(n)[:, None], kk.shape)[ok]
        sites.append(positions[kk[ok]] + positions[ll[ok]] - positions[centre])
    sites = np.vstack(sites)
    inside = np.all((sites >= box[:, 0]) & (sites <= box[:, 1]), axis=1)
    sites = sites[inside]
    if len(sites) == 0:
        return sites
    dist, _ = tree.query(sites)
    sites = sites[dist >= min_gap * bond_length]
    if len(sites) == 0:
        return sites
    # Merge duplicates (the same site proposed by several neighbours).
    keys = np.round(sites / (0.2 * bond_length)).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return sites[np.sort(first)]


def worst_atoms(objective, state, k, rng):
    """``k`` atoms drawn among those whose removal costs least (they fit worst); with
    probability 0.3 among all atoms."""
    scores = objective.removal_scores(state)
    pool = np.argsort(scores)[: max(3 * k, 6)]
    if rng.random() < 0.3:
        pool = np.arange(state.n)
    return rng.choice(pool, size=min(k, len(pool)), replace=False)


def insert_best(objective, candidates, state, k, rng):
    """Insert ``k`` atoms one by one at good candidate points (the best, or with probability
    0.5 one of the top five)."""
    for _ in range(k):
        points = candidates.points
        delta, species = candidates.insertion_scores(objective, state)
        top = smallest(delta, 5)
        pick = top[0] if rng.random() < 0.5 else rng.choice(top)
        state = state.add(points[pick], species[pick])
    return state


class Move:
    """A proposal of basin hopping (see the module docstring)."""

    name = "move"

    def __init__(self, search):
        self.search = search

    def weight(self, state) -> float:
        """Unnormalised probability of this move for the current ``state`` (0: not applicable)."""
        raise NotImplementedError

    def __call__(self, state, rng):
        """``(new state, indices of the atoms changed)``; ``state`` itself is not changed."""
        raise NotImplementedError


class Jump(Move):
    name = "jump"

    def weight(self, state):
        return 0.35

    def __call__(self, state, rng):
        s = self.search
        k = min(int(rng.integers(1, 4)), state.n)
        state = state.remove(worst_atoms(s.objective, state, k, rng))
        return insert_best(s.objective, s.candidates, state, k, rng), np.arange(state.n, state.n + k)


class Repair(Move):
    """Swap two atoms' coordinates along one projection direction, keep them along another."""

    name = "repair"

    def weight(self, state):
        return 0.35 if self.search.problem.geometry.n_angles >= 2 and state.n >= 2 else 0.0

    def __call__(self, state, rng):
        s = self.search
        state = state.copy()
        geo = s.problem.geometry
        a, b = rng.choice(geo.n_angles, size=2, replace=False)
        i = int(rng.integers(state.n))
        reach = 3 * s.length_scale
        near = cKDTree(state.positions).query_ball_point(state.positions[i], reach)
        near = [j for j in near if j != i] or [j for j in range(state.n) if j != i]
        j = int(rng.choice(near))
        x = state.positions
        if geo.ndim == 2:
            m = geo.directions[[a, b]]
            if abs(np.linalg.det(m)) < MIN_DETERMINANT:
                return Jump(s)(state, rng)
            new_i = np.linalg.solve(m, [x[i] @ m[0], x[j] @ m[1]])
            new_j = np.linalg.solve(m, [x[j] @ m[0], x[i] @ m[1]])
        else:
            # Re-pair within the plane perpendicular to the detector rows (v), keeping each v.
            eu = geo.directions[[a, b], 0, :]
            ev = geo.directions[a, 1, :]
            m = np.vstack([eu, ev])
            if abs(np.linalg.det(m)) < MIN_DETERMINANT:
                return Jump(s)(state, rng)
            new_i = np.linalg.solve(m, [x[i] @ eu[0], x[j] @ eu[1], x[i] @ ev])
            new_j = np.linalg.solve(m, [x[j] @ eu[0], x[i] @ eu[1], x[j] @ ev])
        box = s.objective.box
        state.positions[i] = np.clip(new_i, box[:, 0], box[:, 1])
        state.positions[j] = np.clip(new_j, box[:, 0], box[:, 1])
        return state, np.array([i, j])


class LatticeMove(Move):
    """Move one or two badly fitting atoms to the best empty sites of the local lattice."""

    name = "lattice"

    def weight(self, state):
        return 0.2 if bool(self.search.problem.bond_length) and state.n >= 3 else 0.0

    def __call__(self, state, rng):
        s = self.search
        objective = s.objective
        sites = neighbour_sites(state.positions, s.problem.bond_length, objective.box)
        k = 1 if rng.random() < 0.7 else 2
        state = state.remove(worst_atoms(objective, state, k, rng))
        changed = np.arange(state.n, state.n + k)
        if len(sites) == 0:
            return insert_best(objective, s.candidates, state, k, rng), changed
        for _ in range(k):  # insert at the best lattice sites only
            delta, species = objective.insertion_scores(state, sites,
                                                        objective.model.self_energy(sites))
            top = smallest(delta, 3)
            pick = top[0] if rng.random() < 0.6 else rng.choice(top)
            state = state.add(sites[pick], species[pick])
        return state, changed


class Shift(Move):
    """Displace the atoms within 1.3 length scales of a random atom by one Gaussian step."""

    name = "shift"

    def weight(self, state):
        return 0.1

    def __call__(self, state, rng):
        s = self.search
        state = state.copy()
        bond = s.length_scale
        c = int(rng.integers(state.n))
        group = cKDTree(state.positions).query_ball_point(state.positions[c], 1.3 * bond)
        step = rng.normal(scale=0.4 * bond, size=state.positions.shape[1])
        box = s.objective.box
        state.positions[group] = np.clip(state.positions[group] + step, box[:, 0], box[:, 1])
        return state, np.asarray(group, int)


class Pairing(Move):
    """Anneal the pairing of the two projections' coordinates under the prior
    (:mod:`.pair_annealing`): the data term is unchanged, so the proposal is scored by the prior
    alone until the polish."""

    name = "pairing"

    def weight(self, state):
        s = self.search
        return PAIRING if s.pairing_applies and s.objective.alpha > 0 and state.n >= 4 else 0.0

    def __call__(self, state, rng):
        s = self.search
        state = state.copy()
        m = s.problem.geometry.directions[[0, 1]]
        if abs(np.linalg.det(m)) < MIN_DETERMINANT:
            return Jump(s)(state, rng)
        positions, _ = anneal_pairing(state.positions, m, s.potential, s.objective.box, rng,
                                      species=state.species)
        changed = np.flatnonzero(np.any(positions != state.positions, axis=1))
        state.positions = positions
        return state, changed


def default_moves(search) -> list[Move]:
    """The moves of the search, in the order their weights are drawn from."""
    return [Jump(search), Repair(search), LatticeMove(search), Shift(search), Pairing(search)]


def draw_move(moves, state, rng) -> Move:
    """One of ``moves``, with probability proportional to its weight for ``state``."""
    p = np.array([m.weight(state) for m in moves])
    return moves[rng.choice(len(moves), p=p / p.sum())]
