"""The grid-free method behind ``atomtomo reconstruct --method adcg``: one entry point.

:func:`reconstruct_adcg` validates the options (:data:`~.adcg_options.ADCG_OPTIONS`, one table
from which the parser, its docstring's option list, ``--help`` and ``docs/solver.md``'s table
derive), then runs

* the plane-by-plane wrapper (:mod:`.layers`) when 3D single-axis data split into planes, else
* the search (:class:`~atomtomo.solvers.global_search.SearchDriver`: ADCG from
  :mod:`.core`, then basin hopping and the later stages), once or as independent restarts
  (:mod:`.restarts`), which take the solve function :func:`search` rather than importing it.
"""

from __future__ import annotations

import os
import time

from ..errors import InputError
from ..stopping import time_limited
from .adcg_options import ADCG_OPTIONS, options_help
from .global_search import SearchDriver
from .layers import LayeredRun, find_layers
from .options import parse_options
from .problem import Problem, Reconstruction
from .restarts import MAX_RESTARTS, default_restarts, run_restarts


@time_limited("time_limit")  # the whole run: every stage, restart and polish
def reconstruct_adcg(problem: Problem, *, alpha=0.0, seed: int = 0, callback=None,
                     initial=None, max_iterations: int | None = None, checkpoint=None,
                     resume: bool = False, field=None, **options) -> Reconstruction:
    """Grid-free reconstruction: ADCG followed by a global basin-hopping search.

    Parameters
    ----------
    problem : Problem
    alpha : float or "auto"
        Dimensionless weight of the energy term (see :mod:`atomtomo.solvers.objective`).
        ``"auto"`` chooses it by the discrepancy principle (:mod:`atomtomo.solvers.alpha`).
    seed : int
        Seed of the global search; the same seed gives the same result.
    callback : callable, optional
        Called after every iteration with a dict record (see :class:`SearchDriver`).
    initial : Configuration, optional
        Starting configuration (default: empty, atoms are added by the add step).
    max_iterations : int, optional
        Guard on the number of ADCG iterations (default: 4 x the expected atom count + 50).
    checkpoint : path, optional
        Save the full search state there after every iteration (atomically).
    resume : bool
        Continue from ``checkpoint`` if it exists.
    field : energy term, optional
        A fixed one-body term added to the prior (a plane-by-plane run passes the neighbouring
        planes' atoms as a :class:`~.layers.NeighbourField`).
    **options
        The method's options (``--option KEY=VALUE``), listed below with their defaults
        (:data:`~atomtomo.solvers.adcg_options.ADCG_OPTIONS`).
    """
    options = parse_options("ADCG", ADCG_OPTIONS, options)
    layered = _layered_run(problem, options.pop("layers", "auto"), initial, options,
                           alpha=alpha, seed=seed, callback=callback, checkpoint=checkpoint,
                           resume=resume, max_iterations=max_iterations)
    if layered is not None:
        return layered.run()
    jobs, restarts = options.pop("jobs", None), options.pop("restarts", None)
    options.pop("scheduler", None)  # only the planes of a plane-by-plane run go to a cluster
    start = time.perf_counter()
    run = dict(alpha=alpha, seed=seed, initial=initial, max_iterations=max_iterations,
               checkpoint=checkpoint, resume=resume, callback=callback, field=field, **options)
    driver = SearchDriver(problem, **run)
    more = 0
    if restarts is None:
        restarts = default_restarts(driver, options)
        more = MAX_RESTARTS - restarts if restarts > 1 else 0  # where the first disagree
    if restarts > 1:
        result = run_restarts(driver, problem, restarts, jobs or min(restarts, _cores()), run,
                              solve=search, more=more, length=driver.length_scale)
    else:
        result = driver.run()
    result.info["runtime_s"] = round(time.perf_counter() - start + driver.previous_runtime, 3)
    return result


reconstruct_adcg.__doc__ += "\n    Options\n    -------\n" + "\n".join(
    "    " + line for line in options_help().splitlines()[1:]) + "\n"


def search(problem: Problem, **run) -> Reconstruction:
    """One search on ``problem`` (module level, so that worker processes can run it): the
    solve function :func:`~.restarts.run_restarts` takes."""
    return SearchDriver(problem, **run).run()


def _cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _layered_run(problem, mode, initial, options, **run):
    """The plane-by-plane run (:mod:`.layers`) when ``mode`` and the data call for it, else None."""
    if mode == "off":
        return None
    why_not = None
    if problem.ndim != 3 or not problem.geometry.single_axis:
        why_not = "it needs 3D single-axis data"
    elif initial is not None:
        why_not = "it does not take an initial configuration"
    elif options.get("potential") == "emt":
        why_not = "the planes are solved in 2D, where EMT does not exist"
    if why_not is None:
        layers = find_layers(problem)
        if layers is not None:
            return LayeredRun(problem, layers, solve=reconstruct_adcg, options=options, **run)
        why_not = ("the data do not split into planes across the tilt axis (the rows' profile "
                   "is not a set of resolved planes one atom wide)")
    if mode == "on":
        raise InputError(f"ADCG option layers=on: {why_not}")
    return None
