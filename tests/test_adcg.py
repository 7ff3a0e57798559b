"""The grid-free ADCG solver with its global search."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from atomtomo import ForwardModel, Geometry, InputError
from atomtomo.solvers import reconstruct
from atomtomo.solvers.core import Candidates, adcg_iteration, candidate_axes
from atomtomo.solvers.objective import AtomObjective, AtomState
from atomtomo.solvers.problem import Problem


def make_problem(positions, angles_deg, *, ndim=2, detector=(64,), pixel=1 / 48, sigma=0.025,
                 noise=0.0, bond=None, seed=0):
    geo = Geometry.from_angles(ndim, np.radians(angles_deg), detector, pixel)
    model = ForwardModel(geo, sigma)
    y = model.project(positions)
    std = None
    if noise:
        std = noise * y.max()
        y = y + np.random.default_rng(seed).normal(scale=std, size=y.shape)
    box = np.array([[-0.5, 0.5]] * ndim) * (detector[-1] * pixel) * 0.9
    return Problem(model, y, box, bond_length=bond, noise_std=std)


def max_matched_error(found, truth):
    d = cdist(found, truth)
    i, j = linear_sum_assignment(d)
    return d[i, j].max()


SMALL = np.array([[-0.2, -0.1], [0.0, -0.2], [0.15, 0.05], [-0.05, 0.15], [0.2, 0.22], [-0.25, 0.2]])


def test_exact_recovery_noiseless_five_angles():
    spacing = 0.2
    problem = make_problem(SMALL, [0, 36, 72, 108, 144], bond=spacing)
    rec = reconstruct(problem, "adcg", alpha=0.0, seed=1, hops=15, sweeps=0)
    found = rec.configuration.positions
    assert len(found) == len(SMALL)
    assert max_matched_error(found, SMALL) < 1e-3 * spacing
    assert rec.info["data_discrepancy"] < 1e-4 * np.linalg.norm(problem.data)


def test_objective_never_increases_in_an_iteration():
    problem = make_problem(SMALL, [0, 60, 120], bond=0.2, noise=0.01)
    obj = AtomObjective(problem, _lj(0.2), alpha=0.01)
    cands = Candidates(problem.model, candidate_axes(problem))
    state = AtomState(np.zeros((0, 2)), np.zeros(0, int))
    values = [obj.value(state)]
    for _ in range(12):
        state, added = adcg_iteration(obj, state, cands, tol=1e-9)
        values.append(obj.value(state))
        if not added:
            break
    assert np.all(np.diff(values) <= 1e-12)
    # And over a whole run the best objective never increases.
    records = []
    reconstruct(problem, "adcg", alpha=0.01, seed=0, hops=10, sweeps=3, callback=records.append)
    best = [r["best_objective"] for r in records]
    assert np.all(np.diff(best) <= 1e-12)
    adds = [r["objective"] for r in records if r["phase"] == "add"]
    assert np.all(np.diff(adds) <= 1e-12)


def _lj(bond):
    from atomtomo.potentials import make_potential

    return make_potential("lj", bond, 2)


class Killed(Exception):
    pass


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    problem = make_problem(SMALL, [0, 90], bond=0.2, noise=0.01)
    full = reconstruct(problem, "adcg", alpha=0.01, seed=3, hops=10, sweeps=3)

    ckpt = tmp_path / "run.ckpt"

    def kill_at(record):
        if record["iteration"] == 12:
            raise Killed

    with pytest.raises(Killed):
        reconstruct(problem, "adcg", alpha=0.01, seed=3, hops=10, sweeps=3, checkpoint=ckpt,
                    callback=kill_at)
    assert ckpt.exists()
    resumed = reconstruct(problem, "adcg", alpha=0.01, seed=3, hops=10, sweeps=3, checkpoint=ckpt,
                          resume=True)
    assert np.array_equal(resumed.configuration.positions, full.configuration.positions)
    assert resumed.info["objective"] == full.info["objective"]
    assert resumed.info["iterations"] == full.info["iterations"]


def test_checkpoint_of_another_run_is_refused(tmp_path):
    problem = make_problem(SMALL, [0, 90], bond=0.2)
    ckpt = tmp_path / "run.ckpt"
    reconstruct(problem, "adcg", alpha=0.0, seed=3, hops=2, checkpoint=ckpt)
    with pytest.raises(InputError, match="another run.*seed 3 -> 4"):
        reconstruct(problem, "adcg", alpha=0.0, seed=4, hops=2, checkpoint=ckpt, resume=True)


@pytest.mark.parametrize("changed", [{"potential": "none"}, {"hops": 3}, {"sweeps": 1},
                                     {"lattice_start": False}, {"pairing": False}])
def test_checkpoint_is_refused_under_other_method_options(tmp_path, changed):
    """Resuming under another objective or search would continue the old run as if it were the
    new one; the refusal names the setting that differs."""
    problem = make_problem(SMALL, [0, 90], bond=0.2)
    ckpt = tmp_path / "run.ckpt"
    options = {"potential": "lj", "hops": 2, "sweeps": 2}
    reconstruct(problem, "adcg", alpha=0.01, seed=3, checkpoint=ckpt, **options)
    key = next(iter(changed))
    with pytest.raises(InputError, match=f"another run \\((.*, )?{key} "):
        reconstruct(problem, "adcg", alpha=0.01, seed=3, checkpoint=ckpt, resume=True,
                    **{**options, **changed})
    # a time limit is a resource guard, not part of the run: it may change on resume
    reconstruct(problem, "adcg", alpha=0.01, seed=3, checkpoint=ckpt, resume=True, time_limit=60,
                **options)


def test_two_angles_prior_resolves_repairing():
    """Zone-axis data at 0 and 90 degrees: alpha = 0 cannot tell re-paired coordinates apart,
    the Lennard-Jones prior can."""
    a = 0.15
    g = (np.arange(4) - 1.5) * a
    truth = np.array([[x, y] for x in g for y in g])
    truth = truth[~np.all(np.isclose(truth, [g[1], g[2]]), axis=1)]  # a vacancy
    problem = make_problem(truth, [0, 90], bond=a, sigma=a / 7, pixel=1 / 64, detector=(64,))
    rec = reconstruct(problem, "adcg", alpha=0.01, seed=0, hops=25, sweeps=0)
    d = cdist(rec.configuration.positions, truth)
    i, j = linear_sum_assignment(d)
    assert len(rec.configuration) == len(truth)
    assert np.sum(d[i, j] < 0.1 * a) == len(truth)


def test_pairing_move_runs_only_where_every_pairing_fits():
    """The pairing move is drawn at two angles in 2D with a pair prior, and never when it is
    switched off, at three angles or without the prior."""
    a = 0.15
    g = (np.arange(4) - 1.5) * a
    truth = np.array([[x, y] for x in g for y in g])

    def moves(angles, alpha, **options):
        problem = make_problem(truth, angles, bond=a, sigma=a / 7, pixel=1 / 64, detector=(64,))
        records = []
        reconstruct(problem, "adcg", alpha=alpha, seed=0, hops=30, patience=30, sweeps=0,
                    callback=records.append, **options)
        return {r.get("move") for r in records if r["phase"] == "hop"}

    assert "pairing" in moves([0, 90], 0.01)
    assert "pairing" not in moves([0, 90], 0.01, pairing=False)
    assert "pairing" not in moves([0, 90], 0.0)
    assert "pairing" not in moves([0, 60, 120], 0.01)


def test_two_angle_budget_defaults():
    """Two angles in 2D with a pair prior get the larger basin-hopping budget; explicit options,
    pairing=off, alpha 0 and three angles keep the general one."""
    from atomtomo.solvers.global_search import TWO_ANGLE_HOPS, SearchDriver

    def budget(angles, alpha=0.01, **options):
        d = SearchDriver(make_problem(SMALL, angles, bond=0.2), alpha=alpha, **options)
        return d.hops, d.patience

    general = budget([0, 60, 120])
    assert general[1] == max(40, general[0] // 5)
    assert budget([0, 90]) == (TWO_ANGLE_HOPS, TWO_ANGLE_HOPS // 2)
    assert budget([0, 90], alpha="auto") == (TWO_ANGLE_HOPS, TWO_ANGLE_HOPS // 2)
    assert budget([0, 90], pairing=False) == general
    assert budget([0, 90], alpha=0.0) == general
    assert budget([0, 90], hops=10) == (10, 40)
    assert budget([0, 90], hops=10, patience=3) == (10, 3)


def test_search_quality():
    """Zero for the truth itself (up to its relaxation), about one atom's energy for a missing
    atom, below zero for a configuration that fits better than the truth."""
    from atomtomo import Configuration
    from atomtomo.solvers.objective import search_quality

    problem = make_problem(SMALL, [0, 60, 120], bond=0.2, noise=0.01)
    truth = Configuration(SMALL)
    assert 0 <= search_quality(problem, truth, truth, alpha=0.01) < 0.05
    assert search_quality(problem, truth.subset(np.arange(6) != 2), truth, alpha=0.0) > 0.5
    rec = reconstruct(problem, "adcg", alpha=0.0, seed=0, hops=5, sweeps=0)
    assert search_quality(problem, rec.configuration, truth, alpha=0.0) <= 1e-6


def test_auto_alpha_is_recorded():
    problem = make_problem(SMALL, [0, 60, 120], bond=0.2, noise=0.01)
    rec = reconstruct(problem, "adcg", alpha="auto", seed=0, hops=5, sweeps=0)
    assert rec.info["alpha_rule"].startswith("discrepancy principle")
    assert rec.info["alpha"] >= 0


def test_three_dimensional_small_particle():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.25, 0.25, size=(6, 3))
    problem = make_problem(truth, [-50, 0, 50], ndim=3, detector=(40, 40), pixel=1 / 32,
                           sigma=0.03, bond=0.2)
    rec = reconstruct(problem, "adcg", alpha=0.0, seed=0, hops=5)
    assert rec.info["data_discrepancy"] < 0.05 * np.linalg.norm(problem.data)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": "sometimes"}, "alpha"),
        ({"alpha": 0.0, "colour": 3}, "unknown ADCG option"),
    ],
)
def test_bad_options(kwargs, message):
    problem = make_problem(SMALL, [0, 90], bond=0.2)
    with pytest.raises(InputError, match=message):
        reconstruct(problem, "adcg", **kwargs)


def test_energy_term_needs_bond_length():
    problem = make_problem(SMALL, [0, 90], bond=None)
    with pytest.raises(InputError, match="bond length"):
        reconstruct(problem, "adcg", alpha=0.1)


def test_killed_process_resumes_to_the_same_result(tmp_path):
    """A real `atomtomo reconstruct --checkpoint` process killed (SIGKILL) mid-run and started
    again with --resume ends exactly where an uninterrupted run with the same seed ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from atomtomo.configuration import read_xyz
    from atomtomo.tiltseries import TiltSeries, write_tiltseries

    problem = make_problem(SMALL, [0, 90], bond=0.2, noise=0.01)
    tilt = tmp_path / "t.h5"
    write_tiltseries(TiltSeries(problem.data, problem.geometry, atom_sigma=problem.sigma,
                                box=problem.box, bond_length=0.2,
                                noise_std=problem.noise_std), tilt)
    args = [sys.executable, "-m", "atomtomo", "reconstruct", str(tilt), "--alpha", "0.01",
            "--seed", "5", "--option", "hops=40", "--option", "sweeps=5", "-q"]
    full = tmp_path / "full.xyz"
    subprocess.run(args + ["-o", str(full)], check=True)

    ckpt, out = tmp_path / "run.ckpt", tmp_path / "resumed.xyz"
    proc = subprocess.Popen(args + ["--checkpoint", str(ckpt), "-o", str(out)])
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let it get a few iterations further
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert ckpt.exists() and not out.exists()
    subprocess.run(args + ["--checkpoint", str(ckpt), "--resume", "-o", str(out)], check=True)
    a, b = read_xyz(full, ndim=2), read_xyz(out, ndim=2)
    assert np.array_equal(a.positions, b.positions)
    assert a.info["objective"] == b.info["objective"]


def _bicrystal_problem():
    from test_lattice_seed import bicrystal, problem_for

    return problem_for(bicrystal(), [17.0, 71.0, 133.0])


def test_grain_stage_searches_from_two_grains_and_keeps_the_better_search():
    """Three angles on a bicrystal: the two-grain start fits the data far better than any single
    lattice, so a second search runs from it; the result is no worse than the first search's."""
    problem = _bicrystal_problem()
    records = []
    result = reconstruct(problem, "adcg", alpha=0.01, seed=0, hops=20, sweeps=2,
                         callback=records.append)
    phases = [r["phase"] for r in records]
    assert phases.count("grains") == 1
    first_search = records[phases.index("grains") - 1]["best_objective"]
    grain_hops = [r for r in records[phases.index("grains"):] if r["phase"] == "hop"]
    assert len(grain_hops) > 20  # the grain stage's larger budget
    assert result.info["objective"] <= first_search + 1e-9

    records = []
    reconstruct(problem, "adcg", alpha=0.01, seed=0, hops=20, sweeps=2, grains=False,
                callback=records.append)
    assert "grains" not in [r["phase"] for r in records]


def test_run_killed_in_the_grain_stage_resumes_to_the_same_result(tmp_path):
    problem = _bicrystal_problem()
    options = dict(alpha=0.01, seed=1, hops=20, sweeps=2)
    full = reconstruct(problem, "adcg", **options)
    ckpt = tmp_path / "run.ckpt"
    seen = []

    def kill_in_grain_stage(record):
        seen.append(record["phase"])
        if "grains" in seen and seen[seen.index("grains"):].count("hop") == 5:
            raise Killed

    with pytest.raises(Killed):
        reconstruct(problem, "adcg", checkpoint=ckpt, callback=kill_in_grain_stage, **options)
    resumed = reconstruct(problem, "adcg", checkpoint=ckpt, resume=True, **options)
    assert np.array_equal(resumed.configuration.positions, full.configuration.positions)
    assert resumed.info["objective"] == full.info["objective"]
    assert resumed.info["start"] == full.info["start"]


def test_alpha_ladder_walks_down_and_stops_at_the_largest_alpha_meeting_the_target():
    """With the file's noise level the ladder goes from the top down and stops at the first
    alpha that meets the discrepancy target: the one the rule takes from the whole ladder."""
    from atomtomo.solvers.alpha import alpha_ladder, ladder_order

    assert ladder_order(True) == alpha_ladder()[::-1]
    assert ladder_order(False)[0] == 0.0 and sorted(ladder_order(False)) == alpha_ladder()
    problem = make_problem(SMALL, [0, 60, 120], bond=0.2, noise=0.01)
    records = []
    rec = reconstruct(problem, "adcg", alpha="auto", seed=0, hops=5, sweeps=0,
                      callback=records.append)
    tried = [r["trial_alpha"] for r in records if r["phase"] == "alpha"][:-1]
    assert tried == alpha_ladder()[::-1][:len(tried)]
    assert rec.info["alpha"] == min(tried)


def test_a_stage_stops_when_its_hops_stop_paying():
    """The adaptive patience: a stage stops once it has gone as many hops without progress as
    it took to make its last progress, and never before its floor; a fixed patience (no
    floor) never stops it this way."""
    from atomtomo.solvers.stages import STAGES, converged

    assert not converged(hop=20, progress=0, floor=30)
    assert converged(hop=30, progress=0, floor=30)  # the start was the best: the floor
    assert not converged(hop=150, progress=100, floor=30)  # progress late: as long again
    assert converged(hop=200, progress=100, floor=30)
    assert not converged(hop=10 ** 6, progress=0, floor=None)
    assert STAGES["lattice"].floor_for(30) == 10 and STAGES["search"].floor_for(45) == 45
    assert STAGES["grains"].floor_for(30) is None  # its patience is a share of its own hops


def test_default_search_stops_early_where_the_start_is_already_best():
    """Two angles, the default budget: the first stage stops at its floor after the last
    progress, far inside its hop budget and its fixed patience; three angles keep the fixed
    patience."""
    from atomtomo.solvers.global_search import SearchDriver

    problem = make_problem(SMALL, [0, 90], bond=0.2, noise=0.01)
    driver = SearchDriver(problem, alpha=0.01, sweeps=0, lattice_prior=0, dislocation=False)
    phases = [r["phase"] for r in driver.run().history]
    first = phases.index("hop")
    end = next((i for i in range(first, len(phases)) if phases[i] != "hop"), len(phases))
    assert driver.floor == 30 and end - first == driver.floor < driver.patience
    three = SearchDriver(make_problem(SMALL, [0, 60, 120], bond=0.2), alpha=0.01)
    assert three.floor is None


def test_default_annealing_stops_when_its_sweeps_stop_paying():
    """Two angles: default sweeps stop after the floor of 5 when none makes progress; given
    sweeps all run."""
    from atomtomo.solvers.global_search import ANNEAL_FLOOR, SearchDriver

    problem = make_problem(SMALL, [0, 90], bond=0.2, noise=0.01)

    def sweeps(**options):
        history = SearchDriver(problem, alpha=0.01, hops=0, lattice_prior=0, dislocation=False,
                               **options).run().history
        return sum(h["phase"] == "anneal" for h in history)

    assert sweeps() == ANNEAL_FLOOR
    assert sweeps(sweeps=20) == 20
