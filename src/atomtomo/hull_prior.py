r"""A shape prior for 2D crystals: a pressure on the convex hull of the atoms.

With two projection directions every pairing of the two projections' coordinates fits the data
exactly (:mod:`atomtomo.solvers.pair_annealing`), so the prior alone decides. A pair potential
counts bonds, and a crystal with a defect inside has fewer (or more strained) bonds than one
whose defect has been carried out to its outline by a chain of re-pairings: a vacancy filled in
the middle and an atom missing at the edge, an interstitial's coordinates paired into an atom
sitting beyond a corner. Lennard-Jones prefers those; on blind two-angle zone-axis cases they
are most of the remaining misses, and in nearly all of them the wrong configuration's convex
hull is larger than the truth's (the defect's atoms go *out*, past the crystal's facets).

This term charges the area of the convex hull, a 2D pressure on the crystal's envelope:

.. math::

    H(x) = h\,\varepsilon\,\frac{A(x)}{r_m^2}, \qquad
    A = \tfrac12 \sum_k (x_k y_{k+1} - x_{k+1} y_k)

over the hull's vertices in counter-clockwise order, with ``epsilon`` and ``r_m`` the bond
depth and length of the pair potential it is added to, so ``h`` counts bonds per bond length
squared of envelope (a hexagonal crystal has ``0.87 r_m^2`` per atom). It is a physical
statement about nanocrystals -- compact, convex, with their defects inside -- not about a
particular lattice, and it is added to the pair potential, not a replacement for it.

**Gradient.** Only the hull's vertices feel it, along the inward normal of their two edges:

.. math:: \frac{\partial A}{\partial x_k} = \tfrac12 (y_{k+1} - y_{k-1}), \qquad
          \frac{\partial A}{\partial y_k} = \tfrac12 (x_{k-1} - x_{k+1}).

``A`` is continuous everywhere and smooth except where the hull's vertex set changes, where its
gradient jumps (as at the cutoff of a truncated potential without a switch); the local optimiser
copes, and the term is weighted by ``alpha`` like the pair term, so it moves atoms far less than
the data hold them (it breaks ties between configurations that fit equally well).

**Exact changes.** Adding a point ``c`` outside the hull adds the fan of triangles from ``c`` to
every hull edge it sees (``c`` strictly right of the edge, counter-clockwise), a point inside adds
nothing; removing an atom changes the area only if it is a hull vertex, by the area of the hull
of the others minus ``A``.

The hull is global: the energy of a group of atoms depends on atoms at any distance. A local
optimisation that moves some atoms and keeps the others fixed needs, besides the fixed atoms
within the pair potential's reach, the vertices of the fixed atoms' hull (the hull of all atoms
is the hull of the movable ones and those vertices: ``global_context``).

:class:`HullPressure` is a term of the solver's prior (:class:`atomtomo.prior.Prior`), made in
units of the potential's bond by :meth:`HullPressure.in_bonds`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HullPressure", "hull_area", "hull_vertices", "TWO_ANGLE_HULL"]

#: Default ``h`` for two angles along zone axes in 2D with a pair prior (the measurements:
#: docs/decisions/2026-12-07-solver-history.md; :mod:`atomtomo.solvers.zone_axes` tells zone
#: axes from the data).
TWO_ANGLE_HULL = 3.0


def _cross(o0, o1, a0, a1, b0, b1):
    """z-component of ``(a - o) x (b - o)``: positive when ``o, a, b`` turn left."""
    return (a0 - o0) * (b1 - o1) - (a1 - o1) * (b0 - o0)


def _chain(pos):
    """Andrew's monotone chain: indices of the hull's vertices of ``pos`` (n, 2),
    counter-clockwise, without collinear points (fewer than three: no area).

    ``scipy.spatial.ConvexHull`` (qhull) computes the same; this 25-line version exists because
    the pairing annealer needs the area after every proposed swap inside a compiled loop (tens
    of thousands per move), where a Python-level qhull call would dominate (45 us against 3 us
    compiled, for 40 points)."""
    n = pos.shape[0]
    # lexicographic order (x, then y): a stable sort by y, then a stable sort by x
    by_y = np.argsort(pos[:, 1], kind="mergesort")
    order = by_y[np.argsort(pos[by_y, 0], kind="mergesort")]
    hull = np.empty(2 * n, np.int64)
    k = 0
    for t in range(n):  # the lower chain, left to right
        i = order[t]
        while k >= 2 and _cross(pos[hull[k - 2], 0], pos[hull[k - 2], 1], pos[hull[k - 1], 0],
                                pos[hull[k - 1], 1], pos[i, 0], pos[i, 1]) <= 0.0:
            k -= 1
        hull[k] = i
        k += 1
    lower = k + 1
    for t in range(n - 2, -1, -1):  # the upper chain, right to left
        i = order[t]
        while k >= lower and _cross(pos[hull[k - 2], 0], pos[hull[k - 2], 1],
                                    pos[hull[k - 1], 0], pos[hull[k - 1], 1],
                                    pos[i, 0], pos[i, 1]) <= 0.0:
            k -= 1
        hull[k] = i
        k += 1
    k -= 1  # the last point is the first again
    return hull[:k] if k >= 3 else hull[:0]


def _area(pos, vertices):
    """Area of the polygon ``pos[vertices]`` (counter-clockwise: positive)."""
    area = 0.0
    m = vertices.shape[0]
    for t in range(m):
        a, b = vertices[t], vertices[(t + 1) % m]
        area += pos[a, 0] * pos[b, 1] - pos[b, 0] * pos[a, 1]
    return 0.5 * area


def chain_area(pos):
    """Area of the convex hull of ``pos`` (n, 2); a kernel for compiled loops."""
    return _area(pos, _chain(pos)) if pos.shape[0] >= 3 else 0.0


def _area_and_gradient(pos):
    """``A`` and ``dA/dx`` (n, 2) of the convex hull of ``pos`` (the module docstring)."""
    n = pos.shape[0]
    grad = np.zeros((n, 2))
    if n < 3:
        return 0.0, grad
    hull = _chain(pos)
    m = hull.shape[0]
    for t in range(m):
        k, nxt, prv = hull[t], hull[(t + 1) % m], hull[(t - 1 + m) % m]
        grad[k, 0] = 0.5 * (pos[nxt, 1] - pos[prv, 1])
        grad[k, 1] = 0.5 * (pos[prv, 0] - pos[nxt, 0])
    return _area(pos, hull), grad


try:  # compiled with numba when installed (the "fast" extra): the hull is redone every evaluation
    import numba

    _jit = numba.njit(cache=True, nogil=True)
    _cross, _chain, _area = _jit(_cross), _jit(_chain), _jit(_area)
    chain_area, _area_and_gradient = _jit(chain_area), _jit(_area_and_gradient)
except ImportError:  # numba is optional
    pass


def hull_vertices(points) -> np.ndarray:
    """Indices of the convex hull's vertices in counter-clockwise order (empty when the points
    are fewer than three or collinear: then the hull has no area)."""
    x = np.ascontiguousarray(points, dtype=float)
    if len(x) < 3:
        return np.zeros(0, int)
    return np.asarray(_chain(x), dtype=int)


def hull_area(points) -> float:
    """Area of the convex hull of 2D ``points`` (0 for fewer than three or collinear points)."""
    return float(chain_area(np.ascontiguousarray(points, dtype=float)))


class HullPressure:
    """The energy ``H = pressure * A(hull)`` of the module docstring, ``pressure = h eps / r_m^2``.

    Parameters
    ----------
    pressure : float
        Energy per unit area of the hull, in the potential's energy unit per length squared.
    """

    def __init__(self, pressure: float):
        self.pressure = float(pressure)

    @classmethod
    def in_bonds(cls, h: float, potential) -> HullPressure:
        """The pressure of ``h`` bonds per bond length squared of ``potential``:
        ``h epsilon / r_m^2`` (2D only)."""
        return cls(float(h) * potential.epsilon / potential.bond_length ** 2)

    def global_context(self, points) -> np.ndarray:
        """The vertices of the points' convex hull: the atoms whose part in ``H`` reaches atoms
        at any distance."""
        mask = np.zeros(len(points), bool)
        mask[hull_vertices(points)] = True
        return mask

    def energy(self, points) -> float:
        return self.energy_and_gradient(points)[0]

    def energy_and_gradient(self, points):
        area, grad = _area_and_gradient(np.ascontiguousarray(points, dtype=float))
        return self.pressure * float(area), self.pressure * grad

    def atom_energies(self, points) -> np.ndarray:
        """Shares of ``H`` that sum to it: each hull vertex gets half of the two triangles that
        its edges span with the vertices' centroid; atoms inside the hull get nothing."""
        x = np.asarray(points, float)
        out = np.zeros(len(x))
        k = hull_vertices(x)
        if len(k) < 3:
            return out
        v = x[k] - x[k].mean(axis=0)
        nxt = np.roll(v, -1, axis=0)
        tri = 0.5 * (v[:, 0] * nxt[:, 1] - nxt[:, 0] * v[:, 1])  # triangle (centre, k, k+1)
        out[k] = 0.5 * (tri + np.roll(tri, 1))
        return self.pressure * out

    def insertion_energy(self, points, candidates) -> np.ndarray:
        """``pressure * (A(hull(x + c)) - A(hull(x)))`` for each candidate ``c``."""
        x = np.asarray(points, float)
        c = np.asarray(candidates, float).reshape(-1, 2)
        k = hull_vertices(x)
        if len(k) < 3:  # no area yet: the new hull's area, exactly
            return self.pressure * np.array([hull_area(np.vstack([x, p])) for p in c]) \
                if len(x) == 2 else np.zeros(len(c))
        v = x[k]
        e = np.roll(v, -1, axis=0) - v  # edges, counter-clockwise
        # cross(e_k, c - v_k) < 0: c is right of (outside) edge k; that edge's triangle is added
        cross = e[None, :, 0] * (c[:, None, 1] - v[None, :, 1]) \
            - e[None, :, 1] * (c[:, None, 0] - v[None, :, 0])
        return self.pressure * 0.5 * np.sum(np.maximum(-cross, 0.0), axis=1)

    def removal_energy(self, points) -> np.ndarray:
        """``pressure * (A(hull(x without i)) - A(hull(x)))`` for each atom ``i``."""
        x = np.asarray(points, float)
        out = np.zeros(len(x))
        k = hull_vertices(x)
        if len(k) < 3:
            return out
        area = hull_area(x)
        keep = np.ones(len(x), bool)
        for i in k:  # only the hull's vertices change it (a loop over the 4-30 vertices)
            keep[i] = False
            out[i] = hull_area(x[keep]) - area
            keep[i] = True
        return self.pressure * out
