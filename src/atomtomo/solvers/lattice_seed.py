"""Lattice-aware initialisation: fit a 2D crystal lattice to the data, then occupy its sites.

Greedy addition and single-atom moves explore configurations one atom at a time. A crystal with a
few defects is, almost everywhere, a lattice: if the lattice's orientation and offset are right,
every atom is within a fraction of a spacing of a site. So we search the lattice directly — a
three-parameter problem (orientation ``theta``, offset ``o``) for a known spacing (the bond length)
and lattice type (square or hexagonal) — by the data alone:

    S(theta, o) = sum over sites g of  n_angles * max(0, min over angles a of
                                       (<y_a, a_g,a> - 1/2 ||a_g,a||^2)),

the decrease of the data term that atoms at the sites could give one by one, counted only where
every projection supports the site (a ghost site on the peaks of some projections only, or a
site between atoms, scores nothing). ``S`` is evaluated on a grid of orientations (1 degree over the
lattice's symmetry period) and offsets (an 8 x 8 grid over the unit cell) in one vectorised
back-projection, the best few are refined continuously (Nelder-Mead), and the sites of each are
occupied greedily with the exact objective (data plus alpha times energy). Defects are then
the solver's job: ADCG adds interstitials off the lattice, pruning removes vacancies' atoms,
and the move step relaxes everything off the sites.

This is a search strategy, not a prior: the objective is unchanged, and the solver keeps the
lattice start only when it ends at a lower objective than the greedy start.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from .objective import AtomObjective, AtomState

LATTICES = {
    "square": (np.array([1.0, 0.0]), np.array([0.0, 1.0]), 90.0),
    "hexagonal": (np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2]), 60.0),
}


def lattice_sites(kind, spacing, theta, offset, box, margin=0.0):
    """Sites of a 2D lattice (rotated by ``theta`` radians, shifted by ``offset``) inside ``box``."""
    b1, b2, _ = LATTICES[kind]
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    basis = spacing * (rot @ np.stack([b1, b2], axis=1))  # columns are lattice vectors
    centre = box.mean(axis=1)
    reach = np.linalg.norm(box[:, 1] - box[:, 0]) / 2
    n = int(np.ceil(reach / (spacing * 0.5))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], axis=1).astype(float)
    sites = centre + offset + ij @ basis.T
    inside = np.all((sites >= box[:, 0] + margin) & (sites <= box[:, 1] - margin), axis=1)
    return sites[inside]


def _site_gain(objective: AtomObjective, sites):
    """How well each site is supported by *every* projection: ``n_angles`` times the smallest
    over angles of the single-angle data-term decrease from a unit atom there (0 if negative).

    Summing the decrease over all angles at once would credit ghost sites, which sit on the
    peaks of some projections but not of others; requiring support from each angle does not.
    """
    geo = objective.model.geometry
    w = objective.species_weights.max()
    s = geo.detector_coordinates(sites)  # (A, m)
    idx, val = objective.model._window(s, geo.detector_shape[0])
    data = objective.data[np.arange(geo.n_angles)[:, None, None], idx]
    corr = np.einsum("amk,amk->am", data, val)
    energy = np.einsum("amk,amk->am", val, val)
    gain = w * corr - 0.5 * w * w * energy
    return geo.n_angles * np.maximum(gain.min(axis=0), 0.0)


def fit_lattice(objective: AtomObjective, spacing: float, kinds=("square", "hexagonal"),
                n_angles: int | None = None, n_offsets: int = 8, refine: int = 3):
    """Best lattices by the site score ``S``: a list of ``(score, kind, theta, offset)``."""
    box = objective.box
    results = []
    for kind in kinds:
        b1, b2, period = LATTICES[kind]
        n_theta = n_angles or int(period)
        thetas = np.radians(np.arange(n_theta) * period / n_theta)
        frac = (np.arange(n_offsets) + 0.5) / n_offsets
        fi, fj = np.meshgrid(frac, frac, indexing="ij")
        all_sites, owner, params = [], [], []
        for theta in thetas:
            rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
            basis = spacing * (rot @ np.stack([b1, b2], axis=1))
            for f1, f2 in zip(fi.ravel(), fj.ravel()):
                offset = basis @ np.array([f1, f2])
                sites = lattice_sites(kind, spacing, theta, offset, box)
                all_sites.append(sites)
                owner.append(np.full(len(sites), len(params)))
                params.append((theta, offset))
        gain = _site_gain(objective, np.vstack(all_sites))
        score = np.bincount(np.concatenate(owner), weights=gain, minlength=len(params))
        # Scores of different lattice types are not comparable (a denser lattice collects
        # more partial overlaps), so the best of each type goes on.
        for k in np.argsort(score)[::-1][:refine]:
            results.append((float(score[k]), kind, *params[k]))
    # Continuous refinement of the best few: maximise S over (theta, offset).
    refined = []
    for score, kind, theta, offset in results:
        def negative_score(p, kind=kind):
            sites = lattice_sites(kind, spacing, p[0], p[1:], box)
            return -float(_site_gain(objective, sites).sum()) if len(sites) else 0.0

        res = minimize(negative_score, np.r_[theta, offset], method="Nelder-Mead",
                       options={"xatol": 1e-4, "fatol": 1e-6 * max(score, 1e-12), "maxiter": 300})
        refined.append((-float(res.fun), kind, float(res.x[0]), res.x[1:]))
    return refined


def occupy_sites(objective: AtomObjective, sites, state: AtomState | None = None, tol=0.0):
    """Greedily place atoms on ``sites`` while an addition lowers the objective."""
    d = objective.box.shape[0]
    state = AtomState(np.zeros((0, d)), np.zeros(0, int)) if state is None else state
    free = np.ones(len(sites), bool)
    self_energy = objective.model.self_energy(sites)
    while free.any():
        delta, species = objective.insertion_scores(state, sites, self_energy)
        delta = np.where(free, delta, np.inf)
        k = int(np.argmin(delta))
        if delta[k] >= -tol:
            break
        state = state.add(sites[k], species[k])
        free[k] = False
    return state


def lattice_seeds(objective: AtomObjective, spacing: float, tol=0.0, per_kind: int = 1):
    """Configurations started from the best-fitting lattice of each type, occupied and relaxed."""
    seeds = []
    for score, kind, theta, offset in fit_lattice(objective, spacing, refine=per_kind):
        sites = lattice_sites(kind, spacing, theta, offset, objective.box)
        state = occupy_sites(objective, sites, tol=tol)
        state = objective.relax(state)
        state, _ = objective.prune(state, tol)
        seeds.append((state, {"lattice": kind, "theta_deg": float(np.degrees(theta)),
                              "score": score}))
    return seeds
