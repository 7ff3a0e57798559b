"""Blind test suite for ``atomtomo reconstruct``: random defect lattices through the real CLI.

This mimics how outside users (and the project's acceptance checks) run the solver: a tilt
series is written in the spec's file format (with ``atom_sigma``, ``bond_length``, ``box`` and
``noise_std``, 1 % Gaussian noise), ``atomtomo reconstruct FILE --alpha A -o OUT.xyz`` runs as a
separate process, and the result is scored by one-to-one matching at 0.1 x bond length.

Two sets of cases, drawn from a seed:

* **Z** -- crystals imaged along 2 or 3 zone axes (:func:`atomtomo.phantoms.zone_axis_angles`),
  each angle misaligned by up to 1 degree (``--zone-pair mixed``: two angles along another pair
  of zone axes, :func:`zone_angles`);
* **R** -- lattices at random orientations, seen from 2 or 3 arbitrary angles (at least 25
  degrees apart).

Lattices are square or hexagonal, spacing 0.12-0.2 in the unit box, with one or two defects
among vacancy, divacancy, interstitial, dislocation and grain boundary (not in Z: the grains of
a boundary share no zone axis), and a little jitter;
atom width ``sigma`` is 1/8 to 1/5 of the spacing and the pixel 0.5-1 sigma.

Run on demand (each case is a separate ``atomtomo`` process; ``--jobs`` run at once)::

    python benchmarks/bench_suite.py --cases 10 --jobs 2 --out suite/      # both sets
    python benchmarks/bench_suite.py --sets Z --angles 2 --cases 4          # a quick look

It prints one line per run and a summary table (mean F1 per set, angle count and alpha).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from atomtomo.geometry import Geometry
from atomtomo.metrics import TOLERANCE_BONDS, match_atoms
from atomtomo.phantoms import random_defect_lattice, zone_axis_angles
from atomtomo.tiltseries import simulate_tiltseries, write_tiltseries

DEFECTS = ("vacancy", "divacancy", "interstitial", "dislocation", "grain-boundary")
#: A grain boundary has no common zone axis (its grains are rotated against each other).
ZONE_DEFECTS = ("vacancy", "divacancy", "interstitial", "dislocation")


def block_crystal(rng, defects):
    """A poster-style crystal: a block of whole rows of a square or hexagonal lattice (edges
    along lattice rows) at a random orientation, with one or two point defects inside."""
    from atomtomo.phantoms.defects import add_divacancy, add_interstitial, add_vacancy
    from atomtomo.phantoms.lattices2d import lattice_block, make_phantom

    for _ in range(1000):
        kind = ("square", "hexagonal")[rng.integers(2)]
        a = rng.uniform(0.12, 0.16)
        rotation = rng.uniform(0, np.pi / 2 if kind == "square" else np.pi / 3)
        nx, ny = rng.integers(5, 8, size=2)
        if not 30 <= nx * ny <= 56:
            continue
        cfg = make_phantom(lattice_block(kind, nx, ny, a, rotation), "block", a, lattice=kind,
                           rotation=float(rotation))
        for label in rng.choice(list(defects), size=rng.integers(1, 3)):
            centre = rng.uniform(-1.2 * a, 1.2 * a, 2)
            if label == "vacancy":
                cfg = add_vacancy(cfg, centre, relax=-0.05 * rng.uniform(0, 2))
            elif label == "divacancy":
                cfg = add_divacancy(cfg, centre, rng.normal(size=2),
                                    relax=-0.05 * rng.uniform(0, 2))
            else:
                cfg = add_interstitial(cfg, centre, relax=0.1 * rng.uniform(1, 2))
        if np.abs(cfg.positions).max() < 0.45:  # inside the unit box with a margin
            break
    else:
        raise RuntimeError("no block crystal fits the unit box")
    cfg.info["defects"] = ",".join(sorted(set(str(d) for d in cfg.info.get("defects", "").split(",") if d)))
    return cfg


def zone_angles(kind: str, rotation: float, n_angles: int, pair: str = "first") -> np.ndarray:
    """Zone-axis tilt angles (radians) from :func:`zone_axis_angles`: the densest axes first
    (``pair="first"``, the default) or, for two angles, a mixed pair (``pair="mixed"``): a square
    crystal along [10] and [11], a hexagonal one along a dense and a sparse row family."""
    if pair == "first" or n_angles != 2:
        return zone_axis_angles(kind, rotation, n_angles)
    if kind == "square":  # [10], [01], [11] -> [10] and [11]
        return zone_axis_angles(kind, rotation, 3)[[0, 2]]
    return np.array([zone_axis_angles(kind, rotation, 1)[0],
                     zone_axis_angles(kind, rotation, 2, dense=False)[1]])


def make_case(set_name: str, n_angles: int, seed: int, path: Path, defects=None,
              block=False, zone_pair: str = "first") -> dict:
    """Draw one case and write its tilt series to ``path``; returns its description."""
    rng = np.random.default_rng([ord(set_name), n_angles, seed])
    if defects is None:
        defects = ZONE_DEFECTS if set_name == "Z" else DEFECTS
    if block:
        truth = block_crystal(rng, [d for d in defects if d in ("vacancy", "divacancy",
                                                                 "interstitial")])
    else:
        truth = random_defect_lattice(rng, defects=defects, n_defects=(1, 2),
                                      jitter_range=(0, 0.02))
    a = truth.info["spacing"]
    kind, rotation = truth.info["lattice"], truth.info["rotation"]
    if set_name == "Z":
        deg = np.degrees(zone_angles(kind, rotation, n_angles, zone_pair)) + rng.uniform(-1, 1, n_angles)
    else:
        while True:
            deg = np.sort(rng.uniform(0, 180, n_angles))
            gaps = np.diff(np.r_[deg, deg[0] + 180])
            if gaps.min() >= 25:
                break
    sigma = a * rng.uniform(1 / 8, 1 / 5)
    pixel = sigma * rng.uniform(0.5, 1.0)
    n_det = int(np.ceil(np.sqrt(2) / pixel)) + 2
    geo = Geometry.from_angles(2, np.radians(deg), n_det, pixel)
    ts = simulate_tiltseries(truth, geo, sigma, relative_noise=0.01, seed=seed,
                             box=[[-0.5, 0.5], [-0.5, 0.5]], bond_length=a)
    write_tiltseries(ts, path)
    return {"set": set_name, "angles": n_angles, "seed": seed, "lattice": kind,
            "defects": truth.info.get("defects", ""), "n_true": truth.n_atoms,
            "angles_deg": [round(float(d), 2) for d in deg], "sigma_over_a": sigma / a,
            "pixel_over_sigma": pixel / sigma, "truth": truth, "bond": a}


def run_case(case: dict, h5: Path, alpha: str, extra: list[str]) -> dict:
    out = h5.with_name(f"{h5.stem}_alpha{alpha}.xyz")
    cmd = [sys.executable, "-m", "atomtomo", "reconstruct", str(h5), "--alpha", alpha, "-q",
           "-o", str(out), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    row = {k: v for k, v in case.items() if k not in ("truth",)}
    row.update(alpha=alpha, seconds=round(seconds, 1), status=proc.returncode)
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip()[-300:]
        row.update(f1=0.0, n_found=0)
        return row
    from atomtomo.configuration import read_xyz

    found = read_xyz(out, ndim=2)
    m = match_atoms(found, case["truth"], TOLERANCE_BONDS * case["bond"])
    row.update(f1=round(m.f1, 4), n_found=m.n_found,
               mean_distance_over_a=(None if m.n_matched == 0
                                     else round(m.mean_distance / case["bond"], 4)),
               alpha_used=found.info.get("alpha"),
               search_quality=round(search_quality(h5, found, case["truth"]), 4))
    return row


def search_quality(h5: Path, found, truth) -> float:
    """:func:`atomtomo.solvers.objective.search_quality` at the alpha the run used."""
    from atomtomo.solvers.objective import search_quality as quality
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import read_tiltseries

    problem = Problem.from_tiltseries(read_tiltseries(h5))
    return quality(problem, found, truth, float(found.info.get("alpha", 0.0)),
                   hull=float(found.info.get("hull", 0.0)))


def summary(rows) -> str:
    groups = {}
    for r in rows:
        groups.setdefault((r["set"], r["angles"], r["alpha"]), []).append(r)
    lines = ["| set | angles | alpha | cases | mean F1 | min F1 | F1 >= 0.9 | quality <= 0.05 "
             "| mean s |", "|---|---|---|---|---|---|---|---|---|"]
    for (s, n, alpha), rs in sorted(groups.items()):
        f1 = np.array([r["f1"] for r in rs])
        sec = np.array([r["seconds"] for r in rs])
        quality = np.array([r.get("search_quality", np.inf) for r in rs])
        lines.append(f"| {s} | {n} | {alpha} | {len(rs)} | {f1.mean():.3f} | {f1.min():.3f} "
                     f"| {np.mean(f1 >= 0.9):.0%} | {np.mean(quality <= 0.05):.0%} "
                     f"| {sec.mean():.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="Z,R")
    parser.add_argument("--angles", default="2,3")
    parser.add_argument("--alphas", default="0,auto")
    parser.add_argument("--cases", type=int, default=6, help="cases per set and angle count")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="bench-suite")
    parser.add_argument("--extra", default="", help="extra arguments for reconstruct")
    parser.add_argument("--block", action="store_true",
                        help="poster-style crystals: blocks of whole lattice rows, point defects")
    parser.add_argument("--zone-pair", choices=("first", "mixed"), default="first",
                        help="two zone axes: the two densest (default) or a mixed pair (square "
                             "[10]+[11], hexagonal dense+sparse rows, 45 and 30 degrees apart)")
    parser.add_argument("--defects", default=None,
                        help="comma-separated defect kinds to draw from (default: all that fit)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for s in args.sets.split(","):
        for n in (int(v) for v in args.angles.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.cases):
                h5 = out / f"{s}{n}_{seed:03d}.h5"
                case = make_case(s, n, seed, h5,
                                 None if args.defects is None else args.defects.split(","),
                                 block=args.block, zone_pair=args.zone_pair)
                for alpha in args.alphas.split(","):
                    jobs.append((case, h5, alpha))
    rows = []
    log = open(out / "rows.jsonl", "a")
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(lambda j: run_case(*j, args.extra.split()), jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
    print(summary(rows))


if __name__ == "__main__":
    main()
