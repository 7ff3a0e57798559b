"""F1 and runtime of the grid baselines on the poster's lattices (issue: grid baselines).

Run on demand::

    python benchmarks/bench_grid.py                  # sirt, fista, annealing: 3 lattices x 2, 3
    python benchmarks/bench_grid.py --adcg           # also ADCG at alpha = 0 and auto (slow)
    python benchmarks/bench_grid.py --seeds 3        # noise seeds 0..2, mean F1

Every case goes through the command line exactly as a user would run it::

    atomtomo simulate --phantom P --zone-axis N --relative-noise 0.01 --seed S -o case.h5
    atomtomo reconstruct case.h5 --method M -o out.xyz
    atomtomo evaluate out.xyz --truth case.h5 --json      # tolerance: 0.1 x bond length

(in process, through click's test runner). The runtime is the method's own ``runtime_s``: the
reconstruction alone, without reading files or starting Python.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from atomtomo.cli import cli
from atomtomo.configuration import read_xyz

PHANTOMS = ("interstitial", "vacancy", "dislocation")
GRID_METHODS = (("sirt", {}), ("fista", {}), ("annealing", {}),
                ("annealing", {"lattice": "true"}))


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exit_code != 0:
        raise RuntimeError(f"atomtomo {' '.join(map(str, args))}: {result.stderr}")
    return result.stdout


def run(methods, n_seeds, workdir):
    rows = []
    for phantom in PHANTOMS:
        for zone in (2, 3):
            for method, opts in methods:
                f1, runtime, rmsd = [], [], []
                for seed in range(n_seeds):
                    h5 = workdir / f"{phantom}_{zone}_{seed}.h5"
                    if not h5.exists():
                        _run("simulate", "--phantom", phantom, "--zone-axis", zone,
                             "--relative-noise", 0.01, "--seed", seed, "-o", h5, "-q")
                    out = workdir / "out.xyz"
                    extra = [a for k, v in opts.items() for a in ("--option", f"{k}={v}")]
                    if method == "adcg":
                        extra = ["--alpha", opts.get("alpha", 0)]
                    _run("reconstruct", h5, "--method", method, "--seed", seed,
                         *extra, "-o", out, "-q")
                    score = json.loads(_run("evaluate", out, "--truth", h5, "--json"))
                    f1.append(score["f1"])
                    rmsd.append(score.get("rmsd") or np.nan)
                    runtime.append(float(read_xyz(out).info.get("runtime_s", np.nan)))
                label = method + "".join(f" {k}={v}" for k, v in opts.items())
                rows.append((phantom, zone, label, np.mean(f1), np.mean(rmsd), np.mean(runtime)))
                print(f"{phantom:13s} {zone} angles  {label:24s} F1 {np.mean(f1):.3f}  "
                      f"rmsd {np.mean(rmsd):.4f}  {np.mean(runtime):7.2f} s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adcg", action="store_true", help="also ADCG, alpha = 0 and auto")
    parser.add_argument("--seeds", type=int, default=1, help="noise seeds per case")
    args = parser.parse_args()
    methods = list(GRID_METHODS)
    if args.adcg:
        methods += [("adcg", {"alpha": 0}), ("adcg", {"alpha": "auto"})]
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(methods, args.seeds, Path(tmp))
    print("\n| lattice | angles | method | F1 @ 0.1 bond | rmsd | runtime (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for phantom, zone, label, f1, rmsd, runtime in rows:
        print(f"| {phantom} | {zone} | {label} | {f1:.3f} | {rmsd:.4f} | {runtime:.2f} |")


if __name__ == "__main__":
    main()
