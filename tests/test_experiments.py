"""Tests of the experiment sweeps: the dask task runner on toy tasks, and `atomtomo reproduce`.

The runner's behaviour (one row per finished task, resume, no work when done, retries, failures
recorded) is tested on toy functions, mostly with a local cluster of threads (fast); one test
uses a real LocalCluster of worker processes and one kills a sweep in a subprocess. The
experiments run end to end on reduced grids; their full ``--quick`` runs are marked slow.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from atomtomo.errors import InputError  # noqa: E402
from atomtomo.experiments import EXPERIMENTS, get_experiment, run_experiment  # noqa: E402
from atomtomo.experiments import sweep, tables  # noqa: E402

COLUMNS = ["x", "y"]


# -- toy task functions (module level: workers import them by name) ------------------------------
def square(params):
    """Records each call in the file named by params["calls"] (appends are atomic for short
    lines), fails for x in params["fail"] unless the file params["fixed"] exists."""
    with open(params["calls"], "a") as fh:
        fh.write(f"{params['x']}\n")
    fixed = Path(params.get("fixed", "/nonexistent")).exists()
    if params["x"] in params.get("fail", []) and not fixed:
        raise ValueError(f"x = {params['x']} is bad")
    time.sleep(params.get("sleep", 0.0))
    return {"y": params["x"] ** 2, "not_a_column": [1, 2]}


def calls(path):
    if not Path(path).exists():
        return []
    return sorted(int(line) for line in Path(path).read_text().split())


def toy_tasks(tmp_path, n=6, **extra):
    return [{"x": i, "calls": str(tmp_path / "calls.txt"), **extra} for i in range(n)]


def run_toy(tasks, out, **kw):
    kw.setdefault("workers", 2)
    kw.setdefault("processes", False)
    return sweep.run_sweep(square, tasks, out, ["x", "calls", "fail", "fixed", "sleep", "y"], **kw)


def rows_of(out):
    with open(Path(out) / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# -- task ids ------------------------------------------------------------------------------------
def test_task_id_is_stable_and_order_free():
    a = sweep.task_id({"x": 1, "method": "adcg", "noise": 0.01})
    assert a == sweep.task_id({"noise": 0.01, "method": "adcg", "x": 1})
    assert a != sweep.task_id({"x": 2, "method": "adcg", "noise": 0.01})
    assert len(a) == 12
    assert len(sweep.with_ids([{"x": 1}, {"x": 1}, {"x": 2}])) == 2
    with pytest.raises(InputError):
        sweep.task_id({"x": object()})


# -- the runner ----------------------------------------------------------------------------------
def test_one_row_per_task_with_fixed_schema(tmp_path):
    out = tmp_path / "out"
    report = run_toy(toy_tasks(tmp_path), out)
    assert (report.total, report.completed, report.failed) == (6, 6, 0)
    rows = rows_of(out)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    assert list(rows[0]) == ["id", "x", "calls", "fail", "fixed", "sleep", "y", "wall_s", "cpu_s",
                             "warnings"]
    assert sorted(int(r["y"]) for r in rows) == [0, 1, 4, 9, 16, 25]
    assert all(r["id"] == sweep.task_id({"x": int(r["x"]), "calls": r["calls"]}) for r in rows)
    assert calls(tmp_path / "calls.txt") == list(range(6))
    log = [json.loads(line) for line in (out / "sweeps.jsonl").read_text().splitlines()]
    assert log[-1]["completed"] == 6 and log[-1]["tasks"] == 6


def test_resume_does_only_missing_tasks_and_a_finished_sweep_nothing(tmp_path):
    out = tmp_path / "out"
    tasks = toy_tasks(tmp_path, 8)
    run_toy(tasks[:3], out)  # an "interrupted" sweep: 3 of 8 done
    assert calls(tmp_path / "calls.txt") == [0, 1, 2]
    messages = []
    report = run_toy(tasks, out, log=messages.append, progress=False)
    assert (report.skipped, report.completed) == (3, 5)
    assert calls(tmp_path / "calls.txt") == list(range(8))  # 0..2 were not run again
    assert any("3 of 8" in m for m in messages)
    messages.clear()
    report = run_toy(tasks, out, log=messages.append, progress=False)
    assert not report.did_work and report.skipped == 8
    assert calls(tmp_path / "calls.txt") == list(range(8))
    assert any("nothing to run" in m for m in messages)
    assert len(rows_of(out)) == 8


def test_a_row_cut_short_by_a_kill_is_dropped_and_redone(tmp_path):
    out = tmp_path / "out"
    tasks = toy_tasks(tmp_path, 3)
    run_toy(tasks, out)
    path = out / "results.csv"
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text.rstrip("\n")[: -len(last) // 2])  # half of the last row, no newline
    redo = int(last.split(",")[1])
    report = run_toy(tasks, out)
    assert report.completed == 1
    assert calls(tmp_path / "calls.txt").count(redo) == 2
    assert sorted(int(r["x"]) for r in rows_of(out)) == [0, 1, 2]


def test_failing_task_is_retried_then_recorded_not_fatal(tmp_path):
    out = tmp_path / "out"
    tasks = toy_tasks(tmp_path, 5, fail=[3], fixed=str(tmp_path / "fixed"))
    report = run_toy(tasks, out, retries=2)
    assert report.completed == 4 and report.failed == 1
    assert calls(tmp_path / "calls.txt").count(3) == 3  # the first try and two retries
    failures = sweep.read_failures(out)
    assert len(failures) == 1
    assert "ValueError: x = 3 is bad" in failures[0]["error"]
    assert json.loads(failures[0]["params"])["x"] == 3
    assert sorted(int(r["x"]) for r in rows_of(out)) == [0, 1, 2, 4]
    # Fixed: the next run does the failed task only, and the failure record goes away.
    (tmp_path / "fixed").write_text("")
    report = run_toy(tasks, out, retries=2)
    assert (report.completed, report.failed, report.skipped) == (1, 0, 4)
    assert not (out / "failures.csv").exists()
    assert sorted(int(r["x"]) for r in rows_of(out)) == [0, 1, 2, 3, 4]


def test_other_schema_is_refused(tmp_path):
    out = tmp_path / "out"
    run_toy(toy_tasks(tmp_path, 1), out)
    with pytest.raises(InputError, match="other columns"):
        sweep.run_sweep(square, toy_tasks(tmp_path, 2), out, ["x", "z"], processes=False)


def test_keep_hook_sees_the_whole_result(tmp_path):
    seen = {}
    run_toy(toy_tasks(tmp_path, 2), tmp_path / "out",
            keep=lambda tid, params, result: seen.update({tid: result["not_a_column"]}))
    assert len(seen) == 2 and all(v == [1, 2] for v in seen.values())


def test_real_local_cluster_of_processes(tmp_path):
    out = tmp_path / "out"
    tasks = toy_tasks(tmp_path, 4, fail=[2])
    report = run_toy(tasks, out, processes=True, workers=2, retries=1)
    assert "2 workers" in report.cluster
    assert report.completed == 3 and report.failed == 1
    assert calls(tmp_path / "calls.txt").count(2) == 2
    assert len(rows_of(out)) == 3


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_experiments import square, toy_tasks
from atomtomo.experiments.sweep import run_sweep
from pathlib import Path
run_sweep(square, toy_tasks(Path({tmp!r}), 12, sleep=0.4), {out!r},
          ["x", "calls", "fail", "fixed", "sleep", "y"], workers=1, processes=False)
"""


def test_killed_sweep_resumes_with_only_the_missing_tasks(tmp_path):
    out = tmp_path / "out"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "results.csv").exists() and len(rows_of(out)) >= 3:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = {int(r["x"]) for r in rows_of(out)}
    assert 3 <= len(done_before) < 12
    (tmp_path / "calls.txt").unlink()
    report = run_toy(toy_tasks(tmp_path, 12, sleep=0.4), out, workers=2)
    assert report.skipped == len(done_before)
    assert set(calls(tmp_path / "calls.txt")) == set(range(12)) - done_before
    xs = [int(r["x"]) for r in rows_of(out)]
    assert sorted(xs) == list(range(12))  # each task exactly once


# -- tables ----------------------------------------------------------------------------------------
def test_mean_std_and_markdown():
    assert tables.fmt_mean_std([1.0, 2.0, 3.0]) == "2 ± 1"
    assert tables.fmt_mean_std([float("nan")]) == "–"
    rows = [{"m": "a", "v": 1.0}, {"m": "a", "v": 3.0}, {"m": "b", "v": 0.5}]
    table = tables.aggregate_table(rows, ("m",), ("v",))
    lines = table.strip().splitlines()
    assert lines[0] == "| m | n | v |" and len(lines) == 4
    assert "| a | 2 | 2 ± 1.41 |" == lines[2]


# -- the experiments -------------------------------------------------------------------------------
def test_registry_and_task_grids():
    assert set(EXPERIMENTS) == {"comparison", "alpha-sweep", "initialisation", "learned",
                                "animation"}
    for name in EXPERIMENTS:
        module = get_experiment(name)
        for quick in (True, False):
            grid = module.tasks(quick)
            assert grid and len(sweep.with_ids(grid)) == len(grid)
            for params in grid:
                assert set(params) <= set(module.COLUMNS), (name, set(params) - set(module.COLUMNS))
        assert len(module.tasks(True)) < len(module.tasks(False)) or name == "animation"
    comparison = get_experiment("comparison")
    full = comparison.tasks(False)
    assert len(full) == 5 * 5 * 2 * 3 * 5
    assert {t["method"] for t in full} == set(comparison.METHODS)
    with pytest.raises(InputError, match="unknown experiment"):
        get_experiment("nope")


def test_poor_starts():
    init = get_experiment("initialisation")
    from atomtomo.phantoms import build_phantom

    truth = build_phantom("interstitial")
    for kind in init.STARTS:
        start, size = init.poor_start(kind, truth, seed=3)
        again, _ = init.poor_start(kind, truth, seed=3)
        assert (start.positions == again.positions).all()
        assert start.n_atoms == (truth.n_atoms if kind == "random" else 36)
    with pytest.raises(InputError):
        init.poor_start("upside-down", truth, 0)


def test_directory_of_another_experiment_is_refused(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "experiment.json").write_text('{"experiment": "comparison"}')
    with pytest.raises(InputError, match="holds results of experiment 'comparison'"):
        run_experiment("animation", out, quick=True)


def _has(module, name=None):
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if found and name is not None:
        found = hasattr(importlib.import_module(module), name)
    return found


def test_reproduce_initialisation_end_to_end(tmp_path, monkeypatch):
    """`atomtomo reproduce initialisation --quick -o DIR` on a 2-task grid, through the CLI and a
    real LocalCluster; then a second run does no work."""
    from atomtomo.cli import cli

    def main(args):
        return cli.main(args=args, prog_name="atomtomo", standalone_mode=False)

    init = get_experiment("initialisation")
    monkeypatch.setattr(init, "QUICK", {"alphas": (0.0, 0.01), "angles": (3,), "seeds": (0,)})
    monkeypatch.setattr(init, "STARTS", ("shifted",))
    out = tmp_path / "res"
    assert main(["reproduce", "initialisation", "--quick", "--workers", "1", "-o", str(out)]) == 0
    rows = sweep.read_results(out)
    assert len(rows) == 2 and {r["alpha"] for r in rows} == {0.0, 0.01}
    assert all(0 <= r["f1"] <= 1 and r["success"] in (0, 1) for r in rows)
    assert len(list((out / "configurations").glob("*.xyz"))) == 2
    summary = (out / "summary.md").read_text()
    assert "Success rate" in summary and "| 3 | shifted |" in summary
    if _has("atomtomo.plotting", "plot_distributions"):
        assert (out / "initialisation.png").stat().st_size > 0
        assert (out / "initialisation-errors-3angles.png").stat().st_size > 0
    before = (out / "results.csv").read_text()
    assert main(["reproduce", "initialisation", "--quick", "-o", str(out)]) == 0
    assert (out / "results.csv").read_text() == before
    # No cluster was started: the sweep log has only the first run.
    assert len((out / "sweeps.jsonl").read_text().splitlines()) == 1


# -- the real quick runs (minutes each) -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_quick_experiment(tmp_path, name):
    if name == "comparison" and not _has("atomtomo.solvers.grid_methods"):
        pytest.skip("grid methods not available")
    if name == "learned" and not _has("torch"):
        pytest.skip("torch not available")
    out = tmp_path / name
    result = run_experiment(name, out, quick=True, workers=2)
    assert (out / "results.csv").exists() and (out / "summary.md").exists()
    assert result["ran"] > 0
    if _has("atomtomo.plotting", "plot_panels"):
        assert list(out.glob("*.png")) or list(out.glob("*.gif"))


def test_ids_that_look_like_numbers_stay_strings(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "task_id", lambda params: f"{params['x']}e3334")
    run_toy(toy_tasks(tmp_path, 2), tmp_path / "out")
    assert sorted(r["id"] for r in sweep.read_results(tmp_path / "out")) == ["0e3334", "1e3334"]


def bad_input(params):
    with open(params["calls"], "a") as fh:
        fh.write(f"{params['x']}\n")
    if params["x"] == 1:
        raise InputError("no such model")
    return {"y": 0}


def test_input_errors_are_recorded_without_retries(tmp_path):
    out = tmp_path / "out"
    report = sweep.run_sweep(bad_input, toy_tasks(tmp_path, 3), out, ["x", "calls", "y"],
                             retries=3, processes=False, workers=1)
    assert report.completed == 2 and report.failed == 1
    assert calls(tmp_path / "calls.txt") == [0, 1, 2]  # x = 1 ran once
    failure = sweep.read_failures(out)[0]
    assert failure["attempts"] == "1" and "InputError: no such model" in failure["error"]
