r"""The grid baselines behind ``atomtomo reconstruct --method sirt|fista|annealing``.

All three discretise the box (:mod:`atomtomo.solvers.grid`) and end with atoms:

* ``sirt``: SIRT image (non-negative by default), then atom picking
  (:mod:`atomtomo.solvers.picking`);
* ``fista``: :math:`\min_{w \ge 0} \tfrac12 \lVert \Psi w - y \rVert^2 + \lambda \lVert w
  \rVert_1` by FISTA, then atom picking;
* ``annealing``: :math:`\min_{w \in \{0, 1\}^N} \lVert \Psi w - y \rVert^2` by simulated
  annealing (:mod:`atomtomo.solvers.grid_annealing`) on a grid finer than the atom spacing or,
  with ``lattice=true`` (2D), on the sites of a lattice fitted to the data; the occupied sites
  are the atoms.

They take the interface of every method, ``fn(problem, *, alpha=0.0, seed=0, callback=None,
**options)``. They have no potential-energy term: ``alpha`` is recorded in ``info`` and
otherwise ignored, and ``info["energy"]`` is 0. ``info["objective"]`` is
``0.5 ||A(atoms) - y||^2`` of the atoms returned (the grid-free objective at ``alpha = 0``), so
the methods can be compared on one scale; the method's own grid objective is
``info["grid_objective"]``.

The atom count, unless ``n_atoms`` is given: picking takes the strongest maxima while their
species weights add up closest to the data's total mass ``sum(y) Delta^(d-1) / n_angles`` (spec
section 2); annealing with ``count=fixed`` (the default with one species) keeps
``round(mass / mean species weight)`` atoms, with ``count=free`` (the default with several
species, whose mix the mass alone does not give) flips change it.
"""

from __future__ import annotations

import time

import numpy as np

from ..configuration import Configuration
from ..errors import InputError
from .grid import (PixelGrid, estimated_atom_count, fista, grid_objective, grid_operator, sirt,
                   total_mass)
from .options import (boolean, choice, non_negative_float, non_negative_int, parse_options,
                      positive_float, positive_int)
from .picking import pick_atoms
from .problem import Problem, Reconstruction


# -- options -----------------------------------------------------------------------------------
def _lattice(value):
    if isinstance(value, str) and value.strip().lower() in ("square", "hexagonal", "auto"):
        return value.strip().lower()
    return "auto" if boolean(value) else None


_count = choice("fixed", "free")


#: Options shared by the picking methods (sirt, fista).
_PICKING = {
    "grid_spacing": positive_float,
    "n_atoms": non_negative_int,
    "min_separation": positive_float,
    "min_mass": non_negative_float,
    "report_every": positive_int,
}

_SIRT_OPTIONS = {**_PICKING, "iterations": non_negative_int, "relaxation": positive_float,
                 "nonnegative": boolean}
_FISTA_OPTIONS = {**_PICKING, "iterations": positive_int, "lam": non_negative_float,
                  "lambda_fraction": non_negative_float, "tol": non_negative_float}
_ANNEALING_OPTIONS = {
    "grid_spacing": positive_float,
    "n_atoms": non_negative_int,
    "count": _count,
    "lattice": _lattice,
    "levels": non_negative_int,
    "moves": positive_float,
    "t_start": positive_float,
    "t_end": positive_float,
    "chains": positive_int,
    "report_every": positive_int,
}

#: Ranges checked after conversion, with the message's wording.
_VALID = {"relaxation": (lambda v: v < 2, "< 2 (SIRT diverges beyond)")}


def _parse(method: str, table: dict, options: dict) -> dict:
    return parse_options(method, table, options, _VALID)


# -- shared pieces -------------------------------------------------------------------------------
def default_grid(problem: Problem, spacing: float | None = None) -> PixelGrid:
    """The image grid of SIRT and FISTA: the detector's pixel size unless ``spacing`` is given,
    at most 250 000 points in 2D and 1 000 000 in 3D."""
    spacing = problem.geometry.pixel_size if spacing is None else spacing
    return PixelGrid.with_spacing(problem.box, spacing,
                                  max_points=250_000 if problem.ndim == 2 else 1_000_000)


def expected_atoms(problem: Problem) -> int:
    """The atom count implied by the data's total mass, rounded."""
    return int(np.round(estimated_atom_count(problem)))


def _min_separation(problem: Problem, grid: PixelGrid, given):
    if given is not None:
        return given
    if problem.bond_length:
        return max(0.5 * problem.bond_length, 1.5 * float(np.min(grid.spacing)))
    return max(2.0 * problem.sigma, 1.5 * float(np.min(grid.spacing)))


def _atoms_terms(problem: Problem, config: Configuration) -> dict:
    data = problem.data_energy(config)
    return {"objective": data, "data_energy": data, "data_discrepancy": float(np.sqrt(2 * data))}


def _record(problem, method, iteration, config, **extra) -> dict:
    terms = _atoms_terms(problem, config)
    return {"iteration": int(iteration), "phase": method, "n_atoms": config.n_atoms,
            "objective": terms["objective"], "discrepancy": terms["data_discrepancy"],
            **extra, "positions": config.positions.copy(),
            "species": np.asarray(config.species, dtype=object)}


def _result(problem, method, config, alpha, seed, iterations, start, history, **extra):
    terms = _atoms_terms(problem, config)
    info = {
        "method": method,
        "alpha": alpha,
        "alpha_note": "ignored (grid methods have no energy term)",
        "objective": terms["objective"],
        "data_discrepancy": terms["data_discrepancy"],
        "data_energy": terms["data_energy"],
        "energy": 0.0,
        "iterations": int(iterations),
        "n_atoms": config.n_atoms,
        "seed": int(seed),
        **extra,
        "runtime_s": round(time.perf_counter() - start, 3),
    }
    config.info.update({"method": method})
    return Reconstruction(config, info, history)


def _with_density(recon: Reconstruction, grid: PixelGrid, image) -> Reconstruction:
    """Keep the grid image (as a density: weight per cell volume) for ``reconstruct --density``."""
    cell = float(np.prod(grid.spacing))
    recon.density = (np.reshape(np.asarray(image, float), grid.shape) / cell, grid.axes)
    return recon


def _report_every(options, iterations, dim):
    if "report_every" in options:
        return options["report_every"]
    return max(1, int(iterations) // (100 if dim == 2 else 20))


def _grid_info(grid: PixelGrid) -> dict:
    return {"grid_shape": "x".join(map(str, grid.shape)),
            "grid_spacing": float(np.max(grid.spacing))}


class _Picker:
    """Atom picking with the options of a run, and the history/callback records."""

    def __init__(self, problem, method, grid, opts, callback):
        self.problem, self.method, self.grid, self.callback = problem, method, grid, callback
        self.n_expected = expected_atoms(problem)
        self.n_atoms = opts.get("n_atoms")
        self.mass = total_mass(problem)
        self.separation = _min_separation(problem, grid, opts.get("min_separation"))
        self.min_mass = opts.get("min_mass")
        self.history = []

    def __call__(self, w) -> Configuration:
        return pick_atoms(np.reshape(w, self.grid.shape), self.grid, self.problem.species_weights,
                          n_atoms=self.n_atoms, total_mass=self.mass,
                          min_separation=self.separation,
                          min_mass=self.min_mass)

    def report(self, iteration, w, **extra):
        if self.callback is None:
            return
        record = _record(self.problem, self.method, iteration, self(w), **extra)
        self.history.append({k: v for k, v in record.items() if k not in ("positions", "species")})
        self.callback(record)

    def info(self) -> dict:
        return {"n_atoms_expected": self.n_expected, "min_separation": self.separation,
                **_grid_info(self.grid)}


# -- the methods -------------------------------------------------------------------------------
def reconstruct_sirt(problem: Problem, *, alpha=0.0, seed: int = 0, callback=None,
                     max_iterations: int | None = None, **options) -> Reconstruction:
    """SIRT on the grid, then atom picking.

    Parameters
    ----------
    problem : Problem
    alpha : float or "auto"
        Recorded, ignored (no energy term).
    seed : int
        Recorded; SIRT is deterministic.
    callback : callable, optional
        Called every ``report_every`` iterations with a record (iteration, phase, n_atoms,
        objective of the picked atoms, grid_objective, positions, species).
    max_iterations : int, optional
        Same as the option ``iterations``.
    **options
        iterations (default 200), relaxation (1.0, in (0, 2)), nonnegative (true: clip at 0
        after each step), grid_spacing (default: the detector pixel size), n_atoms (default:
        the strongest maxima whose species weights add up to the total mass), min_separation
        (default: half the bond length, else 2 sigma), min_mass (smallest picked mass,
        default: any positive mass), report_every.
    """
    start = time.perf_counter()
    opts = _parse("sirt", _SIRT_OPTIONS, options)
    if max_iterations is not None:
        opts["iterations"] = int(max_iterations)
    iterations = opts.get("iterations", 200)
    grid = default_grid(problem, opts.get("grid_spacing"))
    psi = grid_operator(problem.model, grid)
    picker = _Picker(problem, "sirt", grid, opts, callback)
    every = _report_every(opts, iterations, problem.ndim)

    def step(it, w):
        if (it + 1) % every == 0 or it + 1 == iterations:
            picker.report(it + 1, w, grid_objective=grid_objective(psi, w, problem.data))

    image = sirt(problem, grid, iterations, opts.get("relaxation", 1.0),
                 opts.get("nonnegative", True), operator=psi,
                 callback=step if callback is not None else None)
    config = picker(image)
    return _with_density(
        _result(problem, "sirt", config, alpha, seed, iterations, start, picker.history,
                grid_objective=grid_objective(psi, image, problem.data),
                relaxation=opts.get("relaxation", 1.0),
                nonnegative=opts.get("nonnegative", True), **picker.info()), grid, image)


def reconstruct_fista(problem: Problem, *, alpha=0.0, seed: int = 0, callback=None,
                      max_iterations: int | None = None, **options) -> Reconstruction:
    r"""Non-negative l1-regularised least squares on the grid by FISTA, then atom picking.

    Parameters
    ----------
    problem, alpha, seed, callback, max_iterations
        As :func:`reconstruct_sirt` (``max_iterations`` = the option ``iterations``).
    **options
        lam (the l1 weight lambda; default ``lambda_fraction * max(Psi^T y)``),
        lambda_fraction (default 0.01), iterations (default 1000), tol (relative change of
        ``w`` to stop, default 1e-5), and the picking options of :func:`reconstruct_sirt`.
    """
    start = time.perf_counter()
    opts = _parse("fista", _FISTA_OPTIONS, options)
    if max_iterations is not None:
        opts["iterations"] = max(int(max_iterations), 1)
    iterations = opts.get("iterations", 1000)
    grid = default_grid(problem, opts.get("grid_spacing"))
    psi = grid_operator(problem.model, grid)
    if "lam" in opts:
        lam, rule = opts["lam"], "given"
    else:
        fraction = opts.get("lambda_fraction", 0.01)
        lam = fraction * max(float(np.max(psi.rmatvec(np.ravel(problem.data)))), 0.0)
        rule = f"{fraction:g} x max(Psi^T y)"
    picker = _Picker(problem, "fista", grid, opts, callback)
    every = _report_every(opts, min(iterations, 300), problem.ndim)

    def step(it, w, value):
        if it % every == 0:
            picker.report(it, w, grid_objective=value)

    w, finfo = fista(psi, problem.data, lam, max_iterations=iterations,
                     tol=opts.get("tol", 1e-5), callback=step if callback is not None else None)
    config = picker(w)
    return _with_density(
        _result(problem, "fista", config, alpha, seed, finfo["iterations"], start,
                picker.history, grid_objective=finfo["objective"], lam=lam, lam_rule=rule,
                converged=finfo["converged"], restarts=finfo["restarts"],
                lipschitz=finfo["lipschitz"], **picker.info()), grid, w)


def reconstruct_annealing(problem: Problem, *, alpha=0.0, seed: int = 0, callback=None,
                          max_iterations: int | None = None, **options) -> Reconstruction:
    r"""Simulated annealing of binary occupancies on a grid (or a fitted lattice).

    Parameters
    ----------
    problem, alpha, callback
        As :func:`reconstruct_sirt`; the callback is called once per temperature level.
    seed : int
        Seed of every random choice; the same seed gives the same result.
    max_iterations : int, optional
        Same as the option ``levels``.
    **options
        grid_spacing (default: sigma, at most 250 000 / 1 000 000 sites in 2D / 3D),
        count ("fixed": the atom count from the total mass or ``n_atoms``, the default with one
        species; "free": flips may change it, the default with several species), n_atoms,
        lattice (2D: true / "square" / "hexagonal": anneal on the sites of a lattice fitted to
        the data, spacing = the bond length), levels (temperature
        levels, default 150), moves (proposals per level per expected atom, default 100, at
        least 2000 per level), t_start / t_end (first and last temperature in units of one
        atom's data energy, default 0.3 and 0.001), chains (independent seeded runs, the best
        is kept; default 1), report_every.
    """
    from .grid_annealing import SiteAnnealer, grid_neighbours

    start = time.perf_counter()
    opts = _parse("annealing", _ANNEALING_OPTIONS, options)
    if max_iterations is not None:
        opts["levels"] = int(max_iterations)
    names = list(problem.species_weights)
    weights = np.array([problem.species_weights[s] for s in names], dtype=float)
    n_expected = expected_atoms(problem)
    n_atoms = opts.get("n_atoms", n_expected)
    fixed = opts.get("count", "fixed" if len(weights) == 1 else "free") == "fixed"
    levels = opts.get("levels", 150)
    moves = max(2000, int(opts.get("moves", 100.0) * max(n_atoms, 1)))

    if opts.get("lattice"):
        site_sets = _lattice_site_sets(problem, opts["lattice"])
    else:
        grid = default_grid(problem, opts.get("grid_spacing", problem.sigma))
        site_sets = [(grid.points, grid_neighbours(grid), _grid_info(grid))]

    rng = np.random.default_rng(seed)
    best = None
    every = opts.get("report_every", 1)
    history = []
    level_count = 0
    for sites, neighbours, site_info in site_sets:
        annealer = SiteAnnealer(problem.model, problem.data, sites, neighbours, weights)
        for chain in range(opts.get("chains", 1)):

            def report(level, occ, energy, temperature, accepted, sites=sites, chain=chain):
                if callback is None or (level + 1) % every:
                    return
                config = _occupancy_configuration(sites, occ, names, problem.species_weights)
                record = _record(problem, "annealing", level_count + level + 1, config,
                                 temperature=temperature, accepted=accepted, chain=chain,
                                 grid_objective=energy)
                history.append({k: v for k, v in record.items()
                                if k not in ("positions", "species")})
                callback(record)

            occ0 = annealer.initial(rng, n_atoms)
            res = annealer.run(occ0, rng, fixed_count=fixed, levels=levels,
                               moves_per_level=moves, t_start=opts.get("t_start", 0.3),
                               t_end=opts.get("t_end", 1e-3), callback=report)
            level_count += res.levels
            if best is None or res.energy < best[0].energy:
                best = (res, sites, site_info)
    res, sites, site_info = best
    config = _occupancy_configuration(sites, res.occupancy, names, problem.species_weights)
    return _result(problem, "annealing", config, alpha, seed, level_count, start, history,
                   grid_objective=res.energy, n_atoms_expected=n_expected,
                   count="fixed" if fixed else "free", accepted=res.accepted,
                   proposals=res.proposals, compiled=_compiled(), **site_info)


def _compiled() -> bool:
    from .grid_annealing import COMPILED

    return bool(COMPILED)


def _occupancy_configuration(sites, occ, names, species_weights) -> Configuration:
    on = np.flatnonzero(np.asarray(occ) > 0)
    species = np.array(names, dtype=object)[np.asarray(occ)[on] - 1]
    return Configuration(np.asarray(sites)[on], species, dict(species_weights))


def _lattice_site_sets(problem: Problem, kind: str):
    """Sites of the best-fitting lattice of each requested kind (2D, needs the bond length)."""
    from ..potentials import NoPotential
    from .grid_annealing import site_neighbours
    from .lattice_seed import fit_lattice, lattice_sites
    from .objective import AtomObjective

    if problem.ndim != 2:
        raise InputError("annealing on a fitted lattice (lattice=...) is 2D only")
    if not problem.bond_length:
        raise InputError("annealing on a fitted lattice needs the bond length: pass --bond-length")
    kinds = ("square", "hexagonal") if kind == "auto" else (kind,)
    objective = AtomObjective(problem, NoPotential(), 0.0)
    sets = []
    for score, lat, theta, offset in fit_lattice(objective, problem.bond_length, kinds=kinds,
                                                 refine=1):
        sites = lattice_sites(lat, problem.bond_length, theta, offset, objective.box)
        if len(sites) == 0:
            continue
        info = {"lattice": lat, "lattice_theta_deg": float(np.degrees(theta)),
                "n_sites": int(len(sites))}
        sets.append((sites, site_neighbours(sites, 1.1 * problem.bond_length), info))
    if not sets:
        raise InputError("no lattice site falls inside the box")
    return sets
