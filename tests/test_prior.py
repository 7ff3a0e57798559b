"""The prior as a sum of terms (prior.py): the sum, its exact changes, building and replacing."""

import numpy as np
import pytest

from atomtomo.hull_prior import HullPressure
from atomtomo.lattice_prior import LatticeWell, SiteWell
from atomtomo.potentials import make_potential
from atomtomo.prior import Prior
from gradients import finite_difference

BOND = 1.0
RNG = np.random.default_rng(3)
X = np.array([[0.0, 0.0], [1.0, 0.05], [0.1, 1.0], [1.05, 1.0], [2.0, 0.4], [0.6, 1.9]])
CANDIDATES = RNG.uniform(-0.5, 2.5, (7, 2))


def _lj():
    return make_potential("lj", BOND, 2)


def _well():
    return LatticeWell(np.eye(2), np.zeros(2), depth=2.0, width=0.15)


class Bowl:
    """A one-body term with only the two required methods (like layers.NeighbourField)."""

    def atom_energies(self, points):
        return 0.3 * np.sum(np.asarray(points) ** 2, axis=1)

    def energy_and_gradient(self, points):
        p = np.asarray(points, float)
        return float(self.atom_energies(p).sum()), 0.6 * p


@pytest.fixture
def prior():
    lj = _lj()
    return Prior(lj, [Bowl(), _well(), HullPressure.in_bonds(3.0, lj)])


def test_no_terms_is_the_potential_bit_for_bit():
    lj = _lj()
    prior = Prior(lj)
    e, g = prior.energy_and_gradient(X)
    e0, g0 = lj.energy_and_gradient(X)
    assert e == e0 and np.array_equal(g, g0)
    assert np.array_equal(prior.insertion_energy(X, CANDIDATES), lj.insertion_energy(X, CANDIDATES))
    assert np.array_equal(prior.removal_energy(X), lj.removal_energy(X))
    assert prior.global_context(X) is None
    assert (prior.epsilon, prior.bond_length, prior.cutoff_radius) == (
        lj.epsilon, lj.bond_length, lj.cutoff_radius)


def test_sum_of_terms(prior):
    e, g = prior.energy_and_gradient(X)
    parts = [prior.base.energy_and_gradient(X)] + [t.energy_and_gradient(X) for t in prior.terms]
    assert e == pytest.approx(sum(p[0] for p in parts))
    assert np.allclose(g, sum(p[1] for p in parts))
    assert prior.energy(X) == pytest.approx(e)
    assert prior.atom_energies(X).sum() == pytest.approx(e)


def test_gradient_matches_finite_differences(prior):
    _, g = prior.energy_and_gradient(X)
    assert np.allclose(g, finite_difference(prior, X, h=1e-7), rtol=1e-5, atol=1e-6)


def test_insertion_and_removal_are_exact_changes(prior):
    e0 = prior.energy(X)
    ins = prior.insertion_energy(X, CANDIDATES)
    assert np.allclose(ins, [prior.energy(np.vstack([X, c])) - e0 for c in CANDIDATES])
    rem = prior.removal_energy(X)
    assert np.allclose(rem, [prior.energy(np.delete(X, i, axis=0)) - e0 for i in range(len(X))])


def test_global_context_is_the_hull_of_the_hull_term(prior):
    mask = prior.global_context(X)
    assert mask.dtype == bool and mask.sum() == len(X) - 1  # (1, 0.05)... all but one on the hull
    assert np.array_equal(mask, prior.terms[2].global_context(X))


def test_with_term_replace_and_find():
    lj = _lj()
    well = _well()
    prior = Prior(lj).with_term(well)
    assert prior.terms == [well] and prior.find(LatticeWell) is well
    bigger = prior.with_term(HullPressure(1.0))
    assert len(prior.terms) == 1 and len(bigger.terms) == 2  # with_term leaves the prior alone
    sites = SiteWell(np.array([[0.0, 0.0], [1.0, 0.0]]), well)
    prior.replace(well, sites)
    assert prior.terms == [sites] and prior.find((LatticeWell, SiteWell)) is sites
    assert prior.find(HullPressure) is None
    assert Prior(bigger, [well]).terms == [*bigger.terms, well]  # a prior of a prior is one sum
