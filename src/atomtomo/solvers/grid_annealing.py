r"""Simulated annealing over discrete occupancies of a fixed set of sites.

The problem (discrete tomography):

.. math:: \min_{w \in \{0, w_1, \dots, w_S\}^N} \lVert \Psi w - y \rVert^2,

with :math:`\Psi` the grid operator of :mod:`atomtomo.solvers.grid` (column ``k`` = projection of
a unit atom at site ``k``) and ``w_s`` the species weights; with one species of weight 1 this is
the binary problem :math:`w \in \{0, 1\}^N`. The sites are either the points of a pixel grid
finer than the atom spacing (positions are then limited by the grid, which is the point of the
comparison with the grid-free method) or, in 2D, the sites of a crystal lattice fitted to the
data (:func:`atomtomo.solvers.lattice_seed.fit_lattice`), as in the discrete tomography of
Van Aert et al. (Nature 470, 374, 2011).

Moves, on the residual ``r = Psi w - y`` kept up to date incrementally (each move touches one or
two columns, so it costs O(support), not O(data)):

* *flip*: empty a site, or occupy one (random species) — changes the atom count, so it is only
  used when the count is free;
* *shift*: move an atom to a neighbouring empty site;
* *swap*: move an atom to a random empty site anywhere (exchange of an occupied and an empty
  site);
* *species*: give an atom another species (several species only).

Exact energy changes, with ``c = <r, psi_k>`` and ``e_k = ||psi_k||^2``: occupying ``k`` with
weight ``w`` changes ``||r||^2`` by ``2 w c + w^2 e_k``, emptying it by ``-2 w c + w^2 e_k``; a
move is an emptying followed by an occupation on the updated residual. Metropolis acceptance
``min(1, exp(-Delta / T))``, geometric cooling from ``t_start`` to ``t_end`` (in units of one
atom's energy ``||psi||^2``) over ``levels`` temperature levels, then zero-temperature levels
until one accepts nothing. Every random number is drawn beforehand from a seeded
:class:`numpy.random.Generator`, so a seed gives the same result with and without numba.

The Metropolis loop is inherently sequential; it is compiled with numba when numba is installed
(the ``fast`` extra) and runs as plain Python otherwise (same arithmetic, much slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError
from ..forward import ForwardModel
from .grid import PixelGrid


# -- columns of the system operator at arbitrary sites ---------------------------------------
@dataclass
class SiteColumns:
    """Factorised columns of :math:`\\Psi` at ``sites``: column ``k`` has, per angle ``a``, the
    entries ``bv[k, b, i] * bu[k, a, j]`` at data index ``(a * n_rows + iv[k, b, i]) * n_cols +
    iu[k, a, j]``, with ``b = a`` or, when the row coordinate is the same at every angle
    (single-axis tilt, and 2D), ``b = 0``: the row factor is stored once. In 2D ``n_rows = 1``
    and the row factor is 1."""

    sites: np.ndarray
    iu: np.ndarray
    bu: np.ndarray
    iv: np.ndarray
    bv: np.ndarray
    n_rows: int
    n_cols: int
    energy: np.ndarray  # ||psi_k||^2

    @classmethod
    def build(cls, model: ForwardModel, sites) -> SiteColumns:
        geo = model.geometry
        sites = np.asarray(sites, dtype=float).reshape(-1, geo.ndim)
        if geo.ndim == 2:
            (n_cols,) = geo.detector_shape
            iu, bu = model._window(geo.detector_coordinates(sites), n_cols)  # (A, N, K)
            iv = np.zeros((1, len(sites), 1), np.int64)
            bv = np.ones((1, len(sites), 1))
            n_rows = 1
        else:
            n_rows, n_cols = geo.detector_shape
            iu, bu, iv, bv = model._windows_3d(sites)  # single-axis: one row window for all
        order = (1, 0, 2)  # -> (N, A, K)
        iu, bu, iv, bv = (np.ascontiguousarray(np.transpose(x, order)) for x in (iu, bu, iv, bv))
        su = np.einsum("nak,nak->na", bu, bu)
        sv = np.einsum("nak,nak->na", bv, bv)
        energy = (su * sv).sum(axis=1)  # sv broadcasts over the angles when stored once
        return cls(sites, iu.astype(np.int32), bu, iv.astype(np.int32), bv, int(n_rows),
                   int(n_cols), energy)


def grid_neighbours(grid: PixelGrid) -> np.ndarray:
    """``(N, 3^d - 1)`` flat indices of each grid point's neighbours (-1 outside the grid)."""
    d = grid.ndim
    offsets = np.array(np.meshgrid(*[[-1, 0, 1]] * d, indexing="ij")).reshape(d, -1).T
    offsets = offsets[np.any(offsets != 0, axis=1)]
    idx = np.array(np.unravel_index(np.arange(grid.size), grid.shape)).T  # (N, d)
    nb = idx[:, None, :] + offsets[None, :, :]
    inside = np.all((nb >= 0) & (nb < np.array(grid.shape)), axis=2)
    flat = np.ravel_multi_index(tuple(np.moveaxis(np.clip(nb, 0, np.array(grid.shape) - 1), 2, 0)),
                                grid.shape)
    return np.where(inside, flat, -1).astype(np.int64)


def site_neighbours(sites, reach: float, max_neighbours: int = 12) -> np.ndarray:
    """``(N, M)`` indices of the sites within ``reach`` of each site (-1 padded)."""
    sites = np.asarray(sites, dtype=float)
    k = min(max_neighbours + 1, len(sites))
    dist, idx = cKDTree(sites).query(sites, k=k)
    dist, idx = dist.reshape(len(sites), k)[:, 1:], idx.reshape(len(sites), k)[:, 1:]
    return np.where(dist <= reach, idx, -1).astype(np.int64)


def switch_tables(model: ForwardModel, sites, spacing: float):
    """Lookup tables of the switch move for the sites of a lattice (2D geometries).

    Sites lie on one *beam line* of an angle when their projected coordinates chain together
    with gaps below ``spacing / 4`` and the chain spans less than ``0.3 spacing``: the atom
    columns of a zone axis, also when the beam is a degree or so off the lattice rows. Returns
    ``(lines, pairs, tables)``: ``lines[k, a]`` the line of site ``k`` at angle ``a``;
    ``pairs`` the ``(a, b)`` pairs of angles with such columns; ``tables[p, i, j]`` the site on
    line ``i`` of angle ``pairs[p, 0]`` and line ``j`` of angle ``pairs[p, 1]`` (-1: none). At
    an arbitrary angle every site has its own line, and the angle takes no part.
    """
    geo = model.geometry
    coords = geo.detector_coordinates(np.asarray(sites, float))  # (A, N)
    lines = np.zeros(coords.T.shape, np.int64)
    useful = []
    for a, c in enumerate(coords):
        order = np.argsort(c)
        line = np.r_[0, np.cumsum(np.diff(c[order]) > spacing / 4)]
        lines[order, a] = line
        lo = np.full(line[-1] + 1, np.inf)
        hi = np.full(line[-1] + 1, -np.inf)
        np.minimum.at(lo, line, c[order])
        np.maximum.at(hi, line, c[order])
        if line[-1] >= 1 and np.all(hi - lo < 0.3 * spacing) and len(c) >= 2 * (line[-1] + 1):
            useful.append(a)
    pairs = np.array([(a, b) for i, a in enumerate(useful) for b in useful[i + 1:]], np.int64)
    pairs = pairs.reshape(-1, 2)
    size = int(lines.max()) + 1 if lines.size else 1
    tables = np.full((len(pairs), size, size), -1, np.int64)
    for p, (a, b) in enumerate(pairs):
        tables[p, lines[:, a], lines[:, b]] = np.arange(len(lines))
    return lines, pairs, tables


# -- the Metropolis kernel (plain Python; compiled below when numba is present) ---------------
def _dot(k, r, iu, bu, iv, bv, n_rows, n_cols):
    s = 0.0
    shared = iv.shape[1] == 1
    for a in range(iu.shape[1]):
        av = 0 if shared else a
        for i in range(iv.shape[2]):
            b = bv[k, av, i]
            if b == 0.0:
                continue
            base = (a * n_rows + iv[k, av, i]) * n_cols
            acc = 0.0
            for j in range(iu.shape[2]):
                acc += r[base + iu[k, a, j]] * bu[k, a, j]
            s += b * acc
    return s


def _axpy(k, c, r, iu, bu, iv, bv, n_rows, n_cols):
    shared = iv.shape[1] == 1
    for a in range(iu.shape[1]):
        av = 0 if shared else a
        for i in range(iv.shape[2]):
            b = c * bv[k, av, i]
            if b == 0.0:
                continue
            base = (a * n_rows + iv[k, av, i]) * n_cols
            for j in range(iu.shape[2]):
                r[base + iu[k, a, j]] += b * bu[k, a, j]


def _accept(delta, temperature, u):
    if delta < 0.0:
        return True
    if temperature <= 0.0:
        return False
    return u < np.exp(-delta / temperature)


def _bonds(k, occ, neighbours):
    """Number of occupied neighbours of site ``k``."""
    count = 0
    for j in range(neighbours.shape[1]):
        l = neighbours[k, j]
        if l >= 0 and occ[l] > 0:
            count += 1
    return count


def _change(k, dw, r, iu, bu, iv, bv, n_rows, n_cols, energy):
    """Add ``dw`` to the weight at site ``k`` (update the residual); return the exact change of
    ``||r||^2``: ``2 dw <r, psi_k> + dw^2 e_k``."""
    c = _dot(k, r, iu, bu, iv, bv, n_rows, n_cols)
    _axpy(k, dw, r, iu, bu, iv, bv, n_rows, n_cols)
    return 2.0 * dw * c + dw * dw * energy[k]


def _relocate(occ_list, where, src, dst):
    """The occupied-site list entry of ``src`` now names ``dst``."""
    occ_list[where[src]] = dst
    where[dst] = where[src]
    where[src] = -1


def _level(iu, bu, iv, bv, n_rows, n_cols, energy, weights, occ, occ_list, where, n_occ, r,
           temperature, uniforms, cum_prob, neighbours, bond, lines, pairs, tables):
    """``len(uniforms)`` Metropolis proposals at one temperature. ``occ[k]`` = 0 (empty) or
    species index + 1; ``occ_list[:n_occ]`` the occupied sites, ``where`` their positions in it.
    ``bond`` is the energy of each pair of occupied neighbouring sites (0: data term only).
    ``lines``, ``pairs``, ``tables``: the switch move's lookup (see :func:`switch_tables`).
    Returns ``(n_occ, accepted)``."""
    n_sites = occ.shape[0]
    n_species = weights.shape[0]
    n_nb = neighbours.shape[1]
    accepted = 0
    for m in range(uniforms.shape[0]):
        u0, u1, u2, u3 = uniforms[m, 0], uniforms[m, 1], uniforms[m, 2], uniforms[m, 3]
        move = 0
        while move < 4 and u0 >= cum_prob[move]:
            move += 1
        if move == 4:  # switch: p, s -> q, r keeping the line sums of two projections
            if n_occ < 2 or pairs.shape[0] == 0:
                continue
            p = occ_list[min(int(u1 * n_occ), n_occ - 1)]
            s_ = occ_list[min(int(u2 * n_occ), n_occ - 1)]
            pair = min(int(uniforms[m, 4] * pairs.shape[0]), pairs.shape[0] - 1)
            a, b = pairs[pair, 0], pairs[pair, 1]
            if p == s_ or lines[p, a] == lines[s_, a] or lines[p, b] == lines[s_, b]:
                continue
            q = tables[pair, lines[p, a], lines[s_, b]]
            rr = tables[pair, lines[s_, a], lines[p, b]]
            if q < 0 or rr < 0 or occ[q] > 0 or occ[rr] > 0:
                continue
            wp, ws = weights[occ[p] - 1], weights[occ[s_] - 1]
            delta = 0.0
            if bond != 0.0:
                delta -= bond * (_bonds(p, occ, neighbours) + _bonds(s_, occ, neighbours))
            delta += _change(p, -wp, r, iu, bu, iv, bv, n_rows, n_cols, energy)
            delta += _change(s_, -ws, r, iu, bu, iv, bv, n_rows, n_cols, energy)
            delta += _change(q, wp, r, iu, bu, iv, bv, n_rows, n_cols, energy)
            delta += _change(rr, ws, r, iu, bu, iv, bv, n_rows, n_cols, energy)
            sp, ss = occ[p], occ[s_]
            occ[p], occ[s_], occ[q], occ[rr] = 0, 0, sp, ss
            if bond != 0.0:
                delta += bond * (_bonds(q, occ, neighbours) + _bonds(rr, occ, neighbours))
            if _accept(delta, temperature, u3):
                _relocate(occ_list, where, p, q)
                _relocate(occ_list, where, s_, rr)
                accepted += 1
            else:
                occ[p], occ[s_], occ[q], occ[rr] = sp, ss, 0, 0
                _axpy(rr, -ws, r, iu, bu, iv, bv, n_rows, n_cols)
                _axpy(q, -wp, r, iu, bu, iv, bv, n_rows, n_cols)
                _axpy(s_, ws, r, iu, bu, iv, bv, n_rows, n_cols)
                _axpy(p, wp, r, iu, bu, iv, bv, n_rows, n_cols)
            continue
        if move == 0:  # flip
            k = min(int(u1 * n_sites), n_sites - 1)
            c = _dot(k, r, iu, bu, iv, bv, n_rows, n_cols)
            if occ[k] > 0:
                w = weights[occ[k] - 1]
                delta = -2.0 * w * c + w * w * energy[k]
                if bond != 0.0:
                    delta -= bond * _bonds(k, occ, neighbours)
                if _accept(delta, temperature, u3):
                    _axpy(k, -w, r, iu, bu, iv, bv, n_rows, n_cols)
                    _relocate(occ_list, where, k, occ_list[n_occ - 1])  # the last fills k's slot
                    occ[k] = 0
                    n_occ -= 1
                    accepted += 1
            else:
                s = min(int(u2 * n_species), n_species - 1)
                w = weights[s]
                delta = 2.0 * w * c + w * w * energy[k]
                if bond != 0.0:
                    delta += bond * _bonds(k, occ, neighbours)
                if _accept(delta, temperature, u3):
                    _axpy(k, w, r, iu, bu, iv, bv, n_rows, n_cols)
                    occ[k] = s + 1
                    occ_list[n_occ] = k
                    where[k] = n_occ
                    n_occ += 1
                    accepted += 1
            continue
        if n_occ == 0:
            continue
        k = occ_list[min(int(u1 * n_occ), n_occ - 1)]
        w = weights[occ[k] - 1]
        if move == 3:  # species
            if n_species < 2:
                continue
            s = min(int(u2 * (n_species - 1)), n_species - 2)
            if s >= occ[k] - 1:
                s += 1
            dw = weights[s] - w
            c = _dot(k, r, iu, bu, iv, bv, n_rows, n_cols)
            delta = 2.0 * dw * c + dw * dw * energy[k]
            if _accept(delta, temperature, u3):
                _axpy(k, dw, r, iu, bu, iv, bv, n_rows, n_cols)
                occ[k] = s + 1
                accepted += 1
            continue
        if move == 1:  # shift to a neighbouring site
            l = neighbours[k, min(int(u2 * n_nb), n_nb - 1)]
            if l < 0 or occ[l] > 0:
                continue
        else:  # swap with a random empty site (probe forward from a random start)
            if n_occ >= n_sites:
                continue
            l = min(int(u2 * n_sites), n_sites - 1)
            while occ[l] > 0:
                l = (l + 1) % n_sites
        c_k = _dot(k, r, iu, bu, iv, bv, n_rows, n_cols)
        delta = -2.0 * w * c_k + w * w * energy[k]
        _axpy(k, -w, r, iu, bu, iv, bv, n_rows, n_cols)
        c_l = _dot(l, r, iu, bu, iv, bv, n_rows, n_cols)
        delta += 2.0 * w * c_l + w * w * energy[l]
        if bond != 0.0:
            species_k = occ[k]
            delta -= bond * _bonds(k, occ, neighbours)
            occ[k] = 0  # l's neighbours without k
            delta += bond * _bonds(l, occ, neighbours)
            occ[k] = species_k
        if _accept(delta, temperature, u3):
            _axpy(l, w, r, iu, bu, iv, bv, n_rows, n_cols)
            occ[l] = occ[k]
            occ[k] = 0
            _relocate(occ_list, where, k, l)
            accepted += 1
        else:
            _axpy(k, w, r, iu, bu, iv, bv, n_rows, n_cols)
    return n_occ, accepted


def _compile():
    """Compile the kernel with numba when it is installed (the ``fast`` extra)."""
    global _dot, _axpy, _accept, _bonds, _change, _relocate, _level
    try:
        import numba
    except ImportError:
        return False
    jit = numba.njit(cache=True, nogil=True)
    _dot, _axpy, _accept, _bonds = jit(_dot), jit(_axpy), jit(_accept), jit(_bonds)
    _change, _relocate = jit(_change), jit(_relocate)
    _level = jit(_level)
    return True


COMPILED = _compile()


# -- the annealer ------------------------------------------------------------------------------
@dataclass
class AnnealingResult:
    occupancy: np.ndarray  # (N,) 0 = empty, s + 1 = species s
    energy: float  # ||Psi w - y||^2
    levels: int
    accepted: int
    proposals: int


class SiteAnnealer:
    """Simulated annealing of occupancies of ``sites`` for ``model`` and ``data``.

    Parameters
    ----------
    model : ForwardModel
    data : ndarray
    sites : (N, d) ndarray
    neighbours : (N, M) int ndarray
        Neighbouring sites for the shift move (-1 padded).
    weights : (S,) array_like
        Species weights.
    """

    def __init__(self, model: ForwardModel, data, sites, neighbours, weights):
        self.model = model
        self.data = np.asarray(data, dtype=float)
        self.columns = SiteColumns.build(model, sites)
        self.neighbours = np.ascontiguousarray(neighbours, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=float).ravel()
        if len(self.weights) == 0 or np.any(self.weights <= 0):
            raise InputError("species weights must be positive")
        self.n_sites = len(self.columns.sites)
        # One atom's energy: the unit of temperatures.
        self.atom_energy = float(np.median(self.columns.energy)) * float(np.mean(self.weights)) ** 2

    def residual(self, occupancy) -> np.ndarray:
        """``Psi w - y`` (flat) for an occupancy vector, computed from scratch."""
        occ = np.asarray(occupancy)
        on = occ > 0
        p = self.model.project(self.columns.sites[on], self.weights[occ[on] - 1])
        return (p - self.data).ravel()

    @cached_property
    def _site_scores(self) -> np.ndarray:
        # the same for every chain: one correlation of the data with all sites
        corr = self.model.correlate(self.data, self.columns.sites)
        return np.maximum(corr / np.maximum(self.columns.energy, 1e-300), 0.0) ** 2

    def initial(self, rng, n_atoms: int) -> np.ndarray:
        """``n_atoms`` sites drawn without replacement with probability proportional to the
        squared positive correlation of the data with each site's column (heaviest species)."""
        occ = np.zeros(self.n_sites, np.int64)
        n_atoms = int(min(max(n_atoms, 0), self.n_sites))
        if n_atoms == 0:
            return occ
        p = self._site_scores
        p = p / p.sum() if p.sum() > 0 and np.count_nonzero(p) >= n_atoms else None
        chosen = rng.choice(self.n_sites, size=n_atoms, replace=False, p=p)
        occ[chosen] = int(np.argmax(self.weights)) + 1  # species moves correct it
        return occ

    def run(self, occupancy, rng, *, fixed_count: bool, levels: int = 150,
            moves_per_level: int = 5000, t_start: float = 0.3, t_end: float = 1e-3,
            quench_levels: int = 20, probabilities=None, callback=None,
            bond: float = 0.0, switch=None) -> AnnealingResult:
        """Anneal from ``occupancy``.

        ``bond``: energy (in the units of ``||Psi w - y||^2``) added for every pair of occupied
        sites that are neighbours; negative values favour compact occupations (a nearest-
        neighbour pair potential on the sites), 0 anneals the data term alone.
        ``probabilities``: relative frequencies of (flip, shift, swap, species, switch); default
        (0.3, 0.5, 0.2, 0.1 if several species, 0.3 with ``switch``); flip is dropped when
        ``fixed_count``. ``switch``: the tables of :func:`switch_tables` for the switch move,
        which exchanges two atoms ``p, s`` for two empty sites ``q, r`` on the same beam lines
        (``q`` on p's line of one angle and s's line of another, ``r`` the other way round),
        so that it leaves those two projections unchanged: the move that reaches the other
        solutions of two-angle data, which single-atom moves reach only through states of much
        higher misfit.
        ``callback(level, occupancy, energy, temperature, accepted)`` after every level.
        """
        cols = self.columns
        occ = np.array(occupancy, dtype=np.int64)
        occ_list = np.full(self.n_sites, -1, np.int64)
        where = np.full(self.n_sites, -1, np.int64)
        on = np.flatnonzero(occ > 0)
        occ_list[: len(on)] = on
        where[on] = np.arange(len(on))
        n_occ = len(on)
        probs = np.array(probabilities if probabilities is not None else
                         (0.3, 0.5, 0.2, 0.1 if len(self.weights) > 1 else 0.0,
                          0.3 if switch is not None else 0.0), dtype=float)
        if probs.shape == (4,):
            probs = np.r_[probs, 0.0]
        if probs.shape != (5,) or np.any(probs < 0):
            raise InputError("move probabilities must be 4 or 5 non-negative numbers")
        if switch is None:
            probs[4] = 0.0
            switch = (np.zeros((self.n_sites, 1), np.int64), np.zeros((0, 2), np.int64),
                      np.zeros((0, 1, 1), np.int64))
        if fixed_count:
            probs[0] = 0.0
        if len(self.weights) < 2:
            probs[3] = 0.0
        if probs.sum() <= 0:
            raise InputError("no annealing move has a positive probability")
        cum = np.cumsum(probs / probs.sum())
        cum[-1] = 1.0 + 1e-12
        t0, t1 = t_start * self.atom_energy, t_end * self.atom_energy
        temps = t0 * (t1 / t0) ** (np.arange(levels) / max(levels - 1, 1)) if levels else []
        temps = list(temps) + [0.0] * int(quench_levels)
        r = self.residual(occ)
        accepted_total = proposals = 0
        level = 0
        for level, temperature in enumerate(temps):
            uniforms = rng.random((int(moves_per_level), 5))
            n_occ, accepted = _level(cols.iu, cols.bu, cols.iv, cols.bv, cols.n_rows,
                                        cols.n_cols, cols.energy, self.weights, occ, occ_list,
                                        where, n_occ, r, float(temperature), uniforms, cum,
                                        self.neighbours, float(bond), *switch)
            accepted_total += accepted
            proposals += len(uniforms)
            r = self.residual(occ)  # exact again: no drift of the incremental updates
            if callback is not None:
                callback(level, occ, float(r @ r), float(temperature), int(accepted))
            if temperature == 0.0 and accepted == 0:
                break
        return AnnealingResult(occ, float(r @ r), level + 1, accepted_total, proposals)
