"""How sure is a reconstruction? Per-atom agreement between independent reconstructions.

Given K reconstructions of the same data (independent searches with different seeds, or
reconstructions from the two halves of the projections), the **confidence** of atom ``i`` of a
reference reconstruction is the fraction of the other K - 1 reconstructions that have an atom
matched to it within the tolerance (one-to-one matching, :func:`atomtomo.metrics.match_atoms`):

    c_i = (1 / (K - 1)) sum_{k != ref} [atom i is matched in reconstruction k]

An atom every run agrees on has ``c_i = 1`` ("certain"); an atom that only some runs place
there is uncertain. The reference is the reconstruction with the lowest objective (the one a
user would keep), unless given. Atoms that other runs agree on but the reference lacks are
reported as ``missed`` sites (found by a majority of the other runs, absent from the reference).

:func:`confidence_from_runs` runs a solve function with several seeds and does the above.
"""

from __future__ import annotations

import math

import numpy as np

from .configuration import Configuration
from .errors import InputError
from .metrics import TOLERANCE_BONDS, match_atoms

#: Atoms with at least this confidence count as certain.
CERTAIN = 1.0


def choose_reference(runs) -> int:
    """Index of the run with the lowest ``info["objective"]`` (the first if none has one)."""
    objectives = []
    for k, cfg in enumerate(runs):
        try:
            objectives.append(float(cfg.info.get("objective")))
        except (TypeError, ValueError):
            objectives.append(math.inf)
    return int(np.argmin(objectives)) if np.isfinite(objectives).any() else 0


def atom_confidence(runs, tolerance=None, reference=None, bond_length=None):
    """Per-atom confidence of one reconstruction against the others.

    Parameters
    ----------
    runs : sequence of Configuration
        K >= 2 reconstructions of the same data, same dimension.
    tolerance : float, optional
        Match distance; default 0.1 x ``bond_length`` (or the reference's median
        nearest-neighbour distance).
    reference : int, optional
        Index of the reconstruction to annotate; default :func:`choose_reference`.
    bond_length : float, optional

    Returns
    -------
    annotated : Configuration
        The reference with a ``confidence`` column and, in ``info``, ``confidence_runs`` (K),
        ``confidence_threshold``, ``certain_fraction``, ``confidence_tolerance`` and
        ``missed_sites`` (positions a majority of the other runs agree on but the reference
        lacks).
    """
    from .potentials import bond_length_estimate

    runs = list(runs)
    if len(runs) < 2:
        raise InputError(f"confidence needs at least 2 reconstructions, got {len(runs)}")
    ndims = {cfg.ndim for cfg in runs}
    if len(ndims) != 1:
        raise InputError("the reconstructions mix 2D and 3D atoms")
    ref = choose_reference(runs) if reference is None else int(reference)
    if not 0 <= ref < len(runs):
        raise InputError(f"reference {ref} is not one of the {len(runs)} runs")
    base = runs[ref]
    if tolerance is None:
        bond = bond_length or base.info.get("bond_length") or bond_length_estimate(base.positions)
        if bond is None:
            raise InputError("cannot derive a tolerance: give one (or a bond length)")
        tolerance = TOLERANCE_BONDS * float(bond)
    tolerance = float(tolerance)
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise InputError(f"tolerance must be a positive number, got {tolerance}")
    others = [cfg for k, cfg in enumerate(runs) if k != ref]
    agree = np.zeros(base.n_atoms)
    extra = []  # atoms of other runs with no partner in the reference
    for cfg in others:
        m = match_atoms(base, cfg, tolerance)  # "found" = reference, "truth" = the other run
        agree += m.found_matched
        extra.append(cfg.positions[~m.true_matched])
    confidence = agree / len(others)
    missed = _majority_sites(extra, len(others), tolerance, base.ndim)
    out = base.copy()
    out.arrays["confidence"] = confidence
    out.info.update({
        "confidence_runs": len(runs),
        "confidence_reference": ref,
        "confidence_threshold": CERTAIN,
        "confidence_tolerance": tolerance,
        "certain_fraction": float(np.mean(confidence >= CERTAIN)) if base.n_atoms else None,
        "missed_sites": np.round(missed, 6).tolist(),
    })
    return out


def _majority_sites(extra, n_others, tolerance, ndim) -> np.ndarray:
    """Positions where more than half of the other runs put an atom the reference lacks."""
    from scipy.spatial import cKDTree

    points = [p for p in extra if len(p)]
    if not points:
        return np.zeros((0, ndim))
    pts = np.vstack(points)
    owner = np.concatenate([np.full(len(p), k) for k, p in enumerate(extra) if len(p)])
    tree = cKDTree(pts)
    used = np.zeros(len(pts), bool)
    sites = []
    for i in range(len(pts)):
        if used[i]:
            continue
        group = [g for g in tree.query_ball_point(pts[i], tolerance) if not used[g]]
        used[group] = True
        if len(set(owner[group].tolist())) > n_others / 2:
            sites.append(pts[group].mean(axis=0))
    return np.array(sites).reshape(-1, ndim)


def confidence_from_runs(problem, solve, seeds=(0, 1, 2), tolerance=None, **kwargs):
    """Run ``solve(problem, seed=s, **kwargs)`` for each seed; annotate the best run.

    Parameters
    ----------
    problem : Problem
    solve : callable
        A reconstruction method (e.g. :func:`atomtomo.solvers.get_method` ``("adcg")``)
        returning a :class:`~atomtomo.solvers.problem.Reconstruction`.
    seeds : sequence of int
        At least two.
    tolerance : float, optional
        Default 0.1 x the problem's bond length.
    **kwargs
        Passed to ``solve`` (alpha, options, ...).

    Returns
    -------
    annotated : Configuration
        The run with the lowest objective, with the ``confidence`` column (see
        :func:`atom_confidence`).
    runs : list of Configuration
        Every run's configuration with its record in ``info``.
    """
    seeds = list(seeds)
    if len(seeds) < 2:
        raise InputError("confidence needs at least two seeds")
    runs = []
    for seed in seeds:
        rec = solve(problem, seed=int(seed), **kwargs)
        cfg = rec.configuration.copy()
        cfg.info.update(rec.info)
        runs.append(cfg)
    annotated = atom_confidence(runs, tolerance=tolerance, bond_length=problem.bond_length)
    return annotated, runs


def uncertainty_scores(annotated: Configuration, truth: Configuration, tolerance) -> dict:
    """How well "uncertain" (confidence < 1) predicts "wrong" (not matched to the truth).

    Returns precision (uncertain atoms that are wrong / uncertain atoms), recall (wrong atoms
    that are uncertain / wrong atoms) and the counts; ``None`` where a ratio is undefined.
    """
    conf = np.asarray(annotated.arrays["confidence"], float)
    m = match_atoms(annotated, truth, tolerance)
    wrong = ~np.asarray(m.found_matched, bool)
    uncertain = conf < CERTAIN
    tp = int(np.sum(wrong & uncertain))
    return {"n_atoms": int(len(conf)), "wrong": int(wrong.sum()), "uncertain": int(uncertain.sum()),
            "uncertain_and_wrong": tp,
            "precision": tp / uncertain.sum() if uncertain.any() else None,
            "recall": tp / wrong.sum() if wrong.any() else None,
            "missed_true_atoms": int(m.n_true - m.n_matched)}
