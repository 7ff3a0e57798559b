r"""Which of a set of known sites are occupied: binary tomography on sites, by annealing.

Why. Once the sites of a crystal are known (a crystal with a dislocation fitted to the data,
:mod:`.dislocation_fit`), what is left is which of them hold an atom. From two projections many
occupancies fit the data equally (the rows of one projection re-paired with the columns of the
other); the pair potential decides between them, as it does for free atoms. On sites the
problem is small and discrete, so it can be searched far more thoroughly than atoms moving in
the plane: on two dislocation crops where basin hopping under a well at the right sites ended
1.5 and 0.5 of the objective above the truth's (F1 0.59 and 0.83), annealing the occupancy
found it.

The objective restricted to occupancies ``w`` in ``{0, 1}`` of sites ``s_k`` is a quadratic in
``w``:

.. math::

    F(w) = \tfrac12 \lVert A w - y \rVert^2 + c \sum_{k<l} w_k w_l\, \phi(\lVert s_k - s_l \rVert)
         = \tfrac12 w^\top Q w + h^\top w + \tfrac12 \lVert y \rVert^2,

with ``A``'s columns the projections of one atom at each site, ``phi`` the pair potential,
``c`` the objective's energy scale (``alpha E_1 / epsilon``), ``Q = A^T A + c P`` (``P`` the
pair energies, zero diagonal) and ``h = -A^T y``. Flipping site ``k`` (``d = 1 - 2 w_k``)
changes ``F`` by ``d g_k + Q_kk / 2`` with ``g = Q w + h``; moving an atom from ``k`` to an empty
``l`` by ``g_l - g_k + (Q_kk + Q_ll)/2 - Q_kl``. Both are O(1) to score and O(m) to apply, so a
few hundred sweeps over a few hundred sites take a fraction of a second.

Many-body terms (the hull pressure, the well) are left to the continuous relaxation that
follows.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..prior import Prior

#: Annealing sweeps (each tries a flip and a move per site) and independent restarts.
SWEEPS = 300
RESTARTS = 4


def occupancy_problem(objective, sites, species: int = 0):
    """``(Q, h)`` of the quadratic above for ``objective`` (an :class:`AtomObjective` with a
    pair potential inside its prior) on ``sites`` (m, d), all of species ``species``."""
    sites = np.asarray(sites, float)
    if sites.ndim != 2 or len(sites) == 0:
        raise InputError(f"site occupancy needs (m, d) sites with m >= 1, got shape {sites.shape}")
    weight = objective.species_weights[species]
    A = objective.model.design_matrix(sites, weight)
    Q = A.T @ A
    h = -A.T @ np.asarray(objective.data, float).ravel()
    potential = objective.potential
    if isinstance(potential, Prior):  # the quadratic holds the pair energy alone
        potential = potential.base
    if objective.uses_energy and hasattr(potential, "pair_energy"):
        r = np.linalg.norm(sites[:, None] - sites[None], axis=-1)
        P = potential.pair_energy(np.where(r > 0, r, np.inf))
        np.fill_diagonal(P, 0.0)
        Q = Q + objective.energy_scale * P
    return Q, h


def anneal_occupancy(Q, h, rng, *, temperature: float, sweeps: int = SWEEPS,
                     restarts: int = RESTARTS, start=None):
    """The lowest ``w`` in {0, 1}^m found by annealing ``w^T Q w / 2 + h^T w`` from
    ``temperature`` down to 1e-3 of it (flips and single-atom moves), over ``restarts`` runs
    (the first from ``start`` when given, the others from the sites that lower ``F`` alone)."""
    Q = np.asarray(Q, float)
    h = np.asarray(h, float)
    m = len(h)
    diag = np.diag(Q).copy()
    best_w, best_f = None, np.inf
    for run in range(restarts):
        w = (np.asarray(start, float).copy() if (start is not None and run == 0)
             else (h + 0.5 * diag < 0).astype(float))
        g = Q @ w + h
        f = 0.5 * w @ (Q @ w) + h @ w
        run_best, run_f = w.copy(), f
        for t in temperature * 1e-3 ** (np.arange(sweeps) / max(sweeps - 1, 1)):
            ks = rng.integers(m, size=m)
            ls = rng.integers(m, size=m)
            us = np.log(rng.random(2 * m)) * t  # accept when delta < -t log(u)
            for n in range(m):
                k = ks[n]
                d = 1.0 - 2.0 * w[k]
                delta = d * g[k] + 0.5 * diag[k]
                if delta < -us[2 * n]:
                    w[k] += d
                    g += d * Q[:, k]
                    f += delta
                l = ls[n]
                if w[k] == 1.0 and w[l] == 0.0:
                    delta = g[l] - g[k] + 0.5 * (diag[k] + diag[l]) - Q[k, l]
                    if delta < -us[2 * n + 1]:
                        w[k], w[l] = 0.0, 1.0
                        g += Q[:, l] - Q[:, k]
                        f += delta
                if f < run_f - 1e-12:
                    run_best, run_f = w.copy(), f
        if run_f < best_f:
            best_w, best_f = run_best, run_f
    return best_w.astype(bool), float(best_f)
