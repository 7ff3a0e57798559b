"""Zone-axis detection from the data (solvers/zone_axes.py), which gates the hull pressure."""

import numpy as np
import pytest

from atomtomo.geometry import Geometry
from atomtomo.phantoms import poster_vacancy, zone_axis_angles
from atomtomo.solvers.problem import Problem
from atomtomo.solvers.zone_axes import along_zone_axes, column_coherence
from atomtomo.tiltseries import simulate_tiltseries


def _problem(truth, degrees, noise=0.01):
    geo = Geometry.from_angles(2, np.radians(degrees), 120, 0.01)
    ts = simulate_tiltseries(truth, geo, 0.02, relative_noise=noise, seed=0,
                             box=truth.info["box"], bond_length=truth.info["bond_length"])
    return Problem.from_tiltseries(ts)


@pytest.mark.parametrize("degrees, expected", [((0.0, 90.0), True), ((0.7, 90.8), True),
                                               ((13.0, 101.0), False), ((26.6, 116.6), False)])
def test_columns_are_seen_along_low_index_rows_only(degrees, expected):
    """The poster's square vacancy lattice: along [10] and [01] (also 1 degree off) every
    projection shows columns; at odd angles, and along [21] (rows 0.45 bond lengths apart,
    outside the band), not."""
    aligned, c = along_zone_axes(_problem(poster_vacancy(), degrees))
    assert aligned == expected, c
    assert c.shape == (2,)
    if expected:
        assert c.min() > 0.9


def test_coherence_of_a_perfect_column_pattern_is_one():
    """Atoms exactly in columns one bond length apart, no noise: C = 1 (the Gaussian and the
    pixel are divided out), whatever the number of atoms per column."""
    a = 0.1
    x = np.array([[i * a, j * a] for i in range(-3, 4) for j in range(-2, 3)])
    from atomtomo.configuration import Configuration

    truth = Configuration(x, ["X"] * len(x), {"X": 1.0},
                          {"box": [[-0.5, 0.5], [-0.5, 0.5]], "bond_length": a})
    problem = _problem(truth, (0.0, 90.0), noise=0.0)
    c = column_coherence(problem.data, problem.model.geometry, problem.sigma, a)
    assert np.allclose(c, 1.0, atol=0.02)


def test_hexagonal_zone_axes_and_3d_or_no_bond_length():
    from atomtomo.phantoms import build_phantom

    hexa = build_phantom("hexagonal", {"radius": 0.42, "spacing": 0.15})
    degrees = np.degrees(zone_axis_angles("hexagonal", 0.0, 2))
    assert along_zone_axes(_problem(hexa, degrees))[0]
    assert not along_zone_axes(_problem(hexa, degrees + 13.0))[0]
    problem = _problem(hexa, degrees)
    problem.bond_length = None
    assert along_zone_axes(problem) == (False, pytest.approx(np.zeros(0)))


def test_the_hull_is_off_by_default_off_the_zone_axes():
    from atomtomo.solvers.global_search import SearchDriver

    off = _problem(poster_vacancy(), (13.0, 101.0))
    driver = SearchDriver(off, alpha="auto")
    assert driver.hull == 0.0 and driver.pairing_applies  # the pairing move stays
    assert SearchDriver(off, alpha="auto", hull=3).hull == 3.0  # asked for: on
    assert SearchDriver(_problem(poster_vacancy(), (0.0, 90.0)), alpha="auto").hull == 3.0


@pytest.mark.parametrize("kind, degrees, expected", [
    ("square", (20.0, 110.0), True),      # [10] and [01]
    ("square", (20.8, 65.0), True),       # [10] 0.8 degrees off and [11]
    ("square", (46.6, 110.0), False),     # [21] (26.6 degrees from [10]): rows 0.45 a apart
    ("hexagonal", (20.0, 50.0), True),    # nearest-neighbour rows and the second family
    ("hexagonal", (20.0, 35.0), False),
])
def test_beams_along_rows_of_a_fitted_lattice(kind, degrees, expected):
    """The zone-axis test on a lattice fitted to the data: each beam within 2 degrees of a row
    of the lattice (a square lattice at 20 degrees, rows along 20 + 90 k and 65 + 90 k
    degrees; a hexagonal one along 20 + 60 k and 50 + 60 k); the beam runs across the
    detector direction."""
    from atomtomo.solvers.lattice_seed import _basis
    from atomtomo.solvers.zone_axes import beams_along_rows

    geo = Geometry.from_angles(2, np.radians(degrees), 64, 0.02)
    assert beams_along_rows(_basis(kind, 0.1, np.radians(20.0)), geo, 0.1) == expected
