"""``atomtomo reproduce learned``: a learned locator against ADCG as the angles get fewer.

The poster's claim (3): learned post-processing performs poorly for limited data. Random defect
lattices (square or hexagonal, random spacing, rotation and defects: the locator's own test
distribution, :func:`atomtomo.learn.locator.simulate_test_case`) are projected at n angles spread
uniformly over 180 degrees with 1 % noise, for n in (2, 3, 5, 8, 10, 15), and reconstructed by
SIRT + the learned locator (the shipped model for n angles) and by ADCG with the energy term
(alpha = auto). Each task is one (method, n, test case) and calls
:func:`atomtomo.learn.locator.f1_against_angles` for that single case, so both methods see the
same lattices.

Full: 6 angle counts x 2 methods x 10 test cases = 120 tasks; ``--quick``: angle counts
(2, 5, 15) x 2 test cases = 12 tasks with a small ADCG budget.

Outputs: ``results.csv`` (F1, precision, recall, runtime); ``summary.md`` (F1 per angle count and
method, mean ± std over the test cases); ``learned.png`` (F1 against the number of angles).
The learned locator needs PyTorch and the shipped models; without them its tasks fail and are
listed in ``failures.csv`` while the ADCG half still runs.
"""

from __future__ import annotations

import json

import numpy as np

from . import cases, tables

DESCRIPTION = "F1 against the number of angles: SIRT + learned locator vs ADCG"
METHODS = {"learned": "SIRT + learned locator", "adcg": "ADCG (alpha auto)"}
NOISE = 0.01
FULL = {"angles": (2, 3, 5, 8, 10, 15), "seeds": tuple(range(10))}
QUICK = {"angles": (2, 5, 15), "seeds": (0, 1)}
ADCG_FULL = {"alpha": "auto", **cases.ADCG_FULL}
ADCG_QUICK = {"alpha": "auto", **cases.ADCG_QUICK}

COLUMNS = ("method", "n_angles", "seed", "options", "f1", "precision", "recall", "runtime_s")


def tasks(quick: bool = False) -> list[dict]:
    grid = QUICK if quick else FULL
    adcg = cases.options_text(ADCG_QUICK if quick else ADCG_FULL)
    # ADCG first (the long tasks), most angles first within it.
    return [{"method": m, "n_angles": n, "seed": s, "options": adcg if m == "adcg" else cases.options_text({})}
            for m in ("adcg", "learned") for n in sorted(grid["angles"], reverse=True)
            for s in grid["seeds"]]


def run_task(params: dict) -> dict:
    from ..learn.locator import f1_against_angles

    method = params["method"]
    options = json.loads(params["options"])
    rows = f1_against_angles(angle_counts=(int(params["n_angles"]),), n_samples=1,
                             seed=int(params["seed"]), methods=(method,), noise=NOISE,
                             method_options={method: options} if options else None)
    row = rows[0]
    return {"f1": float(row["f1_mean"]), "precision": float(row["precision_mean"]),
            "recall": float(row["recall_mean"]), "runtime_s": float(row["runtime_s_mean"])}


def keep(out_dir):
    return None


def summary(rows, failures, quick) -> str:
    counts = sorted({r["n_angles"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    text = ["# learned: F1 against the number of angles\n",
            f"{'Quick run' if quick else 'Full run'}: random defect lattices, angles uniform over "
            f"180 degrees, {100 * NOISE:g} % noise; F1 at 0.1 spacing, mean ± std over test "
            f"cases. ADCG options `{json.dumps(ADCG_QUICK if quick else ADCG_FULL)}`.\n\n"]
    body = []
    for n in counts:
        cells = [tables.fmt_mean_std(tables.numbers([r for r in rows if r["method"] == m
                                                     and r["n_angles"] == n], "f1"))
                 for m in methods]
        body.append([n, *cells])
    text.append(tables.markdown_table(["angles", *(f"F1 {METHODS[m]}" for m in methods)], body))
    text.append("\n## All metrics\n\n")
    text.append(tables.aggregate_table(sorted(rows, key=lambda r: (r["method"], r["n_angles"])),
                                       ("method", "n_angles"),
                                       ("f1", "precision", "recall", "runtime_s")))
    text.append(tables.runtime_note(rows))
    text.append(tables.failures_note(failures))
    return "".join(text)


def figures(out_dir, rows, log) -> list:
    from ..plotting import plot_curves, save_figure

    counts = sorted({r["n_angles"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    curves = {}
    for m, label in METHODS.items():
        arr = tables.matrix([r for r in rows if r["method"] == m], lambda r: r["seed"], seeds,
                            "n_angles", counts, "f1")
        if np.isfinite(arr).any():
            curves[label] = arr
    if not curves:
        return []
    fig = plot_curves(counts, curves, xlabel="number of angles (uniform over 180°)",
                      ylabels="F1 (0.1 spacing)", layout="overlay", logx=False, logy=False,
                      title="Learned locator vs ADCG (mean, band min-max over test cases)")
    return [save_figure(fig, out_dir / "learned.png")]
