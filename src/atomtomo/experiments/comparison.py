"""``atomtomo reproduce comparison``: grid methods against grid-free ADCG on defective lattices.

The poster's claim (1): grid-free atom positions help with very few angles (2 or 3).

Grid: defects (the poster's three lattices ``interstitial``, ``vacancy``, ``dislocation``, plus
``grain-boundary`` and ``divacancy``) x methods (``annealing``, ``sirt``, ``fista`` -- grid
reconstructions with atom picking -- ``adcg-alpha0``: ADCG without the energy term, and
``adcg-auto``: ADCG with the Lennard-Jones energy term, alpha chosen by the discrepancy
principle) x angles (2, 3 zone axes) x noise (0, 1 %, 5 % of the largest projection value) x
seeds (noise and solver seed). Full run: 5 x 5 x 2 x 3 x 5 = 750 tasks; ``--quick``: 2 angles,
1 % noise, one seed, a small ADCG budget = 25 tasks.

Each task records F1 (tolerance 0.1 bond length), precision, recall, the mean distance of the
matched atoms and the position error (in bond lengths), the atom-count error, the objective
terms and the runtime; its reconstruction goes to ``configurations/<id>.xyz``.

Outputs: ``results.csv``; ``summary.md`` (F1 per defect, angles and noise for each method, as
mean ± std over seeds; the methods over all defects at each angle count; the full table);
``comparison-<k>angles.png`` (the poster's figure: one panel per defect and method, atoms
coloured by their distance to the truth, truth as red crosses; seed 0 at 1 % noise);
``comparison-f1-<k>angles.png`` (the distribution of F1 per method: every defect, noise level
and seed); ``comparison-f1-noise.png`` (F1 against noise per method and angle count; full run).

The ADCG budget is explicit (:data:`ADCG_FULL`, :data:`ADCG_QUICK`), so the run time is
predictable; each task's runtime is recorded.
"""

from __future__ import annotations

import numpy as np

from ..metrics import TOLERANCE_BONDS
from . import cases, tables
from .cases import ADCG_FULL, ADCG_QUICK

DESCRIPTION = "grid methods vs grid-free ADCG on the poster's defects (F1, distances, counts)"
DEFECTS = ("interstitial", "vacancy", "dislocation", "grain-boundary", "divacancy")
#: label -> (method name of atomtomo.solvers, alpha)
METHODS = {
    "annealing": ("annealing", 0.0),
    "sirt": ("sirt", 0.0),
    "fista": ("fista", 0.0),
    "adcg-alpha0": ("adcg", 0.0),
    "adcg-auto": ("adcg", "auto"),
}
FULL = {"angles": (2, 3), "noise": (0.0, 0.01, 0.05), "seeds": tuple(range(5))}
QUICK = {"angles": (2,), "noise": (0.01,), "seeds": (0,)}
#: Noise level of the comparison figure (the first of the grid when it is not there).
FIGURE_NOISE = 0.01

COLUMNS = ("defect", "method", "n_angles", "noise", "seed", "options", *cases.SCORE_COLUMNS,
           "objective", "data_discrepancy", "energy", "alpha_used", "iterations", "runtime_s")


def tasks(quick: bool = False) -> list[dict]:
    """The task grid; ADCG tasks first (the longest, for a balanced finish)."""
    grid = QUICK if quick else FULL
    budget = ADCG_QUICK if quick else ADCG_FULL
    out = []
    for label in sorted(METHODS, key=lambda m: METHODS[m][0] != "adcg"):
        method = METHODS[label][0]
        options = cases.options_text(budget if method == "adcg" else {})
        for defect in DEFECTS:
            for n in grid["angles"]:
                for noise in grid["noise"]:
                    for seed in grid["seeds"]:
                        out.append({"defect": defect, "method": label, "n_angles": n,
                                    "noise": noise, "seed": seed, "options": options})
    return out


def run_task(params: dict) -> dict:
    """Simulate, reconstruct with one method, score."""
    problem, truth = cases.simulate_case(params["defect"], params["n_angles"], params["noise"],
                                         params["seed"])
    method, alpha = METHODS[params["method"]]
    return cases.reconstruct_scored(problem, truth, method, alpha, params)


def keep(out_dir):
    return cases.keep_configuration(out_dir)


# ---------------------------------------------------------------------------------------------
# Summary and figures
# ---------------------------------------------------------------------------------------------
METRICS = ("f1", "mean_distance_bonds", "count_error", "runtime_s")
LABELS = {"f1": "F1", "mean_distance_bonds": "mean distance / bond",
          "count_error": "atom-count error", "runtime_s": "runtime (s)",
          "position_error_bonds": "position error / bond"}


def _methods_present(rows):
    return [m for m in METHODS if any(r["method"] == m for r in rows)]


def summary(rows, failures, quick) -> str:
    methods = _methods_present(rows)
    text = ["# comparison: grid methods vs grid-free ADCG\n",
            f"{'Quick run' if quick else 'Full run'}: {len(rows)} tasks. F1 at 0.1 bond length; "
            "mean ± std over seeds. ADCG budget: "
            f"`{cases.options_text(ADCG_QUICK if quick else ADCG_FULL)}`.\n",
            "\n## F1 by defect (rows) and method (columns)\n"]
    body = []
    for (defect, n, noise), members in tables.group(rows, ("defect", "n_angles", "noise")).items():
        cells = [tables.fmt_mean_std(tables.numbers([r for r in members if r["method"] == m], "f1"))
                 for m in methods]
        body.append([defect, n, f"{100 * noise:g} %", *cells])
    text.append(tables.markdown_table(["defect", "angles", "noise", *methods], body))
    text.append("\n## Methods over all defects and noise levels\n")
    text.append(tables.aggregate_table(sorted(rows, key=lambda r: (r["n_angles"],
                                                                  methods.index(r["method"]))),
                                       ("n_angles", "method"), METRICS, LABELS))
    text.append("\n## All groups\n")
    percent = [{**r, "noise": f"{100 * r['noise']:g} %"} for r in rows]
    text.append(tables.aggregate_table(percent, ("defect", "n_angles", "noise", "method"),
                                       (*METRICS, "position_error_bonds"), LABELS))
    text.append(tables.runtime_note(rows))
    text.append(tables.failures_note(failures))
    return "".join(text)


def figures(out_dir, rows, log) -> list:
    from ..plotting import plot_curves, plot_distributions, plot_panels, save_figure

    files = []
    methods = _methods_present(rows)
    noises = sorted({r["noise"] for r in rows})
    noise = FIGURE_NOISE if FIGURE_NOISE in noises else noises[0]
    truths = {}
    for n in sorted({r["n_angles"] for r in rows}):
        panels = []
        for defect in DEFECTS:
            if defect not in truths:
                truths[defect] = cases.truth_of(defect)
            truth = truths[defect]
            for m in methods:
                match = [r for r in rows if (r["defect"], r["method"], r["n_angles"], r["noise"])
                         == (defect, m, n, noise)]
                match.sort(key=lambda r: r["seed"])
                found = cases.load_configuration(out_dir, match[0]["id"]) if match else None
                panels.append(None if found is None else {
                    "found": found, "truth": truth, "box": truth.info["box"],
                    "tolerance": TOLERANCE_BONDS * truth.info["bond_length"]})
        if not any(panels):
            continue
        fig = plot_panels(panels, ncols=len(methods), row_labels=DEFECTS, col_labels=methods,
                          suptitle=f"{n} zone-axis angles, {100 * noise:g} % noise, seed "
                                   f"{min(r['seed'] for r in rows)}")
        files.append(save_figure(fig, out_dir / f"comparison-{n}angles.png"))
    for n in sorted({r["n_angles"] for r in rows}):
        groups = {m: tables.numbers([r for r in rows if r["method"] == m and r["n_angles"] == n],
                                    "f1") for m in methods}
        fig = plot_distributions(groups, ylabel="F1 (tolerance 0.1 bond length)",
                                 title=f"{n} zone-axis angles: every defect, noise level and seed")
        files.append(save_figure(fig, out_dir / f"comparison-f1-{n}angles.png"))
    if len(noises) > 1:
        curves = {}
        for n in sorted({r["n_angles"] for r in rows}):
            for m in methods:
                subset = [r for r in rows if r["method"] == m and r["n_angles"] == n]
                reps = list(tables.group(subset, ("defect", "seed")))
                if reps:
                    curves[f"{m}, {n} angles"] = tables.matrix(
                        subset, lambda r: (r["defect"], r["seed"]), reps, "noise", noises, "f1")
        fig = plot_curves(100 * np.asarray(noises), curves, xlabel="noise (% of max projection)",
                          ylabels="F1", layout="overlay", logx=False, logy=False,
                          title="F1 against noise (mean over defects and seeds, band min-max)")
        files.append(save_figure(fig, out_dir / "comparison-f1-noise.png"))
    return files
