"""Throughput of the analytic forward model (issue 2): projection and its gradient.

Run on demand (about a minute)::

    python benchmarks/bench_forward.py                  # the table
    python benchmarks/bench_forward.py --json out.json  # also write the numbers
    python benchmarks/bench_forward.py --threads 2      # let BLAS use 2 threads (default 1)

Two cases, as issue 2 asks:

* 2D: 1 000 atoms, 3 angles, a 512-pixel detector;
* 3D: 10 000 atoms, 3 angles, a 256 x 256 detector;

atoms uniformly in a disc / ball of radius 0.45 inside a detector spanning [-0.5, 0.5], with
sigma = 2 pixels, random weights and a random residual. Every time is measured in the same run
against two baselines:

* **dense**: every atom evaluated at every pixel, no truncation: ``ForwardModel.project_dense``
  and the same dense profiles used for the gradient (matrix products, BLAS);
* **floor**: only the matrix products of the dense evaluation, with the profile matrices already
  built: per angle ``p_a = BV_a^T diag(w) BU_a`` (3D, one (rows x n) @ (n x cols) product) or
  ``w @ B_a`` (2D); for the gradient additionally ``r_a @ BU_a^T`` and ``r_a @ BU'_a^T`` (3D) or
  ``B_a r_a`` and ``B'_a r_a`` (2D). This is what a perfectly tuned dense separable projector
  cannot go below.

``ratio = t(truncated) / t(baseline)``: below 1 the truncated model is faster. See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time, limit_threads, machine_info, print_table, write_json  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads for the dense baselines (numba runs 1 thread)")
    parser.add_argument("--sigma-pixels", type=float, default=2.0, help="atom sigma in pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def uniform_ball(rng, n, ndim, radius):
    x = rng.standard_normal((n, ndim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * radius * rng.random((n, 1)) ** (1.0 / ndim)


def dense_profiles(model, coords, axis):
    """Dense pixel profiles B(c - t) and B'(c - t): (A, n, N) each."""
    c = model.geometry.pixel_centres(axis)
    t = c[None, None, :] - coords[..., None]
    return (pixel_kernel(t, model.sigma, model.geometry.pixel_size),
            pixel_kernel_derivative(t, model.sigma, model.geometry.pixel_size))


def dense_project_and_gradient(model, pos, w, r):
    """Projection and gradient of <r, A(x, w)> with every atom at every pixel (BLAS products)."""
    geo = model.geometry
    if geo.ndim == 2:
        s = geo.detector_coordinates(pos)
        b, db = dense_profiles(model, s, -1)
        p = np.matmul(w, b)  # (A, N)
        gw = np.einsum("anj,aj->n", b, r)
        ds = -np.einsum("anj,aj->an", db, r) * w
        return p, ds.T @ geo.directions, gw
    u, v = geo.detector_coordinates(pos)
    bu, dbu = dense_profiles(model, u, 1)
    bv, dbv = dense_profiles(model, v, 0)
    p = np.matmul(np.swapaxes(bv * w[None, :, None], 1, 2), bu)  # (A, R, C)
    h = np.matmul(r, np.swapaxes(bu, 1, 2))  # (A, R, n): r_a @ BU_a^T
    hd = np.matmul(r, np.swapaxes(dbu, 1, 2))
    gw = np.einsum("anr,arn->n", bv, h)
    du = -np.einsum("anr,arn->an", bv, hd) * w
    dv = -np.einsum("anr,arn->an", dbv, h) * w
    gx = du.T @ geo.directions[:, 0, :] + dv.T @ geo.directions[:, 1, :]
    return p, gx, gw


def floor_products(model, pos, w, r):
    """The matrix products alone (profiles precomputed): (projection fn, gradient fn)."""
    geo = model.geometry
    if geo.ndim == 2:
        b, db = dense_profiles(model, geo.detector_coordinates(pos), -1)
        b, db = np.ascontiguousarray(b), np.ascontiguousarray(db)

        def proj():
            return [w @ b[a] for a in range(geo.n_angles)]

        def grad():
            return [(b[a] @ r[a], db[a] @ r[a]) for a in range(geo.n_angles)]

        return proj, grad
    u, v = geo.detector_coordinates(pos)
    bu, dbu = dense_profiles(model, u, 1)
    bv, _ = dense_profiles(model, v, 0)
    left = [np.ascontiguousarray((bv[a] * w[:, None]).T) for a in range(geo.n_angles)]  # (R, n)
    right = [np.ascontiguousarray(bu[a]) for a in range(geo.n_angles)]  # (n, C)
    right_t = [np.ascontiguousarray(bu[a].T) for a in range(geo.n_angles)]  # (C, n)
    right_dt = [np.ascontiguousarray(dbu[a].T) for a in range(geo.n_angles)]

    def proj():
        return [left[a] @ right[a] for a in range(geo.n_angles)]

    def grad():
        return [(r[a] @ right_t[a], r[a] @ right_dt[a]) for a in range(geo.n_angles)]

    return proj, grad


def run_case(label, ndim, n_atoms, detector, repeat, sigma_pixels, seed):
    rng = np.random.default_rng(seed)
    delta = 1.0 / detector[-1]
    geo = Geometry.from_angles(ndim, np.radians([-60.0, 0.0, 60.0]), detector, delta)
    model = ForwardModel(geo, sigma_pixels * delta)
    pos = uniform_ball(rng, n_atoms, ndim, 0.45)
    w = rng.uniform(0.5, 1.5, n_atoms)
    r = rng.standard_normal(geo.data_shape)

    # correctness guard: the three evaluations agree before anything is timed
    p_dense, gx_dense, gw_dense = dense_project_and_gradient(model, pos, w, r)
    p = model.project(pos, w)
    gx, gw = model.gradient(pos, w, r)
    scale = np.max(np.abs(p_dense))
    err_p = float(np.max(np.abs(p - p_dense)) / scale)
    err_g = float(np.max(np.abs(gx - gx_dense)) / np.max(np.abs(gx_dense)))
    assert err_p < 1e-9 and err_g < 1e-9, (err_p, err_g)
    assert np.allclose(model.project_dense(pos, w), p_dense, rtol=0, atol=1e-12 * scale)
    del p_dense, gx_dense, gw_dense
    floor_proj, floor_grad = floor_products(model, pos, w, r)

    t = {
        "trunc_proj": best_time(lambda: model.project(pos, w), repeat),
        "trunc_grad": best_time(lambda: model.gradient(pos, w, r), repeat),
        "trunc_data_term": best_time(lambda: model.data_term(pos, w, r), repeat),
        "dense_proj": best_time(lambda: model.project_dense(pos, w), max(1, repeat // 2)),
        "dense_both": best_time(lambda: dense_project_and_gradient(model, pos, w, r),
                                max(1, repeat // 2)),
        "floor_proj": best_time(floor_proj, repeat),
        "floor_grad": best_time(floor_grad, repeat),
    }
    t["trunc_both"] = t["trunc_proj"] + t["trunc_grad"]
    t["floor_both"] = t["floor_proj"] + t["floor_grad"]
    det = "x".join(map(str, detector))
    common = {"case": label, "atoms": n_atoms, "angles": geo.n_angles, "detector": det,
              "support": model._support, "max_rel_error_projection": err_p,
              "max_rel_error_gradient": err_g}
    rows = [
        {**common, "operation": "projection", "truncated_s": t["trunc_proj"],
         "dense_s": t["dense_proj"], "floor_s": t["floor_proj"]},
        {**common, "operation": "projection + gradient", "truncated_s": t["trunc_both"],
         "dense_s": t["dense_both"], "floor_s": t["floor_both"]},
        {**common, "operation": "data_term (fused)", "truncated_s": t["trunc_data_term"],
         "dense_s": t["dense_both"], "floor_s": t["floor_both"]},
    ]
    for row in rows:
        row["ratio_dense"] = row["truncated_s"] / row["dense_s"]
        row["ratio_floor"] = row["truncated_s"] / row["floor_s"]
        row["truncated_ms"] = 1e3 * row["truncated_s"]
        row["dense_ms"] = 1e3 * row["dense_s"]
        row["floor_ms"] = 1e3 * row["floor_s"]
    return rows


COLUMNS = [("case", "case", "{}"), ("operation", "operation", "{}"),
           ("support", "K", "{}"), ("truncated_ms", "truncated ms", "{:.2f}"),
           ("dense_ms", "dense ms", "{:.2f}"), ("floor_ms", "floor ms", "{:.2f}"),
           ("ratio_dense", "/dense", "{:.4f}"), ("ratio_floor", "/floor", "{:.3f}")]


def main(argv=None):
    args = parse_args(argv)
    rows = []
    rows += run_case("2D 1000 atoms, 512 px", 2, 1000, (512,), args.repeat, args.sigma_pixels,
                     args.seed)
    rows += run_case("3D 10000 atoms, 256x256", 3, 10_000, (256, 256), args.repeat,
                     args.sigma_pixels, args.seed)
    print_table(rows, COLUMNS, title=f"forward model, 3 angles, sigma = {args.sigma_pixels:g} "
                                     f"pixels, best of {args.repeat} "
                                     "(ratio = truncated time / baseline time; < 1 is faster)")
    if args.json:
        write_json(args.json, {"benchmark": "forward", "sigma_pixels": args.sigma_pixels,
                               "repeat": args.repeat, "machine": machine_info(), "rows": rows})
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    _args = parse_args()
    limit_threads(_args.threads)  # before numpy is imported

import numpy as np  # noqa: E402

from atomtomo import ForwardModel, Geometry  # noqa: E402
from atomtomo.forward import pixel_kernel, pixel_kernel_derivative  # noqa: E402

if __name__ == "__main__":
    main()
