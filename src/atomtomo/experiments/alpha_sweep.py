"""``atomtomo reproduce alpha-sweep``: what the weight of the energy term does.

The poster's interstitial lattice (37 atoms) at 2 zone-axis angles with 1 % noise -- the
setting where the data alone cannot pair the projected coordinates -- reconstructed by ADCG
with alpha on a log grid from 1e-5 to 1e2 (full: 15 values, two per decade, 5 seeds; quick:
8 values, one per decade, 2 seeds), plus one run per seed with ``alpha="auto"`` (the
discrepancy principle of :mod:`atomtomo.solvers.alpha`; the alpha it chose is read from
``info["alpha"]``).

Each task records the energy (the Lennard-Jones term at the lattice's bond length), the data
discrepancy ``||A(x) - y||``, the objective, the atom count and its error, F1 and the position
error (RMS distance of atoms matched within half a bond length, in bond lengths).

Outputs: ``results.csv``; ``summary.md`` (all metrics per alpha, mean ± std over seeds; the alpha
of smallest mean position error and the automatic alpha); ``alpha-sweep.png`` (energy, data
discrepancy, atom count, position error and F1 against alpha, grey line at the alpha of smallest
position error, dashed line at the automatic alpha); ``alpha-configurations.png`` (the
reconstructions of seed 0 at five alphas of the grid, and the automatic one).
"""

from __future__ import annotations

import numpy as np

from ..metrics import TOLERANCE_BONDS
from . import cases, tables
from .cases import ADCG_FULL, ADCG_QUICK

DESCRIPTION = "ADCG on the interstitial lattice with alpha from 1e-5 to 1e2 (and alpha=auto)"
PHANTOM = "interstitial"
N_ANGLES = 2
NOISE = 0.01
ALPHAS_FULL = tuple(float(a) for a in np.logspace(-5, 2, 15))
ALPHAS_QUICK = tuple(float(a) for a in np.logspace(-5, 2, 8))
SEEDS_FULL = (0, 1, 2, 3, 4)
SEEDS_QUICK = (0, 1)
#: How many configurations the panel figure shows (spread over the grid).
N_PANELS = 5

COLUMNS = ("alpha", "seed", "options", *cases.SCORE_COLUMNS, "objective", "data_discrepancy",
           "energy", "alpha_used", "iterations", "runtime_s")


def tasks(quick: bool = False) -> list[dict]:
    alphas = ALPHAS_QUICK if quick else ALPHAS_FULL
    seeds = SEEDS_QUICK if quick else SEEDS_FULL
    options = cases.options_text(ADCG_QUICK if quick else ADCG_FULL)
    # "auto" first: it runs the longest (its alpha ladder comes after the search).
    return [{"alpha": a, "seed": s, "options": options}
            for a in ("auto", *alphas) for s in seeds]


def run_task(params: dict) -> dict:
    problem, truth = cases.simulate_case(PHANTOM, N_ANGLES, NOISE, params["seed"])
    return cases.reconstruct_scored(problem, truth, "adcg", params["alpha"], params)


def keep(out_dir):
    return cases.keep_configuration(out_dir)


# ---------------------------------------------------------------------------------------------
METRICS = ("energy", "data_discrepancy", "n_found", "count_error", "position_error_bonds", "f1",
           "runtime_s")
LABELS = {"energy": "energy", "data_discrepancy": "data discrepancy", "n_found": "atoms",
          "count_error": "count error", "position_error_bonds": "position error / bond",
          "f1": "F1", "runtime_s": "runtime (s)", "alpha_used": "alpha chosen"}


def _split(rows):
    fixed = sorted((r for r in rows if isinstance(r["alpha"], (int, float))),
                   key=lambda r: r["alpha"])
    auto = [r for r in rows if r["alpha"] == "auto"]
    return fixed, auto


def best_alpha(fixed):
    """The grid alpha of smallest mean position error (None without finite errors)."""
    best, best_err = None, np.inf
    for (alpha,), members in tables.group(fixed, ("alpha",)).items():
        err = np.nanmean(tables.numbers(members, "position_error_bonds")) if members else np.nan
        if np.isfinite(err) and err < best_err:
            best, best_err = alpha, err
    return best


def auto_alpha(auto):
    chosen = tables.numbers(auto, "alpha_used")
    chosen = chosen[np.isfinite(chosen)]
    return float(np.median(chosen)) if chosen.size else None


def summary(rows, failures, quick) -> str:
    fixed, auto = _split(rows)
    best, chosen = best_alpha(fixed), auto_alpha(auto)
    text = ["# alpha sweep: the weight of the energy term\n",
            f"{'Quick run' if quick else 'Full run'}: the {PHANTOM} lattice, {N_ANGLES} zone-axis "
            f"angles, {100 * NOISE:g} % noise, ADCG budget "
            f"`{cases.options_text(ADCG_QUICK if quick else ADCG_FULL)}`; "
            "mean ± std over seeds.\n\n",
            f"- alpha of smallest mean position error: **{tables.fmt_number(best)}**\n",
            f"- alpha chosen automatically (discrepancy principle, median over seeds): "
            f"**{tables.fmt_number(chosen)}**\n\n"]
    text.append(tables.aggregate_table(fixed + auto, ("alpha",), (*METRICS, "alpha_used"), LABELS))
    text.append(tables.runtime_note(rows))
    text.append(tables.failures_note(failures))
    return "".join(text)


def figures(out_dir, rows, log) -> list:
    from ..plotting import plot_curves, plot_panels, save_figure

    files = []
    fixed, auto = _split(rows)
    alphas = sorted({r["alpha"] for r in fixed})
    seeds = sorted({r["seed"] for r in fixed})
    if alphas:
        curves = {}
        for key in ("energy", "data_discrepancy", "n_found", "position_error_bonds", "f1"):
            curves[LABELS[key]] = tables.matrix(fixed, lambda r: r["seed"], seeds, "alpha",
                                                alphas, key)
        markers = []
        best, chosen = best_alpha(fixed), auto_alpha(auto)
        if best is not None:
            markers.append({"x": best, "label": "smallest position error", "color": "0.55",
                            "ls": "-"})
        if chosen is not None:
            markers.append({"x": chosen, "label": "automatic alpha", "color": "#e66101",
                            "ls": "--"})
        fig = plot_curves(alphas, curves, xlabel="alpha (weight of the energy term)",
                          markers=markers or None, logy=False,
                          title=f"{PHANTOM} lattice, {N_ANGLES} angles, {100 * NOISE:g} % noise")
        files.append(save_figure(fig, out_dir / "alpha-sweep.png"))
    truth = cases.truth_of(PHANTOM)
    seed = min(seeds) if seeds else 0
    picks = [alphas[i] for i in sorted(set(np.linspace(0, len(alphas) - 1, N_PANELS)
                                           .round().astype(int)))] if alphas else []
    chosen_rows = [r for r in fixed if r["seed"] == seed and r["alpha"] in picks]
    chosen_rows += [r for r in auto if r["seed"] == seed]
    panels = []
    for r in chosen_rows:
        found = cases.load_configuration(out_dir, r["id"])
        if found is None:
            continue
        title = (f"alpha = {tables.fmt_number(r['alpha'])}" if r["alpha"] != "auto" else
                 f"auto: alpha = {tables.fmt_number(r.get('alpha_used'))}")
        panels.append({"found": found, "truth": truth, "box": truth.info["box"], "title": title,
                       "tolerance": TOLERANCE_BONDS * truth.info["bond_length"]})
    if panels:
        fig = plot_panels(panels, ncols=min(3, len(panels)),
                          suptitle=f"ADCG reconstructions at several alphas (seed {seed})")
        files.append(save_figure(fig, out_dir / "alpha-configurations.png"))
    return files
