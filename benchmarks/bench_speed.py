"""Old default against new default, side by side: wall time and F1 on the blind suite's cases.

Each case of :mod:`bench_suite` (a tilt series written in the spec's format, 1 % noise) is
reconstructed by ``atomtomo reconstruct FILE --alpha auto`` twice, back to back, as separate
processes: once with the previous release's code (``--old-src``, default ``/work/main/src``,
put first on ``PYTHONPATH``) and once with this checkout's (``src/`` next to this file). Both
see the same load, so their *ratio* is the number to read on a shared machine; F1 is scored by
one-to-one matching at 0.1 bond length (:func:`atomtomo.metrics.match_atoms`).

::

    python benchmarks/bench_speed.py --cases Z2:8,Z3:4,R3:4 --out speed/
    python benchmarks/bench_speed.py --cases Z2:2 --which new      # new default only

It prints one line per run and a table per set: mean seconds and mean F1 of old and new, and
the ratio of the mean times. ``--which`` runs only one side (e.g. the old side once, stored in
``rows.jsonl``, while the new one is being changed); ``--reuse`` takes finished runs from
``rows.jsonl`` instead of running them again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_suite import make_case, run_case  # noqa: E402

NEW_SRC = HERE.parent / "src"


def run_with(src: Path, case, h5, tag: str, extra) -> dict:
    """:func:`bench_suite.run_case` with ``src`` first on PYTHONPATH; output named by ``tag``."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src) + ("" if not old else os.pathsep + old)
    try:
        link = h5.with_name(f"{h5.stem}_{tag}.h5")
        if not link.exists():
            link.symlink_to(h5.name)
        row = run_case(case, link, "auto", extra)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    row["code"] = tag
    return row


def table(rows) -> str:
    groups = {}
    for r in rows:
        groups.setdefault(f"{r['set']}{r['angles']}", {}).setdefault(r["seed"], {})[r["code"]] = r
    lines = ["| set | cases | old mean s | new mean s | new/old time | old mean F1 | "
             "new mean F1 | new F1 < old |", "|---|---|---|---|---|---|---|---|"]
    for name, cases in sorted(groups.items()):
        both = [c for c in cases.values() if "old" in c and "new" in c]
        if not both:
            continue
        t_old = np.mean([c["old"]["seconds"] for c in both])
        t_new = np.mean([c["new"]["seconds"] for c in both])
        f_old = np.mean([c["old"]["f1"] for c in both])
        f_new = np.mean([c["new"]["f1"] for c in both])
        worse = sum(c["new"]["f1"] < c["old"]["f1"] - 1e-9 for c in both)
        lines.append(f"| {name} | {len(both)} | {t_old:.1f} | {t_new:.1f} | {t_new / t_old:.3f} "
                     f"| {f_old:.3f} | {f_new:.3f} | {worse} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="Z2:8,Z3:4,R3:4",
                        help="SET ANGLES:COUNT, comma-separated (sets Z and R of bench_suite)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--old-src", default="/work/main/src")
    parser.add_argument("--which", default="old,new")
    parser.add_argument("--reuse", action="store_true", help="skip runs already in rows.jsonl")
    parser.add_argument("--out", default="bench-speed")
    parser.add_argument("--extra", default="", help="extra arguments for both reconstructs")
    parser.add_argument("--block", action="store_true", default=True,
                        help="poster-style crystals of 30-56 atoms (default)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "rows.jsonl"
    done = {}
    if args.reuse and log_path.exists():
        for line in log_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["set"], r["angles"], r["seed"], r["code"])] = r
    sources = {"old": Path(args.old_src), "new": NEW_SRC}
    rows = []
    with open(log_path, "a") as log:
        for spec in args.cases.split(","):
            name, count = spec.split(":")
            s, n = name[0], int(name[1:])
            for seed in range(args.first_seed, args.first_seed + int(count)):
                h5 = out / f"{s}{n}_{seed:03d}.h5"
                case = make_case(s, n, seed, h5, block=args.block)
                for tag in args.which.split(","):
                    key = (s, n, seed, tag)
                    if key in done:
                        rows.append(done[key])
                        continue
                    row = run_with(sources[tag], case, h5, tag, args.extra.split())
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
    print(table(rows))


if __name__ == "__main__":
    main()
