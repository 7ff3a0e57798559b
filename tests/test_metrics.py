"""Scoring: one-to-one matching within a tolerance, and the metrics built on it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomtomo import Configuration
from atomtomo.errors import InputError
from atomtomo.metrics import match_atoms, match_pairs

KEYS = ["n_true", "n_found", "n_matched", "precision", "recall", "f1", "mean_distance",
        "max_distance", "rmsd", "median_distance"]


def test_counts_and_distances():
    truth = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    found = np.array([[0.03, 0.04], [1.0, 0.06], [2.5, 0.0], [9.0, 9.0], [3.0, 0.0]])
    r = match_atoms(found, truth, tolerance=0.1)
    assert (r.n_true, r.n_found, r.n_matched) == (4, 5, 3)
    assert r.precision == pytest.approx(3 / 5) and r.recall == pytest.approx(3 / 4)
    assert r.f1 == pytest.approx(2 * 3 / 9)
    d = np.array([0.05, 0.06, 0.0])
    assert r.mean_distance == pytest.approx(d.mean())
    assert r.max_distance == pytest.approx(0.06)
    assert r.rmsd == pytest.approx(np.sqrt(np.mean(d**2)))
    np.testing.assert_array_equal(r.pairs, [[0, 0], [1, 1], [4, 3]])
    np.testing.assert_array_equal(r.found_matched, [True, True, False, False, True])
    np.testing.assert_array_equal(r.true_matched, [True, True, False, True])
    # unmatched found atoms carry the distance to the nearest true atom (for plots)
    np.testing.assert_allclose(r.found_distance, [0.05, 0.06, 0.5, math.hypot(6, 9), 0.0])
    assert list(r.as_dict()) == KEYS and r.species_accuracy is None
    assert r.tolerance == 0.1


def test_tolerance_edge_is_inclusive():
    truth = np.array([[0.0, 0.0], [10.0, 0.0]])
    found = np.array([[0.5, 0.0], [10.0, 0.5 + 1e-9]])  # exactly at T, and just beyond
    r = match_atoms(found, truth, tolerance=0.5)
    assert r.n_matched == 1
    np.testing.assert_array_equal(r.pairs, [[0, 0]])
    assert r.max_distance == 0.5
    assert match_atoms(found, truth, tolerance=0.5 + 2e-9).n_matched == 2


def test_one_to_one():
    # two found atoms near one true atom: only one can match it
    r = match_atoms([[0.0, 0.01], [0.0, -0.02]], [[0.0, 0.0]], tolerance=0.1)
    assert r.n_matched == 1 and r.precision == 0.5 and r.recall == 1.0
    np.testing.assert_array_equal(r.pairs, [[0, 0]])  # the closer one
    # a chain where taking each found atom's nearest true atom would lose a match:
    # f0 is nearest to t1 but must take t0, so that f1 can take t1
    truth = np.array([[0.0, 0.0], [0.08, 0.0]])
    found = np.array([[0.05, 0.0], [0.14, 0.0]])
    r = match_atoms(found, truth, tolerance=0.07)
    assert r.n_matched == 2
    np.testing.assert_array_equal(r.pairs, [[0, 0], [1, 1]])
    # among matchings of equal size, the least total distance
    truth = np.array([[0.0, 0.0], [0.1, 0.0]])
    found = np.array([[0.09, 0.0], [0.01, 0.0]])
    np.testing.assert_array_equal(match_pairs(found, truth, 0.5), [[0, 1], [1, 0]])


def brute_force(found, truth, tol):
    """(max number of pairs within tol, least total distance among those) by enumeration."""
    nf, nt = len(found), len(truth)
    d = np.linalg.norm(found[:, None] - truth[None], axis=-1) if nf and nt else np.zeros((nf, nt))
    best = (0, 0.0)
    if nf <= nt:
        for perm in itertools.permutations(range(nt), nf):
            ok = [(i, j) for i, j in enumerate(perm) if d[i, j] <= tol]
            key = (len(ok), -sum(d[i, j] for i, j in ok))
            best = max(best, (key[0], key[1]))
    else:
        for perm in itertools.permutations(range(nf), nt):
            ok = [(i, j) for j, i in enumerate(perm) if d[i, j] <= tol]
            key = (len(ok), -sum(d[i, j] for i, j in ok))
            best = max(best, (key[0], key[1]))
    return best[0], -best[1]


small_sets = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=0, max_size=5).map(
    lambda v: np.array(v, dtype=float).reshape(-1, 2))


@settings(max_examples=150, deadline=None)
@given(small_sets, small_sets, st.floats(0.05, 0.6))
def test_matching_is_optimal(found, truth, tol):
    pairs = match_pairs(found, truth, tol)
    k, total = brute_force(found, truth, tol)
    assert len(pairs) == k
    if k:
        d = np.linalg.norm(found[pairs[:, 0]] - truth[pairs[:, 1]], axis=1)
        assert np.all(d <= tol)
        assert d.sum() == pytest.approx(total, abs=1e-9)
        assert len(set(pairs[:, 0])) == k and len(set(pairs[:, 1])) == k


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.sampled_from([2, 3]))
def test_permutation_invariance(seed, n_found, n_true, ndim):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 1, (n_true, ndim))
    found = np.vstack([truth[: n_found // 2] + rng.normal(0, 0.03, (min(n_found // 2, n_true), ndim)),
                       rng.uniform(0, 1, (n_found - min(n_found // 2, n_true), ndim))])
    r = match_atoms(found, truth, 0.08)
    pf, pt = rng.permutation(len(found)), rng.permutation(n_true)
    s = match_atoms(found[pf], truth[pt], 0.08)
    for key in KEYS:
        a, b = r.as_dict()[key], s.as_dict()[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12), key
    # the same atoms are matched (pairs map back through the permutations)
    back = {(pf[i], pt[j]) for i, j in s.pairs}
    d_r = sorted(np.linalg.norm(found[i] - truth[j]) for i, j in r.pairs)
    d_s = sorted(np.linalg.norm(found[i] - truth[j]) for i, j in back)
    np.testing.assert_allclose(d_r, d_s, atol=1e-12)
    np.testing.assert_allclose(s.found_distance, r.found_distance[pf])
    # swapping the roles of found and true swaps precision and recall
    t = match_atoms(truth, found, 0.08)
    assert t.n_matched == r.n_matched
    assert t.precision == pytest.approx(r.recall) and t.recall == pytest.approx(r.precision)


def test_species_accuracy():
    truth = Configuration([[0, 0], [1, 0], [2, 0], [3, 0]], ["Pt", "Pd", "Pt", "Pd"])
    found = Configuration([[0, 0.01], [1, 0.01], [2, 0.01], [7, 7]], ["Pt", "Pt", "Pt", "Pd"])
    r = match_atoms(found, truth, 0.1)
    assert r.n_matched == 3 and r.species_accuracy == pytest.approx(2 / 3)
    assert r.as_dict()["species_accuracy"] == pytest.approx(2 / 3)
    # one species on both sides: no species accuracy; one in the truth but two found (a crop
    # of one species reconstructed with two allowed): the matched atoms' species are scored
    one = Configuration(truth.positions, ["Pt"] * 4)
    assert match_atoms(Configuration(found.positions, ["Pt"] * 4), one, 0.1).species_accuracy is None
    assert match_atoms(found, one, 0.1).species_accuracy == 1.0
    # plain arrays carry no species
    assert match_atoms(found.positions, truth, 0.1).species_accuracy is None


def test_empty_sets():
    none = np.zeros((0, 2))
    some = np.array([[0.0, 0.0], [1.0, 1.0]])
    r = match_atoms(none, some, 0.1)
    assert (r.n_found, r.n_true, r.n_matched) == (0, 2, 0)
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)
    assert math.isnan(r.mean_distance) and math.isnan(r.rmsd) and math.isnan(r.max_distance)
    assert r.pairs.shape == (0, 2) and r.found_distance.shape == (0,)
    r = match_atoms(some, none, 0.1)
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)
    assert np.all(np.isinf(r.found_distance))
    r = match_atoms(none, none, 0.1)
    assert (r.precision, r.recall, r.f1) == (1.0, 1.0, 1.0)
    r = match_atoms([], some, 0.1)  # an empty list is an empty set
    assert r.n_found == 0
    # nothing within the tolerance
    r = match_atoms([[5.0, 5.0]], some, 0.1)
    assert r.n_matched == 0 and r.f1 == 0.0 and math.isnan(r.rmsd)


def test_3000_atoms_in_3d():
    rng = np.random.default_rng(0)
    g = np.arange(15) * 0.25
    truth = np.stack(np.meshgrid(g, g, g[:14], indexing="ij"), -1).reshape(-1, 3)[:3000]
    found = truth + rng.normal(0, 0.01, truth.shape)
    keep = rng.permutation(len(found))[:2950]  # 50 missed
    found = np.vstack([found[keep], rng.uniform(0, 3.5, (30, 3)) + 10.0])  # 30 spurious
    r = match_atoms(found, truth, tolerance=0.05)
    assert r.n_true == 3000 and r.n_found == 2980 and r.n_matched == 2950
    assert r.precision == pytest.approx(2950 / 2980) and r.recall == pytest.approx(2950 / 3000)
    assert r.rmsd == pytest.approx(0.01 * np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(r.pairs[:2950, 1], keep)


@pytest.mark.parametrize("found, truth, tol, fragment", [
    ([[0.0, 0.0]], [[0.0, 0.0, 0.0]], 0.1, "2D atoms with 3D"),
    ([[0.0, 0.0]], [[0.0, 0.0]], 0.0, "tolerance"),
    ([[0.0, 0.0]], [[0.0, 0.0]], -1.0, "tolerance"),
    ([[0.0, 0.0]], [[0.0, 0.0]], float("nan"), "tolerance"),
    ([[0.0, 0.0]], [[0.0, 0.0]], "wide", "tolerance"),
    ([[np.nan, 0.0]], [[0.0, 0.0]], 0.1, "NaN"),
    ([0.0, 0.0, 1.0], [[0.0, 0.0]], 0.1, "shape"),
    ([[0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0]], 0.1, "shape"),
])
def test_bad_input(found, truth, tol, fragment):
    with pytest.raises(InputError, match=fragment):
        match_atoms(found, truth, tol)


def test_per_species_precision_recall_and_species_accuracy():
    from atomtomo.configuration import Configuration

    w = {"Pt": 1.0, "Pd": 0.4}
    truth = Configuration([[0, 0, 0], [3, 0, 0], [6, 0, 0], [9, 0, 0]], ["Pt", "Pt", "Pd", "Pd"], w)
    # one Pd found as Pt, one Pd missed, one spurious Pd, positions 0.01-0.03 off
    found = Configuration([[0.01, 0, 0], [3.02, 0, 0], [6.03, 0, 0], [20, 0, 0]],
                          ["Pt", "Pt", "Pt", "Pd"], w)
    r = match_atoms(found, truth, 0.3)
    assert r.n_matched == 3 and r.species_accuracy == pytest.approx(2 / 3)
    assert r.median_distance == pytest.approx(0.02)
    d = r.as_dict()
    assert d["precision_Pt"] == pytest.approx(2 / 3) and d["recall_Pt"] == 1.0
    assert d["precision_Pd"] == 0.0 and d["recall_Pd"] == 0.0
    assert d["n_true_Pd"] == 2 and d["n_found_Pd"] == 1
    # a truth of one species with a found atom of another: species accuracy is still reported
    r1 = match_atoms(Configuration([[0, 0, 0]], ["Pt"], w), Configuration([[0, 0, 0]], ["Pd"], w),
                     0.3)
    assert r1.species_accuracy == 0.0
    # positions only: no species keys
    assert "species_accuracy" not in match_atoms([[0, 0]], [[0, 0]], 0.1).as_dict()
