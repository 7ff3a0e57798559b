"""Small helpers shared by the benchmark scripts: thread limits, timing, tables, JSON.

Import this module BEFORE numpy when you want :func:`limit_threads` to take effect.
"""

from __future__ import annotations

import json
import os
import platform
import time

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def limit_threads(n: int | None) -> None:
    """Ask BLAS / OpenMP / numba for ``n`` threads (must run before numpy is imported)."""
    if n is None:
        return
    for var in _THREAD_VARS:
        os.environ[var] = str(int(n))


def best_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Best wall-clock time of ``fn()`` over ``repeat`` runs, after ``warmup`` untimed runs.

    The minimum is the least disturbed run: on a shared machine other processes only ever add
    time.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def print_table(rows, columns, title=None) -> None:
    """A plain-text table of ``rows`` (dicts) with the given ``columns`` (key, header, format)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-"
                      for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    if title:
        print(title)
    for i, r in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def machine_info() -> dict:
    import numpy as np

    info = {"python": platform.python_version(), "numpy": np.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": {v: os.environ.get(v) for v in _THREAD_VARS if os.environ.get(v)}}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    return info


def write_json(path, payload) -> None:
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
