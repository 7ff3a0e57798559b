"""Global search on top of ADCG: basin hopping with physically motivated moves.

A greedy add-move-prune loop stops far above the objective of the true configuration: with few
angles the data cannot say which projected coordinate belongs to which atom, and the local
optimiser cannot re-pair them. Each *hop* here perturbs the current configuration with one of

* **jump** — remove the atoms that fit worst (smallest removal gain) and re-insert as many at
  the best-scoring candidate points (sampled among the top few);
* **re-pair** — give two atoms each other's coordinate along one projection direction while
  keeping it along another: this leaves two projections unchanged, so it crosses exactly the
  ridges the local optimiser cannot;
* **lattice** — move a badly fitting atom to an empty site of the local lattice (sites that
  continue a neighbour chain or complete a parallelogram of neighbours);
* **cluster shift** — displace a small group of neighbouring atoms together;
* **pairing** (two angles in 2D, pair potential) — anneal the pairing of all the atoms'
  coordinates of the two projections under the pair potential alone
  (:mod:`~atomtomo.solvers.pair_annealing`): every pairing fits the data equally, so this
  re-pairs whole chains of atoms at once, which single re-pairs reach only uphill;

then polishes it with the same add/move/prune steps as ADCG, and accepts it by the Metropolis
rule at a temperature (in units of one atom's data energy) that decreases geometrically, so the
search anneals from exploration to descent. The best configuration seen is returned.

When the data hold two grains (2D, three or more angles; :func:`~atomtomo.solvers.lattice_seed.grain_pairs`
fits them far better than any single lattice), a *grain stage* searches again from the
two-grain start with a larger budget, and the better of the two searches is kept.

With a lattice prior (by default two angles along zone axes in 2D) a second stage follows: a
lattice is fitted to the best configuration's atoms (:func:`~atomtomo.lattice_prior.fit_well`),
a well at its sites joins the prior, and basin hopping goes on with a third of the budget. A
third stage (the *strain* stage) replaces that well by one at the sites the atoms' neighbours
predict (:func:`~atomtomo.lattice_prior.strained_sites`: the lattice follows the strain of a
dislocation or a defect's relaxation) and searches on with another third. With
``strain_refit`` (off by default) that stage judges every proposal under the sites its own atoms
predict instead of those of the configuration it started from; with ``lattice_refit`` (off by
default) the lattice stage judges every proposal under the lattice refitted to its own atoms.
A *dislocation stage* follows (option ``dislocation``, on by default): crystals with an edge
dislocation are fitted to the data themselves (:mod:`.dislocation_fit`), not to the atoms, and
for each that fits clearly better than one crystal the search starts again under a well at its
sites, from the occupancy of the sites that annealing finds lowest (:mod:`.site_occupancy`)
when that is lower than the best so far; the lower result of each such search and the one
before it is kept. With two angles the same fit also decides the zone-axis question where the
column test misses it (a dislocation's extra half-row spoils a small crop's columns): a
crystal with a dislocation that fits the data, with rows along both beams, turns the hull
pressure and the lattice stage on.

:class:`SearchDriver` runs the whole reconstruction as a sequence of iterations (ADCG
iterations, then hops), so that it can checkpoint after each one and resume exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError
from ..potentials import PairPotential
from ..stopping import remaining, should_stop
from .grid import estimated_atom_count
from .zone_axes import ZONE_AXIS_COHERENCE, along_zone_axes, beams_along_rows
from .adcg import LOCAL_MOVE_ABOVE, Candidates, adcg, adcg_iteration, candidate_axes, smallest
from .checkpoint import check_settings, digest, read_checkpoint, write_checkpoint
from .objective import AtomObjective, AtomState, near_mask
from .problem import Problem, Reconstruction

MOVES = ("jump", "repair", "lattice", "shift", "pairing")

#: Weight of the pairing move (two angles in 2D, pair potential) among the hops' moves.
PAIRING = 0.2

#: Default basin-hopping budget for two angles in 2D with a pair prior (patience: half of it).
TWO_ANGLE_HOPS = 1200
#: Default ``lattice_prior`` (weight of the lattice well, in bonds) for two zone axes in 2D.
TWO_ANGLE_LATTICE = 3.0

#: Starting temperature of the refine stage of ``alpha="auto"``, relative to the first stage's.
REFINE_TEMPERATURE = 0.3

#: The grain stage (2D, three or more angles) runs when the best two-grain start's data misfit
#: is below this fraction of the best single lattice's (and that one leaves more than one atom's
#: data energy unexplained): a crystal with a grain boundary, which no single lattice fits.
GRAIN_MISFIT_RATIO = 0.75
#: Its budget, in multiples of the first stage's hops (patience: half of it).
GRAIN_HOPS_FACTOR = 3


def expected_atom_count(problem: Problem) -> float:
    """Atom count implied by the data's total mass (spec section 2's mass identity), at least 1."""
    return max(estimated_atom_count(problem), 1.0)


def lattice_sites(positions, bond_length, box, min_gap=0.6):
    """Empty sites of the local lattice: ``2 x_j - x_k`` (continue a chain of neighbours) and
    ``x_k + x_l - x_j`` (complete a parallelogram), at least ``min_gap * bond_length`` from every
    atom and inside the box."""
    n = len(positions)
    if n < 2 or not bond_length:
        return np.zeros((0, positions.shape[1] if positions.ndim == 2 else 2))
    tree = cKDTree(positions)
    pairs = tree.query_pairs(1.25 * bond_length, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, positions.shape[1]))
    j, k = pairs[:, 0], pairs[:, 1]
    sites = [2 * positions[j] - positions[k], 2 * positions[k] - positions[j]]
    # Parallelograms: for pairs (j,k) and (j,l) sharing j, propose x_k + x_l - x_j.
    both = np.concatenate([pairs, pairs[:, ::-1]])
    order = np.argsort(both[:, 0], kind="stable")
    both = both[order]
    starts = np.searchsorted(both[:, 0], np.arange(n))
    ends = np.searchsorted(both[:, 0], np.arange(n), side="right")
    deg = ends - starts
    if deg.max() >= 2:
        # All neighbour pairs (k, l) of each centre j, vectorised over a padded table.
        dmax = deg.max()
        table = np.full((n, dmax), -1)
        slot = np.arange(len(both)) - starts[both[:, 0]]
        table[both[:, 0], slot] = both[:, 1]
        a, b = np.triu_indices(dmax, 1)
        kk, ll = table[:, a], table[:, b]
        ok = (kk >= 0) & (ll >= 0)
        centre = np.broadcast_to(np.arange(n)[:, None], kk.shape)[ok]
        sites.append(positions[kk[ok]] + positions[ll[ok]] - positions[centre])
    sites = np.vstack(sites)
    inside = np.all((sites >= box[:, 0]) & (sites <= box[:, 1]), axis=1)
    sites = sites[inside]
    if len(sites) == 0:
        return sites
    dist, _ = tree.query(sites)
    sites = sites[dist >= min_gap * bond_length]
    if len(sites) == 0:
        return sites
    # Merge duplicates (the same site proposed by several neighbours).
    keys = np.round(sites / (0.2 * bond_length)).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return sites[np.sort(first)]


def _well_meta(well):
    """A well's (or a fitted crystal's) lattice for the checkpoint: basis then origin."""
    return [*np.asarray(well.basis, float).ravel(), *np.asarray(well.origin, float)]


def _innermost(potential):
    """The potential under any wrappers (hull pressure, lattice well, neighbour field)."""
    while hasattr(potential, "base"):
        potential = potential.base
    return potential


#: Crystals fitted to the data by :meth:`SearchDriver._fitted_crystals`, by data and lattice
#: (the fit is deterministic and takes seconds; a few entries).
_FITTED_CRYSTALS: dict = {}


class SearchDriver:
    """Runs ADCG + basin hopping as resumable iterations; see :func:`reconstruct_adcg`."""

    def __init__(self, problem: Problem, *, alpha=0.0, seed=0, initial=None,
                 max_iterations=None, checkpoint=None, resume=False, callback=None,
                 potential=None, hops=None, patience=None, batch=None, grid_spacing=None,
                 max_atoms=None, temperature=0.2, time_limit=None, tol=None, sweeps=None,
                 lattice_start=None, lattice_prior=None, pairing=True, hull=None, field=None,
                 grains=True, reseed=None, strain=True, strain_refit=False,
                 lattice_refit=False, dislocation=None):
        from ..potentials import make_potential

        self.problem = problem
        # the scale of the moves' neighbourhoods and steps: the bond length, else 4 sigma
        self.length_scale = problem.bond_length or 4 * problem.sigma
        self.auto_alpha = isinstance(alpha, str)
        if self.auto_alpha:
            if alpha.strip().lower() != "auto":
                raise InputError(f"alpha must be a non-negative number or 'auto', got {alpha!r}")
        else:
            try:
                alpha = float(alpha)
            except (TypeError, ValueError):
                raise InputError(f"alpha must be a non-negative number or 'auto', got {alpha!r}") from None
            if not np.isfinite(alpha) or alpha < 0:
                raise InputError(f"alpha must be a non-negative number or 'auto', got {alpha}")
        needs_prior = self.auto_alpha or alpha > 0
        bond = problem.bond_length
        potential = "lj" if potential is None else potential
        if needs_prior and potential != "none" and not bond:
            raise InputError(
                "an energy term needs the bond length: pass --bond-length or set the file's bond_length"
            )
        if bond:
            self.potential = make_potential(potential, bond, problem.ndim,
                                            species=list(problem.species_weights))
        else:
            self.potential = make_potential("none", 1.0, problem.ndim)
        from .alpha import AUTO_SEARCH_ALPHA

        self.alpha = AUTO_SEARCH_ALPHA if self.auto_alpha else alpha
        self.objective = AtomObjective(problem, self.potential, self.alpha)
        # Two angles in 2D with a pair potential: every pairing of the two projections'
        # coordinates fits the data, so the prior alone decides (docs/solver.md). Along zone
        # axes the hull pressure and the lattice stage help it decide; off them they do harm.
        pair_prior = (problem.ndim == 2 and isinstance(self.potential, PairPotential)
                      and self.potential.epsilon > 0)
        two_angles = pair_prior and problem.geometry.n_angles == 2
        self.coherence = None
        zone_axes = False
        if two_angles and needs_prior:
            zone_axes, self.coherence = along_zone_axes(problem)
        # The dislocation stage (default: wherever it can run on a crystal big enough to hold
        # a dislocation; it follows the lattice stage).
        can_fit = problem.ndim == 2 and bool(bond) and needs_prior and pair_prior
        if dislocation is None:
            from .dislocation_fit import MIN_ATOMS

            self.dislocation = can_fit and expected_atom_count(problem) >= MIN_ATOMS
        else:
            self.dislocation = bool(dislocation)
        if self.dislocation and dislocation is not None:
            if problem.ndim != 2 or not bond:
                raise InputError("ADCG option dislocation needs 2D data and the bond length")
            self._require_energy_term("ADCG option dislocation", needs_prior)
        # The crystals fitted to the data (once per run) and, while the stage runs, those of
        # them still to search under (None: not fitted yet); whether the well in place is one.
        self.site_models, self.dislocation_models, self.well_from_data = None, None, False
        self.zone_axes_from = "column coherence" if zone_axes else None
        if (self.dislocation and two_angles and not zone_axes and hops != 0
                and lattice_prior is None and self.coherence.min() >= ZONE_AXIS_COHERENCE[0]):
            zone_axes = self._dislocated_zone_axes()
        self.hull = self._add_hull(hull, zone_axes, needs_prior)
        self.well = None  # the lattice well, once fitted to the atoms (the lattice stage)
        if lattice_prior is None:  # a search stage: not by default when no search is asked for
            lattice_prior = TWO_ANGLE_LATTICE if zone_axes and hops != 0 else 0.0
        self.lattice_beta = float(lattice_prior)
        if self.lattice_beta > 0:
            if problem.ndim != 2 or not problem.bond_length:
                raise InputError("lattice_prior needs 2D data and the bond length")
            self._require_energy_term("lattice_prior", needs_prior)
        self.strain = bool(strain)
        self.strain_refit = bool(strain_refit)
        self.lattice_refit = bool(lattice_refit)
        self.field = field
        if field is not None:  # a one-body term from outside (layers.NeighbourField)
            from ..lattice_prior import WithLatticeWell

            self._extend_prior(WithLatticeWell(self.potential, field))
        self.atom_energy = self.objective.atom_energy
        self.n_expected = expected_atom_count(problem)
        self.max_atoms = int(max_atoms) if max_atoms else int(3 * self.n_expected + 20)
        self.max_iterations = int(max_iterations) if max_iterations else int(4 * self.n_expected + 50)
        self.batch = int(batch) if batch else max(1, int(self.n_expected // 25))
        self.separation = 0.7 * bond if bond else 2.5 * problem.sigma
        self.tol = float(tol) if tol is not None else 1e-4 * self.atom_energy
        self.pairing = bool(pairing)
        # There the pairing move applies (whenever alpha > 0), and the search needs a larger
        # budget than elsewhere (docs/solver.md has the measurements).
        self.pairing_applies = self.pairing and two_angles and field is None
        two_angle = self.pairing_applies and needs_prior and self.n_expected <= 400
        # Re-seeding where the data are left unexplained (once, at the end): by default in 2D
        # with the default budget (an explicit one is the caller's to spend).
        self.reseed = (problem.ndim == 2 and hops is None) if reseed is None else bool(reseed)
        self.reseeded = False
        if hops is None:
            hops = TWO_ANGLE_HOPS if two_angle else min(400, 80 + 6 * self.n_expected)
        self.hops = int(hops)
        if patience is None:
            patience = max(40, self.hops // 2 if two_angle else self.hops // 5)
        self.patience = int(patience)
        self.temperature = float(temperature)
        # Annealing sweeps: each re-draws every atom's position from its heat-bath distribution.
        self.sweeps = int(sweeps) if sweeps is not None else (20 if self.n_expected <= 400 else 0)
        self.sweep = 0
        # Lattice-fitted starts (2D crystals): on by default when the bond length is known.
        self.lattice_start = (problem.ndim == 2 and bool(bond)) if lattice_start is None else bool(lattice_start)
        self.start = "greedy"
        self.time_limit = time_limit
        self.candidates = Candidates(problem.model, candidate_axes(problem, grid_spacing))
        self.callback = callback
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.previous_runtime = 0.0
        self.history = []
        # Search state (everything the checkpoint holds).
        self.phase = "adcg"
        self.stage = "search"  # "refine": the second search, at the alpha chosen by "auto"
        # The grain stage: its start (set by the seed step) and, while it runs, the first
        # search's result it competes with.
        self.grains = bool(grains)
        self.grain_seed, self.grain_label = None, None
        self.rival, self.rival_value, self.rival_start = None, np.inf, None
        self.rival_well = None  # the dislocation stage's rival was found under this well
        self.iteration = 0
        self.hop = 0
        self.stall = 0
        self.alpha_trials = []  # (alpha, discrepancy^2, state) records of the auto-alpha ladder
        self.state = AtomState(np.zeros((0, problem.ndim)), np.zeros(0, int))
        if initial is not None:
            self.state = self.objective.relax(self.objective.state_from(initial))
        self.best = self.state.copy()
        self.best_value = self.objective.value(self.best)
        self.current_value = self.best_value
        # What defines the run besides the data: a checkpoint is resumed only under the same
        # settings (time_limit is a resource guard and may change between the two runs).
        self.settings = {
            "sigma": float(problem.sigma), "seed": self.seed,
            "alpha": "auto" if self.auto_alpha else float(alpha), "potential": potential,
            "lattice_prior": self.lattice_beta, "hops": self.hops,
            "patience": self.patience, "batch": self.batch, "grid_spacing": grid_spacing,
            "max_atoms": self.max_atoms, "max_iterations": self.max_iterations,
            "temperature": self.temperature, "tol": self.tol, "sweeps": self.sweeps,
            "lattice_start": self.lattice_start, "pairing": self.pairing, "hull": self.hull,
            "grains": self.grains, "reseed": self.reseed, "strain": self.strain,
            "strain_refit": self.strain_refit, "lattice_refit": self.lattice_refit,
            "dislocation": self.dislocation,
            "initial": None if initial is None else digest(self.state.positions, self.state.species),
        }
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            self._load_checkpoint()

    def _add_hull(self, hull, default_on, needs_prior):
        """Add the hull pressure (:mod:`atomtomo.hull_prior`) to the potential; returns ``h``.

        Default (``default_on``): :data:`~atomtomo.hull_prior.TWO_ANGLE_HULL` for two angles in
        2D with a pair prior, where the prior alone decides between pairings, when both
        projections run along low-index zone axes (:mod:`.zone_axes`; off them it makes results
        worse), else off.
        """
        from ..hull_prior import TWO_ANGLE_HULL, WithHullPressure

        if hull is None:
            hull = TWO_ANGLE_HULL if default_on else 0.0
        hull = float(hull)
        if hull <= 0:
            return 0.0
        if self.problem.ndim != 2:
            raise InputError("ADCG option hull needs 2D data (a plane-by-plane 3D run uses it "
                             "for its planes)")
        self._require_energy_term("ADCG option hull", needs_prior)
        self._extend_prior(WithHullPressure(self.potential, hull))
        return hull

    def _require_energy_term(self, option, needs_prior):
        """Refuse an option that adds to the energy term when there is none."""
        if not needs_prior or self.potential.epsilon <= 0:
            raise InputError(f"{option} is part of the energy term: use it with --alpha > 0 "
                             "or auto and a potential other than 'none'")

    def _extend_prior(self, potential):
        """Make ``potential`` (the current one plus a term) the prior of the objective."""
        self.potential = potential
        self.objective = AtomObjective(self.problem, potential, self.alpha)

    def _data_lattice(self):
        """The single-grain lattice that fits the data best (:mod:`.lattice_seed`), as a well of
        depth ``beta epsilon``: the start of the lattice fit."""
        best = self._data_lattice_fit()
        return self._lattice_well(best["basis"], best["origin"])

    def _data_lattice_fit(self):
        """The best single-grain candidate of :func:`~.lattice_seed.lattice_candidates`."""
        from .lattice_seed import lattice_candidates

        fits = [c for c in lattice_candidates(self.objective, self.problem.bond_length)
                if c["grains"] == 1]
        return min(fits, key=lambda c: c["misfit"])

    def _fitted_crystals(self):
        """Crystals with and without an edge dislocation fitted to the data
        (:func:`~.dislocation_fit.fit_site_models`), once per run, and once per process for
        the same data and lattice (a resumed run or another restart in this process)."""
        if self.site_models is None:
            from .dislocation_fit import fit_site_models

            p, basis = self.problem, self._data_lattice_fit()["basis"]
            key = digest(p.data, p.box, p.model.geometry.directions, basis,
                         [p.sigma, p.bond_length, p.model.geometry.pixel_size])
            if key not in _FITTED_CRYSTALS:
                if len(_FITTED_CRYSTALS) >= 8:
                    _FITTED_CRYSTALS.pop(next(iter(_FITTED_CRYSTALS)))
                _FITTED_CRYSTALS[key] = fit_site_models(p, basis, detectable_only=True)
            self.site_models = _FITTED_CRYSTALS[key]
        return self.site_models

    def _dislocated_zone_axes(self) -> bool:
        """Whether a crystal with a dislocation fits the data clearly better than one without
        and both beams run along its rows: zone axes the column coherence misses (a
        dislocation's extra half-row spoils the columns of a small crop; two hexagonal crops
        of 16 with a dislocation in docs/solver.md)."""
        from .dislocation_fit import detected_families

        found = detected_families(self._fitted_crystals())
        if found and beams_along_rows(found[0].basis, self.problem.geometry,
                                      self.problem.bond_length):
            self.zone_axes_from = "a crystal with a dislocation fitted to the data"
            return True
        return False

    def _lattice_well(self, basis, origin):
        """A well of the run's depth (``beta epsilon``) and width at the sites of a lattice."""
        from ..lattice_prior import WELL_WIDTH, LatticeWell

        return LatticeWell(basis, origin, self.lattice_beta * self.potential.epsilon,
                           WELL_WIDTH * self.problem.bond_length)

    def _use_well(self, well):
        """Make the prior the pair potential (+ the neighbour field) + ``well`` (+ the hull
        pressure, when on)."""
        from ..hull_prior import WithHullPressure
        from ..lattice_prior import WithLatticeWell

        potential = _innermost(self.potential)
        if self.field is not None:
            potential = WithLatticeWell(potential, self.field)
        potential = self.well_term = WithLatticeWell(potential, well)
        self.well = well
        self._extend_prior(WithHullPressure(potential, self.hull) if self.hull else potential)

    def _well_label(self):
        """The fitted lattice for the output, e.g. ``square lattice at 32.24 deg (...)``."""
        from ..lattice_prior import SiteWell

        from .lattice_seed import lattice_kind

        b1 = self.well.basis[:, 0]
        kind = lattice_kind(self.well.basis)
        angle = np.degrees(np.arctan2(b1[1], b1[0])) % (90.0 if kind == "square" else 60.0)
        if self.well_from_data:
            return f"{kind} lattice at {angle:.2f} deg with an edge dislocation (fitted to the data)"
        strained = ", strained" if isinstance(self.well, SiteWell) else ""
        return f"{kind} lattice at {angle:.2f} deg (fitted to the atoms{strained})"

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> Reconstruction:
        t0 = time.perf_counter()
        while self.phase != "done":
            if should_stop():  # a signal (raises) or the time limit: the best result so far
                break
            if self.phase == "adcg":
                self._adcg_step()
            elif self.phase == "seed":
                self._seed_step()
            elif self.phase == "anneal":
                self._anneal_step()
            elif self.phase == "hop":
                self._hop_step(t0)
            elif self.phase == "alpha":
                self._alpha_step()
            elif self.phase == "lattice":
                self._lattice_step()
            elif self.phase == "strain":
                self._strain_step()
            elif self.phase == "dislocation":
                self._dislocation_step()
            elif self.phase == "grains":
                self._grain_step()
            elif self.phase == "reseed":
                self._reseed_step()
            self.iteration += 1
            self._save_checkpoint(t0)
        return self._result(t0)

    def _adcg_step(self):
        state, added = adcg_iteration(self.objective, self.state, self.candidates,
                                      batch=self.batch, separation=self.separation, tol=self.tol,
                                      max_atoms=self.max_atoms)
        self._set_current(state)
        self._report("add", accepted=added > 0, added=added)
        if added == 0 or state.n >= self.max_atoms or self.iteration + 1 >= self.max_iterations:
            self.phase = "seed" if self.lattice_start else self._next_after_seed()

    def _next_after_seed(self):
        return "anneal" if self.sweeps > 0 else self._next_after_anneal()

    def _seed_step(self):
        """Try starts from lattices fitted to the data; keep one if it ends lower than greedy."""
        from .lattice_seed import lattice_seeds

        single_misfits, grain = [], None
        # Interstitials go in before the sites relax, where the data locate them: from three
        # angles on (at two, every crossing of two loaded beam lines is supported alike).
        complete = self.candidates if self.problem.geometry.n_angles >= 3 else None
        for seed_state, info in lattice_seeds(self.objective, self.problem.bond_length,
                                              tol=self.tol, per_kind=2, count=3, rng=self.rng,
                                              candidates=complete):
            state = adcg(self.objective, seed_state, self.candidates, max_iterations=20,
                         max_atoms=self.max_atoms, batch=self.batch,
                         separation=self.separation, tol=self.tol)
            value = self.objective.value(state)
            if info["grains"] == 2:
                grain = (state, info)
            else:
                single_misfits.append(info["misfit"])
            if value < self.best_value - self.tol:
                self.best, self.best_value = state.copy(), value
                self.start = info["label"]
        if self.grains and self.hops > 0 and grain is not None and single_misfits:
            single = min(single_misfits)
            if single > self.atom_energy and grain[1]["misfit"] < GRAIN_MISFIT_RATIO * single:
                self.grain_seed, self.grain_label = grain[0].copy(), grain[1]["label"]
        self.state, self.current_value = self.best.copy(), self.best_value
        self._report("seed", accepted=self.start != "greedy", start=self.start)
        self.phase = self._next_after_seed()

    def _match_expected_count(self, state):
        """Bring the atom count to the one the data's total mass implies (one species only):
        the anneal moves atoms but keeps their number, and greedy ADCG often stops a few short."""
        if len(self.objective.species_names) != 1:
            return state
        target = int(round(self.n_expected))
        if state.n > target:
            state = state.remove(np.argsort(self.objective.removal_scores(state))[: state.n - target])
        while state.n < min(target, self.max_atoms):
            delta, species = self.candidates.insertion_scores(self.objective, state)
            pick = int(np.argmin(delta))
            state = state.add(self.candidates.points[pick], species[pick])
        return state

    def _next_after_anneal(self):
        return "hop" if self.hops > 0 else self._after_search()

    def _anneal_step(self):
        """One sweep of simulated annealing over positions (heat-bath moves).

        Every atom in turn is taken out and put back at a candidate point drawn with
        probability ``exp(-Delta F / T)``, where ``Delta F`` is the exact change of the
        objective from inserting it there (data and energy). At high ``T`` atoms hop between
        the ghost intersections of the back-projections; as ``T`` falls they settle where the
        data and the prior agree. ``T`` falls geometrically from ``temperature`` to 1/50 of it
        (in atom data energies) over the sweeps; the sweep ends with a full relaxation, and
        the best configuration seen is kept.
        """
        state = self.state.copy()
        if self.sweep == 0:
            state = self._match_expected_count(state)
        if state.n:
            frac = self.sweep / max(self.sweeps - 1, 1)
            temperature = self.temperature * self.atom_energy * 0.02 ** frac
            cands = self.candidates
            weights = self.objective.species_weights
            r = self.objective.residual(state)
            for i in self.rng.permutation(state.n):
                if should_stop():
                    break
                w = weights[state.species[i]]
                r = r - self.objective.model.project(state.positions[i:i + 1], [w])
                others = state.remove(i)
                delta, species = self.objective.insertion_scores(
                    others, cands.points, cands.self_energy, corr=cands.correlate(r))
                p = np.exp(-(delta - delta.min()) / temperature)
                pick = self.rng.choice(len(p), p=p / p.sum())
                state.positions[i] = cands.points[pick]
                state.species[i] = species[pick]
                r = r + self.objective.model.project(state.positions[i:i + 1],
                                                     [weights[species[pick]]])
        state = self.objective.relax(state)
        self.state = state
        self.current_value = self.objective.value(state)
        if self.current_value < self.best_value:
            self.best, self.best_value = state.copy(), self.current_value
        self.sweep += 1
        self._report("anneal", accepted=True, sweep=self.sweep)
        if self.sweep >= self.sweeps:
            self.state = self.best.copy()
            self.current_value = self.best_value
            self.phase = self._next_after_anneal()

    def _hop_step(self, t0):
        move = self.rng.choice(MOVES, p=self._move_probabilities())
        trial, changed = self._propose(move, self.best if self.rng.random() < 0.3 else self.state)
        later = self.stage not in ("search", "grains")
        start = self.temperature * (REFINE_TEMPERATURE if later else 1.0)
        temperature = start * self.atom_energy * 0.02 ** (self.hop / max(self.hops, 1))
        trial = self._local_relax(trial, changed)
        value = self.objective.value(trial)
        # Only proposals that could still be accepted get the full (expensive) polish.
        if value < self.current_value + 5 * temperature + self.atom_energy:
            trial = self._polish(trial, changed)
            value = self.objective.value(trial)
        well = self._own_well(trial)  # judged under its own sites or lattice (the options)
        if well is not None:
            value = self._value_under(well, trial)
        delta = value - self.current_value
        accepted = delta < 0 or self.rng.random() < np.exp(-delta / max(temperature, 1e-300))
        if accepted:
            self.state, self.current_value = trial, value
            if well is not None:
                self._set_well(well)
        if value < self.best_value - self.tol:
            self.best, self.best_value, self.stall = trial.copy(), value, 0
        else:
            self.stall += 1
        self.hop += 1
        self._report("hop", accepted=bool(accepted), move=str(move))
        out_of_time = self.time_limit is not None and time.perf_counter() - t0 > self.time_limit
        if self.hop >= self.hops or self.stall >= self.patience or out_of_time:
            well = self._own_well(self.best)
            if well is not None:
                self._set_well(well)
            self.state = self.objective.relax(self.best, max_iterations=1000)
            self.state, _ = self.objective.prune(self.state, self.tol)
            self._set_current(self.state)
            self.phase = self._after_search()

    def _after_search(self):
        if self.rival is not None:
            self._keep_better_search()
        if self.grain_seed is not None:
            return "grains"
        if self.lattice_beta > 0 and self.well is None:
            return "lattice"
        if self.strain and self.stage == "lattice":
            return "strain"
        if (self.dislocation and self.stage in ("lattice", "strain", "dislocation")
                and (self.dislocation_models is None or self.dislocation_models)):
            return "dislocation"
        if self.auto_alpha and not self.alpha_trials:
            return "alpha"
        return self._finish()

    def _final(self):
        """The run's result so far: the best configuration, or the current one if it is lower."""
        return self.best if self.best_value < self.current_value else self.state

    def _unexplained(self, state):
        """True when ``state`` misses the discrepancy target of :mod:`.alpha` (needs the
        file's noise level: without it the target would be estimated from this very misfit)."""
        from .alpha import explains_data

        discrepancy = self.objective.terms(state)["discrepancy"]
        return explains_data(self.problem, discrepancy, self.atom_energy) is False

    def _finish(self):
        """``"reseed"`` when the search has left part of the data unexplained (once, and only
        after a search), else ``"done"``."""
        if (self.reseed and not self.reseeded and self.settings["hops"] > 0
                and self._final().n and self._unexplained(self._final())):
            return "reseed"
        return "done"

    def _reseed_step(self):
        """Take out and refill the atoms around where the data are worst explained
        (:mod:`.region_reseed`); keep the result if it lowers the objective."""
        from .region_reseed import reseed_regions

        self.reseeded = True
        start = self._final()
        state = reseed_regions(self.objective, start, self.candidates, self.length_scale,
                               self.rng, self._polish, tol=self.tol,
                               explained=lambda s: not self._unexplained(s))
        accepted = state is not start
        if accepted:
            self._set_current(state)
            self.start = f"{self.start} (re-seeded)"
        explained = not self._unexplained(self._final())
        if accepted and explained and hasattr(self, "alpha_reason"):
            self.alpha_reason += "; re-seeding a region then reached it"
        self._report("reseed", accepted=accepted, explained=explained)
        self.phase = "done"

    def _lattice_step(self):
        """Fit the lattice well to the search's atoms (:func:`~atomtomo.lattice_prior.fit_well`)
        and search on with it, from the best configuration, with a third of the budget."""
        from ..lattice_prior import fit_well

        well = self._data_lattice()
        self._search_under_well(fit_well(well, self.best.positions) if self.best.n else well,
                                "lattice")

    def _strain_step(self):
        """Replace the lattice well by one at the sites the best configuration's atoms predict
        for each other (:func:`~atomtomo.lattice_prior.strained_sites`) and search on with a
        third of the budget. On 32 two-angle zone-axis crops it raised the mean F1 from 0.862
        to 0.873 (6 crops up, a square dislocation 0.75 -> 0.96; one down) for 1.24x the
        time (docs/solver.md)."""
        lattice = self.well
        self._search_under_well(self._site_well(lattice, self.best.positions)
                                if self.best.n else lattice, "strain")

    def _dislocation_step(self):
        """Fit crystals with an edge dislocation to the data (:mod:`.dislocation_fit`), once;
        then search on under a well at the sites of the next one that fits clearly better than
        a single crystal, with a third of the budget, the best configuration so far waiting as
        the rival (the full objective decides between the fitted crystals: two projections
        leave several at the noise level)."""
        from ..lattice_prior import SiteWell

        if self.dislocation_models is None:
            from .dislocation_fit import detected_families

            models = self._fitted_crystals()
            self.dislocation_models = detected_families(models)
            self._report("dislocation", accepted=bool(self.dislocation_models),
                         misfits=[round(m.misfit, 3) for m in models])
            if not self.dislocation_models:
                self.phase = self._after_search()
                return
        model = self.dislocation_models.pop(0)
        self.rival, self.rival_value, self.rival_start = self.best.copy(), self.best_value, self.start
        self.rival_well = (self.well, self.well_from_data)
        lattice = self._lattice_well(model.basis, model.sites[0])
        self.well_from_data = True
        self._search_under_well(SiteWell(model.sites, lattice), "dislocation",
                                rival=lambda: self._occupied_sites(model.sites))

    def _occupied_sites(self, sites):
        """The atoms at the occupancy of ``sites`` that annealing finds lowest
        (:mod:`.site_occupancy`), relaxed and polished under the objective in place."""
        from .site_occupancy import anneal_occupancy, occupancy_problem

        Q, h = occupancy_problem(self.objective, sites)
        occupied, _ = anneal_occupancy(Q, h, self.rng, temperature=self.atom_energy)
        state = AtomState(sites[occupied].copy(), np.zeros(int(occupied.sum()), int))
        return self._polish(self.objective.relax(state, max_iterations=1000))

    def _own_well(self, state):
        """The well this stage judges ``state`` under when it judges every configuration under
        its own: the strained sites its atoms predict (the strain stage, with ``strain_refit``)
        or the lattice refitted to its atoms (the lattice stage, with ``lattice_refit``); else
        None (the stage's well stays)."""
        from ..lattice_prior import fit_well

        if not state.n or self.well is None:
            return None
        if self.stage == "strain" and self.strain_refit and hasattr(self.well, "sites"):
            return self._site_well(self.well.lattice, state.positions)
        if self.stage == "lattice" and self.lattice_refit and not hasattr(self.well, "sites"):
            return fit_well(self.well, state.positions, widths=(1.0,))
        return None

    @staticmethod
    def _site_well(lattice, positions):
        """The well of ``lattice`` at the sites ``positions`` predict for each other."""
        from ..lattice_prior import SiteWell, strained_sites

        return SiteWell(strained_sites(lattice, positions), lattice)

    def _set_well(self, well):
        """Swap the well of the prior in place: other sites (``strain_refit``) or a refitted
        lattice (``lattice_refit``)."""
        self.well = self.well_term.well = well

    def _value_under(self, well, state) -> float:
        """The objective of ``state`` with ``well`` in place of the current well."""
        current = self.well
        self.well_term.well = well
        try:
            return self.objective.value(state)
        finally:
            self.well_term.well = current

    def _search_under_well(self, well, stage, rival=None):
        """Make ``well`` the prior's well, relax the best configuration under it (the objective
        has changed: best starts afresh) and start the search ``stage`` from it, or from
        ``rival()`` (a start made under the new well) when that is lower."""
        self._use_well(well)
        state = self.objective.relax(self.best, max_iterations=1000)
        if rival is not None:
            other = rival()
            if other.n and self.objective.value(other) < self.objective.value(state):
                state = other
        self._set_current(state)
        self.best, self.best_value = self.state.copy(), self.current_value
        self._report(stage, accepted=True, lattice=self._well_label())
        self._start_stage(stage)

    def _grain_step(self):
        """Start the grain stage: basin hopping from the two-grain start (not annealed, which
        would scatter its grains) with :data:`GRAIN_HOPS_FACTOR` times the first stage's hops
        and half as much patience; the first search's result waits as the rival.

        Measured on grain boundaries from three arbitrary angles: the first search ends 0.3-0.5
        ``E_1`` above the relaxed truth, and so does a search from the two-grain start with the
        first stage's budget; from the two-grain start with three times the budget it finds the
        truth (search quality 0.000, F1 1.0)."""
        self.rival, self.rival_value, self.rival_start = self.best.copy(), self.best_value, self.start
        state, self.grain_seed = self.grain_seed, None
        self.best, self.best_value = state.copy(), self.objective.value(state)
        self.state, self.current_value = state, self.best_value
        self.stage = "grains"
        self.hops = GRAIN_HOPS_FACTOR * self.settings["hops"]
        self.patience = max(self.hops // 2, 1)
        self.hop, self.stall = 0, 0
        self._report("grains", accepted=True, start=self.grain_label)
        self.phase = "hop"

    def _keep_better_search(self):
        """End of the grain or a dislocation stage: keep its result or the one it competed
        with (found under the well then in place), whichever is lower."""
        if self.rival_value < self.current_value:
            self.best, self.best_value = self.rival, self.rival_value
            self.state, self.current_value = self.rival.copy(), self.rival_value
            self.start = self.rival_start
            if self.rival_well is not None:
                self._set_well(self.rival_well[0])
                self.well_from_data = self.rival_well[1]
        elif self.stage == "grains":
            self.start = f"{self.grain_label} (grain stage)"
        self.rival, self.rival_value, self.rival_start, self.rival_well = None, np.inf, None, None

    def _start_stage(self, stage):
        """A later search stage (``"lattice"``, ``"strain"``, ``"refine"``): basin hopping from
        the current configuration with a third of the first stage's hops, a third of its
        patience and the cooler start :data:`REFINE_TEMPERATURE`; without hops, straight on to what follows.

        A third of the patience because the later stages start near their optimum: on 16 crops
        and two poster lattices the longest run of hops without improvement in the lattice stage
        was 163, against up to 490 in the first stage."""
        self.stage = stage
        self.hops = max(self.settings["hops"] // 3, 1) if self.settings["hops"] else 0
        self.patience = max(self.settings["patience"] // 3, 1)
        self.hop, self.stall = 0, 0
        self.phase = "hop" if self.hops > 0 else self._after_search()

    def _alpha_step(self):
        from .alpha import AUTO_SEARCH_ALPHA, alpha_ladder, choose_alpha

        ladder = alpha_ladder()
        k = len(self.alpha_trials)
        if k < len(ladder):
            alpha = ladder[k]
            self.objective.set_alpha(alpha)
            trial = self._polish(self.best.copy())
            terms = self.objective.terms(trial)
            self.alpha_trials.append((alpha, terms["discrepancy"] ** 2, trial))
            self.state = trial
            self.current_value = terms["objective"]
            self._report("alpha", accepted=True, trial_alpha=alpha)
            return
        chosen, reason = choose_alpha(self)
        self.alpha = chosen
        self.alpha_reason = reason
        self.objective.set_alpha(chosen)
        state = next(s for a, _, s in self.alpha_trials if a == chosen)
        state = self.objective.relax(state, max_iterations=1000)
        state, _ = self.objective.prune(state, self.tol)
        self._report("alpha", accepted=True, trial_alpha=chosen)
        # from here on the objective is the one at the chosen alpha: best starts afresh
        self._set_current(state)
        self.best, self.best_value = self.state.copy(), self.current_value
        # The refine stage: search on at the chosen alpha. A weaker prior does not break ties
        # (searching on at it could re-pair atoms); after the lattice stage, which has just
        # searched at this very objective from this very configuration with the same budget,
        # it found nothing in 18 of 18 two-angle runs and cost a fifth of their time.
        if chosen >= AUTO_SEARCH_ALPHA and self.well is None:
            self._start_stage("refine")
        else:
            self.phase = self._finish()

    # -- moves --------------------------------------------------------------------------------
    def _move_probabilities(self):
        can_repair = self.problem.geometry.n_angles >= 2 and self.state.n >= 2
        can_lattice = bool(self.problem.bond_length) and self.state.n >= 3
        can_pair = self.pairing_applies and self.objective.alpha > 0 and self.state.n >= 4
        p = np.array([0.35, 0.35 if can_repair else 0.0, 0.2 if can_lattice else 0.0, 0.1,
                      PAIRING if can_pair else 0.0])
        return p / p.sum()

    def _propose(self, move, state):
        """Apply one move; returns ``(state, indices of the atoms it changed)``."""
        state = state.copy()
        if state.n == 0:
            return state, np.zeros(0, int)
        if move == "repair":
            return self._repair(state)
        if move == "lattice":
            return self._lattice(state)
        if move == "shift":
            return self._shift(state)
        if move == "pairing":
            return self._pairing(state)
        return self._jump(state)

    def _worst_atoms(self, state, k):
        """k atoms drawn among those whose removal costs least (they fit worst)."""
        scores = self.objective.removal_scores(state)
        pool = np.argsort(scores)[: max(3 * k, 6)]
        if self.rng.random() < 0.3:
            pool = np.arange(state.n)
        return self.rng.choice(pool, size=min(k, len(pool)), replace=False)

    def _insert(self, state, k):
        """Insert k atoms one by one at good candidate points (best or one of the top five)."""
        for _ in range(k):
            points = self.candidates.points
            delta, species = self.candidates.insertion_scores(self.objective, state)
            top = smallest(delta, 5)
            pick = top[0] if self.rng.random() < 0.5 else self.rng.choice(top)
            state = state.add(points[pick], species[pick])
        return state

    def _jump(self, state):
        k = int(self.rng.integers(1, 4))
        k = min(k, state.n)
        state = state.remove(self._worst_atoms(state, k))
        return self._insert(state, k), np.arange(state.n, state.n + k)

    def _repair(self, state):
        """Swap two atoms' coordinates along one projection direction, keep them along another."""
        geo = self.problem.geometry
        a, b = self.rng.choice(geo.n_angles, size=2, replace=False)
        i = int(self.rng.integers(state.n))
        reach = 3 * self.length_scale
        near = cKDTree(state.positions).query_ball_point(state.positions[i], reach)
        near = [j for j in near if j != i] or [j for j in range(state.n) if j != i]
        j = int(self.rng.choice(near))
        x = state.positions
        if geo.ndim == 2:
            m = geo.directions[[a, b]]
            if abs(np.linalg.det(m)) < 0.15:
                return self._jump(state)
            new_i = np.linalg.solve(m, [x[i] @ m[0], x[j] @ m[1]])
            new_j = np.linalg.solve(m, [x[j] @ m[0], x[i] @ m[1]])
        else:
            # Re-pair within the plane perpendicular to the detector rows (v), keeping each v.
            eu = geo.directions[[a, b], 0, :]
            ev = geo.directions[a, 1, :]
            m = np.vstack([eu, ev])
            if abs(np.linalg.det(m)) < 0.15:
                return self._jump(state)
            new_i = np.linalg.solve(m, [x[i] @ eu[0], x[j] @ eu[1], x[i] @ ev])
            new_j = np.linalg.solve(m, [x[j] @ eu[0], x[i] @ eu[1], x[j] @ ev])
        box = self.objective.box
        state.positions[i] = np.clip(new_i, box[:, 0], box[:, 1])
        state.positions[j] = np.clip(new_j, box[:, 0], box[:, 1])
        return state, np.array([i, j])

    def _pairing(self, state):
        """Anneal the pairing of the two projections' coordinates under the pair potential
        (:mod:`.pair_annealing`): the data term is unchanged, so the proposal is scored by the
        prior alone until the polish."""
        from .pair_annealing import anneal_pairing

        m = self.problem.geometry.directions[[0, 1]]
        if abs(np.linalg.det(m)) < 0.15:
            return self._jump(state)
        positions, _ = anneal_pairing(state.positions, m, self.potential, self.objective.box,
                                      self.rng, species=state.species)
        changed = np.flatnonzero(np.any(positions != state.positions, axis=1))
        state.positions = positions
        return state, changed

    def _lattice(self, state):
        sites = lattice_sites(state.positions, self.problem.bond_length, self.objective.box)
        k = 1 if self.rng.random() < 0.7 else 2
        state = state.remove(self._worst_atoms(state, k))
        changed = np.arange(state.n, state.n + k)
        if len(sites) == 0:
            return self._insert(state, k), changed
        # Insert at the best lattice sites only.
        for _ in range(k):
            delta, species = self.objective.insertion_scores(
                state, sites, self.objective.model.self_energy(sites))
            top = smallest(delta, 3)
            pick = top[0] if self.rng.random() < 0.6 else self.rng.choice(top)
            state = state.add(sites[pick], species[pick])
        return state, changed

    def _shift(self, state):
        bond = self.length_scale
        c = int(self.rng.integers(state.n))
        group = cKDTree(state.positions).query_ball_point(state.positions[c], 1.3 * bond)
        step = self.rng.normal(scale=0.4 * bond, size=state.positions.shape[1])
        box = self.objective.box
        state.positions[group] = np.clip(state.positions[group] + step, box[:, 0], box[:, 1])
        return state, np.asarray(group, int)

    def _local_relax(self, state, changed):
        """Relax only the changed atoms and their neighbours: cheap, and enough to reject most
        bad proposals before the full polish."""
        if state.n == 0 or len(changed) == 0:
            return state
        reach = 2.0 * self.length_scale
        movable = near_mask(state.positions, state.positions[changed], reach)
        return self.objective.relax(state, max_iterations=60, movable=movable)

    def _polish(self, state, changed=None):
        """Relax, prune and let ADCG add what is missing.

        Large problems (above :data:`~atomtomo.solvers.adcg.LOCAL_MOVE_ABOVE` atoms) relax the
        neighbourhood of the changed atoms only, so that a hop costs O(neighbourhood), not
        O(n) L-BFGS iterations; everything is relaxed together at the end of the search.
        """
        if changed is not None and state.n > LOCAL_MOVE_ABOVE:
            reach = 3.0 * self.length_scale
            movable = near_mask(state.positions, state.positions[changed], reach)
            state = self.objective.relax(state, movable=movable)
            state, _ = self.objective.prune(state, self.tol)
            return adcg(self.objective, state, self.candidates, max_iterations=2,
                        max_atoms=self.max_atoms, batch=1, separation=self.separation,
                        tol=self.tol)
        state = self.objective.relax(state)
        state, _ = self.objective.prune(state, self.tol)
        return adcg(self.objective, state, self.candidates, max_iterations=8,
                    max_atoms=self.max_atoms, batch=self.batch, separation=self.separation,
                    tol=self.tol)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _set_current(self, state):
        self.state = state
        self.current_value = self.objective.value(state)
        if self.current_value < self.best_value or self.phase == "adcg":
            self.best, self.best_value = state.copy(), self.current_value

    def _report(self, phase, **extra):
        terms = self.objective.terms(self.state)
        record = {
            "iteration": self.iteration,
            "phase": phase,
            "n_atoms": self.state.n,
            "objective": terms["objective"],
            "data": terms["data"],
            "discrepancy": terms["discrepancy"],
            "energy": terms["energy"],
            "alpha": self.objective.alpha,
            # the best of the run so far: the grain stage searches apart from the first result
            "best_objective": min(self.best_value, self.rival_value),
            "hop": self.hop,
            **extra,
        }
        self.history.append(dict(record))
        if self.callback is not None:
            record["positions"] = self.state.positions.copy()
            record["species"] = self.objective.species_of(self.state)
            self.callback(record)

    def _result(self, t0) -> Reconstruction:
        from .alpha import explains_data

        final = self._final()
        terms = self.objective.terms(final)
        explained = explains_data(self.problem, terms["discrepancy"], self.atom_energy)
        info = {
            "method": "adcg",
            "alpha": self.objective.alpha,
            "alpha_rule": getattr(self, "alpha_reason", "given") if self.auto_alpha else "given",
            "objective": terms["objective"],
            "data_discrepancy": terms["discrepancy"],
            "data_energy": terms["data"],
            # the misfit against the file's noise level (no key without one)
            **({"data_explained": explained} if explained is not None else {}),
            "energy": terms["energy"],
            # the pair potential itself: the hull and lattice terms are named by their own keys
            "potential": type(_innermost(self.potential)).__name__,
            "iterations": self.iteration,
            "hops": self.hop,
            "sweeps": self.sweep,
            "start": self.start,
            **({"lattice_prior": self._well_label()} if self.well is not None else {}),
            **({"hull": self.hull} if self.hull else {}),
            **({"column_coherence": ",".join(f"{c:.2f}" for c in self.coherence)}
               if self.coherence is not None and len(self.coherence) else {}),
            **({"zone_axes": self.zone_axes_from} if self.zone_axes_from else {}),
            "n_atoms": final.n,
            "atom_data_energy": self.atom_energy,
            "seed": self.seed,
            **({"stopped_by": "time_limit"} if remaining() <= 0 else {}),
        }
        return Reconstruction(self.objective.configuration(final), info, self.history)

    # -- checkpoints ---------------------------------------------------------------------------
    def _fingerprint(self):
        return digest(self.problem.data)

    def _save_checkpoint(self, t0):
        if self.checkpoint is None:
            return
        strained_sites = getattr(self.well, "sites", None)  # the strain stage's well (SiteWell)
        meta = {
            "fingerprint": self._fingerprint(),
            "settings": self.settings,
            "phase": self.phase,
            "stage": self.stage,
            "hops": self.hops,
            "patience": self.patience,
            "iteration": self.iteration,
            "hop": self.hop,
            "sweep": self.sweep,
            "start": self.start,
            "stall": self.stall,
            "alpha": self.objective.alpha,
            "best_value": self.best_value,
            "current_value": self.current_value,
            "rng": self.rng.bit_generator.state,
            "runtime": self.previous_runtime + time.perf_counter() - t0,
            "alpha_trials": [(a, d) for a, d, _ in self.alpha_trials],
            "alpha_reason": getattr(self, "alpha_reason", None),
            "well": None if self.well is None else _well_meta(self.well),
            "well_strained": strained_sites is not None,
            "well_from_data": self.well_from_data,
            "rival_well": None if self.rival_well is None else _well_meta(self.rival_well[0]),
            "rival_well_from_data": None if self.rival_well is None else self.rival_well[1],
            "dislocation_models": (None if self.dislocation_models is None
                                   else [_well_meta(m) for m in self.dislocation_models]),
            "grain_label": self.grain_label,
            "rival_value": None if self.rival is None else self.rival_value,
            "rival_start": self.rival_start,
            "reseeded": self.reseeded,
        }
        arrays = {
            "state_positions": self.state.positions, "state_species": self.state.species,
            "best_positions": self.best.positions, "best_species": self.best.species,
        }
        if strained_sites is not None:
            arrays["well_sites"] = strained_sites
        if self.rival_well is not None and hasattr(self.rival_well[0], "sites"):
            arrays["rival_well_sites"] = self.rival_well[0].sites
        for k, model in enumerate(self.dislocation_models or []):
            arrays[f"dislocation{k}_sites"] = model.sites
        for name, s in (("grain_seed", self.grain_seed), ("rival", self.rival)):
            if s is not None:
                arrays[f"{name}_positions"], arrays[f"{name}_species"] = s.positions, s.species
        for k, (_, _, s) in enumerate(self.alpha_trials):
            arrays[f"trial{k}_positions"] = s.positions
            arrays[f"trial{k}_species"] = s.species
        write_checkpoint(self.checkpoint, meta, arrays)

    def _well_from_meta(self, params, sites=None):
        """The well saved as ``_well_meta`` (+ its sites, for a :class:`SiteWell`)."""
        from ..lattice_prior import SiteWell

        w = np.asarray(params, float)
        well = self._lattice_well(w[:4].reshape(2, 2), w[4:])
        return well if sites is None else SiteWell(sites, well)

    def _load_checkpoint(self):
        meta, arrays = read_checkpoint(self.checkpoint)
        if "settings" not in meta:
            raise InputError(f"checkpoint {self.checkpoint} was written by an older atomtomo; "
                             "start without --resume")
        if meta.get("fingerprint") != self._fingerprint():
            raise InputError(f"checkpoint {self.checkpoint} belongs to another run (the data differ)")
        check_settings(self.checkpoint, meta["settings"], self.settings)
        self.phase = meta["phase"]
        self.stage = meta.get("stage", "search")
        self.hops = meta.get("hops", self.hops)
        self.patience = meta.get("patience", self.patience)
        self.iteration = meta["iteration"]
        self.hop = meta["hop"]
        self.sweep = meta.get("sweep", 0)
        self.start = meta.get("start", "greedy")
        self.stall = meta["stall"]
        self.objective.set_alpha(meta["alpha"])
        self.best_value = meta["best_value"]
        self.current_value = meta["current_value"]
        self.rng.bit_generator.state = meta["rng"]
        self.previous_runtime = meta["runtime"]
        if meta.get("alpha_reason"):
            self.alpha_reason = meta["alpha_reason"]
        if meta.get("well") is not None:  # the lattice fitted to the atoms
            well = self._well_from_meta(meta["well"], arrays.get("well_sites")
                                        if meta.get("well_strained") else None)
            self._use_well(well)
        self.well_from_data = meta.get("well_from_data", False)
        if meta.get("rival_well") is not None:
            self.rival_well = (self._well_from_meta(meta["rival_well"], arrays.get("rival_well_sites")),
                               meta["rival_well_from_data"])
        if meta.get("dislocation_models") is not None:
            from .dislocation_fit import SiteModel

            self.dislocation_models = [
                SiteModel(arrays[f"dislocation{k}_sites"], np.nan, np.nan, w[4:], w[:4].reshape(2, 2))
                for k, w in enumerate(np.asarray(m, float) for m in meta["dislocation_models"])]
        self.state = AtomState(arrays["state_positions"], arrays["state_species"].astype(int))
        self.best = AtomState(arrays["best_positions"], arrays["best_species"].astype(int))
        self.grain_label = meta.get("grain_label")
        self.reseeded = meta.get("reseeded", False)
        if "grain_seed_positions" in arrays:
            self.grain_seed = AtomState(arrays["grain_seed_positions"],
                                        arrays["grain_seed_species"].astype(int))
        if "rival_positions" in arrays:
            self.rival = AtomState(arrays["rival_positions"], arrays["rival_species"].astype(int))
            self.rival_value, self.rival_start = meta["rival_value"], meta.get("rival_start")
        self.alpha_trials = [
            (a, d, AtomState(arrays[f"trial{k}_positions"], arrays[f"trial{k}_species"].astype(int)))
            for k, (a, d) in enumerate(meta["alpha_trials"])
        ]
