r"""Test particles for single-axis 3D tomography: multiply twinned and turned single crystals.

Every particle here is placed for a tilt series about ``y`` (spec section 2): the crystal
direction named by ``axis`` (a zone axis of the particle, e.g. a decahedron's five-fold axis)
is turned onto ``y``, so the atoms sit in planes across the tilt axis. Lengths in angstrom.

Multiply twinned particles
--------------------------
A *decahedron* (Ino 1969; Marks 1984) is five fcc tetrahedral domains sharing a common ``<110>``
axis, each bounded by two {111} twin planes; five tetrahedra with {111} dihedral angles
``arccos(1/3) = 70.53 deg`` leave a 7.35 deg gap that the real particle closes by strain. An
*icosahedron* is twenty such domains around a centre (Mackay 1962). Both come from
:mod:`ase.cluster` (``Decahedron(p, q, r)``: ``p`` atoms along the edges of the (100) facets
across the axis, ``q`` along the axis, ``r`` the depth of the Marks re-entrances;
``Icosahedron(noshells)``).

Species
-------
``chemistry`` "single" (all ``species[0]``), "core-shell" (``species[0]`` in the core,
``species[1]`` in the outer ``shell_layers`` layers, counted in neighbour hops from the surface)
or "alloy" (``species`` shuffled over the sites with ``fractions``). Weights are Z contrast,
``w = (Z / Z_max)^1.7`` (:func:`~atomtomo.phantoms.nanoparticles.zcontrast_weights`).

Misalignment
------------
``misalign`` (radians): the particle is turned about a random axis by that angle after being
placed, so its planes are no longer exactly across the tilt axis (a real particle is never
perfectly aligned); :func:`tilt_errors` draws the per-angle errors of a tilt series.
"""

from __future__ import annotations

import numpy as np

from .._checks import positive_number
from ..configuration import Configuration
from ..errors import InputError
from .lattices2d import as_rng, box_for, make_phantom
from .nanoparticles import FCC_SHAPES, _parse_list, fcc_positions, surface_depth, zcontrast_weights

CHEMISTRIES = ("single", "core-shell", "alloy")

#: Crystal directions that can be put on the tilt axis ``y`` (cubic coordinates).
AXES = {"001": (0, 0, 1), "110": (1, 1, 0), "111": (1, 1, 1), "100": (1, 0, 0),
        "010": (0, 1, 0)}


# -- rotations ---------------------------------------------------------------------------------
def rotation_onto(a, b) -> np.ndarray:
    """The proper rotation ``R`` (smallest angle) with ``R a / |a| = b / |b|``."""
    a = np.asarray(a, float) / np.linalg.norm(a)
    b = np.asarray(b, float) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        # a half turn about any axis perpendicular to a
        p = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        p /= np.linalg.norm(p)
        return 2 * np.outer(p, p) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def random_rotation(angle: float, rng) -> np.ndarray:
    """A rotation by ``angle`` (radians) about a uniformly random axis (Rodrigues)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def tilt_errors(n_angles: int, max_error: float, seed=0) -> np.ndarray:
    """Per-angle tilt errors (radians), uniform in ``[-max_error, max_error]``: the angles at
    which a simulated series is projected differ by these from the angles written in its file."""
    max_error = float(max_error)
    if not np.isfinite(max_error) or max_error < 0:
        raise InputError(f"the tilt error must be a non-negative angle, got {max_error}")
    return as_rng(seed).uniform(-max_error, max_error, int(n_angles))


def _place(pos, axis_vector, misalign, rng):
    """Turn ``pos`` so that ``axis_vector`` lies along ``y``, then by ``misalign`` about a
    random axis; centred on the centroid."""
    pos = np.asarray(pos, float) @ rotation_onto(axis_vector, (0, 1, 0)).T
    misalign = float(misalign)
    if not np.isfinite(misalign) or misalign < 0:
        raise InputError(f"misalign must be a non-negative angle, got {misalign}")
    if misalign > 0:
        pos = pos @ random_rotation(misalign, rng).T
    return pos - pos.mean(0)


def _axis(axis) -> np.ndarray:
    key = str(axis).strip().strip("[]<>").replace(",", "").replace(" ", "")
    if key not in AXES:
        raise InputError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    return np.array(AXES[key], float)


def assign_species(pos, bond, chemistry, species, fractions, shell_layers, rng):
    """Species of the atoms at ``pos`` by ``chemistry`` (see the module docstring)."""
    species = _parse_list(species)
    if not species:
        raise InputError("species needs at least one chemical symbol")
    zcontrast_weights(species)  # checks the symbols
    chemistry = str(chemistry).strip().lower()
    n = len(pos)
    if chemistry == "single":
        return np.array([species[0]] * n, dtype=object)
    if chemistry == "core-shell":
        if len(species) != 2:
            raise InputError(f"chemistry core-shell needs two species (core,shell), got {species}")
        layers = int(shell_layers)
        if layers < 0:
            raise InputError(f"shell_layers must be >= 0, got {shell_layers}")
        depth = surface_depth(pos, bond, 12)
        return np.where(depth < layers, species[1], species[0]).astype(object)
    if chemistry == "alloy":
        fractions = np.asarray(_parse_list(fractions, float), float)
        if len(fractions) != len(species):
            raise InputError(f"{len(species)} species for {len(fractions)} fractions")
        if np.any(fractions < 0) or not np.isfinite(fractions).all() or fractions.sum() <= 0:
            raise InputError("fractions must be non-negative numbers with a positive sum")
        target = fractions / fractions.sum() * n
        counts = np.floor(target).astype(int)
        counts[np.argsort(counts - target)[: n - counts.sum()]] += 1
        return rng.permutation(np.repeat(np.array(species, dtype=object), counts))
    raise InputError(f"chemistry must be one of {', '.join(CHEMISTRIES)}, got {chemistry!r}")


def _finish(pos, name, bond, a, labels, species, jitter, rng, **info):
    jitter = float(jitter)
    if not np.isfinite(jitter) or jitter < 0:
        raise InputError(f"jitter must be a non-negative length, got {jitter}")
    if jitter > 0:
        pos = pos + rng.normal(0, jitter, pos.shape)
    pos = pos - pos.mean(0)
    cfg = make_phantom(pos, name, bond, species=np.asarray(labels, dtype=object),
                       species_weights=zcontrast_weights(_parse_list(species)),
                       lattice_constant=float(a), length_unit="angstrom", **info)
    cfg.info["box"] = box_for(pos, bond)
    return cfg


# -- builders ----------------------------------------------------------------------------------
def decahedron(
    p: int = 3,
    q: int = 2,
    r: int = 1,
    lattice_constant: float = 3.92,
    species: tuple[str, ...] = ("Pt",),
    chemistry: str = "single",
    fractions: tuple[float, ...] = (0.5, 0.5),
    shell_layers: int = 1,
    misalign: float = 0.0,
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """A Marks decahedron (five fcc twin domains about a <110> axis) with that axis on ``y``.

    Parameters
    ----------
    p, q, r : int
        ``ase.cluster.Decahedron``'s sizes: atoms along the (100) facets' edges across the axis
        (``p``) and along it (``q``), depth of the Marks re-entrances (``r``; 0: Ino's).
        The defaults give 146 atoms.
    lattice_constant : float
        fcc lattice constant ``a`` (angstrom); bond ``a / sqrt 2``.
    species, chemistry, fractions, shell_layers
        See the module docstring.
    misalign : float
        Rotation (radians; ``0.5deg`` on the command line) about a random axis.
    jitter : float
        Gaussian displacements, angstrom.
    seed : int
        Seed of the alloy's species, the misalignment axis and the jitter.
    """
    from ase.cluster import Decahedron

    a = positive_number(lattice_constant, "lattice_constant")
    for name, v, low in (("p", p, 1), ("q", q, 1), ("r", r, 0)):
        if int(v) != v or v < low:
            raise InputError(f"{name} must be an integer >= {low}, got {v}")
    rng = as_rng(seed)
    atoms = Decahedron("Cu", int(p), int(q), int(r), latticeconstant=a)
    pos = _place(atoms.get_positions(), (0, 0, 1), misalign, rng)  # ase: five-fold axis = z
    bond = a / np.sqrt(2)
    labels = assign_species(pos, bond, chemistry, species, fractions, shell_layers, rng)
    return _finish(pos, "decahedron", bond, a, labels, species, jitter, rng,
                   p=int(p), q=int(q), r=int(r), chemistry=str(chemistry))


def icosahedron(
    shells: int = 4,
    lattice_constant: float = 3.92,
    species: tuple[str, ...] = ("Pt",),
    chemistry: str = "single",
    fractions: tuple[float, ...] = (0.5, 0.5),
    shell_layers: int = 1,
    misalign: float = 0.0,
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """A Mackay icosahedron (twenty fcc twin domains) with a five-fold axis on ``y``.

    Parameters
    ----------
    shells : int
        Number of shells (``ase.cluster.Icosahedron``'s ``noshells``): 55, 147, 309 atoms for
        3, 4, 5.
    lattice_constant, species, chemistry, fractions, shell_layers, misalign, jitter, seed
        As :func:`decahedron`.
    """
    from ase.cluster import Icosahedron

    a = positive_number(lattice_constant, "lattice_constant")
    if int(shells) != shells or shells < 2:
        raise InputError(f"shells must be an integer >= 2, got {shells}")
    rng = as_rng(seed)
    raw = Icosahedron("Cu", int(shells), latticeconstant=a).get_positions()
    raw = raw - raw.mean(0)
    # a five-fold axis runs through a vertex: the atom farthest from the centre
    vertex = raw[np.argmax(np.einsum("ij,ij->i", raw, raw))]
    pos = _place(raw, vertex, misalign, rng)
    bond = a / np.sqrt(2)
    labels = assign_species(pos, bond, chemistry, species, fractions, shell_layers, rng)
    return _finish(pos, "icosahedron", bond, a, labels, species, jitter, rng,
                   shells=int(shells), chemistry=str(chemistry))


def crystal_particle(
    size: int = 3,
    axis: str = "110",
    lattice_constant: float = 3.92,
    shape: str = "cuboctahedron",
    species: tuple[str, ...] = ("Pt",),
    chemistry: str = "single",
    fractions: tuple[float, ...] = (0.5, 0.5),
    shell_layers: int = 1,
    misalign: float = 0.0,
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """A single-crystal fcc particle with the crystal direction ``axis`` on the tilt axis ``y``.

    Parameters
    ----------
    size, shape
        As :func:`~atomtomo.phantoms.nanoparticles.fcc_particle` (147 atoms by default).
    axis : {"001", "110", "111", "100", "010"}
        The zone axis put on ``y``. Planes across [001] are square lattices of the bond length,
        ``a / 2`` apart; across [110] rectangular (``a / sqrt 2`` by ``a``), ``a / (2 sqrt 2)``
        apart in ABAB stacking.
    lattice_constant, species, chemistry, fractions, shell_layers, misalign, jitter, seed
        As :func:`decahedron`.
    """
    a = positive_number(lattice_constant, "lattice_constant")
    if str(shape) not in FCC_SHAPES:
        raise InputError(f"shape must be one of {', '.join(FCC_SHAPES)}, got {shape!r}")
    rng = as_rng(seed)
    pos = _place(fcc_positions(size, a, shape), _axis(axis), misalign, rng)
    bond = a / np.sqrt(2)
    labels = assign_species(pos, bond, chemistry, species, fractions, shell_layers, rng)
    return _finish(pos, "crystal-particle", bond, a, labels, species, jitter, rng,
                   axis=str(axis), shape=str(shape), chemistry=str(chemistry))


def turn_and_crop(config: Configuration, axis=(0, 0, 1), radius: float | None = None,
                  misalign: float = 0.0, seed=0) -> Configuration:
    """``config`` turned so that ``axis`` lies along the tilt axis ``y`` and cropped to the
    atoms within ``radius`` of its centroid (None: all), re-centred, box refitted.

    Used on the measured Pd@Pt decahedron, whose five-fold axis is the file's ``z``.
    """
    rng = as_rng(seed)
    pos = _place(config.positions, axis, misalign, rng)
    keep = np.ones(len(pos), bool)
    if radius is not None:
        radius = positive_number(radius, "radius")
        keep = np.linalg.norm(pos, axis=1) <= radius
        if keep.sum() < 2:
            raise InputError(f"radius {radius:g} holds fewer than two atoms of the particle")
    pos = pos[keep]
    pos = pos - pos.mean(0)
    info = dict(config.info)
    bond = float(info.get("bond_length") or 1.0)
    info["box"] = box_for(pos, bond)
    if radius is not None:
        info["crop_radius"] = float(radius)
    # all of the particle's species weights, even where the crop holds one species only: the
    # data's file lists what may be there, not what is
    species = np.asarray(config.species, dtype=object)[keep]
    return Configuration(pos, species, dict(config.species_weights), info)
