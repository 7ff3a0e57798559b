"""Lattice defects and the 2D defect phantoms.

Point defects (vacancy, divacancy, interstitial, substitution) work on any configuration in 2D or
3D; the edge dislocation and the tilt grain boundary are 2D. The phantom builders at the end
combine them with the lattices of :mod:`.lattices2d`, including the poster's three test lattices
and :func:`random_defect_lattice` for training data.

Relaxation around a point defect
--------------------------------
Linear elasticity gives a radial displacement field around a centre of dilatation: in ``d``
dimensions the divergence-free solution is ``u(r) = A a^d / r^(d-1)`` along the outward radius
(``A a^2 / r`` in 2D, ``A a^3 / r^2`` in 3D), with ``a`` the lattice spacing and ``A`` a
dimensionless strength: ``A > 0`` pushes the neighbours out (an interstitial), ``A < 0`` pulls them
in (a vacancy). We apply it to the atoms within ``cutoff`` spacings of the defect only and leave
the rest of the lattice alone, so that the perturbation is local (a hard cut: beyond it the field
is already a small fraction of a spacing).

Edge dislocation
----------------
The Volterra displacement field (isotropic elasticity) lives in :mod:`atomtomo.crystal`, which the
solver's dislocation fit uses too; :func:`edge_dislocation` applies it to a lattice and
:func:`poster_dislocation` inserts a half-row of atoms into the gap it opens.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, Delaunay, cKDTree

from ..configuration import DEFAULT_SPECIES, Configuration
from ..errors import InputError
from .._checks import finite_number, positive_number
from ..crystal import edge_dislocation_displacement
from .lattices2d import (
    DEFAULT_MARGIN,
    LATTICES,
    UNIT_BOX,
    _lattice_kind,
    as_rng,
    inside_box,
    lattice_block,
    lattice_disc,
    lattice_vectors,
    make_phantom,
)

#: Default strength ``A`` of the relaxation around a vacancy (neighbours move in by 5% of a
#: spacing at one spacing) and around an interstitial (out by 10% of a spacing at one spacing).
VACANCY_RELAX = -0.05
INTERSTITIAL_RELAX = 0.1
#: Default cutoff of the relaxation, in spacings: the first two neighbour shells of a square
#: lattice or of fcc.
RELAX_CUTOFF = 1.6
#: Defects that :func:`random_defect_lattice` draws from.
DEFECT_KINDS = ("vacancy", "divacancy", "interstitial", "dislocation", "grain-boundary")


# -- point defects -----------------------------------------------------------------------------
def _spacing_of(config, spacing):
    if spacing is None:
        spacing = config.info.get("spacing")
    if spacing is None:
        raise InputError("the lattice spacing is unknown: pass spacing=")
    return positive_number(spacing, "spacing")


def _add_defect_label(info, label):
    old = info.get("defects", "")
    info["defects"] = f"{old},{label}" if old else label


def relax_point_defect(positions, centre, amplitude, spacing, cutoff=RELAX_CUTOFF) -> np.ndarray:
    """Radial elastic displacement around a point defect (see the module docstring).

    Parameters
    ----------
    positions : (n, d) array_like
    centre : (d,) array_like
        Position of the defect.
    amplitude : float
        ``A`` in ``u(r) = A a^d / r^(d-1)``; > 0 outward (interstitial), < 0 inward (vacancy).
    spacing : float
        Lattice spacing ``a``.
    cutoff : float
        Only atoms with ``0 < r <= cutoff * a`` move.

    Returns
    -------
    (n, d) ndarray
        The displaced positions.
    """
    pos = np.asarray(positions, dtype=float)
    a = positive_number(spacing, "spacing")
    d = pos.shape[1]
    delta = pos - np.asarray(centre, dtype=float)
    r = np.linalg.norm(delta, axis=1)
    move = (r > 1e-9 * a) & (r <= float(cutoff) * a * (1 + 1e-9))
    out = pos.copy()
    rm = r[move]
    # u(r) r_hat = A a^d / r^(d-1) * delta / r
    out[move] += (float(amplitude) * a**d / rm**d)[:, None] * delta[move]
    return out


def nearest_atom(config: Configuration, position=None) -> int:
    """Index of the atom nearest ``position`` (default: the centroid)."""
    if config.n_atoms == 0:
        raise InputError("the configuration has no atoms")
    pos = config.positions
    p = pos.mean(0) if position is None else np.asarray(position, dtype=float)
    return int(np.argmin(np.linalg.norm(pos - p, axis=1)))


def add_vacancy(config, position=None, *, relax=VACANCY_RELAX, cutoff=RELAX_CUTOFF, spacing=None):
    """Remove the atom nearest ``position`` (default: the centroid) and relax its neighbours."""
    a = _spacing_of(config, spacing)
    i = nearest_atom(config, position)
    site = config.positions[i]
    out = config.subset(np.arange(config.n_atoms) != i)
    out.positions = relax_point_defect(out.positions, site, relax, a, cutoff)
    _add_defect_label(out.info, "vacancy")
    return out


def add_divacancy(
    config, position=None, direction=None, *, relax=VACANCY_RELAX, cutoff=RELAX_CUTOFF, spacing=None
):
    """Remove two neighbouring atoms and relax around their midpoint.

    The first is the atom nearest ``position`` (default: the centroid); the second is its nearest
    neighbour, the one best aligned with ``direction`` when given.
    """
    a = _spacing_of(config, spacing)
    i = nearest_atom(config, position)
    pos = config.positions
    delta = pos - pos[i]
    dist = np.linalg.norm(delta, axis=1)
    dist[i] = np.inf
    shell = np.flatnonzero(dist <= dist.min() * 1.05)
    if direction is not None:
        direction = np.asarray(direction, dtype=float)
        j = int(shell[np.argmax(delta[shell] @ direction / dist[shell])])
    else:
        j = int(shell[0])
    centre = 0.5 * (pos[i] + pos[j])
    keep = np.ones(config.n_atoms, bool)
    keep[[i, j]] = False
    out = config.subset(keep)
    out.positions = relax_point_defect(out.positions, centre, relax, a, cutoff)
    _add_defect_label(out.info, "divacancy")
    return out


def interstitial_sites(positions, spacing, depth=1.0, tolerance=0.03, near=None) -> np.ndarray:
    """Centres of the largest interstitial holes of a lattice, away from its surface.

    The holes are the circumcentres of the Delaunay simplices (their circumspheres are empty); we
    keep those at least ``depth`` spacings inside the convex hull of the atoms and, among them, the
    ones whose distance to the nearest atom is within ``tolerance`` of the largest. That picks the
    plaquette centres of a square lattice, the triangle centres of a hexagonal one, the
    octahedral sites of fcc and the tetrahedral sites of bcc. With ``near``, only holes within two
    spacings of that point compete (the largest hole nearby, in a distorted lattice).
    """
    pos = np.asarray(positions, dtype=float)
    a = positive_number(spacing, "spacing")
    d = pos.shape[1]
    if len(pos) <= d + 1:
        raise InputError("too few atoms to find interstitial sites")
    tri = Delaunay(pos)
    v = pos[tri.simplices]  # (m, d+1, d)
    edges = v[:, 1:] - v[:, :1]
    rhs = 0.5 * np.einsum("mkd,mkd->mk", edges, edges)
    det = np.linalg.det(edges)
    ok = np.abs(det) > 1e-8 * a**d  # degenerate (flat) simplices have no circumcentre
    centres = v[ok, 0] + np.linalg.solve(edges[ok], rhs[ok][..., None])[..., 0]
    hull = ConvexHull(pos)
    inside = -(centres @ hull.equations[:, :d].T + hull.equations[:, d]).max(axis=1)
    centres = centres[inside >= depth * a]
    if near is not None:
        centres = centres[np.linalg.norm(centres - np.asarray(near, float), axis=1) <= 2 * a]
    if len(centres) == 0:
        raise InputError("no interstitial site lies inside the lattice")
    hole, _ = cKDTree(pos).query(centres)
    centres = centres[hole >= hole.max() * (1 - tolerance)]
    # Cospherical atoms give the same centre several times.
    key = np.round(centres / (1e-4 * a)).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return centres[np.sort(first)]


def add_interstitial(
    config,
    position=None,
    *,
    species=None,
    site=None,
    relax=INTERSTITIAL_RELAX,
    cutoff=RELAX_CUTOFF,
    spacing=None,
):
    """Insert an atom in the largest interstitial hole nearest ``position`` (default: centroid).

    Parameters
    ----------
    species : str, optional
        Species of the new atom (default: that of the nearest atom).
    site : (d,) array_like, optional
        Put the atom exactly here instead of searching a hole.
    relax, cutoff : float
        Relaxation of the neighbours (:func:`relax_point_defect`).
    """
    a = _spacing_of(config, spacing)
    pos = config.positions
    p = pos.mean(0) if position is None else np.asarray(position, dtype=float)
    if site is None:
        sites = interstitial_sites(pos, a, near=p)
        site = sites[np.argmin(np.linalg.norm(sites - p, axis=1))]
    site = np.asarray(site, dtype=float)
    if species is None:
        species = config.species[nearest_atom(config, site)]
    new_pos = np.vstack([relax_point_defect(pos, site, relax, a, cutoff), site])
    new_species = np.append(config.species, species).astype(object)
    out = Configuration(new_pos, new_species, dict(config.species_weights), dict(config.info))
    _add_defect_label(out.info, "interstitial")
    return out


def substitute(config, indices, species, weight=None):
    """Change the species of the atoms ``indices``; ``weight`` sets the new species' weight."""
    out = config.copy()
    idx = np.atleast_1d(np.asarray(indices, dtype=int))
    if idx.size and (idx.min() < -out.n_atoms or idx.max() >= out.n_atoms):
        raise InputError(f"atom index out of range for {out.n_atoms} atoms")
    out.species[idx] = str(species)
    if weight is not None:
        out.species_weights[str(species)] = positive_number(weight, "weight")
    _add_defect_label(out.info, "substitution")
    return out


# -- edge dislocation --------------------------------------------------------------------------
def dislocation_core(lattice, spacing, rotation=0.0, near=(0.0, 0.0), origin=(0.0, 0.0), direction=0):
    """A core position between two atom rows of a lattice, and its Burgers vector.

    The Burgers vector is the primitive vector along lattice direction ``direction`` (0, 1 for
    square; 0, 1, 2 for hexagonal: rotations by 90 or 60 deg); the core sits halfway between two
    rows parallel to it, as far from atoms as possible, at the such site nearest ``near``.

    Returns
    -------
    core : (2,) ndarray
    burgers : (2,) ndarray
    """
    kind = _lattice_kind(lattice)
    step = np.pi / 2 if kind == "square" else np.pi / 3
    vecs = lattice_vectors(kind, spacing, rotation + int(direction) * step)
    offset = np.array([0.5, 0.5]) if kind == "square" else np.array([0.0, 0.5])
    frac = np.linalg.solve(vecs.T, np.asarray(near, float) - np.asarray(origin, float)) - offset
    core = np.asarray(origin, float) + (np.round(frac) + offset) @ vecs
    return core, vecs[0]


def add_edge_dislocation(config, core, burgers, poisson=0.3):
    """Displace a 2D configuration by the Volterra field of an edge dislocation (slip-plane cut)."""
    if config.ndim != 2:
        raise InputError("edge dislocations are implemented in 2D")
    out = config.copy()
    out.positions = out.positions + edge_dislocation_displacement(out.positions, burgers, core, poisson)
    _add_defect_label(out.info, "dislocation")
    return out


# -- 2D phantom builders -----------------------------------------------------------------------
def _filled(kind, spacing, rotation, origin=(0.0, 0.0), species=DEFAULT_SPECIES, pad=2.0):
    """A lattice disc covering the unit box with ``pad`` spacings to spare (crop it afterwards)."""
    pos = lattice_disc(kind, spacing, np.sqrt(0.5) + pad * spacing, rotation, origin)
    return make_phantom(pos, kind, spacing, species=species, lattice=kind, rotation=float(rotation))


def _cropped(config, name, margin):
    out = config.subset(inside_box(config.positions, UNIT_BOX, margin))
    out.info["phantom"] = name
    out.info["box"] = [list(b) for b in UNIT_BOX]
    if out.n_atoms == 0:
        raise InputError("no atom left inside the box; use a smaller spacing or margin")
    return out


def poster_interstitial(spacing: float = 1 / 6, relax: float = INTERSTITIAL_RELAX) -> Configuration:
    """The poster's interstitial lattice: a 6x6 square lattice plus one atom at its centre (37).

    Parameters
    ----------
    spacing : float
        Lattice spacing (the outer atoms sit at +-2.5 spacings, 0.417 for the default 1/6).
    relax : float
        Strength ``A`` of the outward relaxation of the neighbours (:func:`relax_point_defect`).
    """
    a = positive_number(spacing, "spacing")
    pos = lattice_block("square", 6, 6, a)
    centre = np.zeros(2)  # the central plaquette
    pos = np.vstack([relax_point_defect(pos, centre, relax, a), centre])
    return make_phantom(pos, "interstitial", a, lattice="square", defects="interstitial")


def poster_vacancy(spacing: float = 0.15, relax: float = VACANCY_RELAX) -> Configuration:
    """The poster's vacancy lattice: a 7x7 square lattice without its centre atom (48).

    Parameters
    ----------
    spacing : float
        Lattice spacing (outer atoms at +-3 spacings: 0.45 for the default 0.15).
    relax : float
        Strength ``A`` of the inward relaxation of the neighbours.
    """
    a = positive_number(spacing, "spacing")
    pos = lattice_block("square", 7, 7, a)
    centre = np.linalg.norm(pos, axis=1) < 1e-9 * a
    pos = relax_point_defect(pos[~centre], np.zeros(2), relax, a)
    return make_phantom(pos, "vacancy", a, lattice="square", defects="vacancy")


def poster_dislocation(spacing: float = 0.15, poisson: float = 0.3) -> Configuration:
    """The poster's edge dislocation: 3 rows of 6 atoms above 3 rows of 7 (39 atoms).

    The reference is a square lattice of spacing ``a`` whose lower half carries an extra half-row
    (column) at ``x = 0`` ending at the core ``(0, 0)``, between the middle rows. The Volterra field
    with ``b = -a x`` and the cut along that half-row opens a gap of one
    spacing around it and bends the rows smoothly: the lower rows are compressed, the upper ones
    stretched. The result is centred on its centroid. With the default spacing 0.15 the atoms stay
    more than 0.05 inside the unit box.

    Parameters
    ----------
    spacing : float
        Lattice spacing ``a``.
    poisson : float
        Poisson ratio of the Volterra field.
    """
    a = positive_number(spacing, "spacing")
    cols = (np.arange(6) - 2.5) * a
    rows = (np.arange(3) + 0.5) * a
    top = np.stack(np.meshgrid(cols, rows), -1).reshape(-1, 2)
    bottom = np.vstack(
        [top * [1, -1], np.stack([np.zeros(3), -rows], 1)]  # mirrored rows + the half-row at x = 0
    )
    ref = np.vstack([top, bottom])
    # b = -a x: the dislocation frame is (-x, -y), where the cut along -y is at +pi/2.
    pos = ref + edge_dislocation_displacement(ref, [-a, 0.0], (0.0, 0.0), poisson, np.pi / 2)
    pos -= pos.mean(0)
    return make_phantom(pos, "dislocation", a, lattice="square", defects="dislocation", poisson=poisson)


def divacancy_lattice(
    lattice: str = "square",
    spacing: float = 0.15,
    rotation: float = 0.0,
    relax: float = VACANCY_RELAX,
    margin: float = DEFAULT_MARGIN,
) -> Configuration:
    """A lattice filling the unit box with a divacancy at the centre (the centre atom and its
    neighbour along ``a1`` removed, neighbours relaxed inward).

    Parameters
    ----------
    lattice : {"square", "hexagonal"}
    spacing, rotation : float
        Lattice spacing and rotation (radians).
    relax : float
        Strength ``A`` of the relaxation (:func:`relax_point_defect`).
    margin : float
        Atoms are kept at least ``margin`` inside the box.
    """
    kind = _lattice_kind(lattice)
    a = positive_number(spacing, "spacing")
    cfg = _filled(kind, a, finite_number(rotation, "rotation"))
    a1 = lattice_vectors(kind, a, rotation)[0]
    cfg = add_divacancy(cfg, np.zeros(2), a1, relax=relax)
    return _cropped(cfg, "divacancy", margin)


def substitution_lattice(
    lattice: str = "square",
    spacing: float = 0.15,
    rotation: float = 0.0,
    n: int = 1,
    dopant: str = "Y",
    dopant_weight: float = 1.5,
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
) -> Configuration:
    """A lattice of species "X" (weight 1) filling the unit box with ``n`` substitutional atoms.

    Parameters
    ----------
    lattice, spacing, rotation, margin
        As :func:`divacancy_lattice`.
    n : int
        Number of substituted atoms: the centre atom, then random other atoms (``seed``).
    dopant : str
        Species of the substituted atoms.
    dopant_weight : float
        Their weight (relative to the host's 1; > 1 is a heavier, brighter atom).
    seed : int
        Seed of the choice of atoms when ``n > 1``.
    """
    kind = _lattice_kind(lattice)
    a, rotation = positive_number(spacing, "spacing"), finite_number(rotation, "rotation")
    cfg = _cropped(_filled(kind, a, rotation), "substitution", margin)
    n = int(n)
    if not 1 <= n <= cfg.n_atoms:
        raise InputError(f"n must be between 1 and {cfg.n_atoms}, got {n}")
    first = nearest_atom(cfg, np.zeros(2))
    others = np.delete(np.arange(cfg.n_atoms), first)
    chosen = np.append(first, as_rng(seed).choice(others, n - 1, replace=False))
    if dopant == DEFAULT_SPECIES:
        raise InputError(f"the dopant must differ from the host species {DEFAULT_SPECIES!r}")
    return substitute(cfg, chosen, dopant, dopant_weight)


def edge_dislocation_lattice(
    lattice: str = "square",
    spacing: float = 0.15,
    rotation: float = 0.0,
    burgers: int = 1,
    poisson: float = 0.3,
    margin: float = DEFAULT_MARGIN,
) -> Configuration:
    """A lattice filling the unit box with an edge dislocation at the centre (Volterra field).

    Parameters
    ----------
    lattice, spacing, rotation, margin
        As :func:`divacancy_lattice`.
    burgers : int
        Burgers vector in spacings along ``a1`` (non-zero; its sign puts the extra half-row on one
        side of the slip plane or the other).
    poisson : float
        Poisson ratio.
    """
    kind = _lattice_kind(lattice)
    a = positive_number(spacing, "spacing")
    if int(burgers) != burgers or burgers == 0:
        raise InputError(f"burgers must be a non-zero integer number of spacings, got {burgers}")
    rotation = finite_number(rotation, "rotation")
    # Shift the lattice so that the core (between two rows) is at the centre of the box.
    core, b = dislocation_core(kind, a, rotation)
    perfect = _filled(kind, a, rotation, origin=-core, pad=4.0)
    cfg = add_edge_dislocation(perfect, np.zeros(2), int(burgers) * b, poisson)
    # Undo the rigid shift of the field (the ln r term of u_y) over the box.
    ref = inside_box(cfg.positions, UNIT_BOX)
    cfg.positions -= (cfg.positions - perfect.positions)[ref].mean(0)
    cfg.info["poisson"] = float(poisson)
    return _cropped(cfg, "edge-dislocation", margin)


def _drop_close(pos, min_dist, prefer_drop=None):
    """Drop atoms until no two are closer than ``min_dist`` (one atom of each close pair, the one
    flagged in ``prefer_drop`` when only one is)."""
    pairs = cKDTree(pos).query_pairs(min_dist, output_type="ndarray")
    keep = np.ones(len(pos), bool)
    flag = np.zeros(len(pos), bool) if prefer_drop is None else prefer_drop
    for i, j in pairs:  # few pairs: those along the boundary
        if keep[i] and keep[j]:
            keep[i if flag[i] and not flag[j] else j] = False
    return keep


def grain_boundary(
    lattice: str = "square",
    theta: float = 0.6435011087932844,
    spacing: float = 0.15,
    rotation: float = 0.0,
    normal_angle: float = 0.0,
    offset: float = 0.0,
    min_distance: float = 0.6,
    margin: float = DEFAULT_MARGIN,
) -> Configuration:
    """A symmetric tilt grain boundary: two grains rotated by ``-theta/2`` and ``+theta/2``.

    The boundary is the line ``n . x = offset`` with ``n = (cos normal_angle, sin normal_angle)``;
    grain 1 (``n . x < offset``) is the lattice rotated by ``rotation - theta/2``, grain 2 by
    ``rotation + theta/2`` (both through the origin). Of every pair of atoms closer than
    ``min_distance`` spacings across the boundary, one is removed.

    Parameters
    ----------
    lattice : {"square", "hexagonal"}
    theta : float
        Misorientation (radians). The default ``2 atan(1/3)`` (36.87 deg) is the Sigma5 boundary of
        the square lattice.
    spacing, rotation, margin
        As :func:`divacancy_lattice`.
    normal_angle, offset : float
        Orientation (radians) and position of the boundary line.
    min_distance : float
        Closest allowed approach, in spacings.
    """
    kind = _lattice_kind(lattice)
    a = positive_number(spacing, "spacing")
    theta, rotation = finite_number(theta, "theta"), finite_number(rotation, "rotation")
    n = np.array([np.cos(normal_angle), np.sin(normal_angle)])
    g1 = _filled(kind, a, rotation - theta / 2).positions
    g2 = _filled(kind, a, rotation + theta / 2).positions
    g1, g2 = g1[g1 @ n < offset], g2[g2 @ n >= offset]
    pos = np.vstack([g1, g2])
    keep = _drop_close(pos, positive_number(min_distance, "min_distance") * a)
    cfg = make_phantom(
        pos[keep], "grain-boundary", a, lattice=kind, rotation=rotation, theta=theta,
        normal_angle=float(normal_angle), defects="grain-boundary",
    )
    return _cropped(cfg, "grain-boundary", margin)


# -- random lattices for training --------------------------------------------------------------
def _min_distance(pos):
    if len(pos) < 2:
        return np.inf
    d, _ = cKDTree(pos).query(pos, 2)
    return float(d[:, 1].min())


def _pair_range(value, name):
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise InputError(f"{name} must be a number or a (low, high) pair, got {value}")
    return lo, hi


def random_defect_lattice(
    rng=None,
    *,
    lattices=LATTICES,
    spacing_range=(0.12, 0.2),
    defects=DEFECT_KINDS,
    n_defects=(1, 2),
    jitter_range=(0.0, 0.03),
    margin: float = DEFAULT_MARGIN,
    max_tries: int = 20,
) -> Configuration:
    """A random 2D lattice with random defects in the unit box, for training a learned locator.

    Draws the lattice kind, the spacing (uniform in ``spacing_range``), the rotation, the lattice's
    offset, ``n_defects`` defects among ``defects`` (vacancy, divacancy, interstitial, dislocation,
    grain-boundary; at most one grain boundary) at random places at least three spacings apart,
    and Gaussian jitter of standard deviation ``jitter_range`` (in spacings); then crops to the box
    ``[-0.5, 0.5]^2`` minus ``margin``. Draws again (same ``rng``) when atoms come closer than
    0.6 spacings.

    Parameters
    ----------
    rng : numpy.random.Generator or int or None
        The source of randomness (an integer is a seed).
    lattices : sequence of str
        Lattice kinds to choose from.
    spacing_range, jitter_range : (float, float)
        Ranges of the spacing (absolute) and of the jitter (in spacings).
    defects : sequence of str
        Defect kinds to choose from (empty: a perfect lattice).
    n_defects : int or (int, int)
        Number of defects, or an inclusive range.
    margin : float
        Atoms are kept at least ``margin`` inside the box.
    """
    rng = as_rng(rng)
    kinds = [_lattice_kind(k) for k in ([lattices] if isinstance(lattices, str) else lattices)]
    defects = [defects] if isinstance(defects, str) else list(defects)
    bad = [d for d in defects if d not in DEFECT_KINDS]
    if bad or not kinds:
        raise InputError(f"unknown defect kind {bad[0]!r}; choose among {', '.join(DEFECT_KINDS)}"
                         if bad else "at least one lattice kind is needed")
    s_lo, s_hi = _pair_range(spacing_range, "spacing_range")
    j_lo, j_hi = _pair_range(jitter_range, "jitter_range")
    n_lo, n_hi = _pair_range(n_defects, "n_defects")
    if s_lo <= 0 or j_lo < 0 or n_lo < 0:
        raise InputError("spacing_range must be positive, jitter_range and n_defects non-negative")
    for _ in range(max(1, int(max_tries))):
        cfg = _random_lattice_once(rng, kinds, (s_lo, s_hi), defects, (int(n_lo), int(n_hi)),
                                   (j_lo, j_hi), margin)
        if cfg.n_atoms >= 3 and _min_distance(cfg.positions) >= 0.6 * cfg.info["spacing"]:
            return cfg
    raise InputError("could not draw a valid random lattice; widen the spacing range")


def _random_lattice_once(rng, kinds, spacing_range, defects, n_range, jitter_range, margin):
    kind = kinds[rng.integers(len(kinds))]
    a = rng.uniform(*spacing_range)
    rotation = rng.uniform(0, np.pi / 2 if kind == "square" else np.pi / 3)
    origin = rng.uniform(0, 1, 2) @ lattice_vectors(kind, a, rotation)
    n_chosen = rng.integers(n_range[0], n_range[1] + 1)
    chosen = [defects[i] for i in rng.integers(len(defects), size=n_chosen)] if defects else []
    if chosen.count("grain-boundary") > 1:
        chosen = [d for d in chosen if d != "grain-boundary"] + ["grain-boundary"]
    # Defect centres well inside the box and apart from each other (a few rejection draws).
    inner = 0.5 - margin - a
    centres = []
    for _ in range(50 * max(1, len(chosen))):
        if len(centres) == len(chosen):
            break
        c = rng.uniform(-inner, inner, 2)
        if all(np.linalg.norm(c - o) >= 3 * a for o in centres):
            centres.append(c)
    chosen = chosen[: len(centres)]
    if "grain-boundary" in chosen:
        c = centres[chosen.index("grain-boundary")]
        phi = rng.uniform(0, np.pi)
        n = np.array([np.cos(phi), np.sin(phi)])
        theta = rng.uniform(0.2, 0.8) * (np.pi / 2 if kind == "square" else np.pi / 3)
        g1 = lattice_disc(kind, a, np.sqrt(0.5) + 4 * a, rotation - theta / 2, origin)
        g2 = lattice_disc(kind, a, np.sqrt(0.5) + 4 * a, rotation + theta / 2, origin)
        off = float(c @ n)
        pos = np.vstack([g1[g1 @ n < off], g2[g2 @ n >= off]])
        pos = pos[_drop_close(pos, 0.6 * a)]
    else:
        pos = lattice_disc(kind, a, np.sqrt(0.5) + 4 * a, rotation, origin)
    cfg = make_phantom(pos, "random-lattice", a, lattice=kind, rotation=float(rotation))
    # Dislocations first: their fields displace the point defects' surroundings consistently.
    order = sorted(range(len(chosen)), key=lambda k: chosen[k] != "dislocation")
    for label, c in ((chosen[k], centres[k]) for k in order):
        if label == "dislocation":
            direction = rng.integers(2 if kind == "square" else 3)
            core, b = dislocation_core(kind, a, rotation, c, origin, direction)
            cfg = add_edge_dislocation(cfg, core, b * rng.choice([-1.0, 1.0]), rng.uniform(0.2, 0.4))
        elif label == "vacancy":
            cfg = add_vacancy(cfg, c, relax=VACANCY_RELAX * rng.uniform(0, 2))
        elif label == "divacancy":
            cfg = add_divacancy(cfg, c, rng.normal(size=2), relax=VACANCY_RELAX * rng.uniform(0, 2))
        elif label == "interstitial":
            cfg = add_interstitial(cfg, c, relax=INTERSTITIAL_RELAX * rng.uniform(1, 2))
        else:
            _add_defect_label(cfg.info, label)
    std = rng.uniform(*jitter_range) * a
    cfg.positions = cfg.positions + rng.normal(0, std, cfg.positions.shape)
    cfg.info["jitter"] = float(std)
    cfg.info.setdefault("defects", "")
    return _cropped(cfg, "random-lattice", margin)
