"""The search: ADCG, then basin hopping and later stages, as resumable iterations.

A greedy add-move-prune loop (:mod:`.core`) stops far above the objective of the true
configuration: with few angles the data cannot say which projected coordinate belongs to which
atom, and the local optimiser cannot re-pair them. :class:`SearchDriver` runs, in order (each
phase one or more iterations, after each of which it can checkpoint and resume exactly):

1. **adcg** -- the greedy loop from an empty (or given) configuration;
2. **seed** -- starts from lattices fitted to the data (:mod:`.lattice_seed`), kept when they end
   lower than greedy (2D, bond length known);
3. **anneal** -- heat-bath sweeps over positions at a falling temperature;
4. **hop** -- basin hopping: a move (:mod:`.moves`: jump, re-pair, lattice, shift, pairing) is
   drawn by weight, relaxed locally, polished with the ADCG steps when it could still be
   accepted, and accepted by the Metropolis rule at a temperature (in atom data energies) that
   falls geometrically over the stage's budget; the best configuration seen is kept;
5. later **stages**, each a new run of hops from the best configuration so far, with its own
   prior and budget (the data of :mod:`.stages`; :meth:`SearchDriver._after_search` takes the
   first of :data:`~.stages.PIPELINE` whose condition holds):
   *grains* (2D, 3+ angles, where two grains fit the data far better than one lattice: from the
   two-grain start, three times the budget, the better of it and the first search kept);
   *lattice* (two zone axes: a well at the sites of a lattice fitted to the atoms joins the
   prior, :func:`~atomtomo.lattice_prior.fit_well`, a third of the budget); *strain* (the well
   moved to the sites the atoms' neighbours predict,
   :func:`~atomtomo.lattice_prior.strained_sites`);
   *dislocation* (crystals with an edge dislocation fitted to the data, :mod:`.dislocation_fit`,
   each searched under a well at its sites, from the lowest occupancy of them,
   :mod:`.site_occupancy`; the lower of it and the search before is kept);
6. **alpha** -- with ``alpha="auto"``, the ladder of :mod:`.alpha` and then a *refine* stage at
   the chosen alpha (where no lattice stage ran);
7. **reseed** -- once, where the result misses the noise target: refill the atoms around the
   worst-explained data (:mod:`.region_reseed`).

A stage changes the prior by adding or replacing a term of :class:`~atomtomo.prior.Prior`.
Every iteration passes through the loop of :meth:`SearchDriver.run` (the one place for a
progress or stop hook).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..hull_prior import TWO_ANGLE_HULL, HullPressure
from ..lattice_prior import WELL_WIDTH, LatticeWell, SiteWell, fit_well, strained_sites
from ..potentials import PairPotential, make_potential
from ..prior import Prior
from ..stopping import remaining, should_stop
from .adcg_options import SEARCH_SETTINGS
from .alpha import AUTO_SEARCH_ALPHA, choose_alpha, explains_data, ladder_order, ladder_settled
from .checkpoint import check_settings, digest, read_checkpoint, write_checkpoint
from .core import LOCAL_MOVE_ABOVE, Candidates, adcg, adcg_iteration, candidate_axes
from .dislocation_fit import MIN_ATOMS, SiteModel, detected_families, fit_site_models
from .grid import estimated_atom_count
from .lattice_seed import lattice_candidates, lattice_kind, lattice_seeds
from .moves import default_moves, draw_move
from .objective import AtomObjective, AtomState, near_mask
from .problem import Problem, Reconstruction
from .region_reseed import reseed_regions
from .site_occupancy import anneal_occupancy, occupancy_problem
from .stages import PIPELINE, PROGRESS_GAIN, STAGES, converged
from .zone_axes import ZONE_AXIS_COHERENCE, along_zone_axes, beams_along_rows

#: Default basin-hopping budget for two angles in 2D with a pair prior (patience: half of it).
TWO_ANGLE_HOPS = 1200
#: Floor of the first stage's adaptive patience (:func:`~.stages.converged`; two angles in 2D
#: with a pair prior, where every pairing fits the data and the prior alone decides), in hops
#: per expected atom, and its smallest value.
TWO_ANGLE_FLOOR = 1.0
MIN_FLOOR_FIRST = 30
#: Floor of the default annealing sweeps' adaptive stop (:func:`~.stages.converged` over sweeps).
ANNEAL_FLOOR = 5
#: Default ``lattice_prior`` (weight of the lattice well, in bonds) for two zone axes in 2D.
TWO_ANGLE_LATTICE = 3.0

#: The grain stage (2D, three or more angles) runs when the best two-grain start's data misfit
#: is below this fraction of the best single lattice's (and that one leaves more than one atom's
#: data energy unexplained): a crystal with a grain boundary, which no single lattice fits.
GRAIN_MISFIT_RATIO = 0.75


def expected_atom_count(problem: Problem) -> float:
    """Atom count implied by the data's total mass (spec section 2's mass identity), at least 1."""
    return max(estimated_atom_count(problem), 1.0)


#: Version of the checkpoint record (:meth:`SearchDriver._save_checkpoint`).
CHECKPOINT_FORMAT = 3

#: The fields of :class:`SearchDriver` that change during a run: a checkpoint saves them by
#: name (encoded by type, :func:`encode`) and a resumed run restores them.
STATE_FIELDS = ("phase", "stage", "hops", "patience", "iteration", "hop", "sweep", "stall",
                "start", "alpha", "alpha_reason", "alpha_trials", "state", "best", "best_value",
                "current_value", "well", "well_from_data", "rival", "rival_value",
                "rival_start", "rival_well", "dislocation_models", "grain_seed", "grain_label",
                "reseeded", "progress", "progress_value", "rng")


def encode(value, key: str, arrays: dict):
    """``value`` as a JSON-able record; its arrays go into ``arrays`` under names from ``key``.

    Configurations, wells, fitted crystals, generators and lists of them are encoded by type;
    anything else must be JSON-able as it is."""
    if isinstance(value, AtomState):
        arrays[f"{key}.positions"], arrays[f"{key}.species"] = value.positions, value.species
        return {"kind": "atoms"}
    if isinstance(value, SiteWell):
        arrays[f"{key}.sites"] = value.sites
        return {"kind": "site_well", "lattice": encode(value.lattice, f"{key}.lattice", arrays)}
    if isinstance(value, LatticeWell):
        return {"kind": "lattice_well", "basis": value.basis.tolist(),
                "origin": value.origin.tolist(), "depth": value.depth, "width": value.width}
    if isinstance(value, SiteModel):
        arrays[f"{key}.sites"] = value.sites
        return {"kind": "site_model", "misfit": float(value.misfit),
                "rotation": float(value.rotation),
                **{k: None if getattr(value, k) is None else np.asarray(getattr(value, k)).tolist()
                   for k in ("origin", "basis", "burgers", "core")}}
    if isinstance(value, np.random.Generator):
        return {"kind": "rng", "state": value.bit_generator.state}
    if isinstance(value, (list, tuple)):
        return {"kind": "list",
                "items": [encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]}
    return {"kind": "value", "value": value}


def decode(record: dict, key: str, arrays: dict):
    """The value :func:`encode` recorded (lists come back as lists)."""
    kind = record["kind"]
    if kind == "atoms":
        return AtomState(arrays[f"{key}.positions"], arrays[f"{key}.species"].astype(int))
    if kind == "site_well":
        return SiteWell(arrays[f"{key}.sites"], decode(record["lattice"], f"{key}.lattice", arrays))
    if kind == "lattice_well":
        return LatticeWell(record["basis"], record["origin"], record["depth"], record["width"])
    if kind == "site_model":
        array = {k: None if record[k] is None else np.asarray(record[k], float)
                 for k in ("origin", "basis", "burgers", "core")}
        return SiteModel(arrays[f"{key}.sites"], record["misfit"], record["rotation"], **array)
    if kind == "rng":
        generator = getattr(np.random, record["state"]["bit_generator"])()
        generator.state = record["state"]
        return np.random.Generator(generator)
    if kind == "list":
        return [decode(r, f"{key}.{i}", arrays) for i, r in enumerate(record["items"])]
    return record["value"]


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
                 grains=True, reseed=None, strain=True, dislocation=None):
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
        # the interatomic potential; self.potential is the whole prior (it plus the stages' terms)
        self.pair = self.potential
        self.alpha = AUTO_SEARCH_ALPHA if self.auto_alpha else alpha
        self.alpha_reason = None  # how "auto" chose it, once it has
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
        self._lattices = None  # lattice_candidates of the data, once computed
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
        self.field = field
        if field is not None:  # a one-body term from outside (layers.NeighbourField)
            self._extend_prior(Prior(self.potential, [field]))
        self.atom_energy = self.objective.atom_energy
        self.n_expected = expected_atom_count(problem)
        self.max_atoms = int(max_atoms) if max_atoms else int(3 * self.n_expected + 20)
        self.max_iterations = int(max_iterations) if max_iterations else int(4 * self.n_expected + 50)
        self.batch = int(batch) if batch else max(1, int(self.n_expected // 25))
        self.separation = 0.7 * bond if bond else 2.5 * problem.sigma
        self.tol = float(tol) if tol is not None else 1e-4 * self.atom_energy
        self.pairing = bool(pairing)
        # There the pairing move applies (whenever alpha > 0), and the search needs a larger
        # budget than elsewhere (measured: docs/decisions/2026-12-07-solver-history.md).
        self.pairing_applies = self.pairing and two_angles and field is None
        two_angle = self.pairing_applies and needs_prior and self.n_expected <= 400
        # Re-seeding where the data are left unexplained (once, at the end): by default in 2D
        # with the default budget (an explicit one is the caller's to spend).
        self.reseed = (problem.ndim == 2 and hops is None) if reseed is None else bool(reseed)
        self.reseeded = False
        if hops is None:
            hops = TWO_ANGLE_HOPS if two_angle else min(400, 80 + 6 * self.n_expected)
        self.hops = int(hops)
        # The patience: an explicit one is fixed; the default is adaptive (stages.converged),
        # capped by the fixed budget of before, with a floor that scales with the atoms whose
        # placement the data leave open (all of them at two angles, fewer with more).
        # Only at two angles (the large budget): elsewhere the fixed patience was already short,
        # and the one hard three-angle case measured ended worse with the adaptive stop
        # (docs/decisions/2026-12-07-speed.md).
        self.floor = None
        if patience is None:
            patience = max(40, self.hops // 2 if two_angle else self.hops // 5)
            if two_angle:
                self.floor = min(int(patience),
                                 max(MIN_FLOOR_FIRST, int(TWO_ANGLE_FLOOR * self.n_expected)))
        self.patience = int(patience)
        self.temperature = float(temperature)
        # Annealing sweeps: each re-draws every atom's position from its heat-bath distribution.
        self.sweeps = int(sweeps) if sweeps is not None else (20 if self.n_expected <= 400 else 0)
        self.default_sweeps = sweeps is None
        self.sweep = 0
        # Lattice-fitted starts (2D crystals): on by default when the bond length is known.
        self.lattice_start = (problem.ndim == 2 and bool(bond)) if lattice_start is None else bool(lattice_start)
        self.start = "greedy"
        self.time_limit = time_limit
        self.candidates = Candidates(problem.model, candidate_axes(problem, grid_spacing))
        self.moves = default_moves(self)  # the proposals of basin hopping (moves.py)
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
        # the stage's last progress (an improvement of its best by PROGRESS_GAIN E_1): the hops
        # it took, and the best then (stages.converged)
        self.progress, self.progress_value = 0, float("inf")
        self.alpha_trials = []  # (alpha, discrepancy^2, state) records of the auto-alpha ladder
        self.state = AtomState(np.zeros((0, problem.ndim)), np.zeros(0, int))
        if initial is not None:
            self.state = self.objective.relax(self.objective.state_from(initial))
        self.best = self.state.copy()
        self.best_value = self.objective.value(self.best)
        self.current_value = self.best_value
        # What defines the run besides the data: a checkpoint is resumed only under the same
        # settings (time_limit is a resource guard and may change between the two runs).
        # the value each option of the table (adcg_options.ADCG_OPTIONS) resolved to
        resolved = {
            "potential": potential, "hops": self.hops, "patience": self.patience,
            "batch": self.batch, "grid_spacing": grid_spacing, "max_atoms": self.max_atoms,
            "temperature": self.temperature, "tol": self.tol, "sweeps": self.sweeps,
            "lattice_start": self.lattice_start, "lattice_prior": self.lattice_beta,
            "pairing": self.pairing, "grains": self.grains, "reseed": self.reseed,
            "strain": self.strain, "dislocation": self.dislocation, "hull": self.hull,
        }
        self.settings = {
            "sigma": float(problem.sigma), "seed": self.seed,
            "alpha": "auto" if self.auto_alpha else float(alpha),
            "max_iterations": self.max_iterations,
            "initial": None if initial is None else digest(self.state.positions, self.state.species),
            **{name: resolved[name] for name in SEARCH_SETTINGS},
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
        if hull is None:
            hull = TWO_ANGLE_HULL if default_on else 0.0
        hull = float(hull)
        if hull <= 0:
            return 0.0
        if self.problem.ndim != 2:
            raise InputError("ADCG option hull needs 2D data (a plane-by-plane 3D run uses it "
                             "for its planes)")
        self._require_energy_term("ADCG option hull", needs_prior)
        self._extend_prior(Prior(self.potential, [HullPressure.in_bonds(hull, self.pair)]))
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
        fits = [c for c in self._lattice_candidates() if c["grains"] == 1]
        return min(fits, key=lambda c: c["misfit"])

    def _lattice_candidates(self):
        """:func:`~.lattice_seed.lattice_candidates` of the data, computed once per run (they
        depend on the data alone; the seed step, the lattice stage and the dislocation fit all
        start from them)."""
        if self._lattices is None:
            self._lattices = lattice_candidates(self.objective, self.problem.bond_length)
        return self._lattices

    def _fitted_crystals(self):
        """Crystals with and without an edge dislocation fitted to the data
        (:func:`~.dislocation_fit.fit_site_models`), once per run, and once per process for
        the same data and lattice (a resumed run or another restart in this process)."""
        if self.site_models is None:
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
        dislocation's extra half-row spoils the columns of a small crop)."""
        found = detected_families(self._fitted_crystals())
        if found and beams_along_rows(found[0].basis, self.problem.geometry,
                                      self.problem.bond_length):
            self.zone_axes_from = "a crystal with a dislocation fitted to the data"
            return True
        return False

    def _lattice_well(self, basis, origin):
        """A well of the run's depth (``beta epsilon``) and width at the sites of a lattice."""
        return LatticeWell(basis, origin, self.lattice_beta * self.potential.epsilon,
                           WELL_WIDTH * self.problem.bond_length)

    def _use_well(self, well):
        """Make the prior the pair potential (+ the neighbour field) + ``well`` (+ the hull
        pressure, when on)."""
        terms = [*([self.field] if self.field is not None else []), well,
                 *([HullPressure.in_bonds(self.hull, self.pair)] if self.hull else [])]
        self.well = well
        self._extend_prior(Prior(self.pair, terms))

    def _well_label(self):
        """The fitted lattice for the output, e.g. ``square lattice at 32.24 deg (...)``."""
        b1 = self.well.basis[:, 0]
        kind = lattice_kind(self.well.basis)
        angle = np.degrees(np.arctan2(b1[1], b1[0])) % (90.0 if kind == "square" else 60.0)
        if self.well_from_data:
            return f"{kind} lattice at {angle:.2f} deg with an edge dislocation (fitted to the data)"
        strained = ", strained" if isinstance(self.well, SiteWell) else ""
        return f"{kind} lattice at {angle:.2f} deg (fitted to the atoms{strained})"

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> Reconstruction:
        """Run iterations until the phase is ``"done"``: every iteration of every phase (an
        ADCG step, a sweep, a hop, a stage's start, an alpha trial) passes through this loop."""
        t0 = self.t0 = time.perf_counter()
        steps = {"adcg": self._adcg_step, "seed": self._seed_step, "anneal": self._anneal_step,
                 "hop": self._hop_step, "alpha": self._alpha_step, "lattice": self._lattice_step,
                 "strain": self._strain_step, "dislocation": self._dislocation_step,
                 "grains": self._grain_step, "reseed": self._reseed_step}
        while self.phase != "done":
            if should_stop():  # a signal (raises) or the time limit: the best result so far
                break
            steps[self.phase]()
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
        single_misfits, grain = [], None
        # Interstitials go in before the sites relax, where the data locate them: from three
        # angles on (at two, every crossing of two loaded beam lines is supported alike).
        complete = self.candidates if self.problem.geometry.n_angles >= 3 else None
        for seed_state, info in lattice_seeds(self.objective, self.problem.bond_length,
                                              tol=self.tol, per_kind=2, count=3, rng=self.rng,
                                              candidates=complete,
                                              lattices=self._lattice_candidates()):
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
            self.progress, self.progress_value = 0, float(self.best_value)
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
        if self.best_value < self.progress_value - PROGRESS_GAIN * self.atom_energy:
            self.progress, self.progress_value = self.sweep, float(self.best_value)
        self._report("anneal", accepted=True, sweep=self.sweep)
        # the default sweeps stop, like a stage, once they stop paying (stages.converged)
        floor = ANNEAL_FLOOR if self.floor is not None and self.default_sweeps else None
        if self.sweep >= self.sweeps or converged(self.sweep, self.progress, floor):
            self.state = self.best.copy()
            self.current_value = self.best_value
            self.phase = self._next_after_anneal()

    def _hop_step(self):
        if self.hop == 0:  # a stage starts: its progress is measured from its start
            self.progress, self.progress_value = 0, float(self.best_value)
        move = draw_move(self.moves, self.state, self.rng)
        origin = self.best if self.rng.random() < 0.3 else self.state
        trial, changed = move(origin, self.rng) if origin.n else (origin.copy(), np.zeros(0, int))
        start = self.temperature * STAGES[self.stage].temperature
        temperature = start * self.atom_energy * 0.02 ** (self.hop / max(self.hops, 1))
        trial = self._local_relax(trial, changed)
        value = self.objective.value(trial)
        # Only proposals that could still be accepted get the full (expensive) polish.
        if value < self.current_value + 5 * temperature + self.atom_energy:
            trial = self._polish(trial, changed)
            value = self.objective.value(trial)
        delta = value - self.current_value
        accepted = delta < 0 or self.rng.random() < np.exp(-delta / max(temperature, 1e-300))
        if accepted:
            self.state, self.current_value = trial, value
        if value < self.best_value - self.tol:
            self.best, self.best_value, self.stall = trial.copy(), value, 0
        else:
            self.stall += 1
        self.hop += 1
        if value < self.progress_value - PROGRESS_GAIN * self.atom_energy:
            self.progress, self.progress_value = self.hop, float(value)
        self._report("hop", accepted=bool(accepted), move=move.name)
        out_of_time = (self.time_limit is not None
                       and time.perf_counter() - self.t0 > self.time_limit)
        floor = STAGES[self.stage].floor_for(self.floor)
        if (self.hop >= self.hops or self.stall >= self.patience
                or converged(self.hop, self.progress, floor) or out_of_time):
            self.state = self.objective.relax(self.best, max_iterations=1000)
            self.state, _ = self.objective.prune(self.state, self.tol)
            self._set_current(self.state)
            self.phase = self._after_search()

    def _after_search(self):
        if self.rival is not None:
            self._keep_better_search()
        for name in PIPELINE:  # the next stage whose condition holds (stages.py)
            if STAGES[name].runs(self):
                return name
        if self.auto_alpha and not self.alpha_trials:
            return "alpha"
        return self._finish()

    def _final(self):
        """The run's result so far: the best configuration, or the current one if it is lower."""
        return self.best if self.best_value < self.current_value else self.state

    def _unexplained(self, state):
        """True when ``state`` misses the discrepancy target of :mod:`.alpha` (needs the
        file's noise level: without it the target would be estimated from this very misfit)."""
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
        if accepted and explained and self.alpha_reason is not None:
            self.alpha_reason += "; re-seeding a region then reached it"
        self._report("reseed", accepted=accepted, explained=explained)
        self.phase = "done"

    def _lattice_step(self):
        """Fit the lattice well to the search's atoms (:func:`~atomtomo.lattice_prior.fit_well`)
        and search on with it, from the best configuration, with a third of the budget."""
        well = self._data_lattice()
        self._search_under_well(fit_well(well, self.best.positions) if self.best.n else well,
                                "lattice")

    def _strain_step(self):
        """Replace the lattice well by one at the sites the best configuration's atoms predict
        for each other (:func:`~atomtomo.lattice_prior.strained_sites`) and search on with a
        third of the budget."""
        lattice = self.well
        self._search_under_well(self._site_well(lattice, self.best.positions)
                                if self.best.n else lattice, "strain")

    def _dislocation_step(self):
        """Fit crystals with an edge dislocation to the data (:mod:`.dislocation_fit`), once;
        then search on under a well at the sites of the next one that fits clearly better than
        a single crystal, with a third of the budget, the best configuration so far waiting as
        the rival (the full objective decides between the fitted crystals: two projections
        leave several at the noise level)."""
        if self.dislocation_models is None:
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
        Q, h = occupancy_problem(self.objective, sites)
        occupied, _ = anneal_occupancy(Q, h, self.rng, temperature=self.atom_energy)
        state = AtomState(sites[occupied].copy(), np.zeros(int(occupied.sum()), int))
        return self._polish(self.objective.relax(state, max_iterations=1000))

    @staticmethod
    def _site_well(lattice, positions):
        """The well of ``lattice`` at the sites ``positions`` predict for each other."""
        return SiteWell(strained_sites(lattice, positions), lattice)

    def _set_well(self, well):
        """Put ``well`` in place of the prior's well (the rival's, when it wins back)."""
        self.potential.replace(self.well, well)
        self.well = well

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
        would scatter its grains) with the budget of :data:`~.stages.STAGES` (three times the
        first stage's hops, half as much patience); the first search's result waits as the
        rival (neither the start nor the budget alone finds the truth on the grain boundaries
        measured; docs/decisions/2026-12-07-solver-history.md)."""
        self.rival, self.rival_value, self.rival_start = self.best.copy(), self.best_value, self.start
        state, self.grain_seed = self.grain_seed, None
        self.best, self.best_value = state.copy(), self.objective.value(state)
        self.state, self.current_value = state, self.best_value
        self.stage = "grains"
        self.hops = STAGES["grains"].hops(self.settings["hops"])
        self.patience = STAGES["grains"].patience_for(self.hops, self.settings["patience"])
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
        """A later search stage (``"lattice"``, ``"strain"``, ``"dislocation"``, ``"refine"``):
        basin hopping from the current configuration with the budget, patience and starting
        temperature of :data:`~.stages.STAGES` (a third of the first stage's hops and patience,
        a cooler start: they start near their optimum); without hops, straight on to what
        follows."""
        self.stage = stage
        self.hops = STAGES[stage].hops(self.settings["hops"])
        self.patience = STAGES[stage].patience_for(self.hops, self.settings["patience"])
        self.hop, self.stall = 0, 0
        self.phase = "hop" if self.hops > 0 else self._after_search()

    def _alpha_step(self):
        order = ladder_order(self.problem.noise_std is not None)
        k = len(self.alpha_trials)
        if k < len(order) and not (k and ladder_settled(self)):
            alpha = order[k]
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

    # -- the polish -------------------------------------------------------------------------
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

        Large problems (above :data:`~atomtomo.solvers.core.LOCAL_MOVE_ABOVE` atoms) relax the
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
        final = self._final()
        terms = self.objective.terms(final)
        explained = explains_data(self.problem, terms["discrepancy"], self.atom_energy)
        info = {
            "method": "adcg",
            "alpha": self.objective.alpha,
            "alpha_rule": (self.alpha_reason if self.auto_alpha and self.alpha_reason is not None
                           else "given"),
            "objective": terms["objective"],
            "data_discrepancy": terms["discrepancy"],
            "data_energy": terms["data"],
            # the misfit against the file's noise level (no key without one)
            **({"data_explained": explained} if explained is not None else {}),
            "energy": terms["energy"],
            # the pair potential itself: the hull and lattice terms are named by their own keys
            "potential": type(self.pair).__name__,
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
        """Write the search state (:data:`STATE_FIELDS`, the objective's alpha, the run time)
        to the checkpoint, atomically."""
        if self.checkpoint is None:
            return
        arrays = {}
        meta = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self._fingerprint(),
            "settings": self.settings,
            "objective_alpha": self.objective.alpha,
            "runtime": self.previous_runtime + time.perf_counter() - t0,
            "state": {name: encode(getattr(self, name), name, arrays) for name in STATE_FIELDS},
        }
        write_checkpoint(self.checkpoint, meta, arrays)

    def _load_checkpoint(self):
        meta, arrays = read_checkpoint(self.checkpoint)
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"checkpoint {self.checkpoint} was written by another version of "
                             "atomtomo; start without --resume")
        if meta.get("fingerprint") != self._fingerprint():
            raise InputError(f"checkpoint {self.checkpoint} belongs to another run (the data differ)")
        check_settings(self.checkpoint, meta["settings"], self.settings)
        for name in STATE_FIELDS:
            setattr(self, name, decode(meta["state"][name], name, arrays))
        if self.well is not None:  # the stage's prior: the potential plus its well
            self._use_well(self.well)
        self.objective.set_alpha(meta["objective_alpha"])
        self.previous_runtime = meta["runtime"]
