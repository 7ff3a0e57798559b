"""Independent restarts of the global search (atomtomo.solvers.restarts)."""

import numpy as np
import pytest

from atomtomo.errors import InputError
from atomtomo.solvers.adcg import reconstruct_adcg
from atomtomo.solvers.problem import Reconstruction
from atomtomo.solvers.restarts import best_restart, restart_checkpoint
from test_lattice_prior import _two_angle_crystal  # tests/test_lattice_prior.py

OPTIONS = dict(alpha=0.01, lattice_prior=3, hops=6, sweeps=1)


class Killed(Exception):
    pass


def _result(alpha, objective):
    return Reconstruction(None, {"alpha": alpha, "objective": objective}, [])


def test_best_restart_prefers_the_largest_alpha_then_the_lowest_objective():
    assert best_restart([_result(0.01, 5.0), _result(0.01, 3.0), _result(0.01, 4.0)]) == 1
    # a search that needed a smaller alpha explains the data worse under the prior
    assert best_restart([_result(0.01, 5.0), _result(0.003, 1.0)]) == 0


def test_restart_checkpoints_sit_beside_the_run_s_own(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    assert restart_checkpoint(ckpt, 0) == ckpt
    assert restart_checkpoint(ckpt, 2) == tmp_path / "run.ckpt.restart2"
    assert restart_checkpoint(None, 2) is None


@pytest.fixture(scope="module")
def crystal():
    return _two_angle_crystal()


@pytest.fixture(scope="module")
def singles(crystal):
    problem, _ = crystal
    return [reconstruct_adcg(problem, seed=s, restarts=1, **OPTIONS) for s in (4, 5, 6)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_restarts_keep_the_lowest_of_the_single_searches(crystal, singles, jobs):
    """Three restarts from seed 4 are the searches with seeds 4, 5 and 6; the result is the one
    that ends lowest, the same in one process and in several."""
    problem, _ = crystal
    records = []
    result = reconstruct_adcg(problem, seed=4, restarts=3, jobs=jobs, callback=records.append,
                              **OPTIONS)
    objectives = [s.info["objective"] for s in singles]
    pick = int(np.argmin(objectives))
    assert result.info["restart"] == pick and result.info["seed"] == 4 + pick
    assert result.info["objective"] == objectives[pick]
    assert np.array_equal(result.configuration.positions, singles[pick].configuration.positions)
    assert result.info["restart_objectives"] == ",".join(f"{v:.6g}" for v in objectives)
    assert result.info["hops"] == sum(s.info["hops"] for s in singles)
    assert {r["restart"] for r in records} == {0, 1, 2}  # every search reports
    assert {h["restart"] for h in result.history} == {0, 1, 2}


def test_run_killed_during_a_restart_resumes_to_the_same_result(tmp_path, crystal, singles):
    problem, _ = crystal

    def kill(record):
        if record["restart"] == 1 and record["phase"] == "hop":
            raise Killed

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Killed):
        reconstruct_adcg(problem, seed=4, restarts=3, jobs=1, checkpoint=ckpt, callback=kill,
                         **OPTIONS)
    assert ckpt.exists() and restart_checkpoint(ckpt, 1).exists()
    resumed = reconstruct_adcg(problem, seed=4, restarts=3, jobs=1, checkpoint=ckpt,
                               resume=True, **OPTIONS)
    best = min(singles, key=lambda s: s.info["objective"])
    assert resumed.info["objective"] == best.info["objective"]
    assert np.array_equal(resumed.configuration.positions, best.configuration.positions)


def test_restarts_are_on_by_default_only_where_the_lattice_stage_runs(crystal):
    """Two zone axes with a prior and the default budget: two searches; an explicit budget
    (hops) is the caller's to spend, and without a prior there is no lattice stage: one."""
    from atomtomo.solvers.global_search import SearchDriver
    from atomtomo.solvers.restarts import TWO_ANGLE_RESTARTS, default_restarts

    problem, _ = crystal
    assert default_restarts(SearchDriver(problem, alpha="auto"), {}) == TWO_ANGLE_RESTARTS
    assert default_restarts(SearchDriver(problem, alpha="auto", hops=50), {"hops": 50}) == 1
    assert default_restarts(SearchDriver(problem, alpha=0.0), {}) == 1


def test_bad_restarts_option_is_an_input_error(crystal):
    problem, _ = crystal
    with pytest.raises(InputError, match="restarts"):
        reconstruct_adcg(problem, restarts=0, **OPTIONS)


def _config(positions, species=None):
    from atomtomo import Configuration

    positions = np.asarray(positions, float)
    return Reconstruction(Configuration(positions, species=species), {}, [])


def test_searches_agree_on_the_same_atoms_in_any_order_within_a_tenth_of_a_bond():
    from atomtomo.solvers.restarts import agree

    a = _config([[0.0, 0.0], [0.2, 0.0], [0.0, 0.2]])
    b = _config([[0.0, 0.21], [0.005, 0.0], [0.2, 0.01]])
    assert agree([a, b], length=0.2)
    assert not agree([a, _config([[0.0, 0.0], [0.2, 0.0], [0.1, 0.1]])], length=0.2)
    assert not agree([a, _config([[0.0, 0.0], [0.2, 0.0]])], length=0.2)  # an atom short


class _Fake:
    """A search whose result depends on its seed only (for run_restarts without a solver)."""

    callback = None

    def __init__(self, seed, places):
        self.seed, self.places = seed, places

    def run(self):
        return _solve(None, seed=self.seed, places=self.places)


def _solve(problem, *, seed, places, **_):
    res = _config([[places[seed], 0.0], [0.0, 0.2]])
    res.info.update(alpha=0.01, objective=float(seed), hops=1, iterations=1)
    return res


@pytest.mark.parametrize("jobs", [1, 2])
def test_two_more_restarts_run_only_where_the_first_two_disagree(jobs):
    from atomtomo.solvers.restarts import run_restarts

    agreeing = {0: 0.2, 1: 0.201, 2: 0.5, 3: 0.6}
    run = {"seed": 0, "places": agreeing}
    result = run_restarts(_Fake(0, agreeing), None, 2, jobs, run, solve=_solve, more=2,
                          length=0.2)
    assert result.info["restarts"] == 2 and result.info["restarts_agreed"]
    differing = {0: 0.2, 1: 0.4, 2: 0.5, 3: 0.6}
    run = {"seed": 0, "places": differing}
    result = run_restarts(_Fake(0, differing), None, 2, jobs, run, solve=_solve, more=2,
                          length=0.2)
    assert result.info["restarts"] == 4 and not result.info["restarts_agreed"]
    assert result.info["restart_objectives"] == "0,1,2,3" and result.info["restart"] == 0
