"""3D nanoparticles: fcc and bcc clusters with point defects, planar faults and several species.

Particles are cut from the bulk lattice in its cubic orientation (``x, y, z`` along the cube
axes) with :mod:`ase.cluster`, centred on their centroid; lengths in angstrom. Their info has
``spacing`` = ``bond_length`` = the nearest-neighbour distance (``a / sqrt 2`` for fcc,
``a sqrt 3 / 2`` for bcc), ``lattice_constant`` = ``a``, and ``box`` = the bounding box padded by one
bond length, ``length_unit`` = "angstrom".

Species weights (ADF-STEM Z-contrast)
-------------------------------------
The intensity an atom scatters to a high-angle annular dark-field detector grows roughly as
``Z^n`` with ``n`` between 1.5 and 2 (Pennycook & Jesson 1991; Krivanek et al. 2010 measured about
1.7). :func:`zcontrast_weights` therefore sets ``w = (Z / Z_max)^1.7``: the heaviest species of
the particle has weight 1, and the weights' ratios are those of the intensities.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ..configuration import Configuration
from ..errors import InputError
from .defects import (
    INTERSTITIAL_RELAX,
    VACANCY_RELAX,
    _add_defect_label,
    interstitial_sites,
    relax_point_defect,
)
from .._checks import positive_number
from .lattices2d import as_rng, make_phantom

FCC_SHAPES = ("cuboctahedron", "octahedron", "cube", "sphere")
BCC_SHAPES = ("dodecahedron", "cube", "sphere")


# -- species weights ---------------------------------------------------------------------------
def zcontrast_weights(species, exponent: float = 1.7) -> dict:
    """ADF-STEM weights ``w = (Z / Z_max)^exponent`` of chemical species (heaviest -> 1).

    Parameters
    ----------
    species : iterable of str
        Chemical symbols (repeats allowed).
    exponent : float
        Power of the atomic number (1.7 by default, see the module docstring).

    Returns
    -------
    dict
        ``{symbol: weight}`` for each distinct symbol.
    """
    from ase.data import atomic_numbers

    names = list(dict.fromkeys(str(s) for s in ([species] if isinstance(species, str) else species)))
    unknown = [s for s in names if s not in atomic_numbers or atomic_numbers[s] == 0]
    if unknown:
        raise InputError(f"not a chemical symbol: {unknown[0]!r}")
    if not names:
        return {}
    exponent = positive_number(exponent, "exponent")
    z = np.array([atomic_numbers[s] for s in names], dtype=float)
    return {s: float(w) for s, w in zip(names, (z / z.max()) ** exponent)}


# -- clusters ----------------------------------------------------------------------------------
def _size(size):
    if int(size) != size or size < 1:
        raise InputError(f"size must be a positive integer, got {size}")
    return int(size)


def _sphere(structure, radius, a):
    """Lattice points of fcc/bcc (cube axes, an atom at the origin) within ``radius``."""
    n = int(np.ceil(2 * radius / a)) + 1
    r = np.arange(-n, n + 1)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    if structure == "fcc":
        ijk = ijk[ijk.sum(1) % 2 == 0]
    else:  # bcc: all even or all odd
        ijk = ijk[np.all(ijk % 2 == ijk[:, :1] % 2, axis=1)]
    pts = ijk * (a / 2)
    return pts[np.linalg.norm(pts, axis=1) <= radius * (1 + 1e-12)]


def fcc_positions(size: int, lattice_constant: float, shape: str = "cuboctahedron") -> np.ndarray:
    """Atom positions of an fcc cluster in the cubic orientation, centred on the centroid.

    ``shape`` and ``size``: "cuboctahedron" -- {100} and {111} facets, ``size`` layers from the
    centre (ase ``FaceCenteredCubic``; 55, 147, 309, 561 atoms for size 2..5); "octahedron" --
    ase ``Octahedron`` of edge ``2 size + 1`` atoms; "cube" -- {100} facets, ``size`` layers; "sphere"
    -- all sites within ``size`` lattice constants of an atom.
    """
    from ase.cluster import FaceCenteredCubic, Octahedron

    n, a = _size(size), positive_number(lattice_constant, "lattice_constant")
    if shape == "cuboctahedron":
        pos = FaceCenteredCubic("Cu", [(1, 0, 0), (1, 1, 1)], [n, n], latticeconstant=a).positions
    elif shape == "octahedron":
        pos = Octahedron("Cu", 2 * n + 1, 0, latticeconstant=a).positions
    elif shape == "cube":
        pos = FaceCenteredCubic("Cu", [(1, 0, 0)], [n], latticeconstant=a).positions
    elif shape == "sphere":
        pos = _sphere("fcc", n * a, a)
    else:
        raise InputError(f"unknown fcc shape {shape!r}; choose one of {', '.join(FCC_SHAPES)}")
    return np.asarray(pos, float) - np.mean(pos, axis=0)


def bcc_positions(size: int, lattice_constant: float, shape: str = "dodecahedron") -> np.ndarray:
    """Atom positions of a bcc cluster, centred: "dodecahedron" -- {100} and {110} facets (ase
    ``BodyCenteredCubic``, ``size`` layers: 35, 91, 189 atoms for 2..4); "cube"; "sphere"."""
    from ase.cluster import BodyCenteredCubic

    n, a = _size(size), positive_number(lattice_constant, "lattice_constant")
    if shape == "dodecahedron":
        pos = BodyCenteredCubic("Fe", [(1, 0, 0), (1, 1, 0)], [n, n], latticeconstant=a).positions
    elif shape == "cube":
        pos = BodyCenteredCubic("Fe", [(1, 0, 0)], [n], latticeconstant=a).positions
    elif shape == "sphere":
        pos = _sphere("bcc", n * a, a)
    else:
        raise InputError(f"unknown bcc shape {shape!r}; choose one of {', '.join(BCC_SHAPES)}")
    return np.asarray(pos, float) - np.mean(pos, axis=0)


def coordination(positions, bond_length, factor=1.2) -> np.ndarray:
    """Number of neighbours within ``factor * bond_length`` of each atom."""
    tree = cKDTree(positions)
    return np.asarray([len(x) - 1 for x in tree.query_ball_point(positions, factor * bond_length)])


def surface_depth(positions, bond_length, full_coordination) -> np.ndarray:
    """Depth of each atom below the surface in neighbour hops (0 = a surface atom, one with fewer
    than ``full_coordination`` neighbours)."""
    pos = np.asarray(positions, float)
    surface = np.flatnonzero(coordination(pos, bond_length) < full_coordination)
    if len(surface) == 0:
        return np.full(len(pos), np.inf)
    pairs = cKDTree(pos).query_pairs(1.2 * bond_length, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pos),) * 2)
    return dijkstra(graph.tocsr(), directed=False, indices=surface, unweighted=True, min_only=True)


def _particle(pos, name, species, bond, a, weights=None, **info):
    species = np.asarray(species, dtype=object)
    if weights is None:
        weights = zcontrast_weights(species.tolist())
    return make_phantom(pos, name, bond, species=species, species_weights=weights,
                        lattice_constant=float(a), length_unit="angstrom", **info)


# -- point defects in particles ----------------------------------------------------------------
def _spread_choice(rng, candidates, pos, n, min_dist):
    """Up to ``n`` random candidate indices at least ``min_dist`` apart."""
    chosen = []
    for i in rng.permutation(candidates):  # stops after n picks
        if all(np.linalg.norm(pos[i] - pos[j]) >= min_dist for j in chosen):
            chosen.append(i)
            if len(chosen) == n:
                break
    return np.asarray(chosen, dtype=int)


def add_particle_vacancies(config, n, rng=None, *, full_coordination=12, relax=VACANCY_RELAX):
    """Remove ``n`` random fully coordinated (interior) atoms, at least two bonds apart, and relax
    their neighbours."""
    n = int(n)
    if n <= 0:
        return config
    bond = config.info["bond_length"]
    pos = config.positions
    interior = np.flatnonzero(coordination(pos, bond) >= full_coordination)
    chosen = _spread_choice(as_rng(rng), interior, pos, n, 2 * bond)
    if len(chosen) < n:
        raise InputError(f"the particle has room for only {len(chosen)} separate vacancies")
    keep = np.ones(len(pos), bool)
    keep[chosen] = False
    out = config.subset(keep)
    for site in pos[chosen]:  # a few defects
        out.positions = relax_point_defect(out.positions, site, relax, bond)
    out.info["n_vacancies"] = n
    _add_defect_label(out.info, "vacancy")
    return out


def add_particle_interstitials(config, n, rng=None, *, species=None, relax=INTERSTITIAL_RELAX):
    """Insert ``n`` atoms at random interior interstitial sites (octahedral in fcc, tetrahedral in
    bcc; :func:`~atomtomo.phantoms.defects.interstitial_sites`), at least two bonds apart, and
    relax their neighbours outward. ``species`` defaults to the particle's most common one."""
    n = int(n)
    if n <= 0:
        return config
    bond = config.info["bond_length"]
    sites = interstitial_sites(config.positions, bond, depth=1.0)
    chosen = sites[_spread_choice(as_rng(rng), np.arange(len(sites)), sites, n, 2 * bond)]
    if len(chosen) < n:
        raise InputError(f"the particle has room for only {len(chosen)} separate interstitials")
    if species is None:
        names, counts = np.unique(config.species.astype(str), return_counts=True)
        species = names[np.argmax(counts)]
    pos = config.positions
    for site in chosen:
        pos = relax_point_defect(pos, site, relax, bond)
    out = Configuration(
        np.vstack([pos, chosen]),
        np.append(config.species, [str(species)] * n).astype(object),
        dict(config.species_weights),
        dict(config.info),
    )
    if str(species) not in out.species_weights:
        out.species_weights = zcontrast_weights(out.species.tolist())
    out.info["n_interstitials"] = n
    _add_defect_label(out.info, "interstitial")
    return out


def _defects_and_jitter(cfg, n_vacancies, n_interstitials, jitter, rng, full):
    cfg = add_particle_vacancies(cfg, n_vacancies, rng, full_coordination=full)
    cfg = add_particle_interstitials(cfg, n_interstitials, rng)
    jitter = float(jitter)
    if jitter < 0 or not np.isfinite(jitter):
        raise InputError(f"jitter must be a non-negative length, got {jitter}")
    if jitter > 0:
        cfg.positions = cfg.positions + rng.normal(0, jitter, cfg.positions.shape)
        cfg.info["jitter"] = jitter
    cfg.positions = cfg.positions - cfg.positions.mean(0)
    from .lattices2d import box_for

    cfg.info["box"] = box_for(cfg.positions, cfg.info["bond_length"])
    return cfg


# -- particle builders -------------------------------------------------------------------------
def fcc_particle(
    size: int = 3,
    lattice_constant: float = 3.92,
    species: str = "Pt",
    shape: str = "cuboctahedron",
    n_vacancies: int = 0,
    n_interstitials: int = 0,
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """An fcc nanoparticle (default: a 147-atom Pt cuboctahedron).

    Parameters
    ----------
    size : int
        Size in layers from the centre (see :func:`fcc_positions`).
    lattice_constant : float
        Cubic lattice constant ``a`` in angstrom (Pt 3.92, Pd 3.89, Au 4.08).
    species : str
        Chemical symbol of the atoms.
    shape : {"cuboctahedron", "octahedron", "cube", "sphere"}
    n_vacancies, n_interstitials : int
        Point defects at random interior sites (interstitials at octahedral sites), relaxed.
    jitter : float
        Standard deviation of Gaussian thermal displacements, angstrom.
    seed : int
        Seed of the defects' sites and of the jitter.
    """
    a = positive_number(lattice_constant, "lattice_constant")
    bond = a / np.sqrt(2)
    pos = fcc_positions(size, a, shape)
    cfg = _particle(pos, "fcc-particle", [str(species)] * len(pos), bond, a, shape=shape)
    return _defects_and_jitter(cfg, n_vacancies, n_interstitials, jitter, as_rng(seed), 12)


def bcc_particle(
    size: int = 3,
    lattice_constant: float = 3.165,
    species: str = "W",
    shape: str = "dodecahedron",
    n_vacancies: int = 0,
    n_interstitials: int = 0,
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """A bcc nanoparticle (default: a 91-atom W particle with {100} and {110} facets).

    Parameters as :func:`fcc_particle`; ``shape`` in {"dodecahedron", "cube", "sphere"}; the
    interstitials go to tetrahedral sites, the largest holes of bcc.
    """
    a = positive_number(lattice_constant, "lattice_constant")
    bond = a * np.sqrt(3) / 2
    pos = bcc_positions(size, a, shape)
    cfg = _particle(pos, "bcc-particle", [str(species)] * len(pos), bond, a, shape=shape)
    return _defects_and_jitter(cfg, n_vacancies, n_interstitials, jitter, as_rng(seed), 8)


def core_shell_particle(
    size: int = 3,
    lattice_constant: float = 3.9,
    core: str = "Pd",
    shell: str = "Pt",
    shell_layers: int = 1,
    shape: str = "cuboctahedron",
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """An fcc core-shell particle (default Pd@Pt, like the measured AET particle).

    Parameters
    ----------
    size, lattice_constant, shape, jitter, seed
        As :func:`fcc_particle`.
    core, shell : str
        Chemical symbols of the core and of the shell.
    shell_layers : int
        Thickness of the shell in atomic layers (neighbour hops from the surface).
    """
    a = positive_number(lattice_constant, "lattice_constant")
    bond = a / np.sqrt(2)
    pos = fcc_positions(size, a, shape)
    layers = int(shell_layers)
    if layers < 0:
        raise InputError(f"shell_layers must be >= 0, got {shell_layers}")
    depth = surface_depth(pos, bond, 12)
    species = np.where(depth < layers, str(shell), str(core)).astype(object)
    cfg = _particle(pos, "core-shell", species, bond, a, shape=shape, shell_layers=layers)
    return _defects_and_jitter(cfg, 0, 0, jitter, as_rng(seed), 12)


def _parse_list(value, kind=str):
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    return [kind(v.strip() if isinstance(v, str) else v) for v in value]


def alloy_particle(
    size: int = 3,
    lattice_constant: float = 3.9,
    species: tuple[str, ...] = ("Pt", "Pd"),
    fractions: tuple[float, ...] = (0.5, 0.5),
    shape: str = "cuboctahedron",
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """A random fcc alloy particle: species shuffled over the sites with the given fractions.

    Parameters
    ----------
    species : sequence of str
        Chemical symbols.
    fractions : sequence of float
        Their fractions (normalised to sum 1); the counts are rounded to whole atoms by largest
        remainder, so they add up to the particle's size exactly.
    size, lattice_constant, shape, jitter, seed
        As :func:`fcc_particle`; ``seed`` also shuffles the species.
    """
    species = _parse_list(species)
    fractions = np.asarray(_parse_list(fractions, float), dtype=float)
    if len(species) != len(fractions) or not species:
        raise InputError(f"{len(species)} species for {len(fractions)} fractions")
    if np.any(fractions < 0) or not np.isfinite(fractions).all() or fractions.sum() <= 0:
        raise InputError("fractions must be non-negative numbers with a positive sum")
    a = positive_number(lattice_constant, "lattice_constant")
    bond = a / np.sqrt(2)
    pos = fcc_positions(size, a, shape)
    target = fractions / fractions.sum() * len(pos)
    counts = np.floor(target).astype(int)
    counts[np.argsort(counts - target)[: len(pos) - counts.sum()]] += 1
    rng = as_rng(seed)
    labels = rng.permutation(np.repeat(np.array(species, dtype=object), counts))
    cfg = _particle(pos, "alloy-particle", labels, bond, a, shape=shape,
                    weights=zcontrast_weights(species))
    return _defects_and_jitter(cfg, 0, 0, jitter, rng, 12)


# -- planar faults -----------------------------------------------------------------------------
def planar_fault(positions, lattice_constant, kind="twin", normal=(1, 1, 1), offset=0):
    """Put a twin plane or an intrinsic stacking fault on a {111} plane of an fcc crystal.

    The crystal must be in the cubic orientation. The (111) layers are ``d = a / sqrt 3`` apart and
    consecutive layers are shifted laterally by the Shockley partial ``t = a/6 <11-2>`` (ABC
    stacking). Number the layers ``m`` from the fault plane (``m = 0``: the layer ``offset`` layers
    above the one nearest the centroid). An intrinsic stacking fault shifts every layer ``m >= 1``
    by ``t`` (ABC|ABC -> ABC|ABC with one layer missing from the sequence); a twin shifts layer
    ``m`` by ``m t`` (reduced modulo the lattice to ``0, t, -t``), which mirrors the stacking about
    layer 0 (ABCABC -> ABCBAC). Atom counts are unchanged; the atoms above the plane move by at
    most ``|t| = a / sqrt 6``.

    Parameters
    ----------
    positions : (n, 3) array_like
    lattice_constant : float
    kind : {"twin", "stacking-fault"}
    normal : (3,) array_like
        A <111> direction (signs free).
    offset : int
        Layers between the fault plane and the central layer.
    """
    pos = np.asarray(positions, float)
    a = positive_number(lattice_constant, "lattice_constant")
    n = np.asarray(_parse_list(normal, float), float)
    if n.shape != (3,) or not np.allclose(np.abs(n), np.abs(n[0])) or n[0] == 0:
        raise InputError(f"normal must be a <111> direction like (1,1,1), got {normal}")
    n = n / np.linalg.norm(n)
    d = a / np.sqrt(3)
    # A nearest-neighbour vector a/2 <110> that climbs one layer; its in-plane part is t.
    nn = (a / 2) * np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], float) * np.sign(n)
    v = nn[np.argmin(np.abs(nn @ n - d))]
    t = v - (v @ n) * n
    h = pos @ n
    centre = np.argmin(np.linalg.norm(pos - pos.mean(0), axis=1))
    m = np.round((h - h[centre]) / d).astype(int) - int(offset)
    if kind == "twin":
        steps = np.where(m >= 1, np.mod(m + 1, 3) - 1, 0)
    elif kind == "stacking-fault":
        steps = (m >= 1).astype(int)
    else:
        raise InputError(f"unknown planar fault {kind!r}; choose twin or stacking-fault")
    return pos + steps[:, None] * t


def twin_particle(
    size: int = 4,
    lattice_constant: float = 3.92,
    species: str = "Pt",
    kind: str = "twin",
    offset: int = 0,
    normal: tuple[float, ...] = (1.0, 1.0, 1.0),
    shape: str = "cuboctahedron",
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """An fcc particle with a twin plane or a stacking fault (default: a 309-atom Pt
    cuboctahedron twinned on the central (111) plane).

    Parameters
    ----------
    kind : {"twin", "stacking-fault"}
    offset : int
        The fault plane's distance from the central layer, in (111) layers.
    normal : sequence of 3 float
        The {111} plane's normal.
    size, lattice_constant, species, shape, jitter, seed
        As :func:`fcc_particle`.
    """
    a = positive_number(lattice_constant, "lattice_constant")
    bond = a / np.sqrt(2)
    pos = planar_fault(fcc_positions(size, a, shape), a, kind, normal, offset)
    cfg = _particle(pos, "twin-particle", [str(species)] * len(pos), bond, a, shape=shape,
                    defects=str(kind), fault_offset=int(offset))
    return _defects_and_jitter(cfg, 0, 0, jitter, as_rng(seed), 12)
