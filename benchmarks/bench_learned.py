"""The learned locator (issue 5): cost of its training pieces, and F1 against the number of angles.

Run on demand::

    python benchmarks/bench_learned.py                  # speed of SIRT map, loss, training step
    python benchmarks/bench_learned.py --f1 --quick     # + F1 vs angles, learned vs ADCG (minutes)
    python benchmarks/bench_learned.py --f1 --samples 8 --json learned.json
    python benchmarks/bench_learned.py --f1 --samples 8 --tolerance 0.2

Speed, as ratios against a baseline timed in the same run (best of ``--repeat``):

* **SIRT**: the training data's SIRT images through the precomputed linear map
  (:class:`atomtomo.learn.data.SirtMap`, one matrix product for a batch) against the project's
  iterative :func:`atomtomo.solvers.grid.sirt` on each sample, which inference uses; the two
  agree to float32 rounding (checked here, and in ``tests/test_learned.py``).
* **loss**: the multi-scale kernel distance with its hand-written backward pass against autograd
  through the plain formula (same value and gradient, checked here).
* **training step**: one Adam step of the default network on a batch of 16, data refresh
  included, in steps per second (no baseline: context for the 10-15 minute training budget).

``--f1``: :func:`atomtomo.learn.locator.f1_against_angles` with the shipped models (1 % noise,
random defect lattices, F1 at 0.1 spacing), learned and ADCG side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.limit_threads(1)

import numpy as np  # noqa: E402


def bench_sirt(n_angles, batch, repeat):
    from atomtomo.learn import data, locator

    acq = data.acquisition(locator.uniform_angles(n_angles))
    gen = data.SampleGenerator(acq)
    rng = np.random.default_rng(0)
    configs = gen.phantoms(rng, batch)
    y = np.stack([gen.model.project(c.positions, c.weights).ravel() for c in configs])
    shape = (acq["grid"], acq["grid"])
    recon = data.sirt_reconstructor(gen.model, data.UNIT_BOX, shape, acq["sirt_iterations"])
    ref = np.stack([recon(v) for v in y])
    err = float(np.abs(gen.sirt(y) - ref).max() / np.abs(ref).max())
    t_map = _common.best_time(lambda: gen.sirt(y), repeat) / batch
    t_iter = _common.best_time(lambda: recon(y[0]), max(1, repeat // 2))
    t_build = _common.best_time(lambda: data.SirtMap(
        data.system_matrix(gen.model, data.UNIT_BOX, shape), shape, acq["sirt_iterations"]), 1, 0)
    return {"case": f"SIRT {n_angles} angles, 64x64, 100 it.", "ours_ms": 1e3 * t_map,
            "baseline_ms": 1e3 * t_iter, "speedup": t_iter / t_map, "max_rel_error": err,
            "note": f"map built once in {t_build:.1f} s"}


def bench_loss(repeat):
    import torch

    from atomtomo.learn.loss import DEFAULT_SCALES, kernel_distance

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    b, k, m = 16, 256, 60
    p = (torch.rand(b, k, 2, generator=gen) - 0.5).requires_grad_()
    w = torch.rand(b, k, generator=gen).requires_grad_()
    t = torch.rand(b, m, 2, generator=gen) - 0.5
    spacing = torch.full((b,), 0.15)

    def reference():
        total = 0
        for scale in DEFAULT_SCALES:
            s2 = (scale * spacing)[:, None, None] ** 2

            def gram(a, c):
                d2 = (a.square().sum(-1)[:, :, None] + c.square().sum(-1)[:, None, :]
                      - 2 * a @ c.transpose(1, 2)).clamp(min=0)
                return torch.exp(-d2 / (2 * s2))
            total = total + (gram(t, t).sum((1, 2)) - 2 * torch.einsum("bij,bj->b", gram(t, p), w)
                             + torch.einsum("bi,bij,bj->b", w, gram(p, p), w))
        return (total / m).mean()

    def run(fn):
        def go():
            p.grad = w.grad = None
            fn().backward()
        return go

    ours = kernel_distance(p, w, t, None, spacing)
    g1 = torch.autograd.grad(ours, (p, w))
    g2 = torch.autograd.grad(reference(), (p, w))
    err = max(float((a - c).abs().max() / c.abs().max()) for a, c in zip(g1, g2))
    t_ours = _common.best_time(run(lambda: kernel_distance(p, w, t, None, spacing)), repeat)
    t_ref = _common.best_time(run(reference), repeat)
    return {"case": f"loss+grad B={b} K={k} M={m}", "ours_ms": 1e3 * t_ours,
            "baseline_ms": 1e3 * t_ref, "speedup": t_ref / t_ours, "max_rel_error": err,
            "note": "vs autograd through the formula"}


def bench_step(repeat):
    import torch

    from atomtomo.learn import data, locator
    from atomtomo.learn.loss import kernel_distance
    from atomtomo.learn.network import build_network

    torch.set_num_threads(1)
    gen = data.SampleGenerator(data.acquisition(locator.uniform_angles(10)))
    pool = data.SamplePool(gen, 64, np.random.default_rng(0))
    net = build_network()
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def step():
        b = {k: torch.from_numpy(v) for k, v in pool.batch(16).items()}
        p, w = net(b["images"])
        loss = kernel_distance(p, w, b["positions"], b["mask"], b["spacing"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        pool.refresh(4)

    t = _common.best_time(lambda: [step() for _ in range(10)], max(1, repeat // 2)) / 10
    return {"case": "training step (batch 16, refresh 4)", "ours_ms": 1e3 * t,
            "baseline_ms": None, "speedup": None, "max_rel_error": None,
            "note": f"{1 / t:.1f} steps/s"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--f1", action="store_true", help="also run F1 against the number of angles")
    ap.add_argument("--quick", action="store_true", help="--f1 on angle counts 2, 5, 15")
    ap.add_argument("--samples", type=int, default=2, help="test cases per angle count (--f1)")
    ap.add_argument("--tolerance", type=float, default=0.1,
                    help="F1 matching tolerance in lattice spacings (--f1)")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args(argv)

    rows = [bench_sirt(3, 64, args.repeat), bench_sirt(15, 64, args.repeat),
            bench_loss(args.repeat), bench_step(args.repeat)]
    _common.print_table(rows, [("case", "case", "{}"), ("ours_ms", "ours ms", "{:.2f}"),
                               ("baseline_ms", "baseline ms", "{:.2f}"),
                               ("speedup", "speedup", "{:.1f}x"),
                               ("max_rel_error", "rel. error", "{:.1e}"), ("note", "note", "{}")],
                        title="learned locator: cost of the training pieces (1 thread)")
    out = {"speed": rows, "machine": _common.machine_info()}
    if args.f1:
        from atomtomo.learn.locator import f1_against_angles

        t0 = time.time()
        f1 = f1_against_angles(n_samples=args.samples, quick=args.quick, tolerance=args.tolerance,
                               progress=lambda r: print(
                                   f"  {r['method']:8s} {r['n_angles']:2d} angles case "
                                   f"{r['sample']}: F1 {r['f1']:.3f} ({r['n_found']}/{r['n_true']} "
                                   f"atoms, {r['runtime_s']:.1f} s)", flush=True))
        print()
        _common.print_table(f1, [("n_angles", "angles", "{}"), ("method", "method", "{}"),
                                 ("f1_mean", "F1 mean", "{:.3f}"), ("f1_std", "F1 std", "{:.3f}"),
                                 ("precision_mean", "precision", "{:.3f}"),
                                 ("recall_mean", "recall", "{:.3f}"),
                                 ("runtime_s_mean", "time s", "{:.1f}"),
                                 ("n_samples", "cases", "{}")],
                            title=f"F1 (tolerance {args.tolerance:g} spacing) against the number "
                                  f"of angles, 1 % noise ({time.time() - t0:.0f} s)")
        out["f1_against_angles"] = f1
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
