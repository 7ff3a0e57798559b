"""Training the locator: :func:`train_locator`.

Adam on the multi-scale kernel loss (:mod:`.loss`) over batches drawn from a pool of simulated
samples (:mod:`.data`) that is partly refreshed every step; cosine learning-rate decay after a
short warm-up; atomic checkpoints every ``checkpoint_every`` steps (``OUT.ckpt``, removed when
the model is written) that ``resume=True`` continues from; at the end the detection threshold is
tuned on one half of a held-out validation set and the F1 score (tolerance 0.1 lattice spacing)
reported on the other half. The model file holds everything inference needs: weights,
architecture, the acquisition the data were simulated with (angles, sigma, pixel size, detector
and grid relative to the unit box, noise, SIRT iterations), the threshold and a provenance record.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .._io import atomic_path, write_text
from ..errors import InputError
from ..metrics import TOLERANCE_BONDS
from . import require_torch
from .data import MAX_ATOMS, SampleGenerator, SamplePool, acquisition

#: Format tag of model files.
MODEL_FORMAT = "atomtomo-locator"
#: Merge distance of the candidates, in bond lengths.
MERGE_FRACTION = 0.5
#: Thresholds tried when tuning the detection threshold.
THRESHOLDS = tuple(np.round(np.arange(0.2, 0.85, 0.05), 2))


def _to_torch(batch, torch):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def _learning_rate(progress, lr, warmup=0.05):
    """Warm-up then cosine decay to 5% of ``lr``; ``progress`` in [0, 1] of the run."""
    if progress < warmup:
        return lr * max(progress / warmup, 0.02)
    t = (progress - warmup) / (1 - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def predict_candidates(net, images, batch_size=64):
    """Candidate positions (B, K, 2) and weights (B, K) as numpy arrays, for images (B, G, G)."""
    torch = require_torch()
    out_p, out_w = [], []
    net.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
            p, w = net(x)
            out_p.append(p.numpy())
            out_w.append(w.numpy())
    return np.concatenate(out_p), np.concatenate(out_w)


def score_candidates(positions, weights, samples, threshold, merge_fraction=MERGE_FRACTION):
    """Mean F1, precision and recall of merged candidates against the samples' true atoms
    (tolerance :data:`TOLERANCE_BONDS` spacings, merge distance ``merge_fraction`` spacings)."""
    from .locator import f1_score, merge_candidates

    scores = []
    for i in range(len(positions)):  # per sample
        spacing = float(samples["spacing"][i])
        found, _ = merge_candidates(positions[i], weights[i], threshold, merge_fraction * spacing)
        truth = samples["positions"][i][samples["mask"][i]]
        scores.append(f1_score(found, truth, TOLERANCE_BONDS * spacing))
    scores = np.array(scores)
    return dict(zip(("f1", "precision", "recall"), scores.mean(axis=0).tolist()))


def tune_threshold(positions, weights, samples, thresholds=THRESHOLDS):
    """The threshold with the best mean F1 on the given samples, and that F1."""
    f1 = [score_candidates(positions, weights, samples, t)["f1"] for t in thresholds]
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def _split(samples, n):
    return ({k: v[:n] for k, v in samples.items()}, {k: v[n:] for k, v in samples.items()})


def validate(net, samples, threshold=None):
    """Validation report: threshold tuned on the first half (unless given), scores on the second."""
    pos, w = predict_candidates(net, samples["images"])
    half = len(pos) // 2
    tune, test = _split(samples, half)
    if threshold is None:
        threshold, tune_f1 = tune_threshold(pos[:half], w[:half], tune)
    else:
        tune_f1 = None
    report = score_candidates(pos[half:], w[half:], test, threshold)
    report.update(threshold=threshold, tune_f1=tune_f1, n_samples=int(len(pos) - half))
    return report


def _save(obj, path):
    torch = require_torch()
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train_locator(angles, steps, out_path, *, seed=0, noise=0.01, batch_size=16, lr=2e-3,
                  progress=None, checkpoint_every=200, resume=False, validation=256,
                  pool_size=2048, refresh=4, threads=2, architecture=None, acquisition_options=None,
                  lattice_options=None, time_limit=None, log=None, command=None,
                  provenance_path=None) -> dict:
    """Train a locator for one angle set and write it to ``out_path`` (a ``.pt`` file).

    Parameters
    ----------
    angles : array_like
        Tilt angles in radians.
    steps : int
        Optimisation steps (batches).
    out_path : path
        The model file, written atomically at the end.
    seed : int
        Seeds the data, the initial weights and the batch order.
    noise : float
        Gaussian noise, as a fraction of the largest noiseless projection value.
    batch_size, lr : int, float
        Adam batch size and peak learning rate (cosine decay after 5% warm-up).
    progress : callable(step, loss), optional
        Called after every step (``step`` counts from 1).
    checkpoint_every : int
        Steps between checkpoints ``out_path + ".ckpt"`` (0: none).
    resume : bool
        Continue from the checkpoint if there is one (weights, optimiser state and step; the
        data pool is redrawn, seeded by ``seed`` and the step).
    validation : int
        Held-out simulated samples for the final threshold tuning and F1 report.
    pool_size, refresh : int
        Samples in the pool, and samples replaced by new ones after every step.
    threads : int
        ``torch.set_num_threads``.
    architecture, acquisition_options, lattice_options : dict, optional
        Network (:data:`~atomtomo.learn.network.DEFAULT_ARCHITECTURE`), acquisition
        (:data:`~atomtomo.learn.data.DEFAULT_ACQUISITION`) and phantom
        (:func:`~atomtomo.phantoms.random_defect_lattice`) options.
    time_limit : float, optional
        Stop after this many seconds of training even if ``steps`` are not done; the learning
        rate schedule then follows whichever of steps and time is further along.
    log : callable(str), optional
        Receives progress messages (checkpoints, validation report).
    command : str, optional
        The command line that asked for this run, recorded in the provenance (the CLI passes
        its own); default: the equivalent Python call.
    provenance_path : path, optional
        Also write the provenance record there as JSON (:func:`write_provenance`).

    Returns
    -------
    dict
        ``path``, ``steps`` done, ``validation`` (f1, precision, recall, threshold, n_samples),
        ``training_time_s``, ``final_loss``.
    """
    torch = require_torch()
    from .loss import DEFAULT_SCALES, kernel_distance
    from .network import DEFAULT_ARCHITECTURE, build_network, count_parameters

    t_start = time.time()
    try:
        steps = int(steps)
    except (TypeError, ValueError):
        raise InputError(f"steps must be an integer, got {steps!r}") from None
    if steps < 0 or int(batch_size) < 1 or int(validation) < 2 or int(pool_size) < 1:
        raise InputError("steps must be >= 0, batch_size and pool_size >= 1, validation >= 2")
    out_path = Path(out_path)
    if not out_path.parent.is_dir() and str(out_path.parent):
        raise InputError(f"output directory does not exist: {out_path.parent}")
    ckpt_path = Path(str(out_path) + ".ckpt")
    acq = acquisition(angles, noise, **(acquisition_options or {}))
    torch.set_num_threads(int(threads))

    seeds = np.random.SeedSequence(int(seed)).spawn(3)
    torch.manual_seed(int(seeds[2].generate_state(1)[0]))
    arch = {**DEFAULT_ARCHITECTURE, "grid": acq["grid"], **(architecture or {})}
    net = build_network(arch)
    if arch["grid"] != acq["grid"]:
        raise InputError(f"network grid {arch['grid']} != acquisition grid {acq['grid']}")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start = 0
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, weights_only=False)
        if ckpt.get("acquisition", {}).get("angles") != acq["angles"]:
            raise InputError(f"checkpoint {ckpt_path} is for other angles; delete it or drop resume")
        net.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        _say(log, f"resumed from {ckpt_path} at step {start}")

    generator = SampleGenerator(acq, lattice_options)
    val_samples = generator(np.random.default_rng(seeds[1]), int(validation))
    pool_rng = np.random.default_rng([int(seed), start] if start else seeds[0])
    pool = SamplePool(generator, int(pool_size), pool_rng)
    _say(log, f"data ready in {time.time() - t_start:.1f} s ({len(pool)} samples, "
              f"{len(pool.symmetries)} symmetries); network {count_parameters(net)} parameters")

    losses = []
    t_train = time.time()
    done = start
    for step in range(start, steps):
        if time_limit is not None and time.time() - t_train > time_limit:
            _say(log, f"time limit reached at step {step}")
            break
        # Progress through the run: by steps, or by time when a time limit is nearer.
        frac = step / max(steps, 1)
        if time_limit is not None:
            frac = max(frac, (time.time() - t_train) / time_limit)
        for group in opt.param_groups:
            group["lr"] = _learning_rate(frac, lr)
        net.train()
        batch = _to_torch(pool.batch(int(batch_size)), torch)
        pred_p, pred_w = net(batch["images"])
        loss = kernel_distance(pred_p, pred_w, batch["positions"], batch["mask"],
                               batch["spacing"], DEFAULT_SCALES)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pool.refresh(refresh)
        losses.append(float(loss.detach()))
        done = step + 1
        if progress is not None:
            progress(step + 1, losses[-1])
        if checkpoint_every and (step + 1) % int(checkpoint_every) == 0 and step + 1 < steps:
            _save({"state_dict": net.state_dict(), "optimizer": opt.state_dict(),
                   "step": step + 1, "acquisition": acq, "architecture": arch}, ckpt_path)
            _say(log, f"step {step + 1}: loss {np.mean(losses[-50:]):.4f} (checkpoint)")
    train_time = time.time() - t_start

    report = validate(net, val_samples)
    _say(log, f"validation F1 {report['f1']:.3f} (precision {report['precision']:.3f}, recall "
              f"{report['recall']:.3f}) at threshold {report['threshold']:.2f}")
    provenance = {
        "command": command,
        "call": (f"atomtomo.learn.train.train_locator(angles={[round(a, 10) for a in acq['angles']]}, "
                 f"steps={steps}, out_path={out_path.name!r}, seed={seed}, noise={noise}, "
                 f"batch_size={batch_size}, lr={lr}, validation={validation}, "
                 f"pool_size={pool_size}, refresh={refresh}, time_limit={time_limit})"),
        "seed": int(seed),
        "steps": int(done),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "validation": report,
        "validation_tolerance_spacings": TOLERANCE_BONDS,
        "training_time_s": round(train_time, 1),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "torch_version": str(torch.__version__),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "lattice_options": {k: v for k, v in (lattice_options or {}).items()},
    }
    try:
        from .. import __version__

        provenance["atomtomo_version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    # Plain Python values only, so that torch.load(weights_only=True) reads the file.
    provenance, acq, arch = (json.loads(json.dumps(x, default=float)) for x in (provenance, acq, arch))
    model = {
        "format": MODEL_FORMAT,
        "version": 1,
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "architecture": arch,
        "acquisition": acq,
        "threshold": report["threshold"],
        "merge_fraction": MERGE_FRACTION,
        "max_atoms": MAX_ATOMS,
        "provenance": provenance,
    }
    _save(model, out_path)
    summary = {"path": str(out_path), "steps": int(done), "validation": report,
               "training_time_s": train_time, "final_loss": provenance["final_loss"],
               "provenance": provenance, "acquisition": acq}
    if provenance_path is not None:
        write_provenance(summary, provenance_path)
    if ckpt_path.is_file():
        ckpt_path.unlink()
    return summary


def write_provenance(summary: dict, path) -> None:
    """Write a model's provenance record (from :func:`train_locator`'s result) as JSON."""
    acq = summary["acquisition"]
    record = {"model_file": Path(summary["path"]).name, "n_angles": len(acq["angles"]),
              "angles_deg": [round(float(a), 6) for a in np.degrees(acq["angles"])],
              **summary["provenance"], "acquisition": acq}
    write_text(path, json.dumps(record, indent=2, default=float) + "\n")


def _say(log, message):
    if log is not None:
        log(message)
