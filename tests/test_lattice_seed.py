"""Lattice-aware starts of the grid-free solver: lattice fit, greedy and annealed occupation."""

import numpy as np
import pytest

from atomtomo import ForwardModel, Geometry
from atomtomo.metrics import match_atoms
from atomtomo.potentials import make_potential
from atomtomo.solvers.grid_annealing import SiteAnnealer, site_neighbours
from atomtomo.solvers.lattice_seed import (_greedy_misfit_numpy, fit_lattice, greedy_misfit,
                                           lattice_seeds, lattice_sites)
from atomtomo.solvers.objective import AtomObjective
from atomtomo.solvers.problem import Problem

SPACING = 0.15
BOX = np.array([[-0.5, 0.5], [-0.5, 0.5]])


def crystal(kind="square", theta_deg=23.0, vacancies=2, seed=0):
    """A lattice disc at an odd orientation with a few vacancies."""
    from atomtomo.solvers.lattice_seed import _basis

    sites = lattice_sites(kind, SPACING, np.radians(theta_deg), _basis(kind, SPACING, 0) @ [0.3, 0.6],
                          BOX)
    sites = sites[np.linalg.norm(sites, axis=1) < 0.42]
    rng = np.random.default_rng(seed)
    inner = np.flatnonzero(np.linalg.norm(sites, axis=1) < 0.25)
    return np.delete(sites, rng.choice(inner, vacancies, replace=False), axis=0)


def problem_for(truth, angles_deg, noise=0.01, seed=0):
    geo = Geometry.from_angles(2, np.radians(angles_deg), 110, 1 / 80)
    model = ForwardModel(geo, SPACING / 6)
    y = model.project(truth)
    std = noise * y.max()
    y = y + np.random.default_rng(seed).normal(scale=std, size=y.shape)
    return Problem(model, y, BOX, bond_length=SPACING, noise_std=std)


@pytest.mark.parametrize("kind, theta", [("square", 23.0), ("hexagonal", 41.0)])
def test_fit_lattice_finds_orientation_at_three_arbitrary_angles(kind, theta):
    truth = crystal(kind, theta)
    problem = problem_for(truth, [17.0, 71.0, 133.0])
    objective = AtomObjective(problem, make_potential("lj", SPACING, 2), 0.0)
    fits = fit_lattice(objective, SPACING, refine=2)
    misfit, best_kind, best_theta, _ = fits[0]
    period = 90.0 if kind == "square" else 60.0
    gap = abs((np.degrees(best_theta) - theta + period / 2) % period - period / 2)
    assert best_kind == kind
    assert gap < 0.5
    other = min(m for m, k, _, _ in fits if k != kind)
    assert misfit < 0.25 * other  # the right lattice explains the data far better


def test_lattice_seed_recovers_crystal_with_vacancies():
    truth = crystal("square", 23.0, vacancies=2)
    problem = problem_for(truth, [17.0, 71.0, 133.0])
    objective = AtomObjective(problem, make_potential("lj", SPACING, 2), 0.01)
    state, info = lattice_seeds(objective, SPACING, per_kind=1, count=1, rng=0)[0]
    assert info["label"].startswith("square lattice")
    found = objective.configuration(state)
    assert match_atoms(found, truth, 0.1 * SPACING).f1 == 1.0


def test_greedy_misfit_compiled_matches_reference():
    truth = crystal("hexagonal", 41.0)
    problem = problem_for(truth, [0.0, 60.0, 120.0])
    objective = AtomObjective(problem, make_potential("none", SPACING, 2), 0.0)
    sites = lattice_sites("hexagonal", SPACING, np.radians(41.5), np.zeros(2), BOX)
    misfit, species = greedy_misfit(objective, sites)
    geo = problem.geometry
    idx, val = problem.model._window(geo.detector_coordinates(sites), geo.detector_shape[0])
    ref_misfit, ref_species = _greedy_misfit_numpy(
        -problem.data, idx, val, np.einsum("amk,amk->m", val, val), np.array([1.0]),
        1e-3 * objective.atom_energy)
    assert misfit == pytest.approx(ref_misfit, rel=1e-9)
    assert np.array_equal(species, ref_species)


def test_site_annealer_bond_term_prefers_compact_occupations():
    """Two rows of 3 sites seen along the columns: the data say one atom per column and cannot
    tell in which row; a negative bond energy makes the atoms fill one row."""
    sites = np.array([[x, y] for y in (0.0, 0.4) for x in (-0.15, 0.0, 0.15)])
    geo = Geometry.from_angles(2, [0.0], 64, 1 / 64)  # s = x: one peak per column
    model = ForwardModel(geo, 0.02)
    data = model.project(sites[:3])
    annealer = SiteAnnealer(model, data, sites, site_neighbours(sites, 0.16), [1.0])
    scattered = np.array([1, 0, 1, 0, 1, 0])  # one atom per column, no two neighbours
    result = annealer.run(scattered, np.random.default_rng(1), fixed_count=True, levels=30,
                          moves_per_level=300, bond=-0.5 * annealer.atom_energy)
    occupied = set(np.flatnonzero(result.occupancy).tolist())
    assert occupied in ({0, 1, 2}, {3, 4, 5})


def test_grain_pairs_find_both_grains_of_a_boundary():
    """A symmetric tilt boundary between two square grains (+-15 degrees), three angles: the
    best two-grain candidate has both orientations."""
    from atomtomo.solvers.lattice_seed import grain_pairs

    problem = problem_for(bicrystal(), [17.0, 71.0, 133.0])
    objective = AtomObjective(problem, make_potential("lj", SPACING, 2), 0.0)
    fits = fit_lattice(objective, SPACING, kinds=("square",), refine=3)
    best = grain_pairs(objective, SPACING, fits, keep=1)[0]
    angles = [float(a) for a in best["label"].replace("|", " ").split()
              if a.replace(".", "").replace("-", "").isdigit()]
    assert np.allclose(np.sort(np.mod(angles, 90.0)), [15.0, 75.0], atol=1.5), best["label"]


def bicrystal():
    """Two square grains at -15 and +15 degrees, a boundary along y (3 angles, 1 % noise)."""
    from atomtomo.solvers.lattice_seed import _basis

    left = lattice_sites("square", SPACING, np.radians(-15.0), np.zeros(2), BOX)
    right = lattice_sites("square", SPACING, np.radians(15.0), _basis("square", SPACING, 0) @
                          [0.4, 0.1], BOX)
    left = left[(left[:, 0] < -0.02) & (np.linalg.norm(left, axis=1) < 0.42)]
    right = right[(right[:, 0] > 0.05) & (np.linalg.norm(right, axis=1) < 0.42)]
    return np.vstack([left, right])


def test_scan_grains_brings_a_grain_started_degrees_off_to_its_orientation():
    """A grain started 4 degrees off (what a single-lattice fit gives a grain it does not favour)
    is turned back within 1.5 degrees by the scan, and the two-grain misfit falls."""
    from atomtomo.solvers.lattice_seed import (_basis, _grain_lattices, _two_grains,
                                               scan_grains)

    problem = problem_for(bicrystal(), [17.0, 71.0, 133.0])
    objective = AtomObjective(problem, make_potential("lj", SPACING, 2), 0.0)
    normal, cut = np.array([1.0, 0.0]), 0.0
    grains = [(np.radians(-15.0), np.zeros(2)),
              (np.radians(19.0), _basis("square", SPACING, 0) @ [0.4, 0.1])]
    start = greedy_misfit(objective, _two_grains(_grain_lattices("square", SPACING, BOX, grains),
                                                 SPACING, BOX, normal, cut))[0]
    misfit, fitted = scan_grains(objective, "square", SPACING, grains, normal, cut, start)
    assert misfit < 0.6 * start
    assert abs(np.degrees(fitted[1][0]) - 15.0) <= 1.5


def interstitial_case():
    """A square crystal with an interstitial from three angles (1 % noise), alpha 0.01:
    ``(truth, problem, objective, candidates, tol, sites)``; ``sites`` are the crystal's
    lattice sites without the interstitial."""
    from atomtomo.configuration import Configuration
    from atomtomo.phantoms.defects import add_interstitial
    from atomtomo.solvers.core import Candidates, candidate_axes

    sites = crystal("square", 23.0, vacancies=0)
    truth = add_interstitial(Configuration(sites), spacing=SPACING)
    problem = problem_for(truth.positions, [17.0, 71.0, 133.0])
    objective = AtomObjective(problem, make_potential("lj", SPACING, 2), 0.01)
    candidates = Candidates(problem.model, candidate_axes(problem, None))
    return truth, problem, objective, candidates, 1e-4 * objective.atom_energy, sites


def test_interstitial_goes_in_before_the_sites_relax():
    """An interstitial left out of a lattice occupation: relaxed first, the sites absorb its mass
    and ADCG's frozen-neighbour add step puts it elsewhere; completed before relaxing
    (:func:`complete_unrelaxed`), the crystal is recovered."""
    from atomtomo.solvers.core import adcg
    from atomtomo.solvers.lattice_seed import complete_unrelaxed
    from atomtomo.solvers.objective import AtomState

    truth, problem, objective, candidates, tol, sites = interstitial_case()
    occupied = AtomState(sites, np.zeros(len(sites), int))  # the lattice start: sites only

    completed = complete_unrelaxed(objective, occupied, candidates, tol)
    assert completed.n == truth.n_atoms
    assert match_atoms(objective.configuration(completed), truth, 0.1 * SPACING).f1 == 1.0

    plain = adcg(objective, objective.relax(occupied), candidates, max_iterations=20, tol=tol)
    # measured: relaxed first, F1 0.45 and 0.38 E_1 higher
    assert objective.value(plain) > objective.value(completed) + 0.1 * objective.atom_energy
