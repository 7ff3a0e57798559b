"""``atomtomo reproduce animation``: a GIF of one ADCG run, iteration by iteration.

The poster's interstitial lattice at 2 zone-axis angles with 1 % noise, reconstructed by ADCG
with the energy term (alpha = auto). Every iteration's atoms are collected from the solver's
callback (greedy additions, lattice starts, annealing sweeps, basin hops, the alpha ladder) and
drawn by :func:`atomtomo.plotting.animate_run`, coloured by their distance to the truth (red
crosses). One task; ``--quick`` uses a smaller search budget.

Outputs: ``results.csv`` (one row: F1, errors, frames, runtime); ``frames/<id>.json`` (the
frames, so the GIF can be redrawn without recomputing); ``animation.gif``; ``animation-final.png``
(the final reconstruction); ``summary.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._io import write_text
from . import cases, tables

DESCRIPTION = "a GIF of one ADCG run on the interstitial lattice (2 angles, 1 % noise)"
PHANTOM = "interstitial"
N_ANGLES = 2
NOISE = 0.01
ALPHA = "auto"
ADCG_FULL = cases.ADCG_FULL
ADCG_QUICK = {"hops": 20, "sweeps": 5, "time_limit": 60.0}
#: At most this many frames go into the GIF (evenly thinned, the last one kept).
MAX_FRAMES = 200
FRAMES = "frames"

COLUMNS = ("alpha", "seed", "options", *cases.SCORE_COLUMNS, "objective", "data_discrepancy",
           "energy", "alpha_used", "iterations", "n_frames", "runtime_s")


def tasks(quick: bool = False) -> list[dict]:
    return [{"alpha": ALPHA, "seed": 0,
             "options": cases.options_text(ADCG_QUICK if quick else ADCG_FULL)}]


def run_task(params: dict) -> dict:
    problem, truth = cases.simulate_case(PHANTOM, N_ANGLES, NOISE, params["seed"])
    frames = []

    def collect(record):
        if record.get("positions") is None:
            return
        frames.append({"positions": np.asarray(record["positions"], float).tolist(),
                       "iteration": int(record.get("iteration", len(frames))),
                       "phase": str(record.get("phase", "")),
                       "n_atoms": int(record.get("n_atoms", len(record["positions"]))),
                       "objective": float(record.get("objective", np.nan))})

    result = cases.reconstruct_scored(problem, truth, "adcg", params["alpha"], params,
                                      callback=collect)
    final = result["configuration"]
    objective = result["objective"]
    frames.append({"positions": final.positions.tolist(), "iteration": len(frames),
                   "phase": "final", "n_atoms": final.n_atoms,
                   "objective": float(np.nan if objective is None else objective)})
    return {**result, "n_frames": len(frames), "frames": frames}


def keep(out_dir):
    save_configuration = cases.keep_configuration(out_dir)
    directory = Path(out_dir) / FRAMES

    def keep_frames(tid, params, result):
        save_configuration(tid, params, result)
        directory.mkdir(exist_ok=True)
        write_text(directory / f"{tid}.json", json.dumps(result["frames"]))

    return keep_frames


def thin(frames, limit=MAX_FRAMES):
    """At most ``limit`` frames, evenly spaced, first and last kept."""
    if len(frames) <= limit:
        return list(frames)
    keep_idx = np.unique(np.linspace(0, len(frames) - 1, limit).round().astype(int))
    return [frames[i] for i in keep_idx]


def summary(rows, failures, quick) -> str:
    text = ["# animation: one ADCG run\n",
            f"{'Quick run' if quick else 'Full run'}: the {PHANTOM} lattice, {N_ANGLES} zone-axis "
            f"angles, {100 * NOISE:g} % noise, alpha = {ALPHA}, ADCG budget "
            f"`{cases.options_text(ADCG_QUICK if quick else ADCG_FULL)}`.\n\n"]
    keys = ("f1", "n_found", "n_true", "position_error_bonds", "alpha_used", "data_discrepancy",
            "energy", "iterations", "n_frames", "runtime_s")
    text.append(tables.markdown_table(["seed", *keys],
                                      [[r["seed"], *(tables.fmt_cell(r.get(k)) for k in keys)]
                                       for r in rows]))
    text.append("\nThe GIF shows at most "
                f"{MAX_FRAMES} frames (evenly thinned): animation.gif.\n")
    text.append(tables.failures_note(failures))
    return "".join(text)


def figures(out_dir, rows, log) -> list:
    from ..plotting import animate_run, plot_reconstruction, save_figure

    files = []
    truth = cases.truth_of(PHANTOM)
    row = rows[0]
    path = Path(out_dir) / FRAMES / f"{row['id']}.json"
    if path.exists():
        frames = thin(json.loads(path.read_text()))
        for f in frames:
            f["positions"] = np.asarray(f["positions"], float).reshape(-1, 2)
        gif = Path(out_dir) / "animation.gif"
        animate_run(frames, gif, truth=truth, box=np.asarray(truth.info["box"], float),
                    title=f"ADCG, {N_ANGLES} angles, {100 * NOISE:g} % noise")
        files.append(gif)
    found = cases.load_configuration(out_dir, row["id"])
    if found is not None:
        ax = plot_reconstruction(found, truth=truth, box=truth.info["box"],
                                 title=f"ADCG (alpha {ALPHA}), final")
        files.append(save_figure(ax.figure, Path(out_dir) / "animation-final.png"))
    return files
