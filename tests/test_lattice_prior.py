"""The explicit-lattice prior: a well at every lattice site, added to the pair potential."""

from functools import partial

import numpy as np
from scipy.spatial import cKDTree
import pytest

from atomtomo.errors import InputError
from atomtomo.lattice_prior import LatticeWell, SiteWell, fit_well, strained_sites
from atomtomo.prior import Prior
from atomtomo.potentials import make_potential
from atomtomo.solvers.lattice_seed import _basis, lattice_sites
from gradients import finite_difference  # tests/gradients.py
from killing import killed_then_resumed  # tests/killing.py

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
    pot = Prior(make_potential("lj", SPACING, 2), [hex_well(depth=5.0)])
    x = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX)[:12]
    x = x + np.random.default_rng(2).normal(scale=0.02 * SPACING, size=x.shape)
    e, g = pot.energy_and_gradient(x)
    assert e == pytest.approx(pot.energy(x))
    num = finite_difference(pot, x, h=1e-7)
    assert np.allclose(g, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())


def test_insertion_and_removal_are_exact_energy_changes():
    pot = Prior(make_potential("lj", SPACING, 2), [hex_well(depth=3.0)])
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


def test_strained_well_of_a_perfect_crystal_is_the_lattice_well_around_it():
    well = hex_well()
    crystal = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX * 0.5)
    strained = SiteWell(strained_sites(well, crystal), well)
    near = crystal + np.random.default_rng(4).normal(scale=0.2 * SPACING, size=crystal.shape)
    assert np.allclose(strained.atom_energies(near), well.atom_energies(near))


def test_strained_sites_follow_an_edge_dislocation():
    """One lattice leaves half the atoms around a dislocation more than a well width off its
    sites; the sites the neighbours predict hold all but a few (those at the core)."""
    from atomtomo.phantoms.defects import edge_dislocation_lattice

    atoms = edge_dislocation_lattice("hexagonal", spacing=0.12, rotation=0.3).positions
    start = LatticeWell(_basis("hexagonal", 0.12, 0.3), atoms[np.argmin(np.linalg.norm(atoms, axis=1))],
                        1.0, 0.15 * 0.12)
    lattice = fit_well(start, atoms)
    strained = SiteWell(strained_sites(lattice, atoms), lattice)
    on_site = [np.mean(np.linalg.norm(w.offsets(atoms), axis=1) < 0.15 * 0.12)
               for w in (lattice, strained)]
    assert on_site[0] < 0.7 and on_site[1] > 0.9


@pytest.mark.parametrize("lattice", ["hexagonal", "square"])
def test_affine_strained_sites_follow_the_strain_gradient_near_the_core(lattice):
    """Near a dislocation core the strain changes within one shell; a plane through the
    neighbours' offsets predicts the sites to 0.05 bond lengths for most atoms, a mean does not."""
    from atomtomo.phantoms.defects import edge_dislocation_lattice

    atoms = edge_dislocation_lattice(lattice, spacing=0.12, rotation=0.3).positions
    start = LatticeWell(_basis(lattice, 0.12, 0.3),
                        atoms[np.argmin(np.linalg.norm(atoms, axis=1))], 1.0, 0.15 * 0.12)
    lattice_well = fit_well(start, atoms)
    close = [np.mean(np.linalg.norm(SiteWell(strained_sites(lattice_well, atoms, affine=a),
                                             lattice_well).offsets(atoms), axis=1) < 0.05 * 0.12)
             for a in (False, True)]
    assert close[0] < 0.75 and close[1] > 0.9


def test_affine_strained_sites_of_a_uniformly_strained_crystal_lie_on_it():
    """A crystal stretched by 3 % along one axis: with the fitted gradient the shell sites that
    are merged with an interior atom's own site lie on it too (a plain mean misses by 1e-3)."""
    well = LatticeWell(np.eye(2), (0.0, 0.0), 1.0, 0.15)
    grid = np.stack(np.meshgrid(range(7), range(7)), -1).reshape(-1, 2).astype(float)
    atoms = grid * [1.03, 1.0]
    sites = strained_sites(well, atoms)
    inner = atoms[(grid.min(axis=1) >= 2) & (grid.max(axis=1) <= 4)]
    distance, _ = cKDTree(sites).query(inner)
    assert distance.max() < 1e-4


def test_strained_well_gradient_matches_finite_differences():
    well = hex_well(depth=5.0)
    x = lattice_sites("hexagonal", SPACING, 0.4, np.array([0.03, -0.02]), BOX)[:12]
    rng = np.random.default_rng(5)
    strained = SiteWell(strained_sites(well, x + rng.normal(scale=0.1 * SPACING, size=x.shape)), well)
    pot = Prior(make_potential("lj", SPACING, 2), [strained])
    y = x + rng.normal(scale=0.05 * SPACING, size=x.shape)
    e, g = pot.energy_and_gradient(y)
    assert e == pytest.approx(pot.energy(y))
    num = finite_difference(pot, y, h=1e-7)
    assert np.allclose(g, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())


def test_strained_sites_and_site_well_refuse_bad_input():
    with pytest.raises(InputError, match="strained_sites"):
        strained_sites(hex_well(), np.zeros((0, 2)))
    with pytest.raises(InputError, match="strained_sites"):
        strained_sites(hex_well(), np.zeros((3, 3)))
    with pytest.raises(InputError, match="site well"):
        SiteWell(np.zeros((0, 2)), hex_well())


def _two_angle_crystal(radius=0.25, vacancy=2, detector=90, pixel=1 / 64, noise_seed=1):
    """A hexagonal crystal with a vacancy seen along two zone axes, 1 % noise: problem, truth."""
    from atomtomo import ForwardModel, Geometry
    from atomtomo.solvers.problem import Problem

    theta = np.radians(10.0)
    sites = lattice_sites("hexagonal", SPACING, theta, np.zeros(2), BOX)
    truth = np.delete(sites[np.linalg.norm(sites, axis=1) < radius], vacancy, axis=0)
    geo = Geometry.from_angles(2, [theta + np.pi / 2, theta + np.pi / 2 + np.radians(60.0)],
                               detector, pixel)
    model = ForwardModel(geo, SPACING / 6)
    y = model.project(truth)
    std = 0.01 * y.max()
    y = y + np.random.default_rng(noise_seed).normal(scale=std, size=y.shape)
    return Problem(model, y, BOX, bond_length=SPACING, noise_std=std), truth


def test_reconstruction_with_lattice_prior_reports_the_lattice_and_finds_the_crystal():
    """Two zone axes of a hexagonal crystal with a vacancy: the lattice fitted to the atoms is
    written into the output, and the atoms are recovered. The lattice and strain stages searched
    at the auto search's alpha, so no refine stage repeats them after the alpha ladder."""
    from atomtomo.metrics import match_atoms
    from atomtomo.solvers.adcg import reconstruct_adcg

    problem, truth = _two_angle_crystal(radius=0.33, vacancy=3, detector=110, pixel=1 / 80,
                                        noise_seed=0)
    records = []
    result = reconstruct_adcg(problem, alpha="auto", seed=0, lattice_prior=10, hops=60,
                              callback=records.append)
    phases = [r["phase"] for r in records]
    assert "hop" in phases[phases.index("lattice"):phases.index("strain")]  # the lattice stage
    assert "hop" in phases[phases.index("strain"):phases.index("alpha")]  # the strain stage
    assert "hop" not in phases[phases.index("alpha"):]  # and nothing searched after the ladder
    assert result.info["lattice_prior"].startswith("hexagonal lattice")
    assert result.info["lattice_prior"].endswith("(fitted to the atoms, strained)")
    assert match_atoms(result.configuration, truth, 0.1 * SPACING).f1 >= 0.95


def test_lattice_prior_needs_an_energy_term():
    from atomtomo import ForwardModel, Geometry
    from atomtomo.solvers.adcg import reconstruct_adcg
    from atomtomo.solvers.problem import Problem

    model = ForwardModel(Geometry.from_angles(2, [0.0, 1.0], 64, 1 / 64), 0.02)
    problem = Problem(model, np.zeros(model.geometry.data_shape), BOX, bond_length=SPACING)
    with pytest.raises(InputError, match="lattice_prior"):
        reconstruct_adcg(problem, alpha=0.0, lattice_prior=3)


def test_fit_well_turns_a_lattice_onto_the_atoms_despite_an_interstitial():
    """Started 3 degrees and a fifth of a spacing off, the fit lands on the atoms' lattice; an
    interstitial and a pushed neighbour do not pull it away."""
    theta, shift = np.radians(25.0), np.array([0.013, -0.021])
    sites = lattice_sites("hexagonal", SPACING, theta, shift, BOX)
    atoms = sites[np.linalg.norm(sites - shift, axis=1) < 0.3].copy()
    atoms = np.vstack([atoms, atoms[0] + 0.5 * (atoms[1] - atoms[0]) + [0.0, 0.02]])
    atoms[2] += 0.2 * SPACING
    wrong = np.radians(28.0)
    start = LatticeWell(_basis("hexagonal", SPACING, wrong), shift + [0.2 * SPACING, 0.0], 3.0,
                        0.15 * SPACING)
    fitted = fit_well(start, atoms)
    truth = LatticeWell(_basis("hexagonal", SPACING, theta), shift, 3.0, 0.15 * SPACING)
    on_sites = np.delete(atoms, [2, len(atoms) - 1], axis=0)
    assert np.abs(fitted.offsets(on_sites)).max() < 0.01 * SPACING  # started 0.2-0.25 off
    assert fitted.depth == start.depth and fitted.width == start.width
    assert truth.atom_energies(on_sites).max() < 1e-12


def test_fit_well_refuses_bad_points():
    well = LatticeWell(np.eye(2) * SPACING, (0, 0), 1.0, 0.1)
    with pytest.raises(InputError, match="fit_well"):
        fit_well(well, np.zeros((0, 2)))
    with pytest.raises(InputError, match="fit_well"):
        fit_well(well, np.zeros((4, 3)))


@pytest.mark.parametrize("stage", ["lattice", "strain"])
def test_run_killed_after_the_lattice_fit_resumes_to_the_same_result(tmp_path, stage):
    """The lattice fitted to the atoms, and the strained sites, are part of the checkpoint: a
    run killed in the search that follows either fit resumes under the same well and ends where
    an uninterrupted run ends."""
    from atomtomo.solvers.adcg import reconstruct_adcg

    problem, _ = _two_angle_crystal()
    options = dict(alpha=0.01, seed=2, lattice_prior=3, hops=12, sweeps=2)
    records = []
    full = reconstruct_adcg(problem, callback=records.append, **options)
    assert full.info["lattice_prior"].endswith("(fitted to the atoms, strained)")
    fit = next(r["iteration"] for r in records if r["phase"] == stage)

    resumed = killed_then_resumed(partial(reconstruct_adcg, problem, **options), fit + 2,
                                  tmp_path / "run.ckpt")
    assert np.array_equal(resumed.configuration.positions, full.configuration.positions)
    assert resumed.info["objective"] == full.info["objective"]
    assert resumed.info["lattice_prior"] == full.info["lattice_prior"]
