"""The measured amorphous Ta film, sub-area 1: reconstruct, check precision, register (issue 35).

Data: ``<repo>/../shared/data/aet/ta_film_area1_measured_raw.h5`` (AET-AmorphousMaterials,
measured, denoised and aligned ADF-STEM tilt series; 46 projections, -63 to +56 degrees, 61 x 131
pixels of 0.3216 A) with the published traced model of the whole film. Skips (exit 0) when the
shared directory is absent.

For each number of projections (all 46, and 10 and 5 spread over the tilt range):

1. import with :func:`atomtomo.tiltseries.import_aet` (Euler angles -> detector frames; width,
   intensity scale and background "auto");
2. reconstruct with :func:`atomtomo.solvers.imaging_fit.reconstruct_imaging` around ADCG with a
   bounded budget (options below);
3. report the atom count, the image-formation parameters, the re-projection residual
   ``||y - s A(x) - b|| / sqrt(N)`` against the noise level estimated from the data alone
   (:func:`atomtomo.imaging.estimate_noise_std`), the time;
4. half sets (even / odd projections, same parameters) for the runs with ``--half-sets``;
5. register to the published model: the crop window of area 1 (``crop_centre``/``crop_half``, in
   voxels of the full volume whose centre is the model's origin) gives the region; a rigid shift
   is fitted by the peak of the histogram of difference vectors (published - ours) within a
   search window, smoothed by a 1 A ball, then refined by averaging the matched differences;
   the significance is the peak against the histogram's mean (what a random shift gives). Then
   the fraction of our atoms within 0.5 A and 1 A of a published atom, and what a random
   placement at the published density would give.

    python benchmarks/bench_measured_ta.py --subsets 46,10,5 --time-limit 300 --json ta.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "aet" / "ta_film_area1_measured_raw.h5"
#: Nearest-neighbour distance of Ta (bcc, 2.86 A); amorphous Ta peaks at about the same.
TA_BOND = 2.86


def subset(ts, indices):
    """The tilt series restricted to projections ``indices``."""
    from atomtomo.geometry import Geometry
    from atomtomo.tiltseries import TiltSeries

    geo = ts.geometry
    idx = np.asarray(indices, int)
    sub = Geometry.from_directions(3, geo.directions[idx], geo.detector_shape, geo.pixel_size,
                                   angles=None if geo.angles is None else geo.angles[idx])
    return TiltSeries(projections=ts.projections[idx], geometry=sub, atom_sigma=ts.atom_sigma,
                      box=ts.box, bond_length=ts.bond_length, length_unit=ts.length_unit,
                      intensity_scale=ts.intensity_scale, background=ts.background)


def spread(n_total, n):
    """``n`` indices spread evenly over ``range(n_total)``."""
    return np.unique(np.round(np.linspace(0, n_total - 1, n)).astype(int))


def published_region(path, pad=3.0):
    """Published atoms (in the spec frame of import_aet) near area 1, and the area's centre.

    The crop window is in voxels of the full volume; the model's origin is its centre, whose
    size is taken as the extent the 65 windows span (their largest ``centre + half``)."""
    import h5py

    from atomtomo.tiltseries import aet_to_spec

    with h5py.File(path, "r") as f:
        centre = f["crop_centre"][()].astype(float)
        half = f["crop_half"][()].astype(float)
        model = f["published_atomic_model_angstrom"][()].astype(float)
        pixel = float(f.attrs["pixel_size_angstrom"])
    size = np.max(centre + half, axis=0)  # voxels, 1-based MATLAB indices
    origin = (size + 1) / 2
    c = (centre[0] - origin) * pixel  # area 1's centre, AET (X, Y, Z) in angstrom
    h = half[0] * pixel
    inside = np.all(np.abs(model - c) <= h + pad, axis=1)
    return aet_to_spec(model[inside] - c), aet_to_spec(model - c), h


def register(found, published, search=(4.0, 4.0, 8.0), step=0.2, radius=1.0):
    """Rigid shift ``t`` with ``found + t`` on the published atoms (module docstring)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    search = np.asarray(search, float)
    tree = cKDTree(published)
    reach = float(np.linalg.norm(search)) + radius
    diffs = []
    for a, nbrs in zip(found, tree.query_ball_point(found, reach)):
        if nbrs:
            diffs.append(published[nbrs] - a)
    diffs = np.vstack(diffs) if diffs else np.zeros((0, 3))
    edges = [np.arange(-s - radius, s + radius + step, step) for s in search]
    hist, _ = np.histogramdd(diffs, bins=edges)
    r = int(round(radius / step))
    g = np.arange(-r, r + 1)
    ball = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r
    counts = ndimage.convolve(hist, ball.astype(float), mode="constant")
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    inner = tuple(slice(r, len(c) - r) for c in centres)  # shifts within the search window
    sub = counts[inner]
    k = np.unravel_index(np.argmax(sub), sub.shape)
    t = np.array([centres[i][inner[i]][k[i]] for i in range(3)])
    peak, mean, std = float(sub.max()), float(sub.mean()), float(sub.std())
    for _ in range(10):  # refine: mean offset of the pairs within the radius
        d, j = tree.query(found + t, distance_upper_bound=radius)
        ok = np.isfinite(d)
        if not ok.any():
            break
        t = t + np.mean(published[j[ok]] - (found[ok] + t), axis=0)
    return t, {"peak": peak, "mean": mean, "z_score": (peak - mean) / std if std else 0.0}


def within(found, published, tolerance):
    from scipy.spatial import cKDTree

    if len(found) == 0:
        return 0.0
    d, _ = cKDTree(published).query(found)
    return float(np.mean(d <= tolerance))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subsets", default="46,10,5", help="numbers of projections")
    ap.add_argument("--time-limit", type=float, default=300, help="ADCG time_limit per run (s)")
    ap.add_argument("--batch", type=int, default=100, help="ADCG atoms added per iteration")
    ap.add_argument("--max-iterations", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2, help="reconstruct-refit rounds")
    ap.add_argument("--half-sets", default="46", help="subsets with half sets (comma list)")
    ap.add_argument("--theta-only", action="store_true", help="ignore phi and psi")
    ap.add_argument("--json", default=None)
    ap.add_argument("--save", default=None, help="directory for the XYZ results")
    args = ap.parse_args(argv)
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return 0

    from atomtomo import imaging
    from atomtomo.configuration import write_xyz
    from atomtomo.solvers import reconstruct
    from atomtomo.half_sets import half_set_precision
    from atomtomo.solvers.imaging_fit import reconstruct_imaging, species_parts
    from atomtomo.tiltseries import import_aet

    full = import_aet(DATA, bond_length=TA_BOND, euler_frames=not args.theta_only)
    pub_region, pub_all, half = published_region(DATA)
    density = len(pub_region) / np.prod(2 * (half + 3.0))
    print(f"published atoms near area 1: {len(pub_region)} (density {density:.4f} / A^3)")
    options = dict(alpha=0.0, seed=0, hops=0, restarts=1, batch=args.batch,
                   time_limit=args.time_limit, max_iterations=args.max_iterations)
    rows = []
    for n in [int(v) for v in args.subsets.split(",")]:
        ts = subset(full, spread(full.geometry.n_angles, n))

        def solve(problem, previous=None):
            run = dict(options)
            if previous is not None:
                run["initial"] = previous
            return reconstruct(problem, "adcg", **run)

        t0 = time.perf_counter()
        recon, problem = reconstruct_imaging(ts, solve, rounds=args.rounds,
                                             progress=lambda m: print(f"  [{n}] {m}", flush=True))
        runtime = time.perf_counter() - t0
        config = recon.configuration
        info = recon.info
        # re-projection residual in data units, at the fitted parameters
        parts = species_parts(ts.geometry, info["atom_sigma"], config, ["X"] if len(
            set(config.species)) <= 1 else sorted(set(config.species)))
        model = info["intensity_scale"] * parts.sum(axis=0)
        bg = ts.projections - problem.data * info["intensity_scale"] - 0  # y - (y-b) = b
        resid = ts.projections - model - bg
        row = {"n_angles": n, "n_atoms": config.n_atoms, "runtime_s": round(runtime, 1),
               "sigma": info["atom_sigma"], "intensity_scale": info["intensity_scale"],
               "background_mean": info.get("background_mean"),
               "residual_rms": float(np.sqrt(np.mean(resid ** 2))),
               "noise_estimate": imaging.estimate_noise_std(ts.projections),
               "data_rms": float(np.sqrt(np.mean((ts.projections - bg) ** 2)))}
        t, reg = register(config.positions, pub_region)
        moved = config.positions + t
        row.update({"shift": [round(v, 3) for v in t], "registration_z": round(reg["z_score"], 1),
                    "within_0.5A": within(moved, pub_all, 0.5),
                    "within_1A": within(moved, pub_all, 1.0),
                    "random_0.5A": float(1 - np.exp(-density * 4 / 3 * np.pi * 0.5 ** 3)),
                    "random_1A": float(1 - np.exp(-density * 4 / 3 * np.pi * 1.0 ** 3))})
        if str(n) in args.half_sets.split(","):
            t1 = time.perf_counter()
            hs = half_set_precision(problem, lambda p: solve(p))
            row.update({"half_fraction": hs["fraction"], "half_rms": hs["rms"],
                        "half_n": [hs["n_even"], hs["n_odd"]],
                        "half_runtime_s": round(time.perf_counter() - t1, 1)})
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            write_xyz(config, Path(args.save) / f"ta_{n}.xyz", length_unit="angstrom",
                      **{k: v for k, v in row.items() if not isinstance(v, list)})
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def fit_published(ts, published, sigma0=0.6, steps=(1.0, 0.3)):
    """Register the published atoms to the projections themselves: the shift ``t`` and width
    ``sigma`` minimising ``||y - s A_sigma(published + t) - b||`` (scale and background by
    NNLS at each trial; a coarse grid in z, then Nelder-Mead). Returns ``(t, sigma, rel, s)``
    with ``rel`` the relative misfit ``||r||^2 / ||y - b||^2`` and ``s`` the intensity of one
    published atom."""
    from scipy import optimize

    from atomtomo import imaging
    from atomtomo.forward import ForwardModel

    y = np.asarray(ts.projections, float)

    def misfit(params):
        t, sig = params[:3], abs(params[3])
        p = ForwardModel(ts.geometry, sig).project(published + t, np.ones(len(published)))
        s, bg = imaging.fit_scale_background(y, p[None], degree=2)
        r = y - s[0] * p - bg
        return float(np.sum(r * r)) / float(np.sum((y - bg) ** 2))

    best = None
    for tz in np.arange(-8, 8.01, 2.0):  # the film's depth is the least constrained
        for tx in (-2.0, 0.0, 2.0):
            val = misfit([tx, 0.0, tz, sigma0])
            if best is None or val < best[0]:
                best = (val, [tx, 0.0, tz, sigma0])
    x0 = np.asarray(best[1], float)
    simplex = np.vstack([x0] + [x0 + step for step in np.diag([0.7, 0.7, 0.7, 0.1])])
    res = optimize.minimize(misfit, x0, method="Nelder-Mead",
                            options={"xatol": 0.02, "fatol": 1e-5, "maxiter": 300,
                                     "initial_simplex": simplex})
    t, sig = res.x[:3], abs(res.x[3])
    p = ForwardModel(ts.geometry, sig).project(published + t, np.ones(len(published)))
    s, _ = imaging.fit_scale_background(y, p[None], degree=2)
    return t, sig, float(res.fun), float(s[0])
