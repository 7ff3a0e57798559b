"""What the experiments share: the simulated acquisition, scoring, and files kept per task.

The acquisition is the demo's and the learned locator's (so all results are comparable): 2D
phantoms in the unit box, a 96-pixel detector of pixel size 1/64 (1.5 box widths), atoms of
standard deviation 0.02, Gaussian noise relative to the largest noiseless projection value.
Angles are the lattice's zone axes (:func:`atomtomo.phantoms.zone_axis_angles`): the atom
columns line up along the beam, as in the poster.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..metrics import TOLERANCE_BONDS

DETECTOR = 96
PIXEL_SIZE = 1 / 64
SIGMA = 0.02
#: Looser matching for the position error (so it measures displacement, not detection).
POSITION_MATCH_BONDS = 0.5
#: Subdirectory of the output directory with one reconstruction (.xyz) per task.
CONFIGURATIONS = "configurations"

#: Columns of :func:`score`.
SCORE_COLUMNS = ("f1", "precision", "recall", "n_true", "n_found", "count_error",
                 "mean_distance_bonds", "position_error_bonds")


def truth_of(phantom: str):
    """The true configuration of a phantom (the experiments' phantoms are deterministic)."""
    from ..phantoms import build_phantom

    return build_phantom(phantom)


def simulate_case(phantom: str, n_angles: int, noise: float, seed: int):
    """The tilt series of a phantom at its first ``n_angles`` zone axes (1 to 3), as a problem.

    Returns ``(problem, truth)``; ``seed`` seeds the noise. ``noise`` is relative to the largest
    noiseless projection value (0.01 = 1 %); 0 means noiseless data.
    """
    from ..geometry import Geometry
    from ..phantoms import zone_axis_angles
    from ..solvers.problem import Problem
    from ..tiltseries import simulate_tiltseries

    truth = truth_of(phantom)
    angles = zone_axis_angles(truth.info.get("lattice", "square"),
                              float(truth.info.get("rotation", 0.0)), int(n_angles))
    geometry = Geometry.from_angles(2, angles, DETECTOR, PIXEL_SIZE)
    ts = simulate_tiltseries(truth, geometry, SIGMA, relative_noise=float(noise) or None,
                             seed=int(seed), box=np.asarray(truth.info["box"], float),
                             bond_length=float(truth.info["bond_length"]))
    return Problem.from_tiltseries(ts), truth


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else float("nan")


def score(found, truth) -> dict:
    """F1 etc. at :data:`TOLERANCE_BONDS` bond lengths, and the position error.

    ``mean_distance_bonds`` is the mean distance of the pairs matched within the F1 tolerance;
    ``position_error_bonds`` the RMS distance of the pairs matched within
    :data:`POSITION_MATCH_BONDS` bond lengths (NaN when nothing matches); both in bond lengths.
    ``count_error`` is found minus true atoms.
    """
    from ..metrics import match_atoms

    bond = float(truth.info["bond_length"])
    strict = match_atoms(found, truth, TOLERANCE_BONDS * bond)
    loose = match_atoms(found, truth, POSITION_MATCH_BONDS * bond)
    return {
        "f1": _plain(strict.f1),
        "precision": _plain(strict.precision),
        "recall": _plain(strict.recall),
        "n_true": int(strict.n_true),
        "n_found": int(strict.n_found),
        "count_error": int(strict.n_found) - int(strict.n_true),
        "mean_distance_bonds": _plain(strict.mean_distance) / bond,
        "position_error_bonds": _plain(loose.rmsd) / bond,
    }


def info_values(info: dict) -> dict:
    """The reconstruction record's scalars the tables use."""
    out = {}
    for key in ("objective", "data_discrepancy", "energy", "iterations", "runtime_s"):
        value = info.get(key)
        out[key] = None if value is None else float(value)
    alpha = info.get("alpha")
    out["alpha_used"] = float(alpha) if isinstance(alpha, (int, float, np.floating)) else None
    return out


def reconstruct_scored(problem, truth, method: str, alpha, params: dict, **kwargs) -> dict:
    """Reconstruct with the task's ``seed`` and ``options`` (``params``) and score the result
    against ``truth``: :func:`score`, :func:`info_values` and the ``configuration``."""
    from ..solvers import reconstruct

    recon = reconstruct(problem, method, alpha=alpha, seed=int(params["seed"]), **kwargs,
                        **json.loads(params["options"]))
    return {**score(recon.configuration, truth), **info_values(recon.info),
            "configuration": recon.configuration}


def options_text(options: dict) -> str:
    """Options as the compact JSON stored in a task's ``options`` column."""
    return json.dumps(options, sort_keys=True, separators=(",", ":"))


def keep_configuration(out_dir):
    """A ``keep`` hook for :func:`~.sweep.run_sweep`: writes ``result["configuration"]`` to
    ``out_dir/configurations/<task id>.xyz`` (atomically) before the task's row is appended."""
    directory = Path(out_dir) / CONFIGURATIONS

    def keep(tid, params, result):
        config = result.get("configuration")
        if config is None:
            return
        directory.mkdir(exist_ok=True)
        from ..configuration import write_xyz

        info = {k: v for k, v in params.items() if isinstance(v, (int, float, str))}
        write_xyz(config, directory / f"{tid}.xyz", **info)

    return keep


def load_configuration(out_dir, tid):
    """The kept reconstruction of task ``tid``, or None."""
    path = Path(out_dir) / CONFIGURATIONS / f"{tid}.xyz"
    if not path.exists():
        return None
    from ..configuration import read_xyz

    return read_xyz(path, ndim=2)


#: ADCG's global-search budget in the experiments: hops (basin-hopping steps), patience,
#: annealing sweeps over positions, seconds.
ADCG_FULL = {"hops": 300, "patience": 60, "sweeps": 20, "time_limit": 600.0}
ADCG_QUICK = {"hops": 10, "sweeps": 3, "time_limit": 60.0}
