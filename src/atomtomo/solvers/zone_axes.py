r"""Do the projections of 2D data run along low-index zone axes? (Atom columns in the data.)

A crystal seen along a low-index lattice row projects its atoms into columns: in the
projection, peaks spaced by the distance ``d`` between neighbouring rows, ``d = a`` (square
[10]), ``0.87 a`` (hexagonal nearest-neighbour rows), ``0.71 a`` (square [11]) or ``a / 2``
(the hexagonal second family), for bond length ``a``. By the projection-slice theorem the 1D
Fourier transform of a projection at frequency ``f`` is the crystal's 2D transform along the
detector direction, which has a Bragg peak of the full weight ``sum_i w_i`` where the detector
runs along a reciprocal lattice vector. So the *column coherence* of projection ``p``,

.. math::

    C = \max_{f \in [1 / 1.15 a,\; 1 / 0.48 a]} \frac{|\hat p(f)|}
        {\hat p(0)\, e^{-2 \pi^2 \sigma^2 f^2}\, \mathrm{sinc}(f \Delta)},

(``sigma`` the atom width, ``Delta`` the pixel; the denominator is what a perfect column
pattern would give, the atoms' Gaussian and the pixel's box taken out), is near 1 along a
low-index zone axis and well below it elsewhere: the line ``f`` misses the low-order Bragg
peaks. Defects lower it (a dislocation's extra half-row to 0.4-0.5 along one beam); rows of
higher index (square [21], ``d = 0.45 a``) fall outside the band.

The thresholds (:data:`ZONE_AXIS_COHERENCE`) were chosen on blind cases with 1 % noise
(``benchmarks/bench_suite.py`` seeds 0-15 and the ``learned`` experiment's ten two-angle cases):
two zone axes, misaligned by up to 1 degree, 32 cases: the smaller of the two values 0.39-1.0,
the larger 0.80-1.08; arbitrary orientations, 8 + 10 cases: the smaller 0.13-0.66, the larger at
most 0.83, and in the three cases where the smaller exceeded 0.35 the larger stayed at or below
0.67. Checked on cases not used for that (suite seeds 16-75, ``learned`` cases 10-59): 58 of 60
zone-axis crops and 60 of 60 blocks pass (the misses: hexagonal crops with a dislocation), 3 of
60 arbitrary-angle cases (one sits on zone axes, 0.97 and 0.97) and 5 of 50 ``learned`` cases
(lattices turned within 3 degrees of a zone axis).
"""

from __future__ import annotations

import numpy as np

#: Band of row spacings searched, in bond lengths.
ROW_SPACINGS = (0.48, 1.15)
#: Both projections show columns when the smaller coherence reaches the first value and the
#: larger the second (the measurements in the module docstring).
ZONE_AXIS_COHERENCE = (0.35, 0.75)


def column_coherence(data, geometry, sigma: float, bond_length: float,
                     n_frequencies: int = 400) -> np.ndarray:
    """Column coherence ``C`` (module docstring) of each projection of 2D data: ``(n_angles,)``.

    Parameters
    ----------
    data : (n_angles, n_pixels) array
    geometry : Geometry
        2D geometry of the data (its pixel centres and pixel size).
    sigma, bond_length : float
        Atom width and bond length, in the data's length unit.
    """
    p = np.asarray(data, dtype=float)
    t = geometry.pixel_centres()
    lo, hi = ROW_SPACINGS
    f = np.linspace(1.0 / (hi * bond_length), 1.0 / (lo * bond_length), int(n_frequencies))
    spectrum = np.abs(p @ np.exp(-2j * np.pi * t[:, None] * f[None, :]))  # (n_angles, n_f)
    perfect = np.exp(-2.0 * np.pi ** 2 * sigma ** 2 * f ** 2) * np.sinc(f * geometry.pixel_size)
    total = p.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.max(spectrum / perfect[None, :], axis=1) / total
    return np.where(total > 0, c, 0.0)


def along_zone_axes(problem) -> tuple[bool, np.ndarray]:
    """Whether every projection of a 2D problem shows atom columns, and the coherences.

    Needs the bond length; without it (or in 3D) the answer is ``False``.
    """
    if problem.ndim != 2 or not problem.bond_length:
        return False, np.zeros(0)
    c = column_coherence(problem.data, problem.model.geometry, problem.sigma,
                         problem.bond_length)
    low, high = ZONE_AXIS_COHERENCE
    return bool(c.min() >= low and c.max() >= high), c


def beams_along_rows(basis, geometry, bond_length: float, tolerance: float = 2.0) -> bool:
    """Whether every beam of a 2D geometry runs within ``tolerance`` degrees of a row of the
    lattice with vectors ``basis`` (columns) whose rows lie at least ``ROW_SPACINGS[0]``
    bond lengths apart: the zone-axis test for a crystal fitted to the data, where the column
    coherence misses it (a dislocation's extra half-row spoils the columns of small crops).
    """
    basis = np.asarray(basis, dtype=float)
    area = abs(np.linalg.det(basis))
    n = np.array([(i, j) for i in range(-3, 4) for j in range(0, 4) if (j > 0 or i > 0)])
    vectors = n @ basis.T  # lattice vectors, each direction once up to sign
    length = np.linalg.norm(vectors, axis=1)
    # rows along a lattice vector v lie area / |v| apart
    wide = area / length >= ROW_SPACINGS[0] * bond_length
    rows = vectors[wide] / length[wide, None]
    detector = np.asarray(geometry.directions, dtype=float)
    beams = np.c_[-detector[:, 1], detector[:, 0]]
    cos = np.abs(beams @ rows.T).max(axis=1)
    return bool(np.all(cos >= np.cos(np.radians(tolerance))))
