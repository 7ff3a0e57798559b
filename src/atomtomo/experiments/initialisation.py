"""``atomtomo reproduce initialisation``: does the energy term correct poor initialisations?

The poster's claim (2). The interstitial lattice (37 atoms) is projected at its zone axes with
1 % noise and reconstructed by a *local* optimisation from a poor start -- ADCG with
``initial=start``, ``hops=0``, ``sweeps=0``, ``lattice_start=False``: the start is relaxed, then
atoms are added, moved and pruned until no addition helps, with no global search -- once with
``alpha = 0`` (data only) and once with ``alpha > 0`` (data plus Lennard-Jones energy). Starts
(one random draw per seed):

- ``random``: 37 atoms (the right count) uniform over the lattice's extent;
- ``shifted``: the perfect 6 x 6 lattice (no interstitial) shifted by 0.3-0.5 bond lengths in a
  random direction;
- ``rotated``: that lattice rotated by 5-15 degrees (random sign) about its centre;
- ``spacing``: that lattice with a spacing 10-20 % too small or too large.

Full: 4 starts x alpha (0, 0.01, 0.1) x angles (2, 3) x 50 seeds = 1200 tasks; ``--quick``:
alpha (0, 0.01), angles (2, 3), 5 seeds = 80 tasks. Each task takes about a second. A run
succeeds when F1 >= 0.95 (tolerance 0.1 bond length).

Outputs: ``results.csv`` (F1, position error, count error of the result and of the start);
``summary.md`` (success rate and error per start, alpha and angle count); ``initialisation.png``
(success rate per start and alpha) and ``initialisation-errors-<k>angles.png`` (the
distribution of the position error, one box per start and alpha).
"""

from __future__ import annotations

import numpy as np

from ..metrics import TOLERANCE_BONDS
from . import cases, tables

DESCRIPTION = "local optimisation from poor starts with alpha = 0 and alpha > 0"
PHANTOM = "interstitial"
NOISE = 0.01
STARTS = ("random", "shifted", "rotated", "spacing")
SUCCESS_F1 = 0.95
FULL = {"alphas": (0.0, 0.01, 0.1), "angles": (2, 3), "seeds": tuple(range(50))}
QUICK = {"alphas": (0.0, 0.01), "angles": (2, 3), "seeds": tuple(range(5))}
#: A local optimisation: no global search from the start.
LOCAL = {"hops": 0, "sweeps": 0, "lattice_start": False}
#: Ranges of the perturbations (bond lengths, degrees, relative spacing error).
SHIFT_BONDS = (0.3, 0.5)
ROTATION_DEG = (5.0, 15.0)
SPACING_ERROR = (0.10, 0.20)

COLUMNS = ("start", "alpha", "n_angles", "seed", "options", "perturbation", "start_f1",
           "start_position_error_bonds", "start_n_atoms", *cases.SCORE_COLUMNS, "success",
           "objective", "data_discrepancy", "energy", "iterations", "runtime_s")


def tasks(quick: bool = False) -> list[dict]:
    grid = QUICK if quick else FULL
    options = cases.options_text(LOCAL)
    return [{"start": start, "alpha": a, "n_angles": n, "seed": s, "options": options}
            for n in grid["angles"] for s in grid["seeds"] for start in STARTS
            for a in grid["alphas"]]


def poor_start(kind: str, truth, seed: int):
    """A poor initial configuration of kind ``kind`` for the interstitial lattice ``truth``.

    Returns ``(configuration, perturbation)``: the size of the perturbation (bond lengths,
    degrees or relative spacing error; NaN for ``random``).
    """
    from ..configuration import Configuration
    from ..phantoms import square_lattice

    rng = np.random.default_rng([int(seed), 7411])
    a = float(truth.info["bond_length"])
    weights = dict(truth.species_weights)
    species = truth.species[0]
    if kind == "random":
        half = 3.0 * a  # the 6 x 6 block spans +-2.5 spacings; half a spacing more
        pos = rng.uniform(-half, half, size=(truth.n_atoms, 2))
        return Configuration(pos, [species] * len(pos), weights), float("nan")
    if kind == "shifted":
        size = rng.uniform(*SHIFT_BONDS)
        phi = rng.uniform(0, 2 * np.pi)
        lattice = square_lattice(6, 6, a)
        pos = lattice.positions + size * a * np.array([np.cos(phi), np.sin(phi)])
        perturbation = size
    elif kind == "rotated":
        deg = rng.uniform(*ROTATION_DEG) * rng.choice([-1.0, 1.0])
        pos = square_lattice(6, 6, a, rotation=np.radians(deg)).positions
        perturbation = deg
    elif kind == "spacing":
        err = rng.uniform(*SPACING_ERROR) * rng.choice([-1.0, 1.0])
        pos = square_lattice(6, 6, a * (1 + err)).positions
        perturbation = err
    else:
        from ..errors import InputError

        raise InputError(f"unknown start {kind!r}; choose one of: {', '.join(STARTS)}")
    return Configuration(pos, [species] * len(pos), weights), float(perturbation)


def run_task(params: dict) -> dict:
    problem, truth = cases.simulate_case(PHANTOM, params["n_angles"], NOISE, params["seed"])
    start, perturbation = poor_start(params["start"], truth, params["seed"])
    before = cases.score(start, truth)
    after = cases.reconstruct_scored(problem, truth, "adcg", params["alpha"], params,
                                     initial=start)
    return {"perturbation": perturbation, "start_f1": before["f1"],
            "start_position_error_bonds": before["position_error_bonds"],
            "start_n_atoms": start.n_atoms, **after, "success": int(after["f1"] >= SUCCESS_F1)}


def keep(out_dir):
    return cases.keep_configuration(out_dir)


# ---------------------------------------------------------------------------------------------
LABELS = {"success": "success rate", "f1": "F1", "position_error_bonds": "position error / bond",
          "count_error": "count error", "start_f1": "start F1", "runtime_s": "runtime (s)"}


def _alpha_label(a):
    return f"alpha={tables.fmt_number(a)}" if a else "alpha=0"


def summary(rows, failures, quick) -> str:
    rows = sorted(rows, key=lambda r: (r["n_angles"], STARTS.index(r["start"]), r["alpha"]))
    text = ["# initialisation: local optimisation from poor starts\n",
            f"{'Quick run' if quick else 'Full run'}: the {PHANTOM} lattice, {100 * NOISE:g} % "
            f"noise; ADCG as a local optimiser (`{cases.options_text(LOCAL)}`) from each start. "
            f"Success: F1 >= {SUCCESS_F1}. Success rate = mean of the success indicator; other "
            "columns mean ± std over seeds.\n\n"]
    text.append("## Success rate\n\n")
    alphas = sorted({r["alpha"] for r in rows})
    body = []
    for (n, start), members in tables.group(rows, ("n_angles", "start")).items():
        cells = []
        for a in alphas:
            s = tables.numbers([r for r in members if r["alpha"] == a], "success")
            cells.append(f"{s.mean():.0%} ({int(s.sum())}/{s.size})" if s.size else "–")
        body.append([n, start, *cells])
    text.append(tables.markdown_table(["angles", "start", *map(_alpha_label, alphas)], body))
    text.append("\n## All groups\n\n")
    text.append(tables.aggregate_table(rows, ("n_angles", "start", "alpha"),
                                       ("success", "f1", "position_error_bonds", "count_error",
                                        "start_f1", "runtime_s"), LABELS))
    text.append(tables.runtime_note(rows))
    text.append(tables.failures_note(failures))
    return "".join(text)


def _members(rows, n_angles, start, alpha):
    return [r for r in rows if (r["n_angles"], r["start"], r["alpha"]) == (n_angles, start, alpha)]


def _success_rate(rows, n_angles, start, alpha) -> float:
    members = _members(rows, n_angles, start, alpha)
    return float(np.mean(tables.numbers(members, "success"))) if members else float("nan")


def figures(out_dir, rows, log) -> list:
    from matplotlib.figure import Figure

    from ..plotting import plot_distributions, save_figure

    files = []
    alphas = sorted({r["alpha"] for r in rows})
    angles = sorted({r["n_angles"] for r in rows})
    for n in angles:
        groups = {}
        for start in STARTS:
            for a in alphas:
                members = _members(rows, n, start, a)
                if members:
                    groups[f"{start}, {_alpha_label(a)}"] = tables.numbers(members,
                                                                           "position_error_bonds")
        if groups:
            fig = plot_distributions(groups, ylabel="position error / bond length",
                                     title=f"Position error after local optimisation, {n} angles",
                                     threshold=TOLERANCE_BONDS,
                                     threshold_label="F1 tolerance (0.1 bond)")
            files.append(save_figure(fig, out_dir / f"initialisation-errors-{n}angles.png"))
    # Success rates: grouped bars, one group per start, one bar per alpha (and angle count).
    fig = Figure(figsize=(2.8 + 1.3 * len(STARTS) * len(angles), 3.2), layout="constrained")
    ax = fig.add_subplot()
    series = [(n, a) for n in angles for a in alphas]
    width = 0.8 / len(series)
    x = np.arange(len(STARTS))
    for k, (n, a) in enumerate(series):
        rates = [_success_rate(rows, n, start, a) for start in STARTS]
        label = _alpha_label(a) + (f", {n} angles" if len(angles) > 1 else "")
        ax.bar(x - 0.4 + width * (k + 0.5), rates, width, label=label)
    ax.set_xticks(x, STARTS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success rate (F1 >= {SUCCESS_F1})")
    ax.set_title("Local optimisation from poor starts")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.25, lw=0.5)
    files.append(save_figure(fig, out_dir / "initialisation.png"))
    return files
