"""The poster's experiments, as sweeps of independent tasks on dask: ``atomtomo reproduce``.

``run_experiment(name, out_dir, quick=..., scheduler=..., workers=...)`` runs one experiment of
:data:`EXPERIMENTS` into ``out_dir``: its tasks go through :func:`.sweep.run_sweep` (one CSV
row per finished task, resumable, failures recorded), then ``summary.md`` and the PNG figures
are made from all rows of the current task grid. Running it again skips every finished task, so
a killed sweep completes only what is missing and a finished one only redraws its summary and
figures.

Every experiment module defines ``DESCRIPTION``, ``COLUMNS`` (the fixed CSV schema),
``tasks(quick)``, ``run_task(params)`` (module level: workers import it), ``keep(out_dir)`` (a
hook that stores a task's non-tabular results, or None), ``summary(rows, failures, quick)``
(Markdown) and ``figures(out_dir, rows, log)`` (the PNG files written). See
``docs/experiments.md``.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from .._io import output_directory, write_text
from ..errors import InputError

#: Experiment name -> module (relative to this package).
EXPERIMENTS = {
    "comparison": ".comparison",
    "alpha-sweep": ".alpha_sweep",
    "initialisation": ".initialisation",
    "learned": ".learned",
    "animation": ".animation",
}
#: The file that records which experiment an output directory holds.
MANIFEST = "experiment.json"


def get_experiment(name: str):
    """The module of experiment ``name``; :class:`InputError` for an unknown name."""
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name], __name__)


def _claim_directory(out: Path, name: str) -> None:
    """Refuse a directory that holds another experiment's results."""
    path = out / MANIFEST
    if path.exists():
        try:
            owner = json.loads(path.read_text()).get("experiment")
        except (OSError, ValueError):
            owner = None
        if owner not in (None, name):
            raise InputError(f"{out} holds results of experiment {owner!r}; "
                             f"use another -o for {name!r}")
        return
    write_text(path, json.dumps({"experiment": name}) + "\n")


def run_experiment(name, out_dir, *, quick=False, scheduler=None, workers=None, log=None,
                   retries=2, processes=True) -> dict:
    """Run experiment ``name`` into directory ``out_dir`` (created; its parent must exist).

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS`.
    out_dir : path
    quick : bool
        The reduced grid and budget (a few minutes on 2 cores).
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); default a local cluster.
    workers : int, optional
        Local workers (processes with one thread each); default the number of cores.
    log : callable(str), optional
        Progress messages; also turns on the progress bar.
    retries : int
        Retries of a failing task before it is recorded in ``failures.csv``.
    processes : bool
        Local workers as processes (default) or as threads of this process (tests).

    Returns
    -------
    dict
        ``results``, ``summary`` and ``figures`` (paths), ``tasks``, ``ran``, ``skipped``,
        ``failed`` and ``wall time``.
    """
    from .sweep import RESULTS, read_failures, read_results, run_sweep, with_ids

    module = get_experiment(name)
    out = output_directory(out_dir)
    _claim_directory(out, name)
    say = log or (lambda msg: None)
    grid = module.tasks(quick)
    say(f"{name}: {module.DESCRIPTION} ({'quick' if quick else 'full'} grid, {len(grid)} tasks)")
    t0 = time.perf_counter()
    # On Ctrl-C the finished rows are already on disk; the command line says so.
    report = run_sweep(module.run_task, grid, out, module.COLUMNS, scheduler=scheduler,
                       workers=workers, retries=retries, keep=module.keep(out), log=log,
                       processes=processes, name=f"{name} tasks")
    ids = set(with_ids(grid))
    rows = [r for r in read_results(out) if r["id"] in ids]
    failures = [f for f in read_failures(out) if f["id"] in ids]
    summary_path = write_text(out / "summary.md", module.summary(rows, failures, quick))
    figures = []
    if rows:
        try:
            figures = [str(p) for p in module.figures(out, rows, log)]
        except Exception as exc:  # noqa: BLE001 -- the results stay; figures can be redrawn
            say(f"figures skipped: {type(exc).__name__}: {' '.join(str(exc).split())} "
                "(run the command again to redraw them)")
    else:
        say("no finished tasks: no figures")
    result = {
        "results": str(out / RESULTS),
        "summary": str(summary_path),
        "figures": ", ".join(Path(f).name for f in figures) or "none",
        "tasks": report.total,
        "ran": report.completed,
        "skipped": report.skipped,
        "failed": len(failures),
        "wall time": f"{time.perf_counter() - t0:.1f} s",
    }
    if failures:
        say(f"{len(failures)} task(s) failed; errors in {out / 'failures.csv'}, e.g. "
            f"{failures[0]['error']}")
    return result


__all__ = ["EXPERIMENTS", "get_experiment", "run_experiment"]
