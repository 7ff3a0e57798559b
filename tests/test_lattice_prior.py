"""The explicit-lattice prior: a well at every lattice site, added to the pair potential."""

import numpy as np
import pytest

from atomtomo.errors import InputError
from atomtomo.lattice_prior import LatticeWell, WithLatticeWell
from atomtomo.potentials import make_potential
from atomtomo.solvers.lattice_seed import _basis, lattice_sites
from gradients import finite_difference  # tests/gradients.py

SPACING = 0.15
BOX = np.array([[-0.5, 0.5], [-0.5, 0.5]])


def hex_well(depth=2.0, theta=0.4, origin=(0.03, -0.02)):
    return LatticeWell(_basis("hexagonal", SPACING, theta), origin, depth, 0.15 * SPACING)


def test_nearest_site_matches_brute_force():
    well = hex_well()
    sites = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX * 1.6)
    points = np.random.default_rng(0).uniform(-0.4, 0.4, (500, 2))
    brute = points - sites[np.argmin(((points[:, None] - sites[None]) ** 2).sum(-1), axis=1)]
    assert np.allclose(well.offsets(points), brute)


def test_well_is_zero_on_sites_and_bounded_by_its_depth():
    well = hex_well(depth=2.0)
    sites = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX)
    assert np.allclose(well.atom_energies(sites), 0.0, atol=1e-12)
    far = np.random.default_rng(1).uniform(-0.4, 0.4, (200, 2))
    assert np.all(well.atom_energies(far) <= 2.0 + 1e-12)


def test_gradient_matches_finite_differences():
    pot = WithLatticeWell(make_potential("lj", SPACING, 2), hex_well(depth=5.0))
    x = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX)[:12]
    x = x + np.random.default_rng(2).normal(scale=0.02 * SPACING, size=x.shape)
    e, g = pot.energy_and_gradient(x)
    assert e == pytest.approx(pot.energy(x))
    num = finite_difference(pot, x, h=1e-7)
    assert np.allclose(g, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())


def test_insertion_and_removal_are_exact_energy_changes():
    pot = WithLatticeWell(make_potential("lj", SPACING, 2), hex_well(depth=3.0))
    x = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX)[:15] + 0.004
    c = np.random.default_rng(3).uniform(-0.3, 0.3, (6, 2))
    e0 = pot.energy(x)
    ins = pot.insertion_energy(x, c)
    assert np.allclose(ins, [pot.energy(np.vstack([x, ci])) - e0 for ci in c])
    rem = pot.removal_energy(x)
    assert np.allclose(rem, [pot.energy(np.delete(x, i, axis=0)) - e0 for i in range(len(x))])
    assert pot.epsilon == make_potential("lj", SPACING, 2).epsilon  # alpha keeps its meaning


def test_degenerate_basis_is_an_input_error():
    with pytest.raises(InputError, match="independent"):
        LatticeWell([[1.0, 2.0], [0.5, 1.0]], (0, 0), 1.0, 0.1)


def test_reconstruction_with_lattice_prior_reports_the_lattice_and_finds_the_crystal():
    """Two zone axes of a hexagonal crystal with a vacancy: the fitted lattice is written into
    the output, and the atoms are recovered."""
    from atomtomo import ForwardModel, Geometry
    from atomtomo.metrics import match_atoms
    from atomtomo.solvers.adcg import reconstruct_adcg
    from atomtomo.solvers.problem import Problem

    theta = np.radians(10.0)
    sites = lattice_sites("hexagonal", SPACING, theta, np.zeros(2), BOX)
    truth = np.delete(sites[np.linalg.norm(sites, axis=1) < 0.33], 3, axis=0)
    geo = Geometry.from_angles(2, [theta + np.pi / 2, theta + np.pi / 2 + np.radians(60.0)],
                               110, 1 / 80)
    model = ForwardModel(geo, SPACING / 6)
    y = model.project(truth)
    std = 0.01 * y.max()
    y = y + np.random.default_rng(0).normal(scale=std, size=y.shape)
    problem = Problem(model, y, BOX, bond_length=SPACING, noise_std=std)
    result = reconstruct_adcg(problem, alpha="auto", seed=0, lattice_prior=10, hops=60)
    assert result.info["lattice_prior"].startswith("hexagonal lattice")
    assert match_atoms(result.configuration, truth, 0.1 * SPACING).f1 >= 0.95


def test_lattice_prior_needs_an_energy_term():
    from atomtomo import ForwardModel, Geometry
    from atomtomo.solvers.adcg import reconstruct_adcg
    from atomtomo.solvers.problem import Problem

    model = ForwardModel(Geometry.from_angles(2, [0.0, 1.0], 64, 1 / 64), 0.02)
    problem = Problem(model, np.zeros(model.geometry.data_shape), BOX, bond_length=SPACING)
    with pytest.raises(InputError, match="lattice_prior"):
        reconstruct_adcg(problem, alpha=0.0, lattice_prior=3)
