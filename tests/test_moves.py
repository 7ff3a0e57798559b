"""The basin-hopping moves (solvers/moves.py) on a tiny state: each is a proposal
``(state, rng) -> (state, changed)`` that leaves its input alone, with its own weight."""

from types import SimpleNamespace

import numpy as np
import pytest

from atomtomo import ForwardModel, Geometry
from atomtomo.potentials import make_potential
from atomtomo.solvers.core import Candidates, candidate_axes
from atomtomo.solvers.moves import (Jump, LatticeMove, Pairing, Repair, Shift, default_moves,
                                    draw_move, neighbour_sites)
from atomtomo.solvers.objective import AtomObjective, AtomState
from atomtomo.solvers.problem import Problem

BOND = 0.2
SQUARE = BOND * np.array([[i, j] for i in range(-1, 2) for j in range(-1, 2)], float)


@pytest.fixture(scope="module")
def search():
    geo = Geometry.from_angles(2, np.radians([0.0, 90.0]), 40, 0.025)
    model = ForwardModel(geo, 0.025)
    problem = Problem(model, model.project(SQUARE), np.array([[-0.45, 0.45]] * 2),
                      bond_length=BOND)
    potential = make_potential("lj", BOND, 2)
    objective = AtomObjective(problem, potential, alpha=0.01)
    return SimpleNamespace(problem=problem, objective=objective, potential=potential,
                           candidates=Candidates(model, candidate_axes(problem)),
                           length_scale=BOND, pairing_applies=True)


def _state(positions=SQUARE):
    return AtomState(np.array(positions, float), np.zeros(len(positions), int))


@pytest.mark.parametrize("move", [Jump, Repair, LatticeMove, Shift, Pairing])
def test_a_move_proposes_a_new_state_and_names_the_changed_atoms(search, move):
    state = _state(SQUARE + np.random.default_rng(0).normal(scale=0.01, size=SQUARE.shape))
    before = state.positions.copy()
    trial, changed = move(search)(state, np.random.default_rng(1))
    assert np.array_equal(state.positions, before)  # the input is not changed
    assert trial.n == state.n and trial.positions.shape == before.shape
    unchanged = np.setdiff1d(np.arange(trial.n), changed)
    if move is not Jump and move is not LatticeMove:  # these renumber: removed, then appended
        assert np.array_equal(trial.positions[unchanged], before[unchanged])
    box = search.objective.box
    assert np.all((trial.positions >= box[:, 0]) & (trial.positions <= box[:, 1]))


def test_repair_keeps_both_projections(search):
    state = _state(SQUARE + np.random.default_rng(2).normal(scale=0.02, size=SQUARE.shape))
    trial, changed = Repair(search)(state, np.random.default_rng(3))
    assert len(changed) == 2
    for d in search.problem.geometry.directions:
        assert np.allclose(np.sort(trial.positions @ d), np.sort(state.positions @ d))


def test_pairing_keeps_both_projections_and_lowers_the_pair_energy(search):
    rng = np.random.default_rng(4)
    scrambled = SQUARE.copy()
    scrambled[:, 1] = rng.permutation(scrambled[:, 1])  # a wrong pairing of the same rows
    state = _state(scrambled)
    trial, changed = Pairing(search)(state, np.random.default_rng(5))
    for d in search.problem.geometry.directions:
        assert np.allclose(np.sort(trial.positions @ d), np.sort(state.positions @ d))
    assert search.potential.energy(trial.positions) <= search.potential.energy(state.positions)


def test_jump_removes_and_reinserts_as_many(search):
    state = _state()
    trial, changed = Jump(search)(state, np.random.default_rng(6))
    assert 1 <= len(changed) <= 3 and np.array_equal(changed, np.arange(9 - len(changed), 9))


def test_neighbour_sites_continue_the_lattice():
    row = BOND * np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    sites = neighbour_sites(row, BOND, np.array([[-1.0, 1.0]] * 2))
    expected = BOND * np.array([[2.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -1.0], [1.0, 1.0]])
    for e in expected:
        assert np.min(np.linalg.norm(sites - e, axis=1)) < 1e-12
    assert len(neighbour_sites(row[:1], BOND, np.array([[-1.0, 1.0]] * 2))) == 0


def test_weights_say_where_a_move_applies(search):
    moves = default_moves(search)
    weights = dict((m.name, m.weight(_state())) for m in moves)
    assert weights == {"jump": 0.35, "repair": 0.35, "lattice": 0.2, "shift": 0.1, "pairing": 0.2}
    few = dict((m.name, m.weight(_state(SQUARE[:2]))) for m in moves)
    assert few["lattice"] == 0.0 and few["pairing"] == 0.0 and few["repair"] == 0.35
    off = SimpleNamespace(**{**vars(search), "pairing_applies": False})
    assert Pairing(off).weight(_state()) == 0.0


def test_draw_move_follows_the_weights(search):
    moves = default_moves(search)
    rng = np.random.default_rng(7)
    names = [draw_move(moves, _state(SQUARE[:2]), rng).name for _ in range(400)]
    assert "lattice" not in names and "pairing" not in names
    share = names.count("jump") / len(names)
    assert 0.35 / 0.8 - 0.1 < share < 0.35 / 0.8 + 0.1
