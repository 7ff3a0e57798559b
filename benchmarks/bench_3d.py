"""3D benchmark: the measured Pd@Pt decahedron and a scaling series, through the real CLI.

Each case is a particle turned so that its zone axis (the decahedron's five-fold axis) is the
tilt axis ``y``, projected (spec section 2) about ``y`` with ``sigma`` 0.5 A, pixel 0.35 A,
Z-contrast species weights (Pt 1, Pd (46/78)^1.7 = 0.41), 1 % noise and optionally per-angle tilt
errors (the file holds the nominal angles), written with ``bond_length``, ``box``,
``species_weights`` and ``noise_std``, and reconstructed by a separate process::

    atomtomo reconstruct FILE --alpha auto -o OUT.xyz [--option time_limit=...]

under a wall-clock timeout. Scores (one-to-one matching): ``within_0.5`` = fraction of the true
atoms matched within 0.5 A, ``spurious`` = fraction of the found atoms matched to none within
0.5 A, ``f1`` at 0.1 bond length, ``species_accuracy`` over the atoms matched at 0.5 A, and the
wall time. Usage::

    python benchmarks/bench_3d.py --quick                      # the 142-atom crop, 3 angles
    python benchmarks/bench_3d.py --crops 8,11 --angles 3,5 --timeout 900
    python benchmarks/bench_3d.py --scaling --timeout 1200     # ~500, 1500, 5000 atoms
    python benchmarks/bench_3d.py ... --json results.json

The measured particle is read from ``<repo>/../shared/data/aet/pdpt_core_shell_epb.xyz``
(``--data`` to point elsewhere); it is not part of the project.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from atomtomo.geometry import Geometry
from atomtomo.metrics import TOLERANCE_BONDS, match_atoms
from atomtomo.phantoms import build_phantom
from atomtomo.phantoms.particles3d import tilt_errors
from atomtomo.tiltseries import simulate_tiltseries, write_tiltseries

THREE = [-36.0, 0.0, 36.0]
FIVE = [-72.0, -36.0, 0.0, 36.0, 72.0]
#: The issue's acceptance tolerance, angstrom.
WITHIN = 0.5


def measured_path() -> Path:
    """``<repo root>/../shared/data/aet/pdpt_core_shell_epb.xyz``."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aet" / \
        "pdpt_core_shell_epb.xyz"


def particle_tiltseries(truth, angles_deg, *, sigma=0.5, pixel=0.35, noise=0.01,
                        tilt_error_deg=0.0, seed=0):
    """The tilt series of ``truth`` about ``y`` at ``angles_deg`` (see module docstring); with
    ``tilt_error_deg`` the projections are taken at angles off by up to that much, and the file
    records the nominal ones."""
    box = np.asarray(truth.info["box"], float)
    width = box[:, 1] - box[:, 0]
    rows = int(np.ceil(width[1] / pixel)) + 4
    cols = int(np.ceil(np.hypot(width[0], width[2]) / pixel)) + 4
    nominal = np.radians(np.asarray(angles_deg, float))
    actual = nominal + tilt_errors(len(nominal), np.radians(tilt_error_deg), seed=[seed, 7])
    geo = Geometry.from_angles(3, actual, (rows, cols), pixel)
    ts = simulate_tiltseries(truth, geo, sigma, relative_noise=noise, seed=seed, box=box,
                             bond_length=truth.info["bond_length"], length_unit="angstrom")
    if tilt_error_deg:
        ts = dataclasses.replace(ts, geometry=Geometry.from_angles(3, nominal, (rows, cols), pixel))
    return ts


def score(found, truth) -> dict:
    """The benchmark's scores of ``found`` against ``truth`` (see module docstring)."""
    loose = match_atoms(found, truth, WITHIN)
    tight = match_atoms(found, truth, TOLERANCE_BONDS * truth.info["bond_length"])
    return {"n_true": truth.n_atoms, "n_found": found.n_atoms,
            "within_0.5": round(loose.recall, 4), "spurious": round(1 - loose.precision, 4)
            if found.n_atoms else 0.0,
            "f1": round(tight.f1, 4), "species_accuracy": loose.species_accuracy,
            "median_error": round(loose.median_distance, 4)
            if loose.n_matched else None}


def run_case(name, truth, angles, *, timeout, options=(), tilt_error_deg=0.0, seed=0,
             workdir=None, python=sys.executable):
    """Simulate, reconstruct through the CLI (killed after ``timeout`` s), score; one row."""
    from atomtomo.configuration import read_xyz

    workdir = Path(workdir or tempfile.mkdtemp(prefix="bench3d-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{name}-{len(angles)}a".replace(" ", "_")
    h5, out, log = workdir / f"{tag}.h5", workdir / f"{tag}.xyz", workdir / f"{tag}.log"
    write_tiltseries(particle_tiltseries(truth, angles, tilt_error_deg=tilt_error_deg, seed=seed),
                     h5)
    cmd = [python, "-m", "atomtomo", "reconstruct", str(h5), "--alpha", "auto", "-o", str(out)]
    for opt in options:
        cmd += ["--option", opt]
    row = {"case": name, "angles": len(angles), "atoms": truth.n_atoms,
           "species": ",".join(sorted(set(map(str, truth.species)))),
           "tilt_error_deg": tilt_error_deg, "options": list(options)}
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=os.environ.copy())
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    row["finished"] = proc.returncode == 0 and out.exists()
    row["log_tail"] = log.read_text().strip().splitlines()[-3:]
    if row["finished"]:
        found = read_xyz(out, ndim=3)
        row.update(score(found, truth))
        row["planes"] = found.info.get("layers")
        row["layer_atoms"] = found.info.get("layer_atoms")
        row["layer_times"] = found.info.get("layer_times")
        row["polish_s"] = found.info.get("polish_s")
    print(json.dumps({k: v for k, v in row.items() if k != "log_tail"}), flush=True)
    return row


def crop(radius, data=None):
    params = {"path": str(data or measured_path()), "axis": "z"}
    if radius is not None:
        params["radius"] = radius
    return build_phantom("measured", params)


#: Scaling series: Marks decahedra of 524, 1428 and 5150 atoms (Pd core, Pt shell).
SCALING = [("decahedron 524", {"p": 4, "q": 2, "r": 2}),
           ("decahedron 1428", {"p": 6, "q": 4, "r": 2}),
           ("decahedron 5150", {"p": 9, "q": 6, "r": 3})]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the 142-atom crop at 3 angles only (hops=100)")
    parser.add_argument("--crops", default="8,11,14,all", help="crop radii (A), 'all' = whole")
    parser.add_argument("--angles", default="3,5")
    parser.add_argument("--scaling", action="store_true", help="the scaling series instead")
    parser.add_argument("--tilt-error", type=float, default=0.0, help="max per-angle error, deg")
    parser.add_argument("--misalign", type=float, default=0.0, help="particle rotation, deg")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--option", action="append", default=[], help="reconstruct --option")
    parser.add_argument("--data", default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    rows = []
    angle_sets = {3: THREE, 5: FIVE}
    if args.quick:
        cases = [("crop r=8", crop(8.0, args.data))]
        angles = [3]
        args.option = args.option or ["hops=100"]
    elif args.scaling:
        cases = [(name, build_phantom("decahedron", {**p, "species": "Pd,Pt",
                                                     "chemistry": "core-shell",
                                                     "misalign": np.radians(args.misalign)}))
                 for name, p in SCALING]
        angles = [int(a) for a in args.angles.split(",")][:1]
    else:
        cases = []
        for r in args.crops.split(","):
            radius = None if r.strip() == "all" else float(r)
            c = crop(radius, args.data)
            if args.misalign:
                from atomtomo.phantoms.particles3d import turn_and_crop

                c = turn_and_crop(c, (0, 1, 0), None, np.radians(args.misalign), seed=1)
            cases.append((f"crop r={r.strip()}", c))
        angles = [int(a) for a in args.angles.split(",")]
    if not measured_path().exists() and not args.scaling and args.data is None:
        sys.exit(f"the measured particle is not at {measured_path()}: pass --data")
    for name, truth in cases:
        for n in angles:
            rows.append(run_case(name, truth, angle_sets[n], timeout=args.timeout,
                                 options=args.option, tilt_error_deg=args.tilt_error,
                                 workdir=args.workdir))
    if args.scaling:
        done = [r for r in rows if r["finished"]]
        if len(done) >= 2:
            a, b = done[0], done[-1]
            print(f"time grows as n^{np.log(b['seconds'] / a['seconds']) / np.log(b['atoms'] / a['atoms']):.2f}"
                  f" between {a['atoms']} and {b['atoms']} atoms")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return rows


if __name__ == "__main__":
    main()
