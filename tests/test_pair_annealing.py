"""Annealing over the pairings of two projections' coordinates (solvers/pair_annealing.py)."""

import numpy as np
import pytest

from atomtomo.hull_prior import HullPressure
from atomtomo.lattice_prior import LatticeWell, SiteWell, strained_sites
from atomtomo.prior import Prior
from atomtomo.potentials import make_potential
from atomtomo.solvers import pair_annealing
from atomtomo.solvers.pair_annealing import anneal_pairing

BOX = np.array([[-0.5, 0.5], [-0.5, 0.5]])


def _directions(*degrees):
    t = np.radians(degrees)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _hexagonal_block(a=0.12, n=5):
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = np.stack([i + 0.5 * j, np.sqrt(3) / 2 * j], -1).reshape(-1, 2) * a
    return x - x.mean(axis=0)


def _hexagonal_well(a=0.12, beta=3.0):
    """A lattice well on the sites of :func:`_hexagonal_block` (the same basis and origin)."""
    basis = a * np.array([[1.0, 0.5], [0.0, np.sqrt(3) / 2]])
    origin = _hexagonal_block(a)[0]  # a site of the block
    return LatticeWell(basis, origin, beta, 0.15 * a)


def _scramble(x, m, rng, k):
    """Exchange the second coordinate of k random pairs of atoms (same projections)."""
    u, v = x @ m[0], x @ m[1]
    for _ in range(k):
        i, j = rng.choice(len(x), 2, replace=False)
        v[[i, j]] = v[[j, i]]
    return np.stack([u, v], 1) @ np.linalg.inv(m).T


def test_projections_are_kept_and_the_energy_change_is_exact():
    rng = np.random.default_rng(1)
    lj = make_potential("lj", 0.12, 2)
    m = _directions(20, 95)
    x = _scramble(_hexagonal_block(), m, rng, 6)
    y, change = anneal_pairing(x, m, lj, BOX, np.random.default_rng(0))
    for d in m:  # both projections are the same multisets: the data cannot tell them apart
        assert np.allclose(np.sort(y @ d), np.sort(x @ d), atol=1e-12)
    assert change <= 0
    assert change == pytest.approx(lj.energy(y) - lj.energy(x), abs=1e-3 * abs(lj.energy(x)))
    assert np.all((y >= BOX[:, 0]) & (y <= BOX[:, 1]))


def test_scrambled_crystal_is_paired_back():
    """A zone-axis hexagonal block whose pairings were scrambled comes back whole."""
    lj = make_potential("lj", 0.12, 2)
    m = _directions(0, 60 + 90)  # detectors normal to two row directions of the lattice
    truth = _hexagonal_block()
    x = _scramble(truth, m, np.random.default_rng(3), 8)
    assert lj.energy(x) > lj.energy(truth) + 5
    y, _ = anneal_pairing(x, m, lj, BOX, np.random.default_rng(0))
    d = np.linalg.norm(y[:, None] - truth[None], axis=-1).min(axis=1)
    assert np.all(d < 1e-9)
    assert lj.energy(y) == pytest.approx(lj.energy(truth))


def test_same_seed_same_result_and_species_are_kept_apart():
    lj = make_potential("lj", 0.12, 2)
    m = _directions(10, 100)
    x = _scramble(_hexagonal_block(), m, np.random.default_rng(4), 6)
    a = anneal_pairing(x, m, lj, BOX, np.random.default_rng(7), steps=500)
    b = anneal_pairing(x, m, lj, BOX, np.random.default_rng(7), steps=500)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    # every atom its own species: no partner, nothing moves
    y, change = anneal_pairing(x, m, lj, BOX, np.random.default_rng(7), steps=500,
                               species=np.arange(len(x)))
    assert np.array_equal(y, x) and change == 0


def test_hull_pressure_is_part_of_the_swap_energy():
    """With a hull pressure the change is pair energy plus pressure times the hull's area
    change, and a scattered atom is paired back into the crystal."""
    lj = make_potential("lj", 0.12, 2)
    prior = Prior(lj, [HullPressure.in_bonds(3.0, lj)])
    m = _directions(20, 95)
    x = _scramble(_hexagonal_block(), m, np.random.default_rng(1), 6)
    y, change = anneal_pairing(x, m, prior, BOX, np.random.default_rng(0))
    for d in m:
        assert np.allclose(np.sort(y @ d), np.sort(x @ d), atol=1e-12)
    assert change < 0
    assert change == pytest.approx(prior.energy(y) - prior.energy(x), abs=1e-3 * abs(lj.energy(x)))


def _strained_well():
    well = _hexagonal_well()
    return SiteWell(strained_sites(well, _hexagonal_block()), well)


@pytest.mark.parametrize("make_well", [_hexagonal_well, _strained_well], ids=["lattice", "strained"])
def test_lattice_well_is_part_of_the_swap_energy(make_well):
    """With a lattice well, plain or strained (and a hull), the change also holds the well's
    one-body change."""
    lj = make_potential("lj", 0.12, 2)
    well = make_well()
    assert np.allclose(well.atom_energies(_hexagonal_block()), 0.0, atol=1e-12)
    prior = Prior(lj, [well, HullPressure.in_bonds(3.0, lj)])
    m = _directions(20, 95)
    x = _scramble(_hexagonal_block(), m, np.random.default_rng(1), 6)
    y, change = anneal_pairing(x, m, prior, BOX, np.random.default_rng(0))
    assert change < 0
    assert change == pytest.approx(prior.energy(y) - prior.energy(x), abs=1e-3 * abs(lj.energy(x)))


@pytest.mark.skipif(not pair_annealing.COMPILED, reason="numba not installed")
@pytest.mark.parametrize("hull", [0.0, 3.0, "well", "strained"])
@pytest.mark.parametrize("fallback", ["scalar loops in Python", "array version"])
def test_compiled_kernel_matches_the_uncompiled_versions(monkeypatch, fallback, hull):
    lj = make_potential("lj", 0.12, 2)
    if hull in ("well", "strained"):
        well = _hexagonal_well() if hull == "well" else _strained_well()
        lj = Prior(lj, [well, HullPressure.in_bonds(3.0, lj)])
    elif hull:
        lj = Prior(lj, [HullPressure.in_bonds(hull, lj)])
    m = _directions(10, 100)
    x = _scramble(_hexagonal_block(), m, np.random.default_rng(5), 6)
    compiled = anneal_pairing(x, m, lj, BOX, np.random.default_rng(2), steps=300)
    slow = pair_annealing._anneal.py_func if fallback.startswith("scalar") else pair_annealing._anneal_numpy
    monkeypatch.setattr(pair_annealing, "_anneal", slow)
    plain = anneal_pairing(x, m, lj, BOX, np.random.default_rng(2), steps=300)
    assert np.array_equal(compiled[0], plain[0])
    assert compiled[1] == pytest.approx(plain[1], abs=1e-9)
