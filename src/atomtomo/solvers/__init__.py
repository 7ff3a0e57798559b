"""Reconstruction methods, all behind one call: ``reconstruct(problem, method, **options)``.

Every method is a function ``fn(problem, *, alpha=0.0, seed=0, callback=None, **options)``
returning a :class:`~atomtomo.solvers.problem.Reconstruction`. ``callback``, if given, is called
once per iteration with a dict record (``iteration``, ``n_atoms``, ``objective``, ... and
``positions``); the CLI uses it for its progress bar, ``--history`` and ``--animate``.
Methods are imported lazily so that, e.g., torch is only needed for ``learned``.
"""

from __future__ import annotations

import importlib

from ..errors import InputError
from .problem import Problem, Reconstruction

#: method name -> "module:function"
METHODS = {
    "adcg": "atomtomo.solvers.adcg:reconstruct_adcg",
    "sirt": "atomtomo.solvers.grid_methods:reconstruct_sirt",
    "fista": "atomtomo.solvers.grid_methods:reconstruct_fista",
    "annealing": "atomtomo.solvers.grid_methods:reconstruct_annealing",
    "learned": "atomtomo.learn.locator:reconstruct_learned",
}


def get_method(name: str):
    """The function implementing method ``name``; :class:`InputError` if there is none."""
    try:
        target = METHODS[name]
    except KeyError:
        raise InputError(
            f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}"
        ) from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def reconstruct(problem: Problem, method: str = "adcg", **options) -> Reconstruction:
    """Run reconstruction ``method`` on ``problem``."""
    return get_method(method)(problem, **options)


__all__ = ["METHODS", "Problem", "Reconstruction", "get_method", "reconstruct"]
