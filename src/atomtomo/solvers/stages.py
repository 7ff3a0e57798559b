"""The stages of the search as data: when each runs, what it starts from, how it changes the
prior, its budget and temperature, and how its result is compared with the best so far.

A stage is a run of basin hopping (:mod:`.moves`) under one prior. The first, *search*, runs
after ADCG, the lattice starts and the annealing sweeps; :data:`PIPELINE` lists the stages that
may follow it, in order, each with the condition on the search (a
:class:`~atomtomo.solvers.global_search.SearchDriver`) under which it runs next. After every
stage the driver takes the first stage of the pipeline whose condition holds (a stage may run
again: the dislocation stage once per fitted crystal), then ``alpha`` (``--alpha auto``) and the
re-seeding.

Budgets are fractions of the first stage's ``hops`` (``H``) and ``patience`` (``P``), in integer
arithmetic: a stage with budget ``(a, b)`` hops ``max(H a // b, 1)`` times (none when ``H`` is
0); its patience is ``max(X c // d, 1)`` with ``X`` its own hops or ``P``.

When to stop (:func:`converged`). ``H`` and ``P`` are caps; with the default patience at two
angles (the driver's ``floor``; elsewhere the patience stays fixed) a stage
stops as soon as further hops stop paying: when it has gone :data:`PROGRESS_FACTOR` times as
many hops without progress (its best lower by :data:`PROGRESS_GAIN` ``E_1``) as it took to
make that progress, and at least its *floor*
(the same fraction of the first stage's floor, ``floor_patience`` of the driver, which scales
with the atoms the data leave ambiguous). A stage whose start is already its best stops after
its floor; one that keeps improving runs on, up to ``P`` hops past its last improvement. The measurements
behind each number are in ``docs/decisions/2026-12-07-solver-history.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: Starting temperature of the stages after the first (except the grain stage), relative to
#: the first stage's: they start near their optimum.
REFINE_TEMPERATURE = 0.3

#: The grain stage's budget, in multiples of the first stage's hops (patience: half of it).
GRAIN_HOPS_FACTOR = 3


@dataclass(frozen=True)
class Stage:
    """One search stage (see the module docstring).

    Attributes
    ----------
    name : str
    start : str
        Where it starts (prose).
    prior : str
        How it changes the prior (prose; the driver's step of the same name does it).
    budget : (int, int)
        Its hops as the fraction ``a / b`` of the first stage's.
    patience : (str, int, int)
        ``("hops" or "patience", c, d)``: its patience as ``c / d`` of its own hops or of the
        first stage's patience.
    temperature : float
        Its starting temperature relative to the option ``temperature``.
    compare : str
        ``"rival"``: the result before waits and the lower of the two is kept; ``"replace"``:
        the stage's result replaces the one before (its prior is another objective).
    runs : callable or None
        ``runs(search) -> bool``: whether it runs next (None for the first stage).
    """

    name: str
    start: str
    prior: str
    budget: tuple = (1, 1)
    patience: tuple = ("patience", 1, 1)
    temperature: float = 1.0
    compare: str = "replace"
    runs: Callable | None = None

    def hops(self, first_hops: int) -> int:
        """This stage's hop budget for a first stage of ``first_hops``."""
        a, b = self.budget
        return max(first_hops * a // b, 1) if first_hops else 0

    def patience_for(self, hops: int, first_patience: int) -> int:
        """This stage's patience, given its own ``hops`` and the first stage's patience."""
        base, c, d = self.patience
        return max((hops if base == "hops" else first_patience) * c // d, 1)

    def floor_for(self, first_floor: int | None) -> int | None:
        """This stage's floor of the adaptive patience (:func:`converged`), given the first
        stage's; None (a fixed patience) for a stage whose patience is a share of its hops."""
        base, c, d = self.patience
        if first_floor is None or base == "hops":
            return None
        return max(first_floor * c // d, MIN_FLOOR)


#: A stage has converged when the hops since its last progress reach this multiple of the hops
#: it took to make it (and at least its floor).
PROGRESS_FACTOR = 1

#: Progress: an improvement of the stage's best by at least this many atom data energies since
#: the last progress (the project's measure of a search that has found its answer: within
#: 0.05 ``E_1`` of the relaxed truth). Smaller gains are polish and still update the best.
PROGRESS_GAIN = 0.05

#: Smallest floor of a stage's patience, in hops.
MIN_FLOOR = 10


def converged(hop: int, progress: int, floor: int | None) -> bool:
    """Whether a stage at hop ``hop`` whose last progress came after ``progress`` hops stops
    (``floor`` None: never, the patience is fixed): once the hops since then reach
    ``max(floor, PROGRESS_FACTOR * progress)`` -- the search has spent as long without
    progress as it took to make it."""
    if floor is None:
        return False
    return hop - progress >= max(floor, PROGRESS_FACTOR * progress)


LATER = dict(budget=(1, 3), patience=("patience", 1, 3), temperature=REFINE_TEMPERATURE)

STAGES = {
    "search": Stage("search", start="ADCG's result, the best lattice start or the annealed one",
                    prior="the potential (plus the hull pressure where it is on)"),
    "grains": Stage("grains", start="the two-grain lattice start (not annealed)",
                    prior="unchanged", budget=(GRAIN_HOPS_FACTOR, 1),
                    patience=("hops", 1, 2), compare="rival",
                    runs=lambda s: s.grain_seed is not None),
    "lattice": Stage("lattice", start="the best configuration, relaxed under the new prior",
                     prior="adds a well at the sites of a lattice fitted to the atoms",
                     runs=lambda s: s.lattice_beta > 0 and s.well is None, **LATER),
    "strain": Stage("strain", start="the best configuration, relaxed under the new prior",
                    prior="replaces the well by one at the sites the atoms' neighbours predict",
                    runs=lambda s: s.strain and s.stage == "lattice", **LATER),
    "dislocation": Stage(
        "dislocation",
        start="the lower of the best configuration and the lowest occupancy of the sites",
        prior="replaces the well by one at the sites of a crystal with an edge dislocation "
              "fitted to the data (one stage per such crystal)",
        compare="rival",
        runs=lambda s: (s.dislocation and s.stage in ("lattice", "strain", "dislocation")
                        and (s.dislocation_models is None or bool(s.dislocation_models))),
        **LATER),
    "refine": Stage("refine", start="the result polished at the chosen alpha",
                    prior="the potential at the alpha --alpha auto chose", **LATER),
}

#: The stages that may follow a search, in the order they are tried.
PIPELINE = ("grains", "lattice", "strain", "dislocation")
