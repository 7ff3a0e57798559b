r"""Simulated annealing over the pairings of two projections' coordinates.

With two projection directions ``d_0, d_1`` (2D) the data depend on the atoms only through the
two multisets ``{u_i = x_i . d_0}`` and ``{v_i = x_i . d_1}``: atom ``i`` sits where its line
``u = u_i`` of the first projection crosses the line ``v = v_{pi(i)}`` of the second, and *every*
pairing ``pi`` fits the data exactly as well,

.. math:: x_i(\pi) = M^{-1} (u_i, v_{\pi(i)}), \qquad M = (d_0; d_1).

Which pairing is right is decided by the prior alone (a quadratic assignment problem over the
pair potential). This module anneals ``pi`` with *swap* moves — atoms ``i`` and ``j`` exchange
their ``v`` (each slides along its own ``u`` line) — scored by the exact change of the pair
energy ``sum_{i<j} phi(|x_i - x_j|)``, with no data evaluation at all: a swap costs O(n), so a
few thousand of them cost less than one local relaxation of the full objective. Partners are
drawn among atoms whose ``v`` is within a few bond lengths (so atoms move locally), of the same
species, and swaps that would leave the box are refused.

``phi`` is read from a table over ``r`` (linear interpolation, 2048 points up to the cutoff), so
the kernel takes any pair potential. A pair potential with a hull pressure
(:mod:`atomtomo.hull_prior`) adds ``pressure * (A_new - A_old)`` to each swap's change, with the
hull's area ``A`` recomputed by Andrew's monotone chain (O(n log n) a swap,
:func:`atomtomo.hull_prior.chain_area`). Metropolis acceptance at a temperature falling
geometrically from ``t_start`` to ``t_end`` (in bonds, ``epsilon``); every random number is drawn
beforehand from a seeded :class:`numpy.random.Generator`. The loop is compiled with numba when it
is installed (the ``fast`` extra); without numba an array version of the same loop runs, with
the same draws and formulas (its sums run in another order, so a tie within rounding could go
the other way), about 50 times slower.

The basin-hopping driver uses this as its *pairing* move (:mod:`.global_search`); the relaxed
positions come from the full objective's local descent afterwards.
"""

from __future__ import annotations

import numpy as np

from ..hull_prior import HullPressure, chain_area
from ..lattice_prior import LatticeWell, SiteWell
from ..prior import Prior

#: Points of the pair-energy table.
TABLE_SIZE = 2048


def _phi(r, table, r_max):
    """Pair energy by linear interpolation of ``table`` on ``[0, r_max]`` (0 beyond)."""
    if r >= r_max:
        return 0.0
    t = r / r_max * (table.shape[0] - 1)
    k = int(t)
    f = t - k
    return table[k] * (1.0 - f) + table[k + 1] * f


def _atom_energy(x, y, pos, skip_a, skip_b, table, r_max):
    """Pair energy of a point (x, y) with every atom of ``pos`` except two."""
    e = 0.0
    for k in range(pos.shape[0]):
        if k == skip_a or k == skip_b:
            continue
        dx = pos[k, 0] - x
        dy = pos[k, 1] - y
        e += _phi(np.sqrt(dx * dx + dy * dy), table, r_max)
    return e


def _well(x, y, well, sites):
    """Lattice-well energy of a point: ``well`` = (depth, 2 w^2, origin x, y, basis 2x2 row-major,
    inverse 2x2 row-major); the nearest site is a corner of the point's cell, or, when ``sites``
    (m, 2) is not empty (a strained well), the nearest of those."""
    if well[0] == 0.0:
        return 0.0
    if sites.shape[0] > 0:
        best = np.inf
        for k in range(sites.shape[0]):
            d2 = (x - sites[k, 0]) ** 2 + (y - sites[k, 1]) ** 2
            if d2 < best:
                best = d2
        return well[0] * (1.0 - np.exp(-best / well[1]))
    px, py = x - well[2], y - well[3]
    c0 = np.floor(well[8] * px + well[9] * py)
    c1 = np.floor(well[10] * px + well[11] * py)
    best = np.inf
    for a in range(2):
        for b in range(2):
            sx = well[4] * (c0 + a) + well[5] * (c1 + b)
            sy = well[6] * (c0 + a) + well[7] * (c1 + b)
            d2 = (px - sx) ** 2 + (py - sy) ** 2
            if d2 < best:
                best = d2
    return well[0] * (1.0 - np.exp(-best / well[1]))


def _is_partner(i, k, perm, v, species, window):
    """Whether atom ``k`` may exchange its ``v`` with atom ``i``."""
    return k != i and species[k] == species[i] and abs(v[perm[k]] - v[perm[i]]) < window


def _anneal(u, v, perm, species, minv, box, window, table, r_max, pressure, well, sites, temps,
            pick_i, pick_j, accept):
    """Anneal ``perm`` in place; returns the best permutation and its energy change."""
    n = u.shape[0]
    pos = np.empty((n, 2))
    for i in range(n):
        pos[i, 0] = minv[0, 0] * u[i] + minv[0, 1] * v[perm[i]]
        pos[i, 1] = minv[1, 0] * u[i] + minv[1, 1] * v[perm[i]]
    area = chain_area(pos) if pressure > 0.0 else 0.0
    best = perm.copy()
    delta, best_delta = 0.0, 0.0
    for step in range(temps.shape[0]):
        i = pick_i[step]
        # a partner of the same species whose v is within the window
        count = 0
        for k in range(n):
            count += _is_partner(i, k, perm, v, species, window)
        if count == 0:
            continue
        target = int(pick_j[step] * count)
        j = -1
        for k in range(n):
            if _is_partner(i, k, perm, v, species, window):
                if target == 0:
                    j = k
                    break
                target -= 1
        xi = minv[0, 0] * u[i] + minv[0, 1] * v[perm[j]]
        yi = minv[1, 0] * u[i] + minv[1, 1] * v[perm[j]]
        xj = minv[0, 0] * u[j] + minv[0, 1] * v[perm[i]]
        yj = minv[1, 0] * u[j] + minv[1, 1] * v[perm[i]]
        if not (box[0, 0] <= xi <= box[0, 1] and box[1, 0] <= yi <= box[1, 1]
                and box[0, 0] <= xj <= box[0, 1] and box[1, 0] <= yj <= box[1, 1]):
            continue
        old = (_atom_energy(pos[i, 0], pos[i, 1], pos, i, j, table, r_max)
               + _atom_energy(pos[j, 0], pos[j, 1], pos, i, j, table, r_max)
               + _phi(np.sqrt((pos[i, 0] - pos[j, 0]) ** 2 + (pos[i, 1] - pos[j, 1]) ** 2),
                      table, r_max))
        new = (_atom_energy(xi, yi, pos, i, j, table, r_max)
               + _atom_energy(xj, yj, pos, i, j, table, r_max)
               + _phi(np.sqrt((xi - xj) ** 2 + (yi - yj) ** 2), table, r_max))
        d = new - old + (_well(xi, yi, well, sites) + _well(xj, yj, well, sites)
                         - _well(pos[i, 0], pos[i, 1], well, sites)
                         - _well(pos[j, 0], pos[j, 1], well, sites))
        old_i0, old_i1, old_j0, old_j1 = pos[i, 0], pos[i, 1], pos[j, 0], pos[j, 1]
        pos[i, 0], pos[i, 1], pos[j, 0], pos[j, 1] = xi, yi, xj, yj
        new_area = area
        if pressure > 0.0:
            new_area = chain_area(pos)
            d += pressure * (new_area - area)
        if d < 0.0 or accept[step] < np.exp(-d / temps[step]):
            perm[i], perm[j] = perm[j], perm[i]
            area = new_area
            delta += d
            if delta < best_delta - 1e-12:
                best_delta = delta
                best[:] = perm
        else:
            pos[i, 0], pos[i, 1], pos[j, 0], pos[j, 1] = old_i0, old_i1, old_j0, old_j1
    return best, best_delta


def _anneal_numpy(u, v, perm, species, minv, box, window, table, r_max, pressure, well, sites,
                  temps, pick_i, pick_j, accept):
    """:func:`_anneal` with its O(n) inner loops as array operations: the same draws and the same
    formulas (sums in another order), for installations without numba."""
    n = u.shape[0]
    size = table.shape[0] - 1

    def phi(r):
        t = np.minimum(r, r_max) / r_max * size
        k = np.minimum(t.astype(np.int64), size - 1)
        f = t - k
        return np.where(r < r_max, table[k] * (1.0 - f) + table[k + 1] * f, 0.0)

    def energy(point, pos, others):
        return float(phi(np.sqrt(((pos[others] - point) ** 2).sum(axis=1))).sum())

    pos = np.stack([u, v[perm]], axis=1) @ minv.T
    area = chain_area(pos) if pressure > 0.0 else 0.0
    best = perm.copy()
    delta, best_delta = 0.0, 0.0
    index = np.arange(n)
    for step in range(temps.shape[0]):
        i = pick_i[step]
        vp = v[perm]
        partners = np.flatnonzero((index != i) & (species == species[i])
                                  & (np.abs(vp - vp[i]) < window))
        if len(partners) == 0:
            continue
        j = partners[int(pick_j[step] * len(partners))]
        pi = minv @ np.array([u[i], v[perm[j]]])
        pj = minv @ np.array([u[j], v[perm[i]]])
        if not (np.all((box[:, 0] <= pi) & (pi <= box[:, 1]))
                and np.all((box[:, 0] <= pj) & (pj <= box[:, 1]))):
            continue
        others = (index != i) & (index != j)
        old = (energy(pos[i], pos, others) + energy(pos[j], pos, others)
               + float(phi(np.array([np.linalg.norm(pos[i] - pos[j])]))[0]))
        new = (energy(pi, pos, others) + energy(pj, pos, others)
               + float(phi(np.array([np.linalg.norm(pi - pj)]))[0]))
        d = new - old + (_well(pi[0], pi[1], well, sites) + _well(pj[0], pj[1], well, sites)
                         - _well(pos[i, 0], pos[i, 1], well, sites)
                         - _well(pos[j, 0], pos[j, 1], well, sites))
        new_area = area
        if pressure > 0.0:
            trial = pos.copy()
            trial[i], trial[j] = pi, pj
            new_area = chain_area(trial)
            d += pressure * (new_area - area)
        if d < 0.0 or accept[step] < np.exp(-d / temps[step]):
            perm[i], perm[j] = perm[j], perm[i]
            pos[i], pos[j] = pi, pj
            area = new_area
            delta += d
            if delta < best_delta - 1e-12:
                best_delta = delta
                best[:] = perm
    return best, best_delta


def _compile():
    """Compile the kernel with numba when it is installed (the ``fast`` extra); without it the
    array version runs (the scalar loops in plain Python would be far slower)."""
    global _phi, _atom_energy, _well, _is_partner, _anneal
    try:
        import numba
    except ImportError:  # numba is optional (extra "fast")
        _anneal = _anneal_numpy
        return False
    jit = numba.njit(cache=True, nogil=True)
    _phi, _atom_energy, _is_partner = jit(_phi), jit(_atom_energy), jit(_is_partner)
    _well = jit(_well)
    _anneal = jit(_anneal)
    return True


COMPILED = _compile()


def _prior_parts(prior):
    """The pair potential of ``prior``, its hull pressure (0 for none), its lattice well's
    parameters (:func:`_well`; depth 0 for none) and the sites of a site well (``(0, 2)`` for
    none): what the compiled annealer needs, as numbers."""
    if not isinstance(prior, Prior):
        return prior, 0.0, np.zeros(12), np.zeros((0, 2))
    hull = prior.find(HullPressure)
    w = prior.find((LatticeWell, SiteWell))
    well = (np.zeros(12) if w is None else
            np.r_[w.depth, 2.0 * w.width ** 2, w.origin, w.basis.ravel(), w.inverse.ravel()])
    sites = w.sites if isinstance(w, SiteWell) else np.zeros((0, 2))
    return prior.base, 0.0 if hull is None else hull.pressure, well, sites


def anneal_pairing(positions, directions, potential, box, rng, *, species=None, steps=None,
                   t_start=1.0, t_end=0.02, window=3.0):
    """Re-pair two projections' coordinates of 2D atoms to lower a pair potential.

    Parameters
    ----------
    positions : (n, 2) array
    directions : (2, 2) array
        The two detectors' unit vectors (rows); they must not be parallel.
    potential : PairPotential, or a :class:`~atomtomo.prior.Prior` on one
        Supplies ``pair_energy``, ``cutoff_radius``, ``epsilon`` and ``bond_length``; the
        prior's hull pressure (:mod:`atomtomo.hull_prior`) and lattice well
        (:mod:`atomtomo.lattice_prior`, plain or strained) add their exact changes to every swap.
    box : (2, 2) array
        ``[[xmin, xmax], [ymin, ymax]]``; no atom is paired outside it.
    rng : numpy.random.Generator
    species : (n,) int array, optional
        Only atoms of the same species exchange coordinates.
    steps : int, optional
        Swap proposals (default ``min(150 n, 20000)``).
    t_start, t_end : float
        Temperatures, in units of ``epsilon``.
    window : float
        Partners have ``|v_i - v_j| <`` ``window`` bond lengths.

    Returns
    -------
    positions : (n, 2) array
        The best pairing found (every atom keeps its ``u``; the ``v`` are permuted; atoms that
        keep their own ``v`` are returned unchanged).
    change : float
        Its energy change (pair energy plus hull and well terms), ``<= 0``.

    Examples
    --------
    >>> from atomtomo.potentials import make_potential
    >>> lj = make_potential("lj", 1.0, 2)
    >>> x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])  # two pairs on top
    >>> y, dE = anneal_pairing(x, np.eye(2), lj, np.array([[-2, 2], [-2, 2]]),
    ...                        np.random.default_rng(0), steps=100)
    >>> y[np.lexsort(y.T[::-1])]  # the same projections, now a square of bonds
    array([[0., 0.],
           [0., 1.],
           [1., 0.],
           [1., 1.]])
    """
    x = np.asarray(positions, dtype=float)
    m = np.asarray(directions, dtype=float)
    n = len(x)
    if n < 2:
        return x.copy(), 0.0
    species = np.zeros(n, np.int64) if species is None else np.asarray(species, np.int64)
    steps = int(min(150 * n, 20000)) if steps is None else int(steps)
    potential, pressure, well, sites = _prior_parts(potential)
    r_max = float(potential.cutoff_radius)
    table = potential.pair_energy(np.linspace(0.0, r_max, TABLE_SIZE))
    eps = float(potential.epsilon)
    temps = eps * t_start * (t_end / t_start) ** (np.arange(steps) / max(steps, 1))
    pick_i = rng.integers(n, size=steps)
    pick_j, accept = rng.random(steps), rng.random(steps)
    u, v = x @ m[0], x @ m[1]
    minv = np.linalg.inv(m)
    best, change = _anneal(u, v, np.arange(n), species, minv, np.asarray(box, float),
                           window * float(potential.bond_length), table, r_max, pressure, well,
                           np.ascontiguousarray(sites, float),
                           temps, pick_i, pick_j, accept)
    out = x.copy()  # atoms that keep their pairing keep their positions bit for bit
    moved = best != np.arange(n)
    out[moved] = np.stack([u[moved], v[best[moved]]], axis=1) @ minv.T
    return out, float(change)
