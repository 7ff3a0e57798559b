"""Reference runs of the grid-free solver: record a fixed set of reconstructions, compare two records.

A refactoring of the solver must not change its results by accident. This script runs a fixed set
of reconstructions with fixed seeds (in-process, the same calls the CLI makes) and writes, per
case, the final positions, species, objective, F1 (at 0.1 bond length) and the info dict::

    python benchmarks/reference_runs.py --out /tmp/ref_before.json          # record (~10 min)
    python benchmarks/reference_runs.py --out /tmp/ref_after.json --compare /tmp/ref_before.json
    python benchmarks/reference_runs.py --compare /tmp/ref_before.json --against /tmp/ref_after.json

The set: ``bench_adcg.py``'s quick cases (three poster phantoms at 2 and 3 zone-axis angles,
1 % noise, alpha 0 and auto), three ``bench_suite.py`` zone-axis crops at 2 angles and one at 3,
one off-axis crop at 3 angles (alpha auto, as the suite runs them), and one small 3D particle
solved plane by plane. ``--compare`` prints per case: identical positions?, the largest position
difference, the relative objective difference and F1 before/after. Wall-clock entries of the info
dict (``runtime_s``) are recorded but never compared; no case sets a ``time_limit``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: info keys that depend on wall-clock time (not compared)
WALL_CLOCK = ("runtime_s", "seconds")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _record(name, problem, rec, truth, bond, seconds):
    from atomtomo.metrics import TOLERANCE_BONDS, match_atoms

    m = match_atoms(rec.configuration, truth, TOLERANCE_BONDS * bond)
    cfg = rec.configuration
    return {"case": name, "positions": np.asarray(cfg.positions).tolist(),
            "species": [str(s) for s in cfg.species],
            "objective": float(rec.info.get("objective", np.nan)), "f1": float(m.f1),
            "n_found": int(cfg.n_atoms), "n_true": int(truth.n_atoms),
            "info": _jsonable(dict(rec.info)), "seconds": round(seconds, 2)}


def adcg_cases():
    """bench_adcg.py --quick: poster phantoms, zone axes at 2 and 3 angles, 1 % noise."""
    import bench_adcg
    from atomtomo import Geometry
    from atomtomo.phantoms import build_phantom
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import simulate_tiltseries

    for label, phantom, params, kind in bench_adcg.CASES[:3]:
        for n_angles in (2, 3):
            for alpha in (0.0, "auto"):
                def make(label=label, phantom=phantom, params=params, kind=kind, n=n_angles):
                    rng = np.random.default_rng(0)
                    truth = build_phantom(phantom, dict(params), seed=0)
                    spacing = truth.info["bond_length"]
                    deg = bench_adcg.angles_for(truth, kind, n, rng)
                    geo = Geometry.from_angles(2, np.radians(deg), 144, 0.01)
                    ts = simulate_tiltseries(truth, geo, sigma=spacing / 7.5,
                                             relative_noise=0.01, seed=0)
                    return Problem.from_tiltseries(ts), truth, spacing
                yield f"adcg {label} {n_angles}ang alpha={alpha}", make, {"alpha": alpha}


def suite_cases(workdir: Path):
    """bench_suite.py crops written to files and read back, as the CLI does."""
    import bench_suite
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import read_tiltseries

    for set_name, n_angles, seed in (("Z", 2, 0), ("Z", 2, 1), ("Z", 2, 2), ("Z", 3, 0),
                                     ("R", 3, 0)):
        def make(set_name=set_name, n=n_angles, seed=seed):
            h5 = workdir / f"{set_name}{n}_{seed:03d}.h5"
            case = bench_suite.make_case(set_name, n, seed, h5)
            return Problem.from_tiltseries(read_tiltseries(h5)), case["truth"], case["bond"]
        yield f"suite {set_name}{n_angles} seed {seed} alpha=auto", make, {"alpha": "auto"}


def particle_case():
    """A small fcc particle from 3 angles, solved plane by plane (layers=auto)."""
    from atomtomo import Geometry
    from atomtomo.phantoms import build_phantom
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import simulate_tiltseries

    def make():
        truth = build_phantom("fcc-particle", {"size": 3, "shape": "cuboctahedron"})
        box = np.array(truth.info["box"])
        pixel = 0.4
        n = int(np.ceil((box[0, 1] - box[0, 0]) / pixel)) + 4
        geo = Geometry.from_angles(3, np.radians([-60.0, 0.0, 60.0]), (n, n), pixel)
        ts = simulate_tiltseries(truth, geo, sigma=0.5, relative_noise=0.01, seed=0)
        return Problem.from_tiltseries(ts), truth, truth.info["bond_length"]
    yield "3D fcc cuboctahedron size 3 layers=auto alpha=0", make, {"alpha": 0.0,
                                                                       "layers": "auto"}


def run_all(only=None, out=None):
    """Run the cases (those whose name contains one of ``only``); with ``out``, the record is
    rewritten after every case, so that a run stopped early leaves the cases it finished."""
    from atomtomo.solvers import reconstruct

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [*adcg_cases(), *suite_cases(Path(tmp)), *particle_case()]
        for name, make, kwargs in cases:
            if only and not any(o in name for o in only):
                continue
            problem, truth, bond = make()
            t0 = time.perf_counter()
            rec = reconstruct(problem, "adcg", seed=0, **kwargs)
            seconds = time.perf_counter() - t0
            rows.append(_record(name, problem, rec, truth, bond, seconds))
            r = rows[-1]
            print(f"{name}: {r['n_found']}/{r['n_true']} atoms, F1 {r['f1']:.3f}, "
                  f"objective {r['objective']:.10g}, {seconds:.1f} s", flush=True)
            if out:
                Path(out).write_text(json.dumps(rows))
    return rows


def _info_diff(a: dict, b: dict) -> list[str]:
    keys = sorted((set(a) | set(b)) - set(WALL_CLOCK))
    return [k for k in keys if a.get(k) != b.get(k)]


def compare(old: list[dict], new: list[dict]) -> str:
    """A markdown table: per case, identical positions?, max position difference, relative
    objective difference, F1 before/after and the info keys that differ."""
    by_name = {r["case"]: r for r in new}
    lines = ["| case | identical | max pos diff | objective rel diff | F1 before | F1 after "
             "| info keys differing |", "|---|---|---|---|---|---|---|"]
    for o in old:
        n = by_name.get(o["case"])
        if n is None:
            lines.append(f"| {o['case']} | missing | | | {o['f1']:.3f} | | |")
            continue
        p, q = np.asarray(o["positions"]), np.asarray(n["positions"])
        same_shape = p.shape == q.shape
        identical = same_shape and np.array_equal(p, q) and o["species"] == n["species"]
        diff = float(np.abs(p - q).max()) if same_shape and p.size else (0.0 if same_shape
                                                                          else np.inf)
        denom = max(abs(o["objective"]), 1e-300)
        rel = abs(n["objective"] - o["objective"]) / denom
        keys = _info_diff(o["info"], n["info"])
        lines.append(f"| {o['case']} | {'yes' if identical else 'NO'} | "
                     f"{diff:.3g} | {rel:.3g} | {o['f1']:.3f} | {n['f1']:.3f} | "
                     f"{', '.join(keys) or '-'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the record (JSON) here")
    parser.add_argument("--compare", help="an earlier record to compare with")
    parser.add_argument("--against", help="compare --compare with this record instead of "
                                           "running the cases")
    parser.add_argument("--only", action="append",
                        help="run only the cases whose name contains this (repeatable)")
    args = parser.parse_args(argv)
    if args.against:
        new = json.loads(Path(args.against).read_text())
    else:
        new = run_all(args.only, args.out)
    if args.compare:
        old = json.loads(Path(args.compare).read_text())
        if args.only:
            old = [r for r in old if any(o in r["case"] for o in args.only)]
        names = {r["case"] for r in new}
        old = [r for r in old if r["case"] in names]  # the cases both records hold
        print(compare(old, new))


if __name__ == "__main__":
    main()
