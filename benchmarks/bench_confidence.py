"""Does per-atom confidence flag the wrong atoms? Blind cases, several seeds each.

Each case of ``bench_suite.py`` (random 2D defect lattices, 1 % noise) is reconstructed with
``atomtomo reconstruct FILE --alpha auto --seed K`` for each seed (separate processes, ``--jobs``
at once); :func:`atomtomo.confidence.atom_confidence` annotates the run with the lowest
objective; an atom is "uncertain" when some other run has no atom within 0.1 bond length of it
and "wrong" when it is not matched to the truth. Prints one JSON line per case and the pooled
precision (uncertain atoms that are wrong) and recall (wrong atoms that are uncertain).

    PYTHONPATH=src python benchmarks/bench_confidence.py --cases 3 --sets R,Z --angles 3,2 \\
        --seeds 0,1,2 --time-limit 30 --jobs 2 --out conf/
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_suite import make_case  # noqa: E402

from atomtomo.configuration import read_xyz  # noqa: E402
from atomtomo.confidence import atom_confidence, uncertainty_scores  # noqa: E402
from atomtomo.metrics import TOLERANCE_BONDS, match_atoms  # noqa: E402


def run(h5: Path, seed: int, time_limit: float, timeout: float) -> Path | None:
    """One reconstruction in its own process group (killed whole on timeout); None if it
    failed or ran out of time."""
    import os
    import signal

    out = h5.with_name(f"{h5.stem}_seed{seed}.xyz")
    if out.exists():  # resume
        return out
    cmd = [sys.executable, "-m", "atomtomo", "reconstruct", str(h5), "--alpha", "auto", "-q",
           "--seed", str(seed), "--option", f"time_limit={time_limit}", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    return out if proc.returncode == 0 and out.exists() else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3, help="cases per (set, angles) pair")
    ap.add_argument("--sets", default="R,Z")
    ap.add_argument("--angles", default="3,2", help="angle count per set, same order")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--first", type=int, default=0, help="index of the first case")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="confidence-"))
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = []
    for set_name, n_angles in zip(args.sets.split(","), map(int, args.angles.split(","))):
        for k in range(args.first, args.first + args.cases):
            h5 = out / f"{set_name}{n_angles}_{k}.h5"
            cases.append((make_case(set_name, n_angles, 100 + k, h5), h5))
    jobs = [(h5, s) for _, h5 in cases for s in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        files = list(pool.map(lambda j: run(j[0], j[1], args.time_limit, args.timeout), jobs))
    pooled = {"uncertain": 0, "wrong": 0, "uncertain_and_wrong": 0, "n_atoms": 0}
    for c, (case, h5) in enumerate(cases):
        runs = [read_xyz(f, ndim=2) for f in files[c * len(seeds):(c + 1) * len(seeds)]
                if f is not None]
        if len(runs) < 2:
            print(json.dumps({"case": h5.stem, "skipped": f"{len(runs)} run(s) finished"}))
            continue
        tol = TOLERANCE_BONDS * case["bond"]
        annotated = atom_confidence(runs, tolerance=tol)
        scores = uncertainty_scores(annotated, case["truth"], tol)
        f1s = [round(match_atoms(r, case["truth"], tol).f1, 3) for r in runs]
        row = {"case": h5.stem, "defects": case["defects"], "f1_per_seed": f1s,
               "reference_f1": f1s[annotated.info["confidence_reference"]],
               "certain_fraction": round(annotated.info["certain_fraction"], 3), **scores}
        print(json.dumps(row), flush=True)
        for key in pooled:
            pooled[key] += scores[key]
    tp = pooled["uncertain_and_wrong"]
    pooled["precision"] = round(tp / pooled["uncertain"], 3) if pooled["uncertain"] else None
    pooled["recall"] = round(tp / pooled["wrong"], 3) if pooled["wrong"] else None
    print(json.dumps({"pooled": pooled}))


if __name__ == "__main__":
    main()
