r"""Fit a crystal with an edge dislocation to the data: sites that do not come from the atoms.

Why. Around an edge dislocation no single lattice fits (:mod:`atomtomo.lattice_prior`), so the
strain stage of the solver builds its sites from the atoms the search has placed
(:func:`~atomtomo.lattice_prior.strained_sites`). Where the search placed them wrong, the sites
are wrong the same way and hold the wrong configuration in place: on 96 two-angle zone-axis runs
that was half of all F1 lost, 12 of its 15 runs on dislocation crops. The sites of the true
crystal, handed to the same stage, took two such crops from F1 0.79 and 0.56 to 1.0
(docs/decisions/2026-12-07-solver-history.md). This module finds those sites from the
projections alone.

Model. A crystal of the fitted lattice's type and spacing, turned by ``theta`` and shifted by
``o``, displaced by the Volterra field of an edge dislocation with Burgers vector ``b`` (a
shortest lattice vector) and core ``c`` (:func:`atomtomo.crystal.edge_dislocation_displacement`,
Poisson ratio 0.3; the field's far part does not depend on it):

.. math::

    s_n = o + R_\theta B n + u(o + R_\theta B n;\ b, c),

and the same without ``u`` for the crystal without a dislocation. The sites inside the box are
scored by how well *some* non-negative occupancy of them explains the data,

.. math::

    m(\text{sites}) = \min_{w \ge 0} \tfrac12 \lVert y - A w \rVert^2 / E_1,

with ``A``'s columns the projections of one atom at each site (non-negative least squares, so
vacancies and any re-pairing of the occupancy cost nothing: only the *positions* are judged),
in units of one atom's data energy ``E_1``. A crystal the model describes scores at the noise
level (0.1 ``E_1`` on the crops measured), a single lattice across a dislocation several
``E_1`` higher.

Search. ``m`` is sharp in the shift (a third of the atom width costs about 1 ``E_1``), smooth in
the rotation and nearly flat in the core position, so: rotations within
:data:`ROTATION_RANGE` of the fitted lattice's in :data:`ROTATION_STEP` degree steps (a
dislocation turns the mean lattice of a small crop by up to 6 degrees; on the 16 dislocation
crops measured 1-degree steps found no crystal lower by more than 0.02 ``E_1``); each
Burgers vector; cores between two rows parallel to it (where a dislocation's core sits) within
the box; for each, the two best shifts over a 12 x 12 grid of the cell by the data's summed
value at the projected sites (cheap); then ``m`` for those, and Nelder-Mead over shift,
rotation and core from the lowest :data:`REFINED` models. Models whose sites coincide (four in
five of one's sites within 0.2 bond lengths of the other's) are one *family*; two projections
leave several families at the noise level (occupancies re-paired onto shifted rows), so the
caller gets the lowest few and lets the full objective decide between them. The crystals
without a dislocation are scanned first: where the best of them fits below
:data:`DETECT_MARGIN`, no dislocated crystal could be detected, and ``detectable_only`` skips
the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.spatial import cKDTree

from ..crystal import edge_dislocation_displacement, rotation_matrix
from ..stopping import should_stop
from .lattice_seed import lattice_kind

#: Rotations tried around the fitted lattice's, in degrees either way.
ROTATION_RANGE = 9.0

#: Step of the rotation scan, in degrees (Nelder-Mead refines the rotation).
ROTATION_STEP = 2.0

#: Models refined by Nelder-Mead (the lowest by ``m`` after the grid).
REFINED = 16

#: Nelder-Mead stops when the simplex's vertices agree to the first value (in the units of
#: :func:`_refine`) and their misfits to the second (``E_1``; the noise level is about 0.1).
REFINE_TOLERANCE = (0.01, 0.01)

#: Poisson ratio of the model's displacement field.
POISSON = 0.3

#: Sites of two models closer than this (bond lengths) coincide.
SAME_SITE = 0.2

#: A dislocation is detected when a dislocated model's misfit is at most this fraction of the
#: best plain crystal's, and lower by at least :data:`DETECT_MARGIN` ``E_1``.
DETECT_RATIO = 0.25
DETECT_MARGIN = 0.5

#: Fewest atoms (by the data's mass) for which the solver fits by default: a dislocation is told
#: from point defects by rows on both sides of its core, at least three rows of four (the
#: smallest dislocation crop of docs/decisions/2026-12-07-solver-history.md holds 21 atoms).
MIN_ATOMS = 12


@dataclass
class SiteModel:
    """A fitted crystal: its ``sites`` inside the box, ``misfit`` ``m`` in ``E_1``, and its
    parameters (``basis``: the lattice vectors as columns; ``burgers`` and ``core`` are None
    without a dislocation)."""

    sites: np.ndarray
    misfit: float
    rotation: float
    origin: np.ndarray
    basis: np.ndarray
    burgers: np.ndarray | None = None
    core: np.ndarray | None = None

    @property
    def dislocated(self) -> bool:
        return self.burgers is not None


class _Scorer:
    """``m`` of site sets for one problem (2D): dense per-site projection columns and NNLS."""

    def __init__(self, problem):
        geo = problem.geometry
        self.problem = problem
        self.box = np.asarray(problem.box, float)
        self.y = np.asarray(problem.data, float).ravel()
        self.data = np.asarray(problem.data, float).reshape(geo.n_angles, -1)
        self.directions = np.asarray(geo.directions, float)
        self.centres = geo.pixel_centres()
        self.atom_energy = problem.model.atom_data_energy()

    def inside(self, sites):
        return sites[np.all((sites >= self.box[:, 0]) & (sites <= self.box[:, 1]), axis=1)]

    def columns(self, sites):
        return self.problem.model.design_matrix(sites)

    def misfit(self, sites) -> float:
        sites = self.inside(sites)
        if len(sites) == 0:
            return 0.5 * float(self.y @ self.y) / self.atom_energy
        _, residual = nnls(self.columns(sites), self.y, maxiter=50 * len(sites))
        return 0.5 * residual ** 2 / self.atom_energy


def _lattice_points(basis, origin, box, margin):
    inv = np.linalg.inv(basis)
    corners = np.array([[box[0, i], box[1, j]] for i in (0, 1) for j in (0, 1)], float)
    f = (corners - origin) @ inv.T
    lo, hi = np.floor(f.min(0)) - margin, np.ceil(f.max(0)) + margin
    i, j = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    return origin + np.c_[i.ravel(), j.ravel()] @ basis.T


class _Crystal:
    """Sites of the model above for one lattice type and spacing."""

    def __init__(self, basis, box):
        self.basis0 = np.asarray(basis, float)
        self.box = box
        self.spacing = float(np.linalg.norm(self.basis0[:, 0]))
        self.kind = lattice_kind(self.basis0)

    def basis(self, rotation):
        return rotation_matrix(rotation) @ self.basis0

    def sites(self, rotation, origin, burgers=None, core=None, margin=2):
        ref = _lattice_points(self.basis(rotation), np.asarray(origin, float), self.box, margin)
        if burgers is None:
            return ref
        core = np.asarray(core, float)
        # the field is singular on the core: keep the core off the reference sites
        if np.min(np.hypot(*(ref - core).T)) < 1e-3 * self.spacing:
            core = core + 1e-3 * self.spacing
        return ref + edge_dislocation_displacement(ref, burgers, core, POISSON)

    def burgers_and_rows(self, rotation):
        """Each shortest lattice vector ``b`` (both signs) with the vector ``v`` that spans the
        cell with it, so cores between rows parallel to ``b`` are ``(i + h) b + (j + 1/2) v``."""
        b1, b2 = self.basis(rotation).T
        vecs = [v for v in (b1, b2, b1 + b2, b1 - b2)
                if abs(np.linalg.norm(v) - self.spacing) < 0.1 * self.spacing]
        turn = np.pi / 2 if self.kind == "square" else np.pi / 3
        half = 0.5 if self.kind == "square" else 0.0
        out = []
        for v in vecs:
            for sign in (1.0, -1.0):
                b = sign * v
                out.append((b, rotation_matrix(turn) @ b, half))
        return out


def _two_best_origins(scorer, crystal, rotation, rel):
    """The two best shifts of ``rel`` (sites for a zero shift) over a 12 x 12 grid of the cell,
    by the data at the projected sites; the second from the other half of the cell."""
    basis = crystal.basis(rotation)
    grid = np.stack(np.meshgrid(np.arange(12) / 12, np.arange(12) / 12), -1).reshape(-1, 2)
    shifts = grid @ basis.T
    # (shifts, sites) arrays per coordinate: a site projects to rel . d + shift . d
    x, y = rel[None, :, 0] + shifts[:, 0, None], rel[None, :, 1] + shifts[:, 1, None]
    (x0, x1), (y0, y1) = scorer.box
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    value = sum(np.interp((rel @ d)[None] + (shifts @ d)[:, None], scorer.centres, data,
                          left=0.0, right=0.0)
                for d, data in zip(scorer.directions, scorer.data))
    value = (value * inside).sum(1)
    order = np.argsort(-value)
    first = grid[order[0]]
    for k in order[1:]:
        d = grid[k] - first
        d -= np.round(d)
        if np.hypot(*d) > 0.25:
            return [shifts[order[0]], shifts[k]]
    return [shifts[order[0]]]


def _same_family(a, b, tol):
    if len(a) == 0 or len(b) == 0:
        return False
    return min(np.mean(cKDTree(b).query(a)[0] < tol), np.mean(cKDTree(a).query(b)[0] < tol)) >= 0.8


def fit_site_models(problem, basis, *, families: int = 3,
                    detectable_only: bool = False) -> list[SiteModel]:
    """Crystals with and without an edge dislocation that fit the data, lowest ``m`` first.

    Parameters
    ----------
    problem : Problem
        A 2D problem with a known bond length.
    basis : (2, 2) array
        Lattice vectors (columns) of the lattice fitted to the data; its type and spacing are
        kept, its rotation is searched around.
    families : int
        How many distinct dislocated site sets to return.
    detectable_only : bool
        Skip the dislocated crystals (the costly part) when none could be detected: when the
        best crystal without one already fits below :data:`DETECT_MARGIN` (most crops without
        a dislocation).

    Returns
    -------
    list of SiteModel
        The best crystal without a dislocation first, then up to ``families`` dislocated ones,
        each the lowest of its family, by increasing ``misfit``.
    """
    scorer = _Scorer(problem)
    crystal = _Crystal(basis, scorer.box)
    a = crystal.spacing
    reach = np.hypot(*(scorer.box[:, 1] - scorer.box[:, 0])) / 2 + 2 * a
    centre = scorer.box.mean(1)
    # the lattice at each rotation through the centre: each model's origin is one of its sites
    refs = {}
    for rotation in np.radians(np.arange(-ROTATION_RANGE, ROTATION_RANGE + 1e-9, ROTATION_STEP)):
        ref = _lattice_points(crystal.basis(rotation), centre, scorer.box, 3)
        refs[rotation] = ref[np.hypot(*(ref - centre).T) < reach]
    plain = sorted(((scorer.misfit(ref + o), rotation, centre + o, None, None)
                    for rotation, ref in refs.items()
                    for o in _two_best_origins(scorer, crystal, rotation, ref)),
                   key=lambda m: m[0])
    best_plain = min((_refine(scorer, crystal, m) for m in plain[:3]), key=lambda m: m.misfit)
    if detectable_only and best_plain.misfit < DETECT_MARGIN:
        return [best_plain]
    dislocated = sorted(_dislocated_scan(scorer, crystal, refs), key=lambda m: m[0])
    refined = sorted((_refine(scorer, crystal, m) for m in dislocated[:REFINED]),
                     key=lambda m: m.misfit)
    kept = []
    for model in refined:
        if not any(_same_family(model.sites, k.sites, SAME_SITE * a) for k in kept):
            kept.append(model)
        if len(kept) == families:
            break
    return [best_plain] + kept


def _dislocated_scan(scorer, crystal, refs):
    """``(m, rotation, origin, b, core)`` of each dislocated crystal of the scan (module
    docstring): every rotation, Burgers vector and core between rows, the two best shifts."""
    a = crystal.spacing
    centre = scorer.box.mean(1)
    core_reach = 0.45 * (scorer.box[:, 1] - scorer.box[:, 0])  # cores this far from the centre
    for rotation, ref in refs.items():
        for b, v, h in crystal.burgers_and_rows(rotation):
            for i in range(-6, 7):
                if should_stop():
                    return
                for j in range(-6, 7):
                    core = centre + (i + h) * b + (j + 0.5) * v
                    if np.any(np.abs(core - centre) > core_reach + a):
                        continue
                    rel = ref + edge_dislocation_displacement(ref, b, core, POISSON)
                    for o in _two_best_origins(scorer, crystal, rotation, rel):
                        shifted = core + o
                        if np.all(np.abs(shifted - centre) <= core_reach):
                            yield scorer.misfit(rel + o), rotation, centre + o, b, shifted


def _refine(scorer, crystal, model) -> SiteModel:
    """Nelder-Mead on ``m`` over the shift, the rotation and (with a dislocation) the core,
    from a model of the scan, in units of ``sigma``, 1 degree and a quarter bond length."""
    _, rotation, o, b, core = model
    sigma, a = scorer.problem.sigma, crystal.spacing
    scale = np.array([sigma, sigma, np.radians(1.0), a / 4, a / 4])
    if b is None:
        def params(p):
            p = p * scale[:3]
            return rotation + p[2], o + p[:2], None, None
        step = [0.1, 0.1, 0.3]
    else:
        def params(p):
            p = p * scale
            return rotation + p[2], o + p[:2], rotation_matrix(p[2]) @ b, core + p[3:5]
        step = [0.1, 0.1, 0.3, 1.0, 1.0]
    p0 = np.zeros(len(step))

    def m(p):
        return scorer.misfit(crystal.sites(*params(p)))

    simplex = np.vstack([p0, np.diag(step)])
    res = minimize(m, p0, method="Nelder-Mead",
                   options=dict(initial_simplex=simplex, xatol=REFINE_TOLERANCE[0],
                                fatol=REFINE_TOLERANCE[1], maxiter=100 * len(p0)))
    rot, org, bb, cc = params(res.x)
    return SiteModel(scorer.inside(crystal.sites(rot, org, bb, cc)), float(res.fun), float(rot),
                     np.asarray(org), crystal.basis(rot), bb, cc)


def detected_families(models: list[SiteModel]) -> list[SiteModel]:
    """The dislocated models of :func:`fit_site_models` that fit the data clearly better than
    the plain crystal (``m <= DETECT_RATIO * m_plain`` and ``m <= m_plain - DETECT_MARGIN``);
    empty when none does.

    Calibrated on 48 two-angle zone-axis crops (docs/decisions/2026-12-07-solver-history.md):
    it fires on 15 of the 16 crops with a dislocation (the 16th has an interstitial at its
    core) and on one of the 32 without, an interstitial that no crystal fits.
    """
    if not models:
        return []
    plain = models[0].misfit
    return [m for m in models[1:]
            if m.misfit <= DETECT_RATIO * plain and m.misfit <= plain - DETECT_MARGIN]
