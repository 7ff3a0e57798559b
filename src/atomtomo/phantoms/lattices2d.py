"""Perfect 2D lattices (square, hexagonal), cropping, jitter and zone-axis angles.

Conventions shared by every phantom
-----------------------------------
* A phantom is a :class:`~atomtomo.configuration.Configuration` with ``info`` keys ``"phantom"``
  (its name), ``"spacing"`` (the lattice's nearest-neighbour distance), ``"bond_length"`` (the
  ideal nearest-neighbour distance, equal to ``spacing``: where a pair potential should have its
  minimum) and ``"box"`` (the ``(d, 2)`` list ``[[lo, hi], ...]`` of the reconstruction domain).
* 2D phantoms live in the unit box ``[-0.5, 0.5]^2``; builders that fill the box keep every atom at
  least ``margin`` (default 0.05) inside it, so that the atoms' Gaussians stay on the detector.
* Angles are in radians.
"""

from __future__ import annotations

import numpy as np

from .._checks import finite_number, positive_number
from ..configuration import DEFAULT_SPECIES, Configuration
from ..crystal import rotation_matrix
from ..errors import InputError

#: The 2D phantoms' domain.
UNIT_BOX = ((-0.5, 0.5), (-0.5, 0.5))
#: Default distance of the outermost atoms from the edge of :data:`UNIT_BOX`.
DEFAULT_MARGIN = 0.05
#: Lattice kinds understood by :func:`lattice_vectors`.
LATTICES = ("square", "hexagonal")


# -- checks ------------------------------------------------------------------------------------
def _lattice_kind(lattice) -> str:
    kind = str(lattice).lower()
    if kind in ("hex", "triangular"):
        kind = "hexagonal"
    if kind not in LATTICES:
        raise InputError(f"unknown lattice {lattice!r}; choose one of {', '.join(LATTICES)}")
    return kind


def as_rng(rng) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from a generator, an integer seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# -- building blocks ---------------------------------------------------------------------------
def lattice_vectors(lattice: str, spacing: float, rotation: float = 0.0) -> np.ndarray:
    """Primitive vectors (rows) of a square or hexagonal lattice of nearest-neighbour ``spacing``.

    Square: ``a1 = (a, 0)``, ``a2 = (0, a)``; hexagonal: ``a1 = (a, 0)``,
    ``a2 = (a/2, a sqrt(3)/2)``; both then rotated by ``rotation``.
    """
    kind = _lattice_kind(lattice)
    a = positive_number(spacing, "spacing")
    basis = np.array([[1.0, 0.0], [0.0, 1.0]] if kind == "square" else [[1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    return a * basis @ rotation_matrix(rotation).T


def lattice_disc(lattice, spacing, radius, rotation=0.0, origin=(0.0, 0.0)) -> np.ndarray:
    """All points ``origin + i a1 + j a2`` of a lattice within ``radius`` of the coordinate origin."""
    vecs = lattice_vectors(lattice, spacing, rotation)
    radius = positive_number(radius, "radius")
    origin = np.asarray(origin, dtype=float)
    # The primitive cell of both lattices has height >= a sqrt(3)/2, so this range covers the disc.
    n = int(np.ceil((radius + np.linalg.norm(origin)) / (spacing * np.sqrt(3) / 2))) + 1
    ij = np.stack(np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij"), -1)
    pts = origin + ij.reshape(-1, 2) @ vecs
    return pts[np.einsum("ij,ij->i", pts, pts) <= radius * radius * (1 + 1e-12)]


def lattice_block(lattice, nx, ny, spacing, rotation=0.0) -> np.ndarray:
    """``ny`` rows of ``nx`` atoms, centred on their centroid.

    Square: an ``nx`` by ``ny`` grid. Hexagonal: rows along ``a1`` at height ``a sqrt(3)/2``
    apart, every other row shifted by ``a/2`` (a rectangular patch of the triangular lattice).
    """
    kind = _lattice_kind(lattice)
    a = positive_number(spacing, "spacing")
    nx, ny = int(nx), int(ny)
    if nx < 1 or ny < 1:
        raise InputError(f"nx and ny must be at least 1, got {nx} and {ny}")
    i, j = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="xy")
    if kind == "square":
        pts = np.stack([i.ravel(), j.ravel()], 1) * a
    else:
        pts = np.stack([(i + 0.5 * (j % 2)).ravel(), (j * np.sqrt(3) / 2).ravel()], 1) * a
    pts -= pts.mean(0)
    return pts @ rotation_matrix(rotation).T


def box_for(positions, spacing, margin=DEFAULT_MARGIN) -> list:
    """The phantom's box: the unit box when the atoms lie ``margin`` inside it (2D), else the
    bounding box padded by one ``spacing`` (as a ``(d, 2)`` nested list)."""
    pos = np.asarray(positions, dtype=float)
    d = pos.shape[1]
    if d == 2 and (len(pos) == 0 or np.abs(pos).max() <= 0.5 - margin + 1e-9):
        return [list(b) for b in UNIT_BOX]
    if len(pos) == 0:
        return [[-spacing, spacing]] * d
    lo, hi = pos.min(0) - spacing, pos.max(0) + spacing
    return [[float(a), float(b)] for a, b in zip(lo, hi)]


def make_phantom(positions, name, spacing, *, species=None, species_weights=None, box=None, **info):
    """Wrap positions into a :class:`Configuration` with the standard phantom ``info`` keys."""
    positions = np.asarray(positions, dtype=float)
    spacing = float(spacing)
    if box is None:
        box = box_for(positions, spacing)
    if species is None:
        species = np.full(len(positions), DEFAULT_SPECIES, dtype=object)
    elif isinstance(species, str):
        species = np.full(len(positions), species, dtype=object)
    meta = {"phantom": name, "spacing": spacing, "bond_length": spacing}
    meta["box"] = [[float(lo), float(hi)] for lo, hi in np.asarray(box, dtype=float)]
    meta.update(info)
    return Configuration(positions, species, dict(species_weights or {}), meta)


# -- perfect lattices --------------------------------------------------------------------------
def _lattice(kind, nx, ny, spacing, rotation, radius, margin, species):
    a = positive_number(spacing, "spacing")
    rotation = finite_number(rotation, "rotation")
    if radius is not None:
        pos = lattice_disc(kind, a, radius, rotation)
    elif nx is not None:
        pos = lattice_block(kind, nx, nx if ny is None else ny, a, rotation)
    else:  # fill the unit box, an atom at the centre
        pos = lattice_disc(kind, a, np.sqrt(0.5) + a, rotation)
        pos = pos[inside_box(pos, UNIT_BOX, margin)]
        if len(pos) == 0:
            raise InputError(f"spacing {a} leaves no atom inside the box")
    return make_phantom(pos, kind, a, species=species, lattice=kind, rotation=rotation)


def square_lattice(
    nx: int | None = None,
    ny: int | None = None,
    spacing: float = 0.15,
    rotation: float = 0.0,
    radius: float | None = None,
    margin: float = DEFAULT_MARGIN,
    species: str = DEFAULT_SPECIES,
) -> Configuration:
    """A perfect square lattice.

    Parameters
    ----------
    nx, ny : int, optional
        Atoms per row and number of rows (``ny`` defaults to ``nx``); the block is centred on its
        centroid.
    spacing : float
        Lattice constant (= nearest-neighbour distance).
    rotation : float
        Rotation of the lattice, radians.
    radius : float, optional
        Instead of ``nx``: every lattice point within ``radius`` of an atom at the origin.
    margin : float
        Without ``nx`` and ``radius`` the lattice fills the box ``[-0.5, 0.5]^2`` with every atom at
        least ``margin`` inside it, an atom at the centre.
    species : str
        Species of every atom.
    """
    return _lattice("square", nx, ny, spacing, rotation, radius, margin, species)


def hexagonal_lattice(
    nx: int | None = None,
    ny: int | None = None,
    spacing: float = 0.15,
    rotation: float = 0.0,
    radius: float | None = None,
    margin: float = DEFAULT_MARGIN,
    species: str = DEFAULT_SPECIES,
) -> Configuration:
    """A perfect hexagonal (triangular) lattice; parameters as :func:`square_lattice`.

    With ``nx``, the block has ``ny`` rows of ``nx`` atoms along ``a1``, alternate rows shifted by
    half a spacing.
    """
    return _lattice("hexagonal", nx, ny, spacing, rotation, radius, margin, species)


# -- cropping, jitter --------------------------------------------------------------------------
def inside_box(positions, box, margin=0.0) -> np.ndarray:
    """Boolean mask of the points at least ``margin`` inside ``box`` ((d, 2) lower/upper bounds)."""
    pos = np.asarray(positions, dtype=float)
    box = np.asarray(box, dtype=float)
    if box.shape != (pos.shape[1], 2):
        raise InputError(f"box must have shape ({pos.shape[1]}, 2), got {box.shape}")
    tol = 1e-9
    return np.all((pos >= box[:, 0] + margin - tol) & (pos <= box[:, 1] - margin + tol), axis=1)


def crop(config: Configuration, box=None, *, radius=None, centre=None, margin=0.0) -> Configuration:
    """Keep the atoms inside a box or a disc/ball.

    Parameters
    ----------
    config : Configuration
    box : (d, 2) array_like, optional
        Keep atoms at least ``margin`` inside ``box``. The result's ``info["box"]`` becomes ``box``.
    radius : float, optional
        Keep atoms within ``radius - margin`` of ``centre`` (default the origin).
    """
    if box is None and radius is None:
        raise InputError("crop needs a box or a radius")
    keep = np.ones(config.n_atoms, bool)
    if box is not None:
        keep &= inside_box(config.positions, box, margin)
    if radius is not None:
        c = np.zeros(config.ndim) if centre is None else np.asarray(centre, dtype=float)
        r = np.linalg.norm(config.positions - c, axis=1)
        keep &= r <= positive_number(radius, "radius") - margin + 1e-9
    out = config.subset(keep)
    if box is not None:
        out.info["box"] = [[float(lo), float(hi)] for lo, hi in np.asarray(box, dtype=float)]
    return out


def jitter(config: Configuration, std: float, rng=None) -> Configuration:
    """Thermal jitter: add independent Gaussian displacements of standard deviation ``std``
    (absolute length) to every coordinate. ``rng``: a Generator or seed."""
    std = float(std)
    if not np.isfinite(std) or std < 0:
        raise InputError(f"jitter std must be a non-negative number, got {std}")
    out = config.copy()
    if std > 0:
        out.positions = out.positions + as_rng(rng).normal(0.0, std, out.positions.shape)
    out.info["jitter"] = std
    return out


# -- projection directions ---------------------------------------------------------------------
def zone_axis_angles(lattice: str = "square", rotation: float = 0.0, n: int = 3, dense: bool = True):
    """Tilt angles (radians) at which the lattice's atom columns line up along the beam.

    The angle is the projection angle ``theta`` of the geometry (spec section 2:
    ``s = x cos(theta) + y sin(theta)``), so the beam runs along ``(-sin theta, cos theta)``; the
    angles returned put the beam along lattice rows, densest first, wrapped to ``(-pi/2, pi/2]``.

    Parameters
    ----------
    lattice : {"square", "hexagonal"}
    rotation : float
        Rotation of the lattice (radians), as given to the lattice builders.
    n : int
        How many angles (1 to 3).
    dense : bool
        Hexagonal only: True (default) for the nearest-neighbour rows, ``rotation`` + 30, 90,
        150 deg; False for the second family (rows ``sqrt(3)`` spacings apart), ``rotation`` +
        0, 60, 120 deg. Square: ``rotation`` + 0, 90, 45 deg (the two axes, then the diagonal).
    """
    kind = _lattice_kind(lattice)
    n = int(n)
    if not 1 <= n <= 3:
        raise InputError(f"n must be 1, 2 or 3, got {n}")
    if kind == "square":
        base = [0.0, 90.0, 45.0]
    else:
        base = [30.0, 90.0, 150.0] if dense else [0.0, 60.0, 120.0]
    angles = finite_number(rotation, "rotation") + np.deg2rad(base[:n])
    # (-pi/2, pi/2]: theta and theta + pi give mirror-image projections.
    return np.pi / 2 - np.mod(np.pi / 2 - angles, np.pi)
