"""Precision from the data alone: reconstruct the even and the odd projections separately.

As AET papers do (e.g. Yang et al., Nature 2017; the amorphous-materials papers): split the
tilt series into two half sets (projections 0, 2, 4, ... and 1, 3, 5, ...), reconstruct each
with the same method and the same image-formation parameters, and match the two results one to
one (:func:`atomtomo.metrics.match_pairs`, the pairing of ``match_atoms``). Reported:

* ``fraction``: atoms found in both within the tolerance, ``n_matched / mean(n_even, n_odd)``;
* ``rms``: the RMS distance of the matched pairs; each half's position error is about
  ``rms / sqrt(2)`` (two independent errors add), which the full data improve further;
* the tolerance: 0.5 A when the data's unit is angstrom (0.05 nm in nm), otherwise 0.2 bond
  lengths (0.5 A of a 2.5 A bond), otherwise two atom widths.

:func:`half_set_precision` takes the solve function, so any method and budget can be used.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .forward import ForwardModel
from .geometry import Geometry
from .metrics import match_pairs
from .solvers.problem import Problem

#: Matching tolerance per length unit: 0.5 angstrom.
HALF_SET_TOLERANCE = {"angstrom": 0.5, "a": 0.5, "nm": 0.05}
#: Otherwise, in bond lengths.
BOND_FRACTION = 0.2


def subset_problem(problem: Problem, indices) -> Problem:
    """The problem restricted to projections ``indices`` (same box, species, noise level)."""
    geo = problem.geometry
    indices = np.asarray(indices, int)
    angles = None if geo.angles is None else np.asarray(geo.angles)[indices]
    sub = Geometry.from_directions(geo.ndim, np.asarray(geo.directions)[indices],
                                   geo.detector_shape, geo.pixel_size, angles=angles)
    return Problem(model=ForwardModel(sub, problem.sigma), data=problem.data[indices],
                   box=problem.box, species_weights=dict(problem.species_weights),
                   bond_length=problem.bond_length, noise_std=problem.noise_std,
                   ground_truth=problem.ground_truth, length_unit=problem.length_unit)


def half_set_tolerance(problem: Problem) -> tuple[float, str]:
    """Matching distance and how it was chosen (see the module docstring)."""
    unit = (problem.length_unit or "").strip().lower()
    if unit in HALF_SET_TOLERANCE:
        return HALF_SET_TOLERANCE[unit], f"0.5 angstrom ({unit})"
    if problem.bond_length:
        return BOND_FRACTION * problem.bond_length, f"{BOND_FRACTION:g} bond lengths"
    return 2 * problem.sigma, "two atom widths (no length unit or bond length)"


def half_set_precision(problem: Problem, solve, *, tolerance: float | None = None) -> dict:
    """Reconstruct the even and the odd projections with ``solve(problem)`` and match them.

    Returns
    -------
    dict
        ``n_even``, ``n_odd``, ``n_matched``, ``fraction``, ``rms``, ``precision`` (``rms /
        sqrt 2``), ``tolerance``, ``tolerance_rule``, and ``even`` / ``odd`` (the two
        :class:`~atomtomo.configuration.Configuration`) and ``pairs`` (index pairs).
    """
    n = problem.geometry.n_angles
    if n < 4:
        raise InputError(f"half sets need at least 4 projections (2 per half), got {n}")
    tol, rule = (tolerance, "given") if tolerance is not None else half_set_tolerance(problem)
    even = solve(subset_problem(problem, np.arange(0, n, 2))).configuration
    odd = solve(subset_problem(problem, np.arange(1, n, 2))).configuration
    pairs = np.asarray(match_pairs(even.positions, odd.positions, tol), int).reshape(-1, 2)
    dist = (np.linalg.norm(even.positions[pairs[:, 0]] - odd.positions[pairs[:, 1]], axis=1)
            if len(pairs) else np.zeros(0))
    mean_n = 0.5 * (even.n_atoms + odd.n_atoms)
    rms = float(np.sqrt(np.mean(dist ** 2))) if len(dist) else float("nan")
    return {"n_even": even.n_atoms, "n_odd": odd.n_atoms, "n_matched": int(len(dist)),
            "fraction": float(len(dist) / mean_n) if mean_n else 0.0, "rms": rms,
            "precision": rms / np.sqrt(2), "tolerance": float(tol), "tolerance_rule": rule,
            "even": even, "odd": odd, "pairs": pairs, "distances": dist}


def summary(result: dict) -> dict:
    """The scalar part of :func:`half_set_precision`'s result, for an output's comment line."""
    return {f"half_sets_{k}": (round(v, 5) if isinstance(v, float) else v)
            for k, v in result.items() if k in ("n_even", "n_odd", "n_matched", "fraction", "rms",
                                                "precision", "tolerance", "tolerance_rule")}
