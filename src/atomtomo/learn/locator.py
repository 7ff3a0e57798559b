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
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..configuration import Configuration
from ..errors import InputError

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
    """(f1, precision, recall) of a one-to-one matching within ``tolerance``
    (:func:`atomtomo.metrics.match_atoms` when available)."""
    found = np.asarray(found, dtype=float).reshape(-1, np.shape(truth)[-1])
    truth = np.asarray(truth, dtype=float)
    try:
        from ..metrics import match_atoms
    except ImportError:
        match_atoms = None
    if match_atoms is not None:
        r = match_atoms(found, truth, tolerance).as_dict()
        return float(r["f1"]), float(r["precision"]), float(r["recall"])
    if len(found) == 0 or len(truth) == 0:
        return 0.0, 0.0, 0.0
    dist = np.linalg.norm(found[:, None] - truth[None], axis=-1)
    cost = np.where(dist <= tolerance, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    matched = int(np.sum(dist[rows, cols] <= tolerance))
    precision, recall = matched / len(found), matched / len(truth)
    f1 = 2 * matched / (len(found) + len(truth))
    return f1, precision, recall


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
        raise InputError(f"cannot read locator model {path}: {str(exc).splitlines()[0]}") from None
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
    from .data import sirt_image, unit_atom_peak

    torch = require_torch()
    acq, net = model["acquisition"], model["network"]
    shape = (int(acq["grid"]), int(acq["grid"]))
    box = np.asarray(problem.box, dtype=float)
    iterations = int(acq["sirt_iterations"])

    def reconstruct(data):
        return sirt_image(problem.model, data, box, shape, iterations, acq["sirt_relaxation"])

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


def reconstruct_learned(problem, *, model=None, seed=0, callback=None, alpha=0.0, threshold=None,
                        merge_fraction=None, **options):
    """Atom positions read off a SIRT reconstruction by a trained locator network (2D only).

    Parameters
    ----------
    problem : Problem
    model : path, optional
        A model file from :func:`~atomtomo.learn.train.train_locator`; default: the shipped
        model nearest to the problem's angles (:func:`select_model`).
    seed : int
        Unused (inference is deterministic); accepted for the common signature.
    callback : callable(dict), optional
        Called once with the result record.
    alpha : float
        Recorded only: the locator has no potential-energy term.
    threshold : float, optional
        Detection threshold on merged candidate weight (default: the model's tuned value).
    merge_fraction : float, optional
        Merge distance in bond lengths (default: the model's, 0.5).
    **options
        Options of other methods are ignored (recorded in ``info["ignored_options"]``).

    Returns
    -------
    Reconstruction
        ``info`` has method, alpha, objective (``0.5 ||A(x) - y||^2`` with the continuous
        forward model), data_discrepancy, energy (0), iterations (0), runtime_s, n_atoms and
        model (the model file used), plus the model's angles and mismatch ratios.
    """
    from ..solvers.problem import Reconstruction

    t0 = time.time()
    if problem.ndim != 2:
        raise InputError("the learned locator is 2D only")
    if threshold is not None and not (0 < float(threshold) < 10):
        raise InputError(f"threshold must be a positive weight, got {threshold}")
    geo = problem.geometry
    angles = geo.angles if geo.angles is not None else np.arctan2(geo.directions[:, 1],
                                                                   geo.directions[:, 0])
    path = Path(select_model(angles) if model is None else model)
    loaded = load_model(path)
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
    model_angles = np.degrees(loaded["acquisition"]["angles"])
    info = {
        "method": "learned",
        "alpha": alpha,
        "objective": objective,
        "data_discrepancy": float(np.sqrt(2 * objective)),
        "energy": 0.0,
        "iterations": 0,
        "runtime_s": time.time() - t0,
        "n_atoms": int(len(positions)),
        "model": str(path),
        "model_angles_deg": [round(float(a), 6) for a in model_angles],
        **diag,
    }
    if options:
        info["ignored_options"] = sorted(options)
    record = {"iteration": 0, "n_atoms": info["n_atoms"], "objective": objective,
              "positions": positions.copy(), "phase": "learned"}
    if callback is not None:
        callback(record)
    return Reconstruction(config, info, [{k: v for k, v in record.items() if k != "positions"}])


# -- experiment ---------------------------------------------------------------------------------
def simulate_test_case(n_angles, rng, noise=0.01, acquisition=None):
    """A random defect lattice and its noisy tilt series at ``n_angles`` uniform angles, as a
    :class:`~atomtomo.solvers.problem.Problem` (with ground truth) and the true configuration."""
    from ..phantoms import random_defect_lattice
    from ..solvers.problem import Problem
    from ..tiltseries import TiltSeries
    from .data import DEFAULT_ACQUISITION, UNIT_BOX

    acq = {**DEFAULT_ACQUISITION, **(acquisition or {})}
    truth = random_defect_lattice(rng)
    from ..geometry import Geometry

    geo = Geometry.from_angles(2, uniform_angles(n_angles), int(acq["n_det"]), acq["pixel_size"])
    spacing = float(truth.info["spacing"])
    noise_seed = int(rng.integers(2**31))
    try:
        from ..tiltseries import simulate_tiltseries
    except ImportError:
        simulate_tiltseries = None
    if simulate_tiltseries is not None:
        ts = simulate_tiltseries(truth, geo, acq["sigma"], relative_noise=noise or None,
                                 seed=noise_seed, box=UNIT_BOX, bond_length=spacing)
    else:  # stand-in until the simulator exists
        from ..forward import ForwardModel

        p = ForwardModel(geo, acq["sigma"]).project(truth.positions, truth.weights)
        std = noise * np.max(np.abs(p))
        p = p + std * np.random.default_rng(noise_seed).standard_normal(p.shape)
        ts = TiltSeries(p, geo, atom_sigma=acq["sigma"], box=UNIT_BOX, bond_length=spacing,
                        noise_std=std, ground_truth=truth)
    return Problem.from_tiltseries(ts), truth


def f1_against_angles(angle_counts=SHIPPED_ANGLE_COUNTS, n_samples=5, seed=0,
                      methods=("learned", "adcg"), noise=0.01, models=None, method_options=None,
                      acquisition=None, progress=None) -> list[dict]:
    """F1 (tolerance 0.1 spacing) of SIRT + locator and of other methods against the number of
    angles, on random defect lattices simulated like the training data.

    Parameters
    ----------
    angle_counts : sequence of int
        Numbers of angles, spread uniformly over 180 degrees.
    n_samples : int
        Test cases per angle count (the same lattices for every method).
    seed : int
        Seeds the test cases (a stream apart from any training data).
    methods : sequence of str
        Method names of :func:`atomtomo.solvers.reconstruct`.
    noise : float
        Relative Gaussian noise.
    models : dict, optional
        ``n_angles -> model path`` for ``learned`` (default: the shipped model selection).
    method_options : dict, optional
        ``method -> dict`` of extra options (e.g. ``{"adcg": {"alpha": 0.0}}``).
    acquisition : dict, optional
        Overrides of :data:`~atomtomo.learn.data.DEFAULT_ACQUISITION` (sigma, pixel_size,
        n_det relative to the unit box) for the test cases.
    progress : callable(dict), optional
        Called with every per-sample row.

    Returns
    -------
    list of dict
        One row per (method, n_angles): ``method``, ``n_angles``, ``n_samples``, ``f1_mean``,
        ``f1_std``, ``precision_mean``, ``recall_mean``, ``runtime_s_mean``, ``f1`` (per sample).
    """
    from ..solvers import reconstruct

    method_options = dict(method_options or {})
    rows = []
    for n in angle_counts:
        rng = np.random.default_rng([int(seed), 90210, int(n)])
        cases = [simulate_test_case(int(n), rng, noise, acquisition) for _ in range(int(n_samples))]
        for method in methods:
            opts = dict(method_options.get(method, {}))
            if method == "learned" and models and int(n) in models:
                opts.setdefault("model", models[int(n)])
            scores, times = [], []
            for k, (problem, truth) in enumerate(cases):  # per test case
                t0 = time.time()
                rec = reconstruct(problem, method, seed=int(seed) + k, **opts)
                times.append(time.time() - t0)
                tol = 0.1 * float(truth.info["spacing"])
                scores.append(f1_score(rec.configuration.positions, truth.positions, tol))
                if progress is not None:
                    progress({"method": method, "n_angles": int(n), "sample": k,
                              "f1": scores[-1][0], "runtime_s": times[-1]})
            s = np.array(scores)
            rows.append({
                "method": method, "n_angles": int(n), "n_samples": len(s),
                "f1_mean": float(s[:, 0].mean()), "f1_std": float(s[:, 0].std()),
                "precision_mean": float(s[:, 1].mean()), "recall_mean": float(s[:, 2].mean()),
                "runtime_s_mean": float(np.mean(times)), "f1": s[:, 0].tolist(),
            })
    return rows
