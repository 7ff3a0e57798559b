"""Lattice-aware initialisation: fit a 2D crystal lattice to the data, then occupy its sites.

Greedy addition and single-atom moves explore configurations one atom at a time. A crystal with a
few defects is, almost everywhere, a lattice: if the lattice's orientation and offset are right,
every atom is within a fraction of a spacing of a site. So we search the lattice directly — a
three-parameter problem (orientation ``theta``, offset ``o``) for a known spacing (the bond length)
and lattice type (square or hexagonal) — by the data alone.

**Score.** A candidate lattice is scored by how well its sites, occupied greedily, explain the
data: starting from no atoms, repeatedly put a unit atom (best species) on the free site whose
occupation lowers ``1/2 ||A(x) - y||^2`` most, while one does; the score ``M(theta, o)`` is the
data misfit left. Each occupation explains away the data it accounts for, so a lattice whose
sites fall on *ghost* intersections of the back-projections (points that several projections
support, but not by the same atoms) is left with a large misfit, while the true lattice is left
with the misfit of its defects and relaxations only. (A score that adds up each site's support
independently cannot tell them apart: with few angles at arbitrary orientations, most points of
the box are supported by every projection; measured on random defect lattices at 3 angles, it
ranked wrong orientations first in 3 of 4 cases, the misfit score picked the right one in all.)

``M`` is evaluated on a grid of orientations (1 degree over the lattice's symmetry period) and
offsets (a 6 x 6 grid over the unit cell), the best few are refined continuously
(Nelder-Mead on ``M``), and the best lattices are handed to the solver, which occupies their
sites with the exact objective (data plus alpha times energy). Defects are then the solver's
job: interstitials are added off the lattice before the sites relax
(:func:`complete_unrelaxed`), pruning removes vacancies' atoms, the move step relaxes everything
off the sites, and ADCG adds what is still missing.

This is a search strategy, not a prior: the objective is unchanged, and the solver keeps the
lattice start only when it ends at a lower objective than the greedy start.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import minimize

from ..stopping import should_stop
from .objective import AtomObjective, AtomState, single_threaded_blas

LATTICES = {
    "square": (np.array([1.0, 0.0]), np.array([0.0, 1.0]), 90.0),
    "hexagonal": (np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2]), 60.0),
}


@lru_cache(maxsize=8)
def _index_grid(n: int) -> np.ndarray:
    """Lattice indices ``(i, j)``, ``-n <= i, j <= n``, as floats (read-only: it is shared)."""
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], axis=1).astype(float)
    ij.flags.writeable = False
    return ij


def lattice_frame(kind, spacing, theta, box):
    """What :func:`lattice_sites` needs that does not depend on the offset: the box centre, the
    indices ``(i, j)`` that can reach the box and their lattice vectors ``i b1 + j b2``. Scans
    over offsets at one orientation build it once."""
    basis = _basis(kind, spacing, theta)
    reach = np.linalg.norm(box[:, 1] - box[:, 0]) / 2
    ij = _index_grid(int(np.ceil(reach / (spacing * 0.5))) + 2)
    return box.mean(axis=1), ij, ij @ basis.T


def lattice_sites(kind, spacing, theta, offset, box, margin=0.0, indices=False, frame=None):
    """Sites of a 2D lattice (rotated by ``theta`` radians, shifted by ``offset``) inside ``box``.

    Site ``(i, j)`` is at ``centre(box) + offset + i b1 + j b2``; with ``indices=True`` the
    ``(i, j)`` of each site are returned too. ``frame``: :func:`lattice_frame` of the same
    ``kind, spacing, theta, box``, when it is at hand.
    """
    centre, ij, vectors = lattice_frame(kind, spacing, theta, box) if frame is None else frame
    sites = centre + offset + vectors
    inside = np.all((sites >= box[:, 0] + margin) & (sites <= box[:, 1] - margin), axis=1)
    return (sites[inside], ij[inside]) if indices else sites[inside]


def _offset_fractions(n: int) -> np.ndarray:
    """``n x n`` offsets in lattice coordinates, cell-centred in the unit cell."""
    frac = (np.arange(n) + 0.5) / n
    return np.stack(np.meshgrid(frac, frac, indexing="ij"), axis=-1).reshape(-1, 2)


def _scan_offsets(objective, kind, spacing, theta, fractions):
    """``[(misfit, offset)]`` of the lattice at ``theta`` for each offset of ``fractions``."""
    basis = _basis(kind, spacing, theta)
    frame = lattice_frame(kind, spacing, theta, objective.box)
    out = []
    for f in fractions:
        offset = basis @ f
        sites = lattice_sites(kind, spacing, theta, offset, objective.box, frame=frame)
        out.append((greedy_misfit(objective, sites)[0], offset))
    return out


def _greedy_misfit_numpy(residual, idx, val, energy, weights, tol):
    """Reference implementation of :func:`greedy_misfit`'s kernel (see there)."""
    r = residual.copy()
    n_angles = r.shape[0]
    rows = np.arange(n_angles)[:, None, None]
    species = np.full(idx.shape[1], -1)
    while True:
        corr = np.einsum("amk,amk->m", r[rows, idx], val)
        delta = weights[:, None] * corr[None] + 0.5 * weights[:, None] ** 2 * energy[None]
        best = delta.min(axis=0)
        best[species >= 0] = np.inf
        j = int(np.argmin(best))
        if not best[j] < -tol:
            break
        species[j] = int(np.argmin(delta[:, j]))
        np.add.at(r, (np.arange(n_angles)[:, None], idx[:, j, :]),
                  weights[species[j]] * val[:, j, :])
    return 0.5 * float(np.sum(r * r)), species


def _make_greedy_kernel():
    try:
        import numba
    except ImportError:  # numba is optional (extra "fast")
        return None

    @numba.njit(cache=True, nogil=True)
    def kernel(residual, idx, val, energy, weights, tol):
        r = residual.copy()
        n_angles, m, support = idx.shape
        species = np.full(m, -1, np.int64)
        while True:
            best, best_j, best_s = np.inf, -1, 0
            for j in range(m):
                if species[j] >= 0:
                    continue
                corr = 0.0
                for a in range(n_angles):
                    for k in range(support):
                        corr += r[a, idx[a, j, k]] * val[a, j, k]
                for s in range(weights.shape[0]):
                    w = weights[s]
                    d = w * corr + 0.5 * w * w * energy[j]
                    if d < best:
                        best, best_j, best_s = d, j, s
            if best_j < 0 or not best < -tol:
                break
            species[best_j] = best_s
            w = weights[best_s]
            for a in range(n_angles):
                for k in range(support):
                    r[a, idx[a, best_j, k]] += w * val[a, best_j, k]
        total = 0.0
        for a in range(n_angles):
            for i in range(r.shape[1]):
                total += r[a, i] * r[a, i]
        return 0.5 * total, species

    return kernel


_greedy_kernel = _make_greedy_kernel()


def greedy_misfit(objective: AtomObjective, sites, tol: float | None = None):
    """The lattice score ``M``: data misfit left after occupying ``sites`` greedily.

    Each step occupies the free site (with the species) whose atom lowers the data term most,
    until none does by more than ``tol`` (default 0.001 atom data energies). Returns
    ``(misfit, species)``: ``species[k]`` is the species index of the atom put on site ``k``,
    -1 for an empty site. Cost O(atoms x sites x angles x support), compiled with numba when it
    is installed.
    """
    model = objective.model
    geo = model.geometry
    if len(sites) == 0:
        return 0.5 * float(np.sum(objective.data ** 2)), np.zeros(0, int)
    idx, val = model._window(geo.detector_coordinates(sites), geo.detector_shape[0])
    energy = np.einsum("amk,amk->m", val, val)
    tol = 1e-3 * objective.atom_energy if tol is None else tol
    residual = -np.asarray(objective.data, float)
    weights = np.asarray(objective.species_weights, float)
    if _greedy_kernel is not None:
        misfit, species = _greedy_kernel(residual, np.ascontiguousarray(idx),
                                         np.ascontiguousarray(val), energy, weights, float(tol))
        return float(misfit), species
    return _greedy_misfit_numpy(residual, idx, val, energy, weights, tol)


def lattice_kind(basis) -> str:
    """``"square"`` or ``"hexagonal"`` from the angle between the two lattice vectors (columns)."""
    b = np.asarray(basis, float)
    cos = abs(b[:, 0] @ b[:, 1]) / (np.linalg.norm(b[:, 0]) * np.linalg.norm(b[:, 1]))
    return "square" if cos < 0.25 else "hexagonal"


def _basis(kind, spacing, theta):
    b1, b2, _ = LATTICES[kind]
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return spacing * (rot @ np.stack([b1, b2], axis=1))  # columns are lattice vectors


def fit_lattice(objective: AtomObjective, spacing: float, kinds=("square", "hexagonal"),
                n_angles: int | None = None, n_offsets: int = 6, refine: int = 3):
    """Best-fitting lattices by the misfit score ``M`` (module docstring).

    Parameters
    ----------
    objective : AtomObjective
        Its data, model, box and species weights are used (not its prior).
    spacing : float
        Nearest-neighbour distance of the lattice (the bond length).
    kinds : sequence of {"square", "hexagonal"}
    n_angles : int, optional
        Orientations scanned over the symmetry period (default: one per degree).
    n_offsets : int
        Offsets per lattice vector scanned over the unit cell.
    refine : int
        How many of the best (orientation, offset) pairs of each kind are refined and returned.

    Returns
    -------
    list of (misfit, kind, theta, offset)
        Best (smallest misfit) first; ``theta`` in radians.
    """
    results = []
    fractions = _offset_fractions(n_offsets)
    for kind in kinds:
        period = LATTICES[kind][2]
        n_theta = n_angles or int(period)
        scanned = []
        for theta in np.radians(np.arange(n_theta) * period / n_theta):
            if should_stop():
                break
            scanned += [(misfit, theta, offset) for misfit, offset
                        in _scan_offsets(objective, kind, spacing, theta, fractions)]
        scanned.sort(key=lambda t: t[0])
        # Keep distinct orientations: the neighbours of the best one score almost as well.
        chosen = []
        step = np.radians(period / n_theta)
        for misfit, theta, offset in scanned:
            if all(_angle_gap(theta, t, period) > 2.5 * step for _, t, _ in chosen):
                chosen.append((misfit, theta, offset))
            if len(chosen) == refine:
                break
        for misfit, theta, offset in chosen:
            best = refine_lattice(objective, kind, spacing, theta, offset, misfit)
            # Refinement can bring two starts to the same lattice: keep it once.
            if all(_angle_gap(best[1], t, period) > 0.25 * step or
                   np.linalg.norm(_wrap(best[2] - o, kind, spacing, best[1])) > 0.1 * spacing
                   for _, k, t, o in results if k == kind):
                results.append((best[0], kind, best[1], best[2]))
    results.sort(key=lambda t: t[0])
    return results


def _wrap(shift, kind, spacing, theta):
    """``shift`` reduced to the unit cell around 0 (lattice coordinates rounded away)."""
    basis = _basis(kind, spacing, theta)
    f = np.linalg.solve(basis, shift)
    return basis @ (f - np.round(f))


def _angle_gap(a, b, period_deg):
    period = np.radians(period_deg)
    d = abs(a - b) % period
    return min(d, period - d)


def _fit_orientation(model, data, kind, spacing, theta, offset, ij, weights, centre):
    """Least-squares ``(theta, offset)`` of a lattice whose occupied sites ``ij`` are fixed:
    three parameters, L-BFGS-B with the analytic gradient of the data term."""
    def fun(p):
        basis = _basis(kind, spacing, p[0])
        pos = centre + p[1:] + ij @ basis.T
        f, g, _ = model.data_term(pos, weights, data)
        dbasis = _basis(kind, spacing, p[0] + np.pi / 2)  # d/dtheta of a rotation
        return f, np.r_[np.sum(g * (ij @ dbasis.T)), g.sum(axis=0)]

    with single_threaded_blas():
        res = minimize(fun, np.r_[theta, offset], jac=True, method="L-BFGS-B",
                       options={"maxiter": 100})
    return float(res.x[0]), res.x[1:]


def refine_lattice(objective: AtomObjective, kind, spacing, theta, offset, misfit,
                   rounds: int = 4):
    """Continuous refinement of a lattice's orientation and offset.

    Alternates the greedy occupation of :func:`greedy_misfit` with a least-squares fit of
    ``(theta, offset)`` to the data for the occupied sites held fixed, while the misfit
    decreases. The scan's grid leaves the orientation up to half a step off, enough to put the
    outer sites of a crystal between atoms; the misfit itself is piecewise constant in the
    occupancy, so it is not refined directly.

    ``misfit`` is that of the starting lattice. Returns ``(misfit, theta, offset)``.
    """
    box = objective.box
    offset = np.asarray(offset, float)
    weights = np.asarray(objective.species_weights, float)
    for _ in range(rounds):
        if should_stop():
            break
        sites, ij = lattice_sites(kind, spacing, theta, offset, box, indices=True)
        _, species = greedy_misfit(objective, sites)
        on = species >= 0
        if on.sum() < 3:
            break
        new_theta, new_offset = _fit_orientation(objective.model, objective.data, kind, spacing,
                                                 theta, offset, ij[on], weights[species[on]],
                                                 box.mean(axis=1))
        new_misfit = greedy_misfit(objective, lattice_sites(kind, spacing, new_theta,
                                                            new_offset, box))[0]
        if not new_misfit < misfit:
            break
        misfit, theta, offset = new_misfit, new_theta, new_offset
    return float(misfit), float(theta), np.asarray(offset, float)


def anneal_occupancy(objective: AtomObjective, sites, species, rng, spacing: float,
                     levels: int = 60):
    """Improve a greedy occupation of lattice ``sites`` by simulated annealing over occupancies.

    Greedy occupation commits to its first choices; with few angles a site that explains part
    of several projections is often filled before the sites that explain them exactly (measured:
    25 of 35 atoms right at the true orientation, 3 angles). Annealing the occupancies on the
    data term plus the prior's nearest-neighbour bonds (which break the ties of two-angle data,
    e.g. which end of a row is occupied), with flip, shift-to-a-neighbouring-site and swap
    moves (:class:`~atomtomo.solvers.grid_annealing.SiteAnnealer`, O(support) per move), then
    frees them. ``spacing`` is the lattice's nearest-neighbour distance (which sites are
    bonded). Returns the species index per site (-1 = empty) and the annealed score (data term
    plus bond energies, in the objective's units).
    """
    from .grid_annealing import SiteAnnealer, site_neighbours, switch_tables

    if len(sites) < 2:
        return species, np.inf
    spacing = float(spacing)
    neighbours = site_neighbours(sites, 1.01 * spacing)
    annealer = SiteAnnealer(objective.model, objective.data, sites, neighbours,
                            objective.species_weights)
    # The prior enters as its nearest-neighbour bond on the lattice: -epsilon per pair, in the
    # annealer's units of ||r||^2 = 2 x the data term.
    eps = float(getattr(objective.potential, "epsilon", 0.0) or 0.0)
    bond = -2.0 * objective.energy_scale * eps
    result = annealer.run(species + 1, rng, fixed_count=False, levels=levels,
                          moves_per_level=max(200, 20 * len(sites)), t_start=0.3, t_end=1e-3,
                          bond=bond, switch=switch_tables(objective.model, sites, spacing))

    def total(occupancy):
        on = occupancy > 0
        pairs = np.sum(on[:, None] & (neighbours >= 0) & on[np.maximum(neighbours, 0)]) / 2
        return float(np.sum(annealer.residual(occupancy) ** 2)) + bond * pairs

    annealed, greedy = total(result.occupancy), total(species + 1)
    if annealed < greedy:
        return result.occupancy - 1, 0.5 * annealed
    return species, 0.5 * greedy


def beam_aligned(geometry, kinds=("square", "hexagonal")):
    """Lattice orientations (radians) that put a row of the lattice along one of the beams.

    Along a zone axis the projections show atom columns: the lattice's orientation is then
    known from the angle itself (to the alignment error), whatever the data-fit score says.
    Rows considered: both axes and the diagonals of the square lattice, the nearest-neighbour
    rows and the second family (``sqrt 3`` spacings) of the hexagonal lattice.
    """
    d = np.asarray(geometry.directions, float)
    beams = np.arctan2(d[:, 0], -d[:, 1]) if geometry.ndim == 2 else np.zeros(0)  # beam _|_ e
    rows = {"square": (0.0, 45.0), "hexagonal": (0.0, 30.0)}
    out = []
    for kind in kinds:
        period = np.radians(LATTICES[kind][2])
        for beam in beams:
            for row in np.radians(rows[kind]):
                out.append((kind, float(np.mod(beam - row, period))))
    return out


def lattice_candidates(objective: AtomObjective, spacing: float, per_kind: int = 2):
    """Site sets worth occupying, as dicts with ``sites``, ``misfit`` and a ``label``.

    The best lattices of :func:`fit_lattice`; the beam-aligned ones (:func:`beam_aligned`, with
    their best offset); and, from three angles on, two-grain site sets (:func:`grain_pairs`) for
    crystals with a grain boundary, which no single lattice fits.
    """
    fits = fit_lattice(objective, spacing, refine=per_kind)
    box = objective.box
    fractions = _offset_fractions(6)  # as fit_lattice's scan
    for kind, theta in beam_aligned(objective.model.geometry):
        if should_stop():
            break
        period = LATTICES[kind][2]
        if any(k == kind and _angle_gap(theta, t, period) < np.radians(0.5) for _, k, t, _ in fits):
            continue
        misfit, offset = min(_scan_offsets(objective, kind, spacing, theta, fractions),
                             key=lambda t: t[0])
        misfit, theta, offset = refine_lattice(objective, kind, spacing, theta, offset, misfit)
        fits.append((misfit, kind, theta, offset))
    out = [{"sites": lattice_sites(kind, spacing, theta, offset, box), "misfit": misfit,
            "label": f"{kind} lattice at {np.degrees(theta):.2f} deg", "grains": 1,
            "basis": _basis(kind, spacing, theta), "origin": box.mean(axis=1) + offset}
           for misfit, kind, theta, offset in fits]
    if objective.model.geometry.n_angles < 3:
        # Two projections leave so much freedom that a second lattice mostly fits ambiguity
        # (measured: it won, wrongly, on 4 of 6 zone-axis cases), and cannot resolve a boundary.
        return out
    return out + grain_pairs(objective, spacing, fits)


def _grain_lattices(kind, spacing, box, grains):
    """``[(sites, ij)]`` of each grain's whole lattice in the box, ``grains = ((theta1,
    offset1), (theta2, offset2))``: the input of :func:`_two_grains`."""
    return [lattice_sites(kind, spacing, theta, offset, box, indices=True)
            for theta, offset in grains]


def _two_grains(lattices, spacing, box, normal, cut, indices=False):
    """Sites of two grains, ``lattices`` as from :func:`_grain_lattices`, on either side of the
    line ``(x - centre) . normal = cut``; sites of the second closer than 0.6 spacings to the
    first's are dropped. With ``indices``: also which grain and the lattice indices of each
    site."""
    from scipy.spatial import cKDTree

    centre = box.mean(axis=1)
    parts = []
    for g, (sites, ij) in enumerate(lattices):
        side = (sites - centre) @ normal
        keep = side < cut if g == 0 else side >= cut
        parts.append((sites[keep], ij[keep]))
    (a, ij_a), (b, ij_b) = parts
    if len(a) and len(b):
        far = cKDTree(a).query(b)[0] > 0.6 * spacing
        b, ij_b = b[far], ij_b[far]
    sites = np.vstack([a, b])
    if not indices:
        return sites
    return sites, np.r_[np.zeros(len(a), int), np.ones(len(b), int)], np.vstack([ij_a, ij_b])


def scan_grains(objective: AtomObjective, kind, spacing, grains, normal, cut, misfit,
                span_deg: float = 6.0, step_deg: float = 0.5):
    """Each grain's orientation in turn scanned within ``span_deg`` of its start (every
    ``step_deg``, the offsets of :func:`fit_lattice`'s scan), the other grain held, by the
    two-grain misfit. The grains' starts are single-lattice fits, which land degrees off a
    grain whose lattice no single fit favours; the continuous fit of :func:`refine_grains`
    does not always climb out of that (measured on the Sigma5 boundary from 7, 67 and 131
    degrees: the second grain 15.5 degrees, misfit 6.5 ``E_1``, against the truth's 18.4;
    scanned first, 19.1 degrees and 3.4 ``E_1``). A grain scanned while the other is still off
    can turn to make up for it, so :func:`grain_pairs` keeps the scan only when it ends lower
    than the continuous fit alone. Returns ``(misfit, grains)``."""
    box = objective.box
    grains = [(float(t), np.asarray(o, float)) for t, o in grains]
    whole = _grain_lattices(kind, spacing, box, grains)  # the held grain's lattice, reused
    fractions = _offset_fractions(6)
    for g in (0, 1):
        best = grains[g]
        for theta in grains[g][0] + np.radians(np.arange(-span_deg, span_deg + 1e-9, step_deg)):
            basis = _basis(kind, spacing, theta)
            frame = lattice_frame(kind, spacing, theta, box)
            for f in fractions:
                lattices = list(whole)
                lattices[g] = lattice_sites(kind, spacing, theta, basis @ f, box, indices=True,
                                            frame=frame)
                m = greedy_misfit(objective, _two_grains(lattices, spacing, box, normal, cut))[0]
                if m < misfit:
                    misfit, best = m, (float(theta), basis @ f)
        grains[g] = best
        whole[g] = lattice_sites(kind, spacing, *best, box, indices=True)
    return misfit, grains


def refine_grains(objective: AtomObjective, kind, spacing, grains, normal, cut, misfit,
                  rounds: int = 3):
    """:func:`refine_lattice` for two grains: each grain's orientation and offset is fitted to
    the data left by the other's occupied sites, in turn, while the misfit decreases. (A single
    lattice fitted to a bicrystal lands between the grains' orientations, degrees off both.)"""
    box, model = objective.box, objective.model
    weights = np.asarray(objective.species_weights, float)
    grains = [(float(t), np.asarray(o, float)) for t, o in grains]
    for _ in range(rounds):
        sites, grain, ij = _two_grains(_grain_lattices(kind, spacing, box, grains), spacing, box,
                                       normal, cut, indices=True)
        _, species = greedy_misfit(objective, sites)
        on = species >= 0
        new = list(grains)
        for g in (0, 1):
            mine, other = on & (grain == g), on & (grain != g)
            if mine.sum() < 3:
                continue
            data = objective.data - model.project(sites[other], weights[species[other]])
            new[g] = _fit_orientation(model, data, kind, spacing, *grains[g], ij[mine],
                                      weights[species[mine]], box.mean(axis=1))
        new_misfit = greedy_misfit(objective, _two_grains(
            _grain_lattices(kind, spacing, box, new), spacing, box, normal, cut))[0]
        if not new_misfit < misfit:
            break
        misfit, grains = new_misfit, new
    return misfit, grains


def grain_pairs(objective: AtomObjective, spacing: float, fits, keep: int = 1):
    """Two-grain candidates: the box cut by a straight boundary, each side filled with the sites
    of a differently oriented lattice of the same kind (one material), scored by
    :func:`greedy_misfit`; the ``keep`` best (default: the best), refined (:func:`refine_grains`).

    Boundaries: 6 orientations (every 30 degrees) x 3 positions (the centre and a quarter of the
    box to either side); grains: the orientations of ``fits`` (:func:`fit_lattice`), at least 3
    degrees apart. Cost: one greedy occupation per boundary and ordered pair of lattices, and
    for the kept candidates the orientation scan of :func:`scan_grains`.
    """
    box = objective.box
    half = 0.5 * float(np.min(box[:, 1] - box[:, 0]))
    # each fit's whole lattice, once: the boundaries below only choose which sites are kept
    whole = [lattice_sites(k, spacing, t, o, box, indices=True) for _, k, t, o in fits]
    scored = []
    for phi in np.radians(np.arange(0, 180, 30)):
        normal = np.array([np.cos(phi), np.sin(phi)])
        for cut in (-0.5 * half, 0.0, 0.5 * half):
            for i, (_, k1, t1, o1) in enumerate(fits):
                if should_stop():
                    break
                for j, (_, k2, t2, o2) in enumerate(fits):
                    if j == i or k1 != k2 or _angle_gap(t1, t2, LATTICES[k1][2]) < np.radians(3):
                        continue
                    grains = ((t1, o1), (t2, o2))
                    sites = _two_grains((whole[i], whole[j]), spacing, box, normal, cut)
                    if len(sites) < 6:
                        continue
                    scored.append((greedy_misfit(objective, sites)[0], k1, grains, normal, cut))
    scored.sort(key=lambda t: t[0])
    out = []
    for misfit, kind, grains, normal, cut in scored[:keep]:
        if should_stop():
            break
        fitted = refine_grains(objective, kind, spacing, grains, normal, cut, misfit)
        scanned, turned = scan_grains(objective, kind, spacing, grains, normal, cut, misfit)
        misfit, grains = min(fitted, refine_grains(objective, kind, spacing, turned, normal, cut,
                                                   scanned), key=lambda t: t[0])
        label = (f"grains: {kind} at {np.degrees(grains[0][0]):.1f} | {kind} at "
                 f"{np.degrees(grains[1][0]):.1f} deg")
        out.append({"sites": _two_grains(_grain_lattices(kind, spacing, box, grains), spacing,
                                         box, normal, cut),
                    "misfit": misfit, "label": label, "grains": 2})
    return out


def complete_unrelaxed(objective: AtomObjective, state: AtomState, candidates, tol=0.0,
                       tries: int = 3) -> AtomState:
    """Add the atoms the data ask for between the sites of ``state``, then relax; the relaxed
    configuration is returned.

    A lattice occupation leaves out interstitials, and their mass does not wait: relaxed
    without them, the sites' atoms drift into the gap and explain it half, and ADCG's add step
    afterwards scores each candidate with its neighbours frozen, which charges a point between
    sites the repulsion of unrelaxed neighbours (tens of bonds at 0.7 spacings). The interstitial
    then goes in elsewhere, and the crystal around it relaxes into a wrong, locally stable
    arrangement. So, up to ``tries`` times, an atom goes where the data term alone gains most
    (``prior=False``), *before* anything relaxes, and it stays when the relaxed configuration
    with it has a lower objective than without it. ``candidates``:
    :class:`~atomtomo.solvers.core.Candidates`.

    Measured on two square crystals with an interstitial from three arbitrary angles, where the
    search ended 0.09 and 0.12 ``E_1`` above the relaxed truth (F1 0.60 and 0.48): their best
    lattice starts, completed by ADCG, ended 0.44 and 0.30 ``E_1`` above it; completed here first,
    at the truth (F1 1.0).
    """
    relaxed = objective.relax(state)
    value = objective.value(relaxed)
    for _ in range(tries):
        delta, species = candidates.insertion_scores(objective, state, prior=False)
        k = int(np.argmin(delta))
        if delta[k] >= -tol:
            break
        trial = state.add(candidates.points[k], species[k])
        trial_relaxed = objective.relax(trial)
        trial_value = objective.value(trial_relaxed)
        if trial_value >= value - tol:
            break
        state, relaxed, value = trial, trial_relaxed, trial_value
    return relaxed


def lattice_seeds(objective: AtomObjective, spacing: float, tol=0.0, per_kind: int = 2,
                  count: int | None = 3, rng=None, candidates=None, lattices=None):
    """Configurations started from fitted lattices, best first.

    Every candidate of :func:`lattice_candidates` has its sites occupied by the data (greedy,
    then annealed with the prior's bonds: :func:`anneal_occupancy`) and is ranked by that
    annealed score; the best ``count`` single lattices and the best two-grain set (which has
    more sites to fit noise with, so it is not ranked against them) are relaxed with the full
    objective and pruned; with ``candidates`` (:class:`~atomtomo.solvers.core.Candidates`) the
    interstitials go in before the relaxation (:func:`complete_unrelaxed`). Returns
    ``(state, info)`` pairs; ``info`` has the candidate's ``label``, ``misfit``, ``score`` and
    number of ``grains``. ``lattices``: the result of :func:`lattice_candidates` for these data
    when the caller has it already (it depends on the data alone, and takes seconds).
    """
    rng = np.random.default_rng(rng)
    occupied = []
    if lattices is None:
        lattices = lattice_candidates(objective, spacing, per_kind)
    for cand in lattices:
        if should_stop():
            break
        sites = cand["sites"]
        if len(sites) == 0:
            continue
        # Occupied by the data (and the prior's bonds only) as the lattice was scored: the
        # prior's full insertion energies would favour filled sites over the data's vacancies.
        _, species = greedy_misfit(objective, sites)
        species, score = anneal_occupancy(objective, sites, species, rng, spacing=spacing)
        occupied.append((score, cand, species))
    occupied.sort(key=lambda t: t[0])
    single = [o for o in occupied if o[1]["grains"] == 1][:count]
    seeds = []
    for score, cand, species in single + [o for o in occupied if o[1]["grains"] == 2][:1]:
        sites = cand["sites"]
        state = AtomState(sites[species >= 0], species[species >= 0])
        if candidates is None:
            state = objective.relax(state)
        else:
            state = complete_unrelaxed(objective, state, candidates, tol)
        state, _ = objective.prune(state, tol)
        seeds.append((state, {"label": cand["label"], "misfit": cand["misfit"], "score": score,
                              "grains": cand["grains"]}))
    return seeds
