"""Inference with the learned locator: ``atomtomo reconstruct FILE --method learned``.

:func:`reconstruct_learned` reconstructs the problem's data by SIRT (the project's
:func:`~atomtomo.solvers.grid.sirt`) on the model's ``G x G`` grid over the problem's box, with the
problem's own geometry; divides the image by the SIRT peak of one atom (so the scale of the data
does not matter); maps the box onto the network's unit box; and turns the network's candidates
into atoms with :func:`merge_candidates`. Without ``model`` it picks the shipped model whose angle
set is nearest (:func:`select_model`).

:func:`f1_against_angles` measures how the learned locator and ADCG fare as the number of angles
shrinks.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .._checks import positive_number
from ..configuration import Configuration
from ..errors import InputError, first_line

#: Where the shipped models live.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: Angle counts of the shipped models (angles ``k 180/n`` degrees, ``k = 0..n-1``).
SHIPPED_ANGLE_COUNTS = (2, 3, 5, 8, 10, 15)
#: Candidates below this fraction of the threshold are ignored before merging.
FLOOR_FRACTION = 0.25
#: Relative mismatch of sigma or pixel size (model vs data, relative to the box) that warns.
MISMATCH_WARNING = 1.5


def uniform_angles(n: int) -> np.ndarray:
    """``n`` angles spread uniformly over 180 degrees: ``k pi / n``, radians."""
    return np.arange(int(n)) * np.pi / int(n)


def shipped_model_name(n: int) -> str:
    return f"locator_{int(n)}angles.pt"


# -- candidates -> atoms ------------------------------------------------------------------------
def merge_candidates(positions, weights, threshold, merge_distance, floor=None):
    """Atoms from weighted candidates: merge close ones, keep confident clusters.

    Candidates with weight above ``floor`` (default ``threshold / 4``) are linked when closer
    than ``merge_distance``; each connected cluster becomes one atom at the weighted mean of its
    candidates, kept when the cluster's total weight reaches ``threshold`` (so an atom on a cell
    border, shared by two half-confident candidates, is not lost).

    Returns
    -------
    positions : (n, d) ndarray
    weights : (n,) ndarray
        Total candidate weight of each atom.
    """
    pos = np.asarray(positions, dtype=float)
    w = np.asarray(weights, dtype=float).reshape(-1)
    d = pos.shape[-1]
    floor = FLOOR_FRACTION * threshold if floor is None else floor
    keep = w > floor
    pos, w = pos[keep], w[keep]
    if len(pos) == 0:
        return np.zeros((0, d)), np.zeros(0)
    pairs = cKDTree(pos).query_pairs(float(merge_distance), output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pos),) * 2)
    n, labels = connected_components(graph, directed=False)
    total = np.bincount(labels, weights=w, minlength=n)
    centre = np.stack([np.bincount(labels, weights=w * pos[:, k], minlength=n) for k in range(d)],
                      axis=1) / total[:, None]
    good = total >= threshold
    return centre[good], total[good]


def f1_score(found, truth, tolerance):
    """(f1, precision, recall) of the one-to-one matching of :func:`atomtomo.metrics.match_atoms`
    within ``tolerance``."""
    from ..metrics import match_atoms

    truth = np.asarray(truth, dtype=float)
    found = np.asarray(found, dtype=float).reshape(-1, truth.shape[-1])
    r = match_atoms(found, truth, tolerance)
    return float(r.f1), float(r.precision), float(r.recall)


# -- models -------------------------------------------------------------------------------------
def _angle_spread(angles) -> float:
    """Smallest arc (radians, modulo pi) holding every projection direction."""
    a = np.sort(np.mod(np.asarray(angles, dtype=float), np.pi))
    if len(a) < 2:
        return 0.0
    gaps = np.diff(np.concatenate([a, a[:1] + np.pi]))
    return float(np.pi - np.max(gaps))


def list_shipped_models(directory=None) -> list[dict]:
    """The shipped models: one dict each with ``name``, ``path``, ``n_angles``, ``angles_deg``,
    ``validation_f1`` and ``steps`` (from the provenance JSON beside each model)."""
    directory = MODELS_DIR if directory is None else Path(directory)
    out = []
    for path in sorted(directory.glob("*.pt")):
        meta_path = path.with_suffix(".json")
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
        else:
            meta = _model_summary(load_model(path))
        out.append({
            "name": path.stem,
            "path": str(path),
            "n_angles": int(meta["n_angles"]),
            "angles_deg": [float(a) for a in meta["angles_deg"]],
            "validation_f1": (meta.get("validation") or {}).get("f1"),
            "steps": meta.get("steps"),
        })
    return sorted(out, key=lambda m: m["n_angles"])


def select_model(angles, models=None) -> str:
    """Path of the model whose angle set is nearest to ``angles`` (radians): nearest number of
    angles first, then nearest angular spread (modulo 180 degrees)."""
    models = list_shipped_models() if models is None else models
    if not models:
        raise InputError(f"no shipped locator models in {MODELS_DIR}: pass --model FILE "
                         "(train one with atomtomo train-locator)")
    n, spread = len(np.atleast_1d(angles)), _angle_spread(angles)

    def key(m):
        return (abs(m["n_angles"] - n), abs(_angle_spread(np.radians(m["angles_deg"])) - spread),
                m["n_angles"])

    return min(models, key=key)["path"]


def _model_summary(model: dict) -> dict:
    acq = model["acquisition"]
    prov = model.get("provenance", {})
    return {"n_angles": len(acq["angles"]), "angles_deg": np.degrees(acq["angles"]).tolist(),
            "validation": prov.get("validation"), "steps": prov.get("steps")}


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float):
    from . import require_torch

    torch = require_torch()
    try:
        model = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a broken file
        raise InputError(f"cannot read locator model {path}: {first_line(exc)}") from None
    if not isinstance(model, dict) or model.get("format") != "atomtomo-locator":
        raise InputError(f"{path} is not an atomtomo locator model")
    from .network import build_network

    net = build_network(model["architecture"])
    net.load_state_dict(model["state_dict"])
    net.eval()
    return model, net


def load_model(path):
    """Load a model file: the stored dict (with ``"network"`` added, the ready network)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"locator model not found: {path}")
    model, net = _load_cached(str(path.resolve()), path.stat().st_mtime)
    return {**model, "network": net}


# -- inference ----------------------------------------------------------------------------------
def _estimate_bond_length(positions, weights, threshold):
    """Median nearest-neighbour distance of the confident candidates (unit box)."""
    p = positions[weights >= threshold]
    if len(p) < 3:
        return 0.15
    d, _ = cKDTree(p).query(p, k=2)
    nn = d[:, 1]
    # Duplicates of one atom in two cells are closer than any bond: ignore them.
    nn = nn[nn > 0.5 * np.median(nn)]
    return float(np.median(nn)) if len(nn) else 0.15


def locate_atoms(problem, model: dict, threshold=None, merge_fraction=None):
    """Positions (problem coordinates) and weights of the atoms the network finds, plus a dict
    of diagnostics."""
    from . import require_torch
    from .data import sirt_reconstructor, unit_atom_peak

    torch = require_torch()
    acq, net = model["acquisition"], model["network"]
    shape = (int(acq["grid"]), int(acq["grid"]))
    box = np.asarray(problem.box, dtype=float)
    reconstruct = sirt_reconstructor(problem.model, box, shape, acq["sirt_iterations"],
                                     acq["sirt_relaxation"])
    image = reconstruct(problem.data)
    weights = list((problem.species_weights or {"X": 1.0}).values())
    scale = unit_atom_peak(problem.model, box, shape, reconstruct) * float(np.mean(weights))
    x = torch.from_numpy(np.ascontiguousarray(image / scale, dtype=np.float32))[None]
    with torch.no_grad():
        cand_p, cand_w = net(x)
    cand_p, cand_w = cand_p[0].numpy().astype(float), cand_w[0].numpy().astype(float)

    threshold = float(model["threshold"] if threshold is None else threshold)
    merge_fraction = float(model.get("merge_fraction", 0.5) if merge_fraction is None else merge_fraction)
    centre, extent = box.mean(axis=1), box[:, 1] - box[:, 0]
    if problem.bond_length:
        bond_unit = float(problem.bond_length / np.mean(extent))
    else:
        bond_unit = _estimate_bond_length(cand_p, cand_w, threshold)
    found, found_w = merge_candidates(cand_p, cand_w, threshold, merge_fraction * bond_unit)
    positions = np.clip(centre + found * extent, box[:, 0], box[:, 1])
    geo = problem.geometry
    diag = {
        "sigma_ratio": float(problem.sigma / np.mean(extent) / acq["sigma"]),
        "pixel_ratio": float(geo.pixel_size / np.mean(extent) / acq["pixel_size"]),
        "threshold": threshold,
        "merge_distance": float(merge_fraction * bond_unit * np.mean(extent)),
        "image_peak": float(np.max(image) / scale),
    }
    return positions, found_w, diag


def _species_for(problem):
    weights = problem.species_weights or {"X": 1.0}
    # The locator finds atoms, not species: give them the species of weight closest to 1.
    names = list(weights)
    return names[int(np.argmin([abs(np.log(weights[s])) for s in names]))]


def _positive_option(value, name):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not 0 < value < 10:
        raise InputError(f"{name} must be positive and below 10, got {value}")
    return value


#: Options of :func:`reconstruct_learned` besides the common ones.
LEARNED_OPTIONS = ("model", "threshold", "merge_fraction", "announce")


def reconstruct_learned(problem, *, alpha=0.0, seed=0, callback=None, model=None, threshold=None,
                        merge_fraction=None, announce=True, **options):
    """Atom positions read off a SIRT reconstruction by a trained locator network (2D only).

    Parameters
    ----------
    problem : Problem
    model : path, optional
        A model file from :func:`~atomtomo.learn.train.train_locator`; default: the shipped
        model nearest to the problem's angles (:func:`select_model`).
    alpha : float or "auto"
        Recorded, not used: the locator has no potential-energy term (as for the grid methods,
        so that the same command line runs every method).
    seed : int
        Unused (inference is deterministic); accepted for the common signature.
    callback : callable(dict), optional
        Called once with the result record.
    threshold : float, optional
        Detection threshold on merged candidate weight (default: the model's tuned value).
    merge_fraction : float, optional
        Merge distance in bond lengths (default: the model's, 0.5).
    announce : bool
        When the model is chosen automatically, say which on stderr (one line).
    **options
        None: an unknown option raises :class:`InputError` listing the valid ones.

    Returns
    -------
    Reconstruction
        ``info`` has method, alpha, objective (``0.5 ||A(x) - y||^2`` with the continuous
        forward model), data_discrepancy, energy (0), iterations (0), runtime_s, n_atoms and
        model (the model file used), plus the model's angles and mismatch ratios.
    """
    from ..solvers.problem import Reconstruction

    t0 = time.time()
    if options:
        raise InputError(f"unknown option(s) {', '.join(sorted(options))} for method learned; "
                         f"valid: {', '.join(LEARNED_OPTIONS)}")
    if problem.ndim != 2:
        raise InputError("the learned locator is 2D only")
    threshold, merge_fraction = (_positive_option(v, k) for k, v in
                                 (("threshold", threshold), ("merge_fraction", merge_fraction)))
    geo = problem.geometry
    angles = geo.angles if geo.angles is not None else np.arctan2(geo.directions[:, 1],
                                                                   geo.directions[:, 0])
    path = Path(select_model(angles) if model is None else model)
    loaded = load_model(path)
    model_angles = np.degrees(loaded["acquisition"]["angles"])
    if model is None and announce:
        print(f"atomtomo: learned locator: using shipped model {path.name} ({len(model_angles)} "
              f"angles, the nearest to the data's {len(angles)})", file=sys.stderr)
    positions, found_w, diag = locate_atoms(problem, loaded, threshold, merge_fraction)
    for key in ("sigma_ratio", "pixel_ratio"):
        r = diag[key]
        if r > MISMATCH_WARNING or r < 1 / MISMATCH_WARNING:
            warnings.warn(f"the data's {key.split('_')[0]} (relative to the box) is {r:.2f} times "
                          f"the one model {path.name} was trained for; results may be poor",
                          stacklevel=2)
    species = _species_for(problem)
    config = Configuration(positions, [species] * len(positions), dict(problem.species_weights or {}))
    objective = problem.data_energy(config)
    info = {
        "method": "learned",
        "alpha": alpha,
        "alpha_note": "ignored (the learned locator has no energy term)",
        "objective": objective,
        "data_discrepancy": float(np.sqrt(2 * objective)),
        "energy": 0.0,
        "iterations": 0,
        "runtime_s": time.time() - t0,
        "n_atoms": int(len(positions)),
        "model": str(path) if model is not None else path.name,
        "model_selected": "given" if model is not None else "nearest shipped angle set",
        "model_angles_deg": [round(float(a), 6) for a in model_angles],
        **diag,
    }
    record = {"iteration": 0, "n_atoms": info["n_atoms"], "objective": objective,
              "positions": positions.copy(), "phase": "learned"}
    if callback is not None:
        callback(record)
    return Reconstruction(config, info, [{k: v for k, v in record.items() if k != "positions"}])


# -- experiment ---------------------------------------------------------------------------------
#: ADCG budget of :func:`f1_against_angles` unless told otherwise: the energy term chosen by the
#: discrepancy principle, a short global search.
ADCG_OPTIONS = {"alpha": "auto", "hops": 10, "sweeps": 3, "time_limit": 10.0}
#: The reduced grid of ``f1_against_angles(quick=True)``.
QUICK_ANGLE_COUNTS = (2, 5, 15)


def simulate_test_tiltseries(n_angles, rng, noise=0.01, acquisition=None):
    """A random defect lattice in the unit box (the training distribution) and its tilt series at
    ``n_angles`` angles spread uniformly over 180 degrees, with relative Gaussian ``noise``, the
    acquisition of the training data (:data:`~atomtomo.learn.data.DEFAULT_ACQUISITION`, with
    ``acquisition`` overrides) and the lattice spacing as bond length."""
    from ..geometry import Geometry
    from ..phantoms import random_defect_lattice
    from ..tiltseries import simulate_tiltseries
    from .data import DEFAULT_ACQUISITION, UNIT_BOX

    acq = {**DEFAULT_ACQUISITION, **(acquisition or {})}
    truth = random_defect_lattice(rng)
    geo = Geometry.from_angles(2, uniform_angles(n_angles), int(acq["n_det"]), acq["pixel_size"])
    return simulate_tiltseries(truth, geo, acq["sigma"], relative_noise=noise or None,
                               seed=int(rng.integers(2**31)), box=UNIT_BOX,
                               bond_length=float(truth.info["spacing"]))


def simulate_test_case(n_angles, rng, noise=0.01, acquisition=None):
    """:func:`simulate_test_tiltseries` as a :class:`~atomtomo.solvers.problem.Problem` (with
    ground truth), and the true configuration."""
    from ..solvers.problem import Problem

    ts = simulate_test_tiltseries(n_angles, rng, noise, acquisition)
    return Problem.from_tiltseries(ts), ts.ground_truth


def f1_against_angles(angle_counts=SHIPPED_ANGLE_COUNTS, n_samples=5, seed=0,
                      methods=("learned", "adcg"), noise=0.01, models=None, method_options=None,
                      acquisition=None, progress=None, quick=False, tolerance=0.1) -> list[dict]:
    """F1 (tolerance 0.1 spacing) of SIRT + learned locator and of ADCG (or other methods)
    against the number of angles, on random defect lattices simulated like the training data.

    Test case ``k`` of ``n`` angles is drawn from the seed ``[seed, 90210, n, k]`` (apart from
    every training stream), so all methods see the same lattices and a case does not depend on
    how many others are run.

    Parameters
    ----------
    angle_counts : sequence of int
        Numbers of angles, spread uniformly over 180 degrees.
    n_samples : int
        Test cases per angle count.
    seed : int
        Seeds the test cases; method ``seed`` is ``seed + k``.
    methods : sequence of str
        Method names of :func:`atomtomo.solvers.reconstruct`.
    noise : float
        Relative Gaussian noise (0.01 = 1 %).
    models : dict, optional
        ``n_angles -> model path`` for ``learned`` (default: the shipped model nearest to the
        angle set).
    method_options : dict, optional
        ``method -> dict`` of options passed to the method, ``alpha`` included (default for
        ``adcg``: :data:`ADCG_OPTIONS`).
    acquisition : dict, optional
        Overrides of :data:`~atomtomo.learn.data.DEFAULT_ACQUISITION` (sigma, pixel_size,
        n_det relative to the unit box) for the test cases.
    progress : callable(dict), optional
        Called with every per-case result.
    quick : bool
        A few-minute version: angle counts :data:`QUICK_ANGLE_COUNTS` (unless given) and at
        most 2 test cases each.
    tolerance : float
        Matching tolerance in lattice spacings (the bond length of the test lattices).

    Returns
    -------
    list of dict
        One row per (method, n_angles), CSV-ready apart from ``f1`` (the per-case list):
        ``method``, ``n_angles``, ``n_samples``, ``f1_mean``, ``f1_std``, ``precision_mean``,
        ``recall_mean``, ``n_found_mean``, ``n_true_mean``, ``runtime_s_mean``, ``options``
        (JSON), ``tolerance_spacings``, ``f1``.
    """
    from ..solvers import reconstruct

    if quick:
        if angle_counts is SHIPPED_ANGLE_COUNTS:
            angle_counts = QUICK_ANGLE_COUNTS
        n_samples = min(int(n_samples), 2)
    if int(n_samples) < 1:
        raise InputError(f"n_samples must be >= 1, got {n_samples}")
    positive_number(tolerance, "tolerance")
    counts = [int(n) for n in angle_counts]
    if not counts or min(counts) < 1:
        raise InputError(f"angle counts must be positive integers, got {list(angle_counts)}")
    method_options = {"adcg": ADCG_OPTIONS, **dict(method_options or {})}
    rows = []
    for n in counts:
        cases = [simulate_test_case(n, np.random.default_rng([int(seed), 90210, n, k]), noise,
                                    acquisition) for k in range(int(n_samples))]
        for method in methods:
            opts = dict(method_options.get(method) or {})
            if method == "learned":
                opts.setdefault("announce", False)
                if models and n in models:
                    opts.setdefault("model", str(models[n]))
            per_case = []
            for k, (problem, truth) in enumerate(cases):  # per test case
                t0 = time.time()
                rec = reconstruct(problem, method, seed=int(seed) + k, **opts)
                runtime = time.time() - t0
                tol = float(tolerance) * float(truth.info["spacing"])
                f1, precision, recall = f1_score(rec.configuration.positions, truth.positions, tol)
                per_case.append({"method": method, "n_angles": n, "sample": k, "f1": f1,
                                 "precision": precision, "recall": recall,
                                 "n_found": rec.configuration.n_atoms, "n_true": truth.n_atoms,
                                 "runtime_s": runtime})
                if progress is not None:
                    progress(per_case[-1])
            f1s = np.array([c["f1"] for c in per_case], dtype=float)
            shown = {k: v for k, v in opts.items() if k != "announce"}
            rows.append({
                "method": method, "n_angles": n, "n_samples": len(per_case),
                "f1_mean": float(f1s.mean()), "f1_std": float(f1s.std()),
                **{f"{key}_mean": float(np.mean([float(c[key]) for c in per_case]))
                   for key in ("precision", "recall", "n_found", "n_true", "runtime_s")},
                "options": json.dumps(shown, sort_keys=True, default=str),
                "tolerance_spacings": float(tolerance),
                "f1": f1s.tolist(),
            })
    return rows
