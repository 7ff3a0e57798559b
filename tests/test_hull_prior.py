"""The hull pressure (hull_prior.py): energy, gradient, exact changes, and its use by the solver."""

import numpy as np
import pytest

from atomtomo.errors import InputError
from atomtomo.geometry import Geometry
from atomtomo.hull_prior import HullPressure, hull_area, hull_vertices
from atomtomo.prior import Prior
from atomtomo.potentials import make_potential
from atomtomo.solvers.objective import AtomObjective
from atomtomo.solvers.problem import Problem
from gradients import finite_difference

RNG = np.random.default_rng(11)
POINTS = RNG.uniform(-1, 1, (30, 2))


def _with_hull(potential, h):
    """``potential`` plus a hull pressure of ``h`` bonds per bond length squared."""
    return Prior(potential, [HullPressure.in_bonds(h, potential)])


def test_area_of_known_shapes_and_degenerate_hulls():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1]], float)
    assert hull_area(square) == pytest.approx(4.0)
    assert sorted(hull_vertices(square)) == [0, 1, 2, 3]  # the centre is inside
    line = np.array([[0, 0], [1, 1], [2, 2]], float)
    assert hull_area(line) == 0.0 and len(hull_vertices(line)) == 0
    e, g = HullPressure(5.0).energy_and_gradient(line)
    assert e == 0.0 and not g.any()
    assert hull_area(POINTS[:2]) == 0.0


def test_energy_is_pressure_times_area_and_atom_shares_sum_to_it():
    hull = HullPressure(2.5)
    e, _ = hull.energy_and_gradient(POINTS)
    assert e == pytest.approx(2.5 * hull_area(POINTS))
    assert hull.atom_energies(POINTS).sum() == pytest.approx(e)
    inside = np.setdiff1d(np.arange(len(POINTS)), hull_vertices(POINTS))
    assert not hull.atom_energies(POINTS)[inside].any()


def test_gradient_matches_finite_differences():
    hull = HullPressure(1.7)
    _, g = hull.energy_and_gradient(POINTS)
    assert np.allclose(finite_difference(hull, POINTS), g, atol=1e-7)
    assert not g[np.setdiff1d(np.arange(len(POINTS)), hull_vertices(POINTS))].any()


def test_insertion_and_removal_are_exact_energy_changes():
    hull = HullPressure(0.8)
    e = hull.energy_and_gradient(POINTS)[0]
    cands = RNG.uniform(-2, 2, (300, 2))
    exact = [hull.energy_and_gradient(np.vstack([POINTS, c]))[0] - e for c in cands]
    assert np.allclose(hull.insertion_energy(POINTS, cands), exact, atol=1e-12)
    exact = [hull.energy_and_gradient(np.delete(POINTS, i, 0))[0] - e for i in range(len(POINTS))]
    assert np.allclose(hull.removal_energy(POINTS), exact, atol=1e-12)
    # from two atoms (no area yet) the third makes the whole triangle
    two = POINTS[:2]
    assert np.allclose(hull.insertion_energy(two, cands[:5]),
                       [0.8 * hull_area(np.vstack([two, c])) for c in cands[:5]])


def test_hull_pressure_adds_to_the_pair_potential():
    lj = make_potential("lj", 0.3, 2)
    hull = HullPressure.in_bonds(3.0, lj)
    both = Prior(lj, [hull])
    assert (both.epsilon, both.bond_length, both.cutoff_radius) == (lj.epsilon, 0.3, lj.cutoff_radius)
    assert hull.pressure == pytest.approx(3.0 / 0.3 ** 2)
    x = POINTS * 0.5
    e, g = both.energy_and_gradient(x)
    e_lj, g_lj = lj.energy_and_gradient(x)
    e_h, g_h = hull.energy_and_gradient(x)
    assert e == pytest.approx(e_lj + e_h) and np.allclose(g, g_lj + g_h)
    assert both.energy(x) == pytest.approx(e)
    assert both.atom_energies(x).sum() == pytest.approx(e)
    cands = RNG.uniform(-1, 1, (50, 2))
    exact = [both.energy(np.vstack([x, c])) - e for c in cands]
    assert np.allclose(both.insertion_energy(x, cands), exact, atol=1e-9)
    exact = [both.energy(np.delete(x, i, 0)) - e for i in range(len(x))]
    assert np.allclose(both.removal_energy(x), exact, atol=1e-9)


def _problem(n_angles=2, noise=0.0):
    from atomtomo.phantoms import poster_vacancy
    from atomtomo.tiltseries import simulate_tiltseries

    truth = poster_vacancy()
    angles = np.radians([0.0, 90.0, 45.0][:n_angles])
    geo = Geometry.from_angles(2, angles, 100, 0.012)
    ts = simulate_tiltseries(truth, geo, 0.02, relative_noise=noise, seed=0,
                             box=truth.info["box"], bond_length=truth.info["bond_length"])
    return Problem.from_tiltseries(ts), truth


def test_local_relaxation_sees_the_whole_hull():
    """Relaxing a few atoms under the hull pressure lowers the full objective (their hull is
    the whole crystal's, not that of their neighbourhood)."""
    from atomtomo.solvers.objective import AtomState

    problem, truth = _problem()
    objective = AtomObjective(problem, _with_hull(make_potential("lj", problem.bond_length, 2), 3.0),
                              alpha=0.01)
    state = objective.state_from(truth)
    state = AtomState(state.positions + RNG.normal(0, 0.01, state.positions.shape), state.species)
    movable = np.zeros(state.n, bool)
    movable[hull_vertices(state.positions)[:2]] = True  # two corner atoms
    before = objective.value(state)
    after = objective.relax(state, movable=movable)
    assert objective.value(after) < before
    assert np.array_equal(after.positions[~movable], state.positions[~movable])


def test_solver_default_and_option_checks():
    from atomtomo.solvers.global_search import SearchDriver

    problem, _ = _problem()
    assert SearchDriver(problem, alpha="auto").hull == 3.0  # two angles, pair prior: on
    assert SearchDriver(problem, alpha=0.0).hull == 0.0  # no prior: off
    assert SearchDriver(problem, alpha=0.01, hull=0).hull == 0.0
    assert SearchDriver(problem, alpha=0.01, hull=5).hull == 5.0
    three, _ = _problem(3)
    assert SearchDriver(three, alpha="auto").hull == 0.0  # three angles: off unless asked
    with pytest.raises(InputError, match="hull"):
        SearchDriver(problem, alpha=0.0, hull=3)
    with pytest.raises(InputError, match="hull"):
        SearchDriver(problem, alpha=0.01, potential="none", hull=3)


def test_reconstruction_reports_the_hull_weight():
    from atomtomo.solvers.adcg import reconstruct_adcg

    problem, truth = _problem(noise=0.01)
    result = reconstruct_adcg(problem, alpha="auto", seed=0, hops=40, patience=20)
    assert result.info["hull"] == 3.0 and result.info["potential"] == "LennardJones"
    assert [float(c) > 0.9 for c in result.info["column_coherence"].split(",")] == [True, True]
    from atomtomo.metrics import match_atoms

    m = match_atoms(result.configuration, truth, 0.1 * problem.bond_length)
    assert m.f1 == 1.0


def test_relaxation_context_is_exact_with_hull_vertices_only():
    """A local relaxation gets the fixed atoms near the movable ones plus the fixed atoms'
    hull vertices; it ends where it would with every fixed atom as context."""
    from atomtomo.solvers.objective import AtomState

    problem, truth = _problem()
    potential = _with_hull(make_potential("lj", problem.bond_length, 2), 3.0)
    objective = AtomObjective(problem, potential, alpha=0.01)
    state = objective.state_from(truth)
    state = AtomState(state.positions + RNG.normal(0, 0.01, state.positions.shape), state.species)
    movable = np.zeros(state.n, bool)
    movable[hull_vertices(state.positions)[:3]] = True
    context = potential.global_context(state.positions[~movable])
    assert 3 <= context.sum() < (~movable).sum()
    local = objective.relax(state, movable=movable)

    class Everything(HullPressure):  # every fixed atom is context
        def global_context(self, positions):
            return np.ones(len(positions), bool)

    everything = Prior(potential.base, [Everything(potential.terms[0].pressure)])
    full = AtomObjective(problem, everything, alpha=0.01)
    reference = full.relax(state, movable=movable)
    assert np.allclose(local.positions, reference.positions, atol=1e-6 * problem.bond_length)
