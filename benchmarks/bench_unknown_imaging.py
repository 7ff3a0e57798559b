"""Validation set for unknown image formation (issue 35): scale, width and background "auto".

Every case is simulated with ``atomtomo simulate --unknown all --intensity-scale S
[--background auto] --relative-noise 0.01`` (the file says ``atom_sigma``, ``intensity_scale``
and ``background`` are "auto"; the true values stay in the file), then either

* ``--estimate``: only the initial estimates from the data alone
  (:func:`atomtomo.solvers.imaging_fit.initial_imaging`, seconds per case), or
* by default: reconstructed through the CLI, ``atomtomo reconstruct FILE --alpha auto
  --option time_limit=T``, and scored with ``atomtomo evaluate --json`` (F1 at 0.1 bond length).

It prints one row per case: relative errors of sigma and of the intensity scale (initial, and
final for full runs), atom counts and F1, and writes all rows as JSON (``--json``).

Usage::

    PYTHONPATH=src python benchmarks/bench_unknown_imaging.py --estimate
    PYTHONPATH=src python benchmarks/bench_unknown_imaging.py --cases random-lattice-3 \\
        --time-limit 300 --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: name -> (phantom, angles, intensity scale, background on, seed, extra simulate args)
CASES = {
    "vacancy-2": ("vacancy", "0,90", 0.01, True, 0, []),
    "interstitial-2": ("interstitial", "0,90", 1.0, False, 0, []),
    "edge-dislocation-2": ("edge-dislocation", "0,90", 100.0, True, 1, []),
    "hexagonal-3": ("hexagonal", "0,60,120", 3000.0, True, 0, []),
    "square-3": ("square", "0,45,90", 1.0, False, 0, []),
    "random-lattice-3": ("random-lattice", "0,50,100", 3000.0, True, 0, []),
    "random-lattice-3b": ("random-lattice", "0,50,100", 1e4, False, 1, []),
    "grain-boundary-3": ("grain-boundary", "0,60,120", 3000.0, True, 0, []),
    "divacancy-3": ("divacancy", "0,60,120", 10.0, True, 0, ["--param", "lattice=hexagonal"]),
    "substitution-2": ("substitution", "0,90", 50.0, True, 0, ["--param", "n=3"]),
    "dislocation-5": ("dislocation", "0,36,72,108,144", 1e4, True, 0, []),
    "hexagonal-5": ("hexagonal", "0,36,72,108,144", 0.1, False, 1, []),
    "bcc-particle-3": ("bcc-particle", "-45,0,45", 1000.0, True, 0, []),
    "fcc-particle-3": ("fcc-particle", "-60,0,60", 3000.0, True, 0, []),
    "core-shell-3": ("core-shell", "-60,0,60", 100.0, True, 0, []),
}


def _cli(*args, timeout=None):
    return subprocess.run([sys.executable, "-m", "atomtomo", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def simulate(name, folder: Path) -> Path:
    phantom, angles, scale, bg, seed, extra = CASES[name]
    path = folder / f"{name}.h5"
    args = ["simulate", "--phantom", phantom, "--angles", angles, "--relative-noise", 0.01,
            "--intensity-scale", scale, "--unknown", "all", "--seed", seed, "-q", "-o", path,
            *extra]
    if bg:
        args += ["--background", "auto"]
    run = _cli(*args)
    if run.returncode:
        raise RuntimeError(f"{name}: simulate failed: {run.stderr.strip()}")
    return path


def estimate(name, path):
    from atomtomo.solvers.imaging_fit import initial_imaging
    from atomtomo.tiltseries import read_tiltseries

    ts = read_tiltseries(path)
    t0 = time.perf_counter()
    params = initial_imaging(ts)
    return {"sigma": params.sigma, "scale": params.intensity_scale,
            "estimate_s": round(time.perf_counter() - t0, 2)}


def full(name, path, folder, time_limit):
    out = folder / f"{name}.xyz"
    t0 = time.perf_counter()
    run = _cli("reconstruct", path, "--alpha", "auto", "--option", f"time_limit={time_limit}",
               "-o", out, "-q", timeout=4 * time_limit + 600)
    row = {"wall_s": round(time.perf_counter() - t0, 1)}
    if run.returncode:
        row["error"] = (run.stderr.strip().splitlines() or ["?"])[-1]
        return row
    ev = _cli("evaluate", out, "--truth", path, "--json")
    score = json.loads(ev.stdout)
    row.update({"f1": score.get("f1"), "n_recon": score.get("n_recon", score.get("n_found")),
                "n_true": score.get("n_true")})
    header = out.read_text().splitlines()[1]
    for key in ("atom_sigma", "intensity_scale"):
        import re

        m = re.search(rf'{key}=([-+0-9.eE]+)', header)
        if m:
            row["final_" + ("sigma" if key == "atom_sigma" else "scale")] = float(m.group(1))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--estimate", action="store_true", help="initial estimates only")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--folder", default=None, help="keep the files here")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="unknown_imaging_"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.cases.split(","):
        path = simulate(name, folder)
        from atomtomo.tiltseries import read_tiltseries

        ts = read_tiltseries(path)
        true = ts.ground_truth
        sig_true, scale_true = truth_attrs(path)
        row = {"case": name, "n_true": None if true is None else true.n_atoms,
               "sigma_true": sig_true, "scale_true": scale_true}
        row.update(estimate(name, path))
        if not args.estimate:
            row.update(full(name, path, folder, args.time_limit))
        for key in ("sigma", "scale", "final_sigma", "final_scale"):
            ref = sig_true if "sigma" in key else scale_true
            if row.get(key) is not None and ref:
                row[key + "_err_pct"] = round(100 * (row[key] / ref - 1), 1)
        rows.append(row)
        print(" | ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def truth_attrs(path):
    """(true sigma, true scale) as simulate keeps them beside the "auto" attributes."""
    import h5py

    found = {}

    def visit(_, obj):
        for k, v in obj.attrs.items():
            found.setdefault(k, v)

    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            found[k] = v
        f.visititems(visit)
    def num(*keys):
        for k in keys:
            if k in found:
                try:
                    return float(found[k])
                except (TypeError, ValueError):
                    pass
        return None
    return num("true_atom_sigma"), num("true_intensity_scale")


if __name__ == "__main__":
    main()
