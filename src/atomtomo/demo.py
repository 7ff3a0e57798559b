"""The demo pipeline behind ``atomtomo demo``: simulate, project, reconstruct, evaluate, plot.

The poster's interstitial lattice (a 6x6 square lattice plus one interstitial, 37 atoms, in the
unit box) is projected at 3 angles (-60, 0, 60 degrees) with Gaussian noise of 1% of the largest
projection value, reconstructed with the grid-free ADCG solver (with a Lennard-Jones prior at the
lattice's bond length), matched to the truth, drawn and animated (a GIF of the run). Every
file goes into one directory.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ._io import jsonable, output_directory, write_text
from .errors import InputError

#: The acquisition of the demo (the learned locator's default detector, so it can be compared).
DEMO_ANGLES_DEG = (-60.0, 0.0, 60.0)
DEMO_DETECTOR = 96
DEMO_PIXEL_SIZE = 1 / 64
DEMO_SIGMA = 0.02
DEMO_NOISE = 0.01
#: ADCG options: the full run and the --quick one (a smaller global-search budget).
DEMO_OPTIONS = {"hops": 150, "time_limit": 300.0}
QUICK_OPTIONS = {"hops": 20, "sweeps": 5, "time_limit": 30.0}


def _method():
    """ADCG when it is installed, else the first method that imports."""
    import importlib

    from .solvers import METHODS

    for name in ("adcg", "fista", "sirt"):
        module = METHODS[name].split(":")[0]
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return name
    raise InputError("no reconstruction method is available")


def run_demo(out_dir="atomtomo-demo", *, quick: bool = False, seed: int = 0, callback=None,
             log=None, alpha=0.01) -> dict:
    """Run the whole pipeline once and write its files into ``out_dir`` (created if needed).

    Parameters
    ----------
    out_dir : path
        Directory for the outputs; its parent must exist.
    quick : bool
        Use a small global-search budget (for tests and a first look).
    seed : int
        Seeds the noise and the solver.
    callback : callable(dict), optional
        Passed to the solver (one record per iteration).
    log : callable(str), optional
        Receives one message per stage.
    alpha : float or "auto"
        Weight of the Lennard-Jones energy term.

    Returns
    -------
    dict
        ``files`` (name -> path: tiltseries, truth, reconstruction, metrics, figure,
        projections, animation), ``metrics`` (:meth:`MatchResult.as_dict` plus
        ``tolerance``), ``method``, ``info`` (the reconstruction's record) and ``runtime_s``.
    """
    from .configuration import write_xyz
    from .geometry import Geometry
    from .metrics import TOLERANCE_BONDS, match_atoms
    from .phantoms import build_phantom
    from .solvers import reconstruct
    from .solvers.problem import Problem
    from .tiltseries import simulate_tiltseries, write_tiltseries

    def say(msg):
        if log is not None:
            log(msg)

    t0 = time.perf_counter()
    out = output_directory(out_dir)
    files = {
        "tiltseries": out / "tiltseries.h5",
        "truth": out / "truth.xyz",
        "reconstruction": out / "reconstruction.xyz",
        "metrics": out / "metrics.json",
        "figure": out / "reconstruction.png",
        "projections": out / "projections.png",
        "animation": out / "run.gif",
    }

    truth = build_phantom("interstitial", seed=seed)
    bond = float(truth.info["bond_length"])
    geometry = Geometry.from_angles(2, np.radians(DEMO_ANGLES_DEG), DEMO_DETECTOR, DEMO_PIXEL_SIZE)
    ts = simulate_tiltseries(truth, geometry, DEMO_SIGMA, relative_noise=DEMO_NOISE, seed=seed,
                             box=np.asarray(truth.info["box"], float), bond_length=bond)
    write_tiltseries(ts, files["tiltseries"])  # atomic
    write_xyz(truth, files["truth"])
    say(f"simulated {truth.n_atoms} atoms (interstitial lattice), 3 angles, 1% noise")

    method = _method()
    options = dict(QUICK_OPTIONS if quick else DEMO_OPTIONS) if method == "adcg" else {}
    problem = Problem.from_tiltseries(ts)
    say(f"reconstructing with {method}" + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})"
                                            if options else ""))
    from .plotting import RunFrames

    frames = RunFrames()  # the run, for the animation

    def record(rec):
        frames(rec)
        if callback is not None:
            callback(rec)

    recon = reconstruct(problem, method, alpha=alpha if method == "adcg" else 0.0, seed=seed,
                        callback=record, **options)
    write_xyz(recon.configuration, files["reconstruction"],
              **{k: v for k, v in recon.info.items() if v is not None})

    tolerance = TOLERANCE_BONDS * bond
    metrics = jsonable(match_atoms(recon.configuration, truth, tolerance).as_dict())
    metrics["tolerance"] = tolerance
    write_text(files["metrics"], json.dumps(metrics, indent=2) + "\n")
    say(f"found {metrics['n_found']} atoms, F1 {metrics['f1']:.3f}")

    noise = f"{DEMO_NOISE:.0%} noise"
    title = f"{method.upper()}, {len(DEMO_ANGLES_DEG)} angles, {noise}, \u03b1 = {alpha}"
    _figures(recon.configuration, truth, ts, tolerance, files, title)
    from .plotting import animate_run

    animate_run(frames.with_final(recon.configuration, recon.info), files["animation"],
                truth=truth, box=ts.domain, tolerance=tolerance, title=title)
    say(f"wrote the figures and an animation of the run ({len(frames.frames)} frames)")
    return {"files": {k: str(v) for k, v in files.items()}, "metrics": metrics, "method": method,
            "info": dict(recon.info), "runtime_s": time.perf_counter() - t0}


def _figures(found, truth, ts, tolerance, files, title):
    # plotting builds Agg figures without pyplot: nothing to close, no display needed.
    from .plotting import plot_projections, plot_reconstruction, save_figure

    ax = plot_reconstruction(found, truth=truth, box=ts.domain, tolerance=tolerance, title=title)
    save_figure(ax.figure, files["figure"])  # atomic
    save_figure(plot_projections(ts, title="Projections of the demo's tilt series"),
                files["projections"])
