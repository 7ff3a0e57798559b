"""The options of the grid-free method (``--method adcg``): one table.

Each entry names the option, the converter that checks it, the rule that sets it when it is not
given and what it does. The parser of :func:`~atomtomo.solvers.adcg.reconstruct_adcg`, its
docstring, ``atomtomo reconstruct --help``, the table in ``docs/solver.md`` and the settings a
checkpoint is resumed under are all derived from :data:`ADCG_OPTIONS`. This module is light (no
solver import), so the command line can list the options without loading the solver.

``n`` below is the atom count the data's total mass implies (spec section 2); "two angles" means
two angles in 2D with a pair prior and an energy term (alpha > 0 or auto), and "two zone axes"
two such angles whose projections both run along zone axes (:mod:`.zone_axes`).
"""

from __future__ import annotations

from .options import (Option, boolean, choice, non_negative_float, non_negative_int,
                      option_lines, positive_float, positive_int)

#: The interatomic potentials (:data:`atomtomo.potentials.POTENTIALS`; a test keeps them equal).
POTENTIAL_NAMES = ("none", "lj", "emt")

def scheduler_address(value):
    """A Dask scheduler's address: a non-empty string."""
    text = str(value).strip()
    if not text:
        raise ValueError(value)
    return text


ADCG_OPTIONS = (
    Option("potential", choice(*POTENTIAL_NAMES), "lj",
           "interatomic potential of the energy term: lj (Lennard-Jones), emt (3D metals), none"),
    Option("hops", non_negative_int,
           "1200 for two angles (n <= 400), else min(400, 80 + 6 n)",
           "basin-hopping budget of the first search stage (later stages get a third); 0: "
           "greedy ADCG only"),
    Option("patience", positive_int,
           "hops / 2 for two angles, else hops / 5; at least 40 (two angles: a stage also "
           "stops once as many hops pass without progress as it took to make it, at least n)",
           "hops without improvement that end a stage (given: only this rule)"),
    Option("batch", positive_int, "max(1, n // 25)", "atoms added per ADCG iteration"),
    Option("grid_spacing", positive_float,
           "sqrt(sigma^2 + pixel^2 / 12), at most bond / 4; coarser above 40 000 points (2D) "
           "or 250 000 (3D)",
           "spacing of the candidate grid of the add step"),
    Option("max_atoms", positive_int, "3 n + 20", "guard on the number of atoms"),
    Option("temperature", positive_float, "0.2",
           "starting temperature of annealing and basin hopping, in atom data energies"),
    Option("time_limit", positive_float, "none",
           "seconds for the global search (a resource guard: the result then depends on the "
           "machine)", resumable=False),
    Option("tol", non_negative_float, "1e-4 atom data energies",
           "smallest decrease of the objective that counts"),
    Option("sweeps", non_negative_int,
           "20 for n <= 400, else 0 (two angles: fewer once they stop paying, at least 5)",
           "simulated-annealing sweeps over positions before basin hopping"),
    Option("lattice_start", boolean, "on in 2D with the bond length",
           "also start from lattices fitted to the data"),
    Option("lattice_prior", non_negative_float, "3 for two zone axes with hops > 0, else 0",
           "weight (bonds) of a well at the sites of a lattice fitted to the atoms: the lattice "
           "stage"),
    Option("pairing", boolean, "on",
           "two angles in 2D, pair potential: a move that anneals the pairing of the two "
           "projections' coordinates"),
    Option("grains", boolean, "on",
           "2D, 3+ angles: a grain stage from a two-grain start where two grains fit the data "
           "far better than one"),
    Option("reseed", boolean, "on in 2D when hops is not given",
           "at the end, refill the atoms around the worst-explained data when the misfit "
           "misses the noise target"),
    Option("strain", boolean, "on",
           "after the lattice stage, a stage with the well at the sites the atoms' neighbours "
           "predict"),
    Option("dislocation", boolean,
           "on in 2D with the bond length, a pair prior, an energy term and n >= 12",
           "a stage under the sites of crystals with an edge dislocation fitted to the data"),
    Option("hull", non_negative_float, "3 for two zone axes, else 0",
           "weight (bonds per bond length squared) of a pressure on the atoms' convex hull"),
    Option("layers", choice("auto", "on", "off"), "auto",
           "3D single-axis data: plane by plane in 2D, then a 3D polish (auto: when the data "
           "split into planes)", resumable=False),
    Option("restarts", positive_int,
           "2 where the lattice stage runs with the default hops (2 more where those two end "
           "at different atoms), else 1",
           "independent searches with seeds seed, seed + 1, ...; the lowest objective wins",
           resumable=False),
    Option("jobs", positive_int, "one per core (planes); one per restart up to the cores",
           "worker processes for the planes of a plane-by-plane run and for the restarts",
           resumable=False),
    Option("scheduler", scheduler_address, "none",
           "address of a running Dask scheduler (tcp://host:8786) that solves the planes of a "
           "plane-by-plane run", resumable=False),
)

#: The options a search's checkpoint records and checks on resume (its settings).
SEARCH_SETTINGS = tuple(o.name for o in ADCG_OPTIONS if o.resumable)


def options_help() -> str:
    """The ``--option`` keys of ``--method adcg`` with their defaults, for ``--help``."""
    return "\n".join(["Options of --method adcg (--option KEY=VALUE):",
                      *option_lines(ADCG_OPTIONS, width=86)])
