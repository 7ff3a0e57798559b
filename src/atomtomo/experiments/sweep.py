"""Sweeps of independent tasks on dask.distributed, with every result kept the moment it exists.

A *task* is a dict of JSON-serialisable parameters. Its id (:func:`task_id`) is a hash of the
parameters with sorted keys, so the same task has the same id in every run. :func:`run_sweep`

1. reads ``DIR/results.csv`` and skips every task whose id is already there (a finished sweep
   therefore does no work, and says so, without even starting a cluster);
2. submits the others to dask: a :class:`distributed.LocalCluster` (``workers`` processes of one
   thread each; OpenMP, MKL, OpenBLAS and numba limited to one thread per worker) or the cluster
   behind a scheduler address;
3. as each task finishes (:func:`distributed.as_completed`), appends its row to ``results.csv``
   and flushes and fsyncs the file, so an interrupted sweep loses only the tasks that were
   running, and the next run does exactly the missing ones;
4. lets dask retry a task that raises (``retries``); one that still fails is appended to
   ``DIR/failures.csv`` with its error and reported at the end -- the sweep goes on. (An
   :class:`~atomtomo.errors.InputError`, e.g. a missing model file, is not retried: it would
   fail again.) The next run tries failed tasks again;
5. shows a progress bar (tasks done / total, failures) and appends one line per run to
   ``DIR/sweeps.jsonl`` (when, how many workers, how many tasks, how long), which is where the
   full-run times and the speed-up of more workers are read from.

The CSV schema is fixed per sweep: ``id``, the given columns, ``wall_s`` and ``cpu_s`` (the
task's wall and CPU time on its worker) and ``warnings``. A results file with another header is
refused rather than mixed.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import json
import logging
import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .._io import atomic_path
from ..errors import InputError

RESULTS = "results.csv"
FAILURES = "failures.csv"
SWEEP_LOG = "sweeps.jsonl"
#: Columns the runner adds around an experiment's own columns.
LEADING = ("id",)
TRAILING = ("wall_s", "cpu_s", "warnings")
FAILURE_COLUMNS = ("id", "params", "error", "attempts", "time")
#: Environment of local worker processes: one thread per worker for every numeric library, so
#: n workers use n cores (set before the worker imports numpy, numba or torch).
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


# ---------------------------------------------------------------------------------------------
# Tasks and their ids
# ---------------------------------------------------------------------------------------------
def task_id(params: dict) -> str:
    """A stable id of a task: the first 12 hex digits of the SHA-256 of its sorted-key JSON."""
    try:
        text = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except TypeError as exc:
        raise InputError(f"task parameters must be JSON values: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def with_ids(tasks) -> dict:
    """``{id: params}`` in the given order; duplicate tasks collapse into one."""
    out = {}
    for params in tasks:
        if not isinstance(params, dict):
            raise InputError(f"a task must be a dict of parameters, got {type(params).__name__}")
        out.setdefault(task_id(params), dict(params))
    return out


# ---------------------------------------------------------------------------------------------
# The results file: one row per finished task, appended and synced at once
# ---------------------------------------------------------------------------------------------
def _cell(value):
    """A CSV cell: numbers at full precision, containers as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (int, str)):
        return value
    return json.dumps(value, default=float)


def parse_cell(text: str):
    """Inverse of the CSV encoding for reading: int, float, None (empty) or the string."""
    if text is None or text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _repair_tail(path: Path) -> None:
    """Drop a last line without its newline (a write cut short by a kill)."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())


class CsvLog:
    """An append-only CSV file with a fixed header; every :meth:`append` is flushed and synced."""

    def __init__(self, path, columns):
        self.path = Path(path)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size > 0:
            _repair_tail(self.path)
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), None)
            if header is not None and header != self.columns:
                raise InputError(
                    f"{self.path} has other columns than this sweep writes "
                    f"({', '.join(header[:6])}...); use another output directory"
                )

    def rows(self) -> list[dict]:
        """All complete rows, as dicts of strings."""
        return _complete_rows(self.path)

    def append(self, row: dict) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, extrasaction="ignore", restval="",
                                lineterminator="\n")
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            writer.writeheader()
        writer.writerow({k: _cell(v) for k, v in row.items() if k in self.columns})
        with open(self.path, "a", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())


def _complete_rows(path: Path) -> list[dict]:
    """The complete rows of a CSV file (a row cut short by a crash has None cells), as strings."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if None not in row.values()]


def read_results(out_dir) -> list[dict]:
    """The rows of ``out_dir/results.csv`` with numbers parsed (empty cells are None); the
    ``id`` stays a string (an id like ``3812754e3334`` would otherwise read as a float)."""
    return [{k: v if k in LEADING else parse_cell(v) for k, v in row.items()}
            for row in _complete_rows(Path(out_dir) / RESULTS)]


def read_failures(out_dir) -> list[dict]:
    """The rows of ``out_dir/failures.csv`` (the tasks that failed and have not succeeded since)."""
    return CsvLog(Path(out_dir) / FAILURES, FAILURE_COLUMNS).rows()


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepReport:
    """What one :func:`run_sweep` call did."""

    total: int
    skipped: int
    completed: int = 0
    failures: list = field(default_factory=list)
    wall_s: float = 0.0
    cluster: str = ""

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def did_work(self) -> bool:
        return self.completed + self.failed > 0


class BadTask(Exception):
    """A task whose parameters are invalid (:class:`InputError`): retrying cannot help."""


def execute_task(fn, params):
    """Run ``fn(params)`` on a worker: returns ``(result, timing, warnings)``.

    ``timing`` holds the task's wall time and the CPU time of the thread that ran it (workers are
    single-threaded: this is the cost of the task whatever else runs on the machine). Warnings
    are collected (one line each) instead of being printed by the worker process. An
    :class:`InputError` is returned as ``(BadTask(message), timing, warnings)`` instead of being
    raised, so that dask does not retry what is bound to fail again.
    """
    for key, value in WORKER_ENV.items():  # for libraries the task imports itself
        os.environ.setdefault(key, value)
    start, cpu = time.perf_counter(), time.thread_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(dict(params))
        except InputError as exc:
            result = BadTask(_error_text(exc, exc.__traceback__))
    if not isinstance(result, (dict, BadTask)):
        raise TypeError(f"a task function must return a dict, got {type(result).__name__}")
    messages = sorted({f"{w.category.__name__}: {' '.join(str(w.message).split())}"
                       for w in caught})
    timing = {"wall_s": time.perf_counter() - start, "cpu_s": time.thread_time() - cpu}
    return result, timing, "; ".join(messages)


@contextlib.contextmanager
def dask_client(scheduler=None, workers=None, *, processes=True, n_tasks=None):
    """A :class:`distributed.Client`: of the scheduler at ``scheduler``, or of a new
    :class:`~distributed.LocalCluster` with ``workers`` single-threaded workers (default: the
    number of cores, at most ``n_tasks``). Yields ``(client, description)``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "sweeps need dask.distributed: pip install 'atomtomo[dist]'"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
        with client:
            n = len(client.scheduler_info().get("workers", {}))
            yield client, f"scheduler {scheduler} ({n} workers)"
        return
    n = int(workers) if workers else max(1, min(os.cpu_count() or 1, n_tasks or 1))
    kwargs = {"env": dict(WORKER_ENV)} if processes else {}
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                      dashboard_address=":0", silence_logs=logging.CRITICAL, **kwargs) as cluster, \
            Client(cluster) as client:
        yield client, f"local cluster ({n} worker{'s' * (n != 1)}, 1 thread each)"


def _progress_bar(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console)


def _error_text(exc, tb) -> str:
    where = ""
    if tb is not None:
        frames = traceback.extract_tb(tb)
        if frames:
            last = frames[-1]
            where = f" (at {Path(last.filename).name}:{last.lineno})"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}"


def run_sweep(fn, tasks, out_dir, columns, *, scheduler=None, workers=None, retries=2,
              keep=None, log=None, progress=None, processes=True, name="tasks") -> SweepReport:
    """Run ``fn(params)`` for every task not yet in ``out_dir/results.csv``, on dask.

    Parameters
    ----------
    fn : callable(dict) -> dict
        A module-level function (workers import it by name). Its result's keys that are in
        ``columns`` go into the task's CSV row; all keys go to ``keep``.
    tasks : iterable of dict
        Task parameters (JSON values); their keys should be among ``columns``.
    out_dir : path
        Directory of ``results.csv``, ``failures.csv`` and ``sweeps.jsonl`` (created if needed).
    columns : sequence of str
        The CSV columns (parameters and results), without ``id``, ``wall_s``, ``cpu_s`` and
        ``warnings``, which the runner adds.
    scheduler : str, optional
        Address of a running dask scheduler; default a new local cluster.
    workers : int, optional
        Local workers (default: the number of cores, at most the number of tasks to run).
    retries : int
        How often dask retries a failing task before it is recorded as failed.
    keep : callable(task_id, params, result), optional
        Called in this process for each finished task before its row is appended (e.g. to
        write the reconstructed configuration next to the table).
    log : callable(str), optional
        Progress messages; with ``progress`` (default: whether ``log`` is given) a rich
        progress bar on stderr.
    processes : bool
        Local workers as processes (default) or threads of this process (for tests).
    name : str
        What the tasks are called in messages and the progress bar.

    Returns
    -------
    SweepReport
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = list(LEADING) + [c for c in columns if c not in LEADING + TRAILING] + list(TRAILING)
    results = CsvLog(out / RESULTS, header)
    failures_log = CsvLog(out / FAILURES, FAILURE_COLUMNS)
    todo = with_ids(tasks)
    done = {row["id"] for row in results.rows()}
    pending = {tid: p for tid, p in todo.items() if tid not in done}
    report = SweepReport(total=len(todo), skipped=len(todo) - len(pending))
    say = log or (lambda msg: None)
    if not pending:
        say(f"all {len(todo)} {name} are already in {results.path}; nothing to run")
        _tidy_failures(out, done)
        return report
    if report.skipped:
        say(f"{report.skipped} of {len(todo)} {name} already done; "
            f"running the other {len(pending)}")

    started = datetime.datetime.now().astimezone()
    t0 = time.perf_counter()
    show_bar = (log is not None) if progress is None else bool(progress)
    try:
        with dask_client(scheduler, workers, processes=processes,
                         n_tasks=len(pending)) as (client, desc):
            report.cluster = desc
            say(f"running {len(pending)} {name} on a {desc}" if not scheduler else
                f"running {len(pending)} {name} on the {desc}")
            _run_pending(client, fn, pending, results, failures_log, keep, retries, report,
                         show_bar, name)
    finally:
        report.wall_s = time.perf_counter() - t0
        _append_sweep_log(out, started, report, workers, scheduler)
        _tidy_failures(out, {row["id"] for row in results.rows()})
    say(f"{report.completed} {name} finished in {report.wall_s:.1f} s" +
        (f"; {report.failed} failed (see {out / FAILURES})" if report.failed else ""))
    return report


def _run_pending(client, fn, pending, results, failures_log, keep, retries, report, show_bar, name):
    from distributed import as_completed

    futures, task_of = [], {}
    for tid, params in pending.items():
        fut = client.submit(execute_task, fn, params, key=f"{name}-{tid}", retries=int(retries),
                            pure=False)
        futures.append(fut)
        task_of[fut.key] = (tid, params)
    bar_cm = contextlib.nullcontext()
    if show_bar:
        from rich.console import Console

        bar_cm = _progress_bar(Console(stderr=True, highlight=False))
    with bar_cm as bar:
        bar_task = None
        if bar is not None:
            bar_task = bar.add_task(name, total=report.total, completed=report.skipped, failed=0)
        finished = as_completed(futures)
        futures.clear()  # as_completed holds each future until it is yielded, then we drop it
        for fut in finished:
            tid, params = task_of.pop(fut.key)
            error, attempts = None, int(retries) + 1
            if fut.status == "finished":
                try:
                    result, timing, warned = fut.result()
                    if isinstance(result, BadTask):
                        raise result
                    if keep is not None:
                        keep(tid, params, result)
                    results.append({**params, **result, **timing, "id": tid, "warnings": warned})
                    report.completed += 1
                except BadTask as exc:
                    error, attempts = str(exc), 1
                except Exception as exc:  # noqa: BLE001 -- a failure of this task only
                    error = _error_text(exc, exc.__traceback__)
            else:
                exc = fut.exception() if fut.status == "error" else None
                error = (_error_text(exc, fut.traceback()) if exc is not None
                         else f"task {fut.status}")
            if error is not None:
                row = {"id": tid, "params": json.dumps(params, sort_keys=True), "error": error,
                       "attempts": attempts,
                       "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
                failures_log.append(row)
                report.failures.append(row)
            if bar is not None:
                bar.update(bar_task, advance=1, failed=report.failed)


def _append_sweep_log(out, started, report, workers, scheduler):
    entry = {
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round(report.wall_s, 3),
        "cluster": report.cluster,
        "workers": workers,
        "scheduler": scheduler,
        "tasks": report.total,
        "skipped": report.skipped,
        "completed": report.completed,
        "failed": report.failed,
    }
    with open(out / SWEEP_LOG, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _tidy_failures(out, done_ids):
    """Keep in failures.csv only the last failure of each task that has not succeeded since."""
    path = out / FAILURES
    if not path.exists():
        return
    rows = CsvLog(path, FAILURE_COLUMNS).rows()
    latest = {}
    for row in rows:
        if row["id"] not in done_ids:
            latest[row["id"]] = row
    if not latest:
        path.unlink()
        return
    if len(latest) == len(rows):
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, FAILURE_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(latest.values())
