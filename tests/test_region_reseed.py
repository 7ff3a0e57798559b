"""Re-seeding a region where the data are not explained (solvers/region_reseed.py)."""

import numpy as np
import pytest
from test_lattice_seed import SPACING, interstitial_case

from atomtomo.metrics import match_atoms
from atomtomo.solvers import reconstruct
from atomtomo.solvers.core import adcg
from atomtomo.solvers.objective import AtomState
from atomtomo.solvers.problem import Problem
from atomtomo.solvers.region_reseed import reseed_regions


@pytest.fixture(scope="module")
def wrong_case():
    """The crystal of :func:`interstitial_case` and a wrong configuration the single-atom moves
    keep: the sites relaxed without the interstitial, then ADCG (F1 0.45, 0.38 E_1 above the
    relaxed truth, one atom short)."""
    truth, problem, objective, candidates, tol, sites = interstitial_case()
    sites_only = AtomState(sites, np.zeros(len(sites), int))
    wrong = adcg(objective, objective.relax(sites_only), candidates, max_iterations=20, tol=tol)
    return truth, problem, objective, candidates, tol, wrong


def test_reseeding_the_worst_region_recovers_the_interstitial(wrong_case):
    truth, _, objective, candidates, tol, wrong = wrong_case
    relaxed_truth = objective.value(objective.relax(objective.state_from(truth)))
    assert objective.value(wrong) > relaxed_truth + 0.1 * objective.atom_energy

    def polish(state, changed):
        state, _ = objective.prune(objective.relax(state), tol)
        return adcg(objective, state, candidates, max_iterations=8, tol=tol)

    found = reseed_regions(objective, wrong, candidates, SPACING, np.random.default_rng(0),
                           polish, tol=tol, rounds=1)
    assert found.n == truth.n_atoms
    assert match_atoms(objective.configuration(found), truth, 0.1 * SPACING).f1 == 1.0
    assert objective.value(found) <= relaxed_truth + 1e-3 * objective.atom_energy


def test_the_driver_reseeds_only_when_the_data_are_unexplained(wrong_case):
    """A search too short to explain the data ends with a re-seeding step, which finds the truth
    here; without a noise level the target is unknown and there is none."""
    truth, problem, objective, *_, wrong = wrong_case
    options = dict(alpha=0.01, seed=0, hops=1, sweeps=0, lattice_start=False, reseed=True,
                   initial=objective.configuration(wrong))
    run = reconstruct(problem, "adcg", **options)
    steps = [r for r in run.history if r["phase"] == "reseed"]
    assert len(steps) == 1 and steps[0]["accepted"]
    assert match_atoms(run.configuration, truth, 0.1 * SPACING).f1 == 1.0
    assert run.info["start"].endswith("(re-seeded)")
    blind = Problem(problem.model, problem.data, problem.box, bond_length=SPACING)
    assert not any(r["phase"] == "reseed" for r in reconstruct(blind, "adcg", **options).history)
