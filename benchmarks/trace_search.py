"""Where a search spends its time: wall time per phase and stage, and how many hops each stage
ran after its final best was first found (from the solver's own per-iteration records).

::

    python benchmarks/trace_search.py FILE.h5 [--alpha auto] [--option KEY=VALUE ...]

Runs one search in this process (``restarts=1`` unless given) and prints one line per stage:
seconds, hops, the hop of the last improvement of the stage's best, and the objective.
"""

from __future__ import annotations

import argparse
import json
import time

from atomtomo.solvers.adcg import reconstruct_adcg
from atomtomo.solvers.problem import Problem
from atomtomo.tiltseries import read_tiltseries


def trace(path, alpha="auto", **options):
    problem = Problem.from_tiltseries(read_tiltseries(path))
    options.setdefault("restarts", 1)
    segments, clock = [], time.perf_counter()
    current = {"stage": "adcg", "t": 0.0, "hops": 0, "last_gain": None, "best": None,
               "records": 0}
    segments.append(current)
    last = [clock]

    def callback(record):
        nonlocal current
        now = time.perf_counter()
        dt, last[0] = now - last[0], now
        phase = record["phase"]
        if phase == "hop" and current["stage"] in ("add", "seed", "anneal"):
            current = {"stage": "search", "t": 0.0, "hops": 0, "last_gain": None,
                       "best": None, "records": 0}
            segments.append(current)
        if phase == "hop":
            if current["best"] is None or record["best_objective"] < current["best"] - 1e-12:
                current["last_gain"] = record["hop"]
            current["best"] = record["best_objective"]
            current["hops"] = record["hop"]
        elif phase != current["stage"] or phase in ("lattice", "strain", "dislocation",
                                                      "grains", "alpha"):
            current = {"stage": phase, "t": 0.0, "hops": 0, "last_gain": None,
                       "best": record["best_objective"], "records": 0}
            segments.append(current)
        current["t"] += dt
        current["records"] += 1

    t0 = time.perf_counter()
    result = reconstruct_adcg(problem, alpha=alpha, callback=callback, **options)
    total = time.perf_counter() - t0
    return result, segments, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--alpha", default="auto")
    parser.add_argument("--option", action="append", default=[])
    args = parser.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)
    result, segments, total = trace(args.file, args.alpha, **options)
    for s in segments:
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}))
    print(json.dumps({"total_s": round(total, 2), "n_atoms": result.info["n_atoms"],
                      "hops": result.info["hops"], "objective": result.info["objective"],
                      "alpha": result.info["alpha"], "start": result.info["start"]}))


if __name__ == "__main__":
    main()
