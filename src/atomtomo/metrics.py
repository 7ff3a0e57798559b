"""Scoring a reconstruction against the truth: one-to-one matching within a tolerance.

A found atom and a true atom *match* when they are paired one to one and lie within the
tolerance ``T`` of each other. Among all one-to-one pairings we take the one with the most
matches and, among those, the smallest total distance (the Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`, on distances capped above ``T``). Only pairs within
``T`` can match, so the problem splits into the connected components of the graph of such
pairs (found with :class:`scipy.spatial.cKDTree`); each component is solved on its own, which
keeps the cost near-linear for well-separated atoms (thousands of atoms in 3D take well under a
second).

Then ``precision = n_matched / n_found``, ``recall = n_matched / n_true`` and
``f1 = 2 n_matched / (n_found + n_true)``; distances are over the matched pairs, in the unit of
the positions (the data's length unit).

With species on both sides, the *species accuracy* is the fraction of matched pairs whose
species agree, and each species ``s`` has its own precision and recall: a found atom labelled
``s`` counts when it is matched to a true atom of species ``s``, so
``precision_s = n_s(matched, same species) / n_s(found)`` and
``recall_s = n_s(matched, same species) / n_s(true)`` — position and species right together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._checks import positive_number
from .configuration import Configuration
from .errors import InputError

#: The field's usual matching tolerance, in bond lengths: a found atom counts when it lies
#: within 0.1 x the bond length of its true partner (used by every default score).
TOLERANCE_BONDS = 0.1


@dataclass
class MatchResult:
    """The outcome of :func:`match_atoms`.

    Attributes
    ----------
    n_true, n_found, n_matched : int
    precision, recall, f1 : float
    mean_distance, max_distance, rmsd : float
        Over the matched pairs (NaN when nothing matched).
    tolerance : float
    pairs : (n_matched, 2) int ndarray
        ``(found index, true index)`` of every matched pair.
    found_distance : (n_found,) ndarray
        Distance of each found atom to its matched true atom, or to the nearest true atom when
        it is unmatched (inf when there are no true atoms): what plots colour atoms by.
    found_matched : (n_found,) bool ndarray
    true_matched : (n_true,) bool ndarray
    species_accuracy : float or None
        Fraction of matched pairs with the same species, when both sides carry species and
        more than one species name occurs between them.
    median_distance : float
        Median distance over the matched pairs (NaN when nothing matched).
    per_species : dict
        ``{species: {"n_true", "n_found", "n_matched", "precision", "recall"}}`` (matched with
        the same species; see the module docstring), when species accuracy is defined.
    """

    n_true: int
    n_found: int
    n_matched: int
    precision: float
    recall: float
    f1: float
    mean_distance: float
    max_distance: float
    rmsd: float
    tolerance: float
    pairs: np.ndarray = field(repr=False)
    found_distance: np.ndarray = field(repr=False)
    found_matched: np.ndarray = field(repr=False)
    true_matched: np.ndarray = field(repr=False)
    species_accuracy: float | None = None
    median_distance: float = float("nan")
    per_species: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The scalar metrics (what ``atomtomo evaluate --json`` prints)."""
        out = {
            "n_true": self.n_true,
            "n_found": self.n_found,
            "n_matched": self.n_matched,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mean_distance": self.mean_distance,
            "max_distance": self.max_distance,
            "rmsd": self.rmsd,
        }
        out["median_distance"] = self.median_distance
        if self.species_accuracy is not None:
            out["species_accuracy"] = self.species_accuracy
        for name, scores in self.per_species.items():  # flat keys: one table row each
            for key, value in scores.items():
                out[f"{key}_{name}"] = value
        return out


def _positions_and_species(atoms, name):
    if isinstance(atoms, Configuration):
        return atoms.positions, np.asarray(atoms.species, dtype=object)
    pos = np.asarray(atoms, dtype=float)
    if pos.ndim == 1 and pos.size == 0:
        pos = pos.reshape(0, 2)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise InputError(f"{name} positions must have shape (n, 2) or (n, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise InputError(f"{name} positions contain NaN or infinite values")
    return pos, None


def match_pairs(found, truth, tolerance):
    """One-to-one pairs within ``tolerance``: most pairs, then least total distance.

    Parameters
    ----------
    found, truth : (n, d), (m, d) array_like
    tolerance : float

    Returns
    -------
    (k, 2) int ndarray
        ``(found index, true index)`` pairs, sorted by found index.
    """
    found = np.asarray(found, float)
    truth = np.asarray(truth, float)
    if len(found) == 0 or len(truth) == 0:
        return np.zeros((0, 2), int)
    close = cKDTree(found).sparse_distance_matrix(cKDTree(truth), tolerance, output_type="ndarray")
    if len(close) == 0:
        return np.zeros((0, 2), int)
    fi, ti, dist = close["i"], close["j"], close["v"]
    n_f = len(found)
    graph = coo_matrix((np.ones(len(fi)), (fi, n_f + ti)), shape=(n_f + len(truth),) * 2)
    _, label = connected_components(graph, directed=False)
    comp = label[fi]
    # Capped cost: a pair beyond the tolerance costs more than any set of matches could save,
    # so the assignment maximises the number of matches first.
    big = tolerance * (len(fi) + 1) + 1.0
    pairs = []
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    for edges in np.split(order, bounds):  # one small assignment per connected component
        if len(edges) == 1:
            pairs.append([[fi[edges[0]], ti[edges[0]]]])
            continue
        rows, r_inv = np.unique(fi[edges], return_inverse=True)
        cols, c_inv = np.unique(ti[edges], return_inverse=True)
        cost = np.full((len(rows), len(cols)), big)
        cost[r_inv, c_inv] = dist[edges]
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < big
        pairs.append(np.stack([rows[r[ok]], cols[c[ok]]], axis=1))
    pairs = np.vstack(pairs).astype(int)
    return pairs[np.argsort(pairs[:, 0])]


def match_atoms(found, truth, tolerance) -> MatchResult:
    """Match reconstructed atoms to true atoms one to one and score the result.

    Parameters
    ----------
    found, truth : Configuration or (n, d) array_like
        Reconstructed and true atoms (same dimension).
    tolerance : float
        Largest distance at which a pair counts as matched (usually 0.1 x bond length).

    Returns
    -------
    MatchResult

    Examples
    --------
    >>> r = match_atoms([[0.0, 0.0], [1.0, 0.02]], [[0.01, 0.0], [1.0, 0.0], [2.0, 0.0]], 0.1)
    >>> r.n_matched, round(r.f1, 3)
    (2, 0.8)
    """
    f_pos, f_sp = _positions_and_species(found, "found")
    t_pos, t_sp = _positions_and_species(truth, "true")
    if len(f_pos) and len(t_pos) and f_pos.shape[1] != t_pos.shape[1]:
        raise InputError(f"cannot compare {f_pos.shape[1]}D atoms with {t_pos.shape[1]}D atoms")
    tolerance = positive_number(tolerance, "tolerance")

    pairs = match_pairs(f_pos, t_pos, tolerance)
    n_f, n_t, k = len(f_pos), len(t_pos), len(pairs)
    d = np.linalg.norm(f_pos[pairs[:, 0]] - t_pos[pairs[:, 1]], axis=1) if k else np.zeros(0)
    found_distance = np.full(n_f, np.inf)
    if n_t and n_f:
        found_distance = cKDTree(t_pos).query(f_pos)[0]
    found_distance[pairs[:, 0]] = d
    found_matched = np.zeros(n_f, bool)
    found_matched[pairs[:, 0]] = True
    true_matched = np.zeros(n_t, bool)
    true_matched[pairs[:, 1]] = True

    species_accuracy, per_species = None, {}
    if (t_sp is not None and f_sp is not None
            and len(set(t_sp.tolist()) | set(f_sp.tolist())) > 1):
        same = f_sp[pairs[:, 0]] == t_sp[pairs[:, 1]] if k else np.zeros(0, bool)
        species_accuracy = float(np.mean(same)) if k else None
        right = f_sp[pairs[same, 0]] if k else np.zeros(0, object)
        for name in sorted(set(t_sp.tolist()) | set(f_sp.tolist()), key=str):
            n_sf, n_st = int(np.sum(f_sp == name)), int(np.sum(t_sp == name))
            n_sm = int(np.sum(right == name))
            per_species[str(name)] = {
                "n_true": n_st, "n_found": n_sf, "n_matched": n_sm,
                "precision": n_sm / n_sf if n_sf else (1.0 if n_st == 0 else 0.0),
                "recall": n_sm / n_st if n_st else (1.0 if n_sf == 0 else 0.0)}

    nan = float("nan")
    return MatchResult(
        n_true=n_t,
        n_found=n_f,
        n_matched=k,
        precision=k / n_f if n_f else (1.0 if n_t == 0 else 0.0),
        recall=k / n_t if n_t else (1.0 if n_f == 0 else 0.0),
        f1=2 * k / (n_f + n_t) if n_f + n_t else 1.0,
        mean_distance=float(d.mean()) if k else nan,
        max_distance=float(d.max()) if k else nan,
        rmsd=float(np.sqrt(np.mean(d * d))) if k else nan,
        tolerance=tolerance,
        pairs=pairs,
        found_distance=found_distance,
        found_matched=found_matched,
        true_matched=true_matched,
        species_accuracy=species_accuracy,
        median_distance=float(np.median(d)) if k else nan,
        per_species=per_species,
    )
