"""Where the time of ``atomtomo reconstruct --alpha auto`` goes: profiles of the default runs.

Cases (all in one process, ``jobs=1``, so that cProfile sees every search; the restarts then run
one after the other instead of side by side)::

    python benchmarks/profile_solver.py worked            # README worked example (2 angles)
    python benchmarks/profile_solver.py blind --seed 0    # a blind Z crop, 3 angles (bench_suite)
    python benchmarks/profile_solver.py crop --radius 8   # measured Pd@Pt crop, plane by plane
    python benchmarks/profile_solver.py crystal --size 4  # a [001] cuboctahedron, plane by plane

For each: wall time split by stage and by move type (from the solver's own records: the time
from one record to the next is charged to the later record's phase), the objective
evaluations, forward-model calls and L-BFGS-B runs and function evaluations (from cProfile's
call counts), the functions with the largest own time, and for plane-by-plane runs the time
and atom count of every plane. cProfile slows Python-heavy code by roughly 1.3-2x: read the
shares, not the seconds. ``--json FILE`` writes the numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The functions whose call counts say how much work a run did: (label, file part, function).
COUNTED = [
    ("objective value (AtomObjective.value)", "objective.py", "value"),
    ("objective value+gradient (value_and_gradient)", "objective.py", "value_and_gradient"),
    ("L-BFGS-B runs (AtomObjective.relax)", "objective.py", "relax"),
    ("L-BFGS-B function evaluations (relax.fun)", "objective.py", "fun"),
    ("L-BFGS-B function evaluations, cached start (fun_start_cached)", "objective.py",
     "fun_start_cached"),
    ("forward projections (ForwardModel.project)", "forward.py", "project"),
    ("projection gradients (ForwardModel.*adjoint*/gradient)", "forward.py", "gradient"),
    ("insertion scores (add step)", "objective.py", "insertion_scores"),
    ("prune (AtomObjective.prune)", "objective.py", "prune"),
    ("pair potential energy+gradient", "potentials.py", "energy_and_gradient"),
    ("basin hops (SearchDriver._hop_step)", "global_search.py", "_hop_step"),
    ("hop polish (SearchDriver._polish)", "global_search.py", "_polish"),
    ("annealing sweeps (SearchDriver._anneal_step)", "global_search.py", "_anneal_step"),
    ("ADCG add iterations (adcg_iteration)", "adcg.py", "adcg_iteration"),
    ("lattice candidates (lattice_seed.lattice_candidates)", "lattice_seed.py",
     "lattice_candidates"),
    ("dislocation fits", "dislocation_fit.py", "fit_dislocations"),
]

class Stopped(Exception):
    """The run was stopped (``--limit`` or SIGTERM); the profile so far is reported."""


STAGE_MARKERS = {"lattice", "strain", "grains", "dislocation", "reseed", "alpha"}


class StageClock:
    """A solver callback that charges the time between records to phases, stages and moves."""

    def __init__(self):
        self.t_last = time.perf_counter()
        self.by_phase = defaultdict(float)
        self.by_move = defaultdict(float)
        self.count_move = defaultdict(int)
        self.accepted_move = defaultdict(int)
        self.by_stage = defaultdict(float)
        self.stage = {}  # per restart / plane: the stage its hops belong to
        self.records = 0
        self.plane_time = defaultdict(float)  # "plane k/n" -> seconds
        self.plane_last_atoms = {}  # "plane k/n" -> atoms of the stack at its last record

    def __call__(self, record):
        now = time.perf_counter()
        dt, self.t_last = now - self.t_last, now
        self.records += 1
        phase = str(record.get("phase", ""))
        # plane-by-plane runs prefix "plane k/n: " or "3D polish: "
        where, _, phase = phase.rpartition(": ")
        if where.startswith("plane "):
            self.plane_time[where] += dt
            self.plane_last_atoms[where] = int(record.get("n_atoms", 0))
        where = "3D polish" if where.startswith("3D") else ("plane" if where else "")
        key = (where, record.get("restart"))
        if phase in STAGE_MARKERS:
            self.stage[key] = phase
        if phase == "hop":
            stage = self.stage.get(key, "search")
            move = str(record.get("move", "?"))
            self.by_move[move] += dt
            self.count_move[move] += 1
            self.accepted_move[move] += bool(record.get("accepted"))
            self.by_stage[f"hops ({stage} stage)"] += dt
        else:
            self.by_stage[phase or "?"] += dt
        self.by_phase[f"{where}:{phase}" if where else phase] += dt


def counts(stats: pstats.Stats) -> dict:
    out = {}
    for label, file_part, name in COUNTED:
        calls, cum = 0, 0.0
        for (filename, _, func), (cc, nc, tt, ct, _) in stats.stats.items():
            if func == name and file_part in filename and "atomtomo" in filename:
                calls += nc
                cum += ct
        if calls:
            out[label] = {"calls": calls, "cumulative_s": round(cum, 2)}
    return out


def top_own_time(stats: pstats.Stats, n=25) -> list:
    rows = []
    total = sum(v[2] for v in stats.stats.values())
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():
        short = filename.split("site-packages/")[-1].split("src/")[-1]
        rows.append({"function": f"{short}:{line}({func})", "calls": nc, "own_s": round(tt, 2),
                     "own_share": round(tt / total, 3), "cumulative_s": round(ct, 2)})
    rows.sort(key=lambda r: -r["own_s"])
    return rows[:n]


def top_cumulative_atomtomo(stats: pstats.Stats, n=30) -> list:
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():
        if "atomtomo" not in filename:
            continue
        short = filename.split("src/")[-1]
        rows.append({"function": f"{short}:{line}({func})", "calls": nc,
                     "cumulative_s": round(ct, 2), "own_s": round(tt, 2)})
    rows.sort(key=lambda r: -r["cumulative_s"])
    return rows[:n]


# -- the cases ---------------------------------------------------------------------------------
def worked_problem():
    """README worked example: interstitial, angles 0,90, detector 144, pixel 0.01, 1 % noise."""
    from atomtomo.geometry import Geometry
    from atomtomo.phantoms import build_phantom
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import simulate_tiltseries

    truth = build_phantom("interstitial", {})
    geo = Geometry.from_angles(2, np.radians([0.0, 90.0]), 144, 0.01)
    sigma = truth.info["spacing"] / 8
    ts = simulate_tiltseries(truth, geo, sigma, relative_noise=0.01, seed=1)
    return Problem.from_tiltseries(ts), truth


def blind_problem(seed, n_angles=3, set_name="Z"):
    import tempfile

    from bench_suite import make_case
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import read_tiltseries

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.h5"
        case = make_case(set_name, n_angles, seed, path)
        ts = read_tiltseries(path)
    return Problem.from_tiltseries(ts), case["truth"]


def particle_problem(truth, angles, tilt_error_deg=0.0, seed=0):
    from bench_3d import particle_tiltseries
    from atomtomo.solvers.problem import Problem

    ts = particle_tiltseries(truth, angles, tilt_error_deg=tilt_error_deg, seed=seed)
    return Problem.from_tiltseries(ts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=("worked", "blind", "crop", "crystal", "decahedron"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--angles", type=int, default=None,
                        help="blind: 2 or 3 (default 3); 3D: 3 or 5 (default 5)")
    parser.add_argument("--radius", type=float, default=8.0, help="crop radius (angstrom)")
    parser.add_argument("--size", type=int, default=4, help="crystal size")
    parser.add_argument("--data", default=None, help="the Pd@Pt xyz (default ../shared/...)")
    parser.add_argument("--option", action="append", default=[],
                        help="solver option KEY=VALUE (repeatable)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--limit", type=float, default=None,
                        help="stop the run after this many seconds (or at SIGTERM) and report "
                             "the profile so far")
    args = parser.parse_args(argv)

    from atomtomo.metrics import TOLERANCE_BONDS, match_atoms
    from atomtomo.phantoms import build_phantom
    from atomtomo.solvers import reconstruct

    if args.case == "worked":
        problem, truth = worked_problem()
    elif args.case == "blind":
        problem, truth = blind_problem(args.seed, args.angles or 3)
    else:
        five = [-72.0, -36.0, 0.0, 36.0, 72.0]
        angles = five if (args.angles or 5) == 5 else [-36.0, 0.0, 36.0]
        if args.case == "crop":
            from bench_3d import measured_path

            truth = build_phantom("measured", {"path": str(args.data or measured_path()),
                                               "axis": "z", "radius": args.radius})
        elif args.case == "crystal":
            truth = build_phantom("crystal-particle", {"size": args.size, "axis": "001"})
        else:
            truth = build_phantom("decahedron", {"p": args.size, "q": 2, "r": 1})
        problem = particle_problem(truth, angles, seed=args.seed)
    options = {"jobs": 1}
    for item in args.option:
        key, _, value = item.partition("=")
        from atomtomo.cli import _parse_option_value

        options[key.strip()] = _parse_option_value(value)
    clock = StageClock()
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    import signal

    def stop(signum, frame):
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    if args.limit:
        signal.setitimer(signal.ITIMER_REAL, args.limit)
    rec = None
    profiler.enable()
    try:
        rec = reconstruct(problem, "adcg", alpha="auto", seed=0, callback=clock, **options)
    except Stopped:
        pass
    finally:
        profiler.disable()
        signal.setitimer(signal.ITIMER_REAL, 0)
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    bond = truth.info.get("bond_length") or truth.info.get("spacing")
    out = {"case": args.case, "n_true": truth.n_atoms, "finished": rec is not None,
           "wall_s_profiled": round(wall, 1), "records": clock.records}
    if rec is not None:
        m = match_atoms(rec.configuration, truth, TOLERANCE_BONDS * bond)
        loose = match_atoms(rec.configuration, truth, 0.5)
        out.update(n_found=rec.configuration.n_atoms, f1=round(m.f1, 4),
                   within_05=round(loose.recall, 4), spurious_05=round(1 - loose.precision, 4),
                   species_accuracy=loose.species_accuracy,
                   info={k: v for k, v in rec.info.items()
                         if isinstance(v, (int, float, str, bool)) and len(str(v)) < 400})
    out.update({
           "by_stage_s": {k: round(v, 2) for k, v in sorted(clock.by_stage.items(),
                                                            key=lambda kv: -kv[1])},
           "by_move": {k: {"s": round(clock.by_move[k], 2), "hops": clock.count_move[k],
                           "accepted": clock.accepted_move[k]} for k in clock.by_move},
           "counts": counts(stats), "top_own": top_own_time(stats),
           "top_cumulative": top_cumulative_atomtomo(stats)})
    if clock.plane_time:  # planes run in order (jobs=1): a plane's atoms = growth of the stack
        labels = sorted(clock.plane_time, key=lambda k: int(k.split()[1].split("/")[0]))
        before, planes = 0, []
        for label in labels:
            planes.append({"plane": label, "seconds": round(clock.plane_time[label], 2),
                           "atoms_at_end": clock.plane_last_atoms[label] - before})
            before = clock.plane_last_atoms[label]
        out["planes_clock"] = planes
        print("planes (clock):", [(p["plane"], p["atoms_at_end"], p["seconds"]) for p in planes])
    if rec is not None and "layer_atoms" in rec.info:
        atoms = [int(a) for a in str(rec.info["layer_atoms"]).split(",")]
        times = [float(t) for t in str(rec.info["layer_times"]).split(",")]
        out["planes"] = [{"atoms": a, "seconds": t} for a, t in zip(atoms, times)]
        big = [(a, t) for a, t in zip(atoms, times) if a >= 5 and t > 0]
        if len(big) >= 3:
            slope = np.polyfit(np.log([a for a, _ in big]), np.log([t for _, t in big]), 1)[0]
            out["plane_time_exponent"] = round(float(slope), 2)
    print(json.dumps({k: out.get(k) for k in ("case", "n_true", "finished", "n_found", "f1",
                                              "within_05", "spurious_05", "species_accuracy",
                                              "wall_s_profiled", "records", "by_stage_s",
                                              "by_move")}, indent=1, default=str))
    print(json.dumps(out["counts"], indent=1))
    for r in out["top_own"][:15]:
        print(f"{r['own_s']:8.2f} s {r['own_share']:6.1%} {r['calls']:9d}  {r['function']}")
    print("-- cumulative (atomtomo) --")
    for r in out["top_cumulative"][:25]:
        print(f"{r['cumulative_s']:8.2f} s {r['calls']:9d}  {r['function']}")
    if "planes" in out:
        print("planes (atoms, s):", [(p["atoms"], p["seconds"]) for p in out["planes"]],
              "exponent", out.get("plane_time_exponent"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
