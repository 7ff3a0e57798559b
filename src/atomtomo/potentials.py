r"""Energy priors that pull reconstructions toward physical atomic configurations.

Every prior is a :class:`Potential`: a function ``V(x, s)`` of the positions ``x`` (``(n, d)``,
``d`` = 2 or 3) and species ``s`` of the atoms, with the operations a solver needs:

* :meth:`Potential.energy_and_gradient` -- ``V`` and ``dV/dx`` for continuous moves;
* :meth:`Potential.atom_energies` -- ``V`` split into per-atom shares (half of each pair energy to
  each atom of the pair), to find the atoms that fit worst;
* :meth:`Potential.insertion_energy` -- the exact change of ``V`` from adding *one* atom at each of
  ``m`` candidate points, vectorised (``m`` is a grid of thousands of points);
* :meth:`Potential.removal_energy` -- the exact change of ``V`` from removing each atom alone;
* the attributes ``epsilon`` (depth of one bond, a positive energy that makes the weight of the
  prior dimensionless, see :mod:`atomtomo.solvers.objective`) and ``bond_length``.

Potentials:

* :class:`NoPotential` -- ``V = 0``;
* :class:`LennardJones` -- a pair potential with its minimum at the bond length, a smooth cutoff
  and a soft core so that overlapping (even coincident) atoms have a finite energy;
* :class:`EMTPotential` -- ASE's effective-medium theory for the fcc metals Al Cu Ag Au Ni Pd Pt
  (3D, eV), with exact vectorised insertion and removal energies.

:func:`make_potential` builds one by name; :func:`nearest_neighbour_distance` estimates a bond
length from a configuration. Neighbour lists use :class:`scipy.spatial.cKDTree`, so the cost of
every operation is linear in the number of atoms (and candidates).
"""

from __future__ import annotations

import inspect
from collections import Counter
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from ._checks import positive_number as _positive
from .errors import InputError

__all__ = [
    "Potential",
    "PairPotential",
    "NoPotential",
    "LennardJones",
    "EMTPotential",
    "EMT_ELEMENTS",
    "POTENTIALS",
    "make_potential",
    "nearest_neighbour_distance",
]


# -- input checks ---------------------------------------------------------------------------------
def _as_positions(positions, name="positions", ndim=None) -> np.ndarray:
    x = np.asarray(positions, dtype=float)
    if x.ndim != 2 or x.shape[1] not in (2, 3):
        raise InputError(f"{name} must have shape (n, 2) or (n, 3), got {x.shape}")
    if ndim is not None and x.shape[1] != ndim:
        raise InputError(f"{name} are {x.shape[1]}D but the atoms are {ndim}D")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} contain NaN or infinite values")
    return x


def nearest_neighbour_distance(positions) -> float:
    """Median distance from each atom to its nearest neighbour: an estimate of the bond length.

    Parameters
    ----------
    positions : (n, d) array_like
        At least two atoms.

    Returns
    -------
    float
    """
    x = _as_positions(positions)
    if len(x) < 2:
        raise InputError("need at least 2 atoms to estimate a nearest-neighbour distance")
    dist, _ = cKDTree(x).query(x, k=2)
    return float(np.median(dist[:, 1]))


def bond_length_estimate(positions) -> float | None:
    """:func:`nearest_neighbour_distance`, or None when there are fewer than 2 atoms or it is 0
    (for defaults that can do without one)."""
    if len(positions) < 2:
        return None
    return nearest_neighbour_distance(positions) or None


# -- interface -------------------------------------------------------------------------------------
class Potential:
    """An energy ``V(x, s)`` of atoms at positions ``x`` with species ``s``.

    Attributes
    ----------
    epsilon : float
        Depth of one bond (energy of one pair at its minimum, a positive number; 0 for no prior).
    bond_length : float or None
        Distance of the bond's minimum, in the positions' length unit.
    """

    epsilon: float = 0.0
    bond_length: float | None = None

    def energy_and_gradient(self, positions, species=None) -> tuple[float, np.ndarray]:
        """Energy ``V`` and its gradient ``dV/dx`` of shape ``(n, d)``."""
        raise NotImplementedError

    def energy(self, positions, species=None) -> float:
        """Energy ``V`` alone."""
        return float(np.sum(self.atom_energies(positions, species)))

    def atom_energies(self, positions, species=None) -> np.ndarray:
        """Per-atom shares ``(n,)`` of ``V``; they sum to ``V``."""
        raise NotImplementedError

    def global_context(self, positions) -> np.ndarray | None:
        """Atoms of ``positions`` whose part in ``V`` reaches other atoms at any distance: a
        boolean mask, or None when ``V`` only couples atoms within a cutoff (a local
        relaxation keeps them as fixed context however far they are)."""
        return None

    def insertion_energy(self, positions, candidates, species=None,
                         candidate_species=None) -> np.ndarray:
        """``V(x + one atom at candidate k) - V(x)`` for each of the ``m`` candidates: ``(m,)``.

        ``candidate_species`` is one species for all candidates or one per candidate.
        """
        raise NotImplementedError

    def removal_energy(self, positions, species=None) -> np.ndarray:
        """``V(x without atom i) - V(x)`` for each atom ``i``: ``(n,)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bond_length={self.bond_length}, epsilon={self.epsilon})"


class NoPotential(Potential):
    """No prior: every energy is zero (``epsilon = 0``)."""

    def __init__(self, bond_length=None):
        self.bond_length = None if bond_length is None else float(bond_length)
        self.epsilon = 0.0

    def energy_and_gradient(self, positions, species=None):
        x = _as_positions(positions)
        return 0.0, np.zeros_like(x)

    def atom_energies(self, positions, species=None):
        return np.zeros(len(_as_positions(positions)))

    def insertion_energy(self, positions, candidates, species=None, candidate_species=None):
        x = _as_positions(positions)
        return np.zeros(len(_as_positions(candidates, "candidates", x.shape[1])))

    def removal_energy(self, positions, species=None):
        return np.zeros(len(_as_positions(positions)))


# -- pair potentials -------------------------------------------------------------------------------
class PairPotential(Potential):
    r"""``V = sum_{i<j} phi(r_ij)`` with a finite range ``cutoff_radius``.

    Subclasses define :meth:`pair_terms`, returning ``phi(r)`` and ``phi'(r)/r`` as functions of
    ``r^2``; this class does the neighbour lists and the bookkeeping. With the pair vector
    ``d_ij = x_i - x_j`` and ``r = |d_ij|``, ``dr/dx_i = d_ij / r``, so

    .. math:: \frac{\partial V}{\partial x_i} = \sum_{j} \frac{\phi'(r_{ij})}{r_{ij}}\, d_{ij},

    which is why ``phi'(r)/r`` (not ``phi'``) is the useful quantity: it stays finite at ``r = 0``
    for a core that is a polynomial in ``r^2``. Per-atom energies give half of each pair energy to
    each atom; removing atom ``i`` changes ``V`` by ``-sum_j phi(r_ij)`` = ``-2 e_i``; adding an
    atom at ``c`` changes it by ``sum_j phi(|c - x_j|)``.
    """

    cutoff_radius: float = 0.0

    def pair_terms(self, r2):
        """``(phi, phi'/r)`` at squared distances ``r2`` (any shape)."""
        raise NotImplementedError

    def pair_energy(self, r):
        """``phi(r)`` at distances ``r`` (for plots and checks)."""
        r = np.asarray(r, dtype=float)
        return self.pair_terms(r * r)[0]

    def _pairs(self, x):
        """Pairs ``i < j`` closer than the cutoff, and their vectors ``x_i - x_j``."""
        if len(x) < 2:
            return np.zeros((0, 2), dtype=np.intp), np.zeros((0, x.shape[1]))
        pairs = cKDTree(x).query_pairs(self.cutoff_radius, output_type="ndarray")
        return pairs, x[pairs[:, 0]] - x[pairs[:, 1]]

    def energy_and_gradient(self, positions, species=None):
        x = _as_positions(positions)
        pairs, d = self._pairs(x)
        phi, dphi_r = self.pair_terms(np.einsum("ij,ij->i", d, d))
        f = dphi_r[:, None] * d  # dV/dx_i of each pair; -f for x_j
        grad = np.zeros_like(x)
        for k in range(x.shape[1]):  # loop over the 2-3 coordinates, not atoms
            grad[:, k] = (np.bincount(pairs[:, 0], f[:, k], len(x))
                          - np.bincount(pairs[:, 1], f[:, k], len(x)))
        return float(phi.sum()), grad

    def energy(self, positions, species=None):
        x = _as_positions(positions)
        _, d = self._pairs(x)
        return float(self.pair_terms(np.einsum("ij,ij->i", d, d))[0].sum())

    def atom_energies(self, positions, species=None):
        x = _as_positions(positions)
        pairs, d = self._pairs(x)
        half = 0.5 * self.pair_terms(np.einsum("ij,ij->i", d, d))[0]
        return np.bincount(pairs[:, 0], half, len(x)) + np.bincount(pairs[:, 1], half, len(x))

    def insertion_energy(self, positions, candidates, species=None, candidate_species=None):
        x = _as_positions(positions)
        c = _as_positions(candidates, "candidates", x.shape[1])
        if len(x) == 0 or len(c) == 0:
            return np.zeros(len(c))
        # all (candidate, atom) pairs within the cutoff, zero distances included
        hits = cKDTree(c).sparse_distance_matrix(cKDTree(x), self.cutoff_radius,
                                                 output_type="ndarray")
        phi = self.pair_terms(hits["v"] ** 2)[0]
        return np.bincount(hits["i"], phi, len(c))

    def removal_energy(self, positions, species=None):
        return -2.0 * self.atom_energies(positions, species)


class LennardJones(PairPotential):
    r"""Lennard-Jones pair potential with a smooth cutoff and a soft core.

    **Energy.** Written with the position ``r_m`` of the minimum and its depth ``epsilon``
    instead of ASE's ``sigma = r_m / 2^{1/6}``:

    .. math:: V(r) = \varepsilon \left[ \left(\frac{r_m}{r}\right)^{12}
                     - 2 \left(\frac{r_m}{r}\right)^{6} \right],
              \qquad V(r_m) = -\varepsilon, \quad V'(r_m) = 0 .

    **Force.** With ``u = (r_m / r)^2``, ``V = eps (u^6 - 2 u^3)`` and

    .. math:: \frac{V'(r)}{r} = \frac{12 \varepsilon}{r^2} \left( u^3 - u^6 \right),

    and the gradient of ``V`` with respect to ``x_i`` is ``sum_j (V'(r_ij)/r_ij) (x_i - x_j)``
    (see :class:`PairPotential`); the force is minus the gradient.

    **Cutoff.** Truncating ``V`` at ``r_c`` makes the energy jump by ``V(r_c)``; shifting it
    (``V - V(r_c)``) makes the force jump by ``V'(r_c)``; the shifted-force form
    ``V - V(r_c) - (r - r_c) V'(r_c)`` is continuous but moves the minimum off ``r_m`` and makes
    it shallower than ``epsilon`` (by 12% at ``r_c = 2 r_m``). Instead the potential is multiplied
    by a switch ``S`` that leaves it unchanged up to ``r_on = max(r_c - w r_m, r_m)``:

    .. math:: \phi(r) = V(r)\, S(t), \quad t = \frac{r - r_{on}}{r_c - r_{on}}, \quad
              S = 1 - 10 t^3 + 15 t^4 - 6 t^5 \;\; (0 \le t \le 1),

    with ``S = 1`` below ``r_on`` and ``0`` above ``r_c``. ``S(0) = 1``, ``S(1) = 0`` and
    ``S' = -30 t^2 (1 - t)^2 / (r_c - r_on)`` and ``S''`` vanish at both ends, so
    ``phi' = V' S + V S'`` is continuous: ``V'`` at ``r_on`` and ``0`` at ``r_c`` (so are the
    energy and, with the quintic, the curvature that quasi-Newton methods model). Because
    ``r_on >= r_m``, the minimum stays at ``r_m`` with depth ``epsilon``: beyond ``r_m``,
    ``V' > 0``, ``V < 0`` and ``S' <= 0``, so ``phi' > 0``. This is the smooth-cutoff idea of
    ASE's ``LennardJones(smooth=True)`` (after HOOMD-blue), with the switch acting in ``r``.

    **Soft core.** ``V`` grows as ``r^{-12}`` and is infinite for coincident atoms, which a
    reconstruction produces when it adds an atom on top of another. Below ``r_s`` the potential
    continues as a polynomial in ``r^2``,

    .. math:: \phi(r) = A - B r^2, \quad B = -\frac{V'(r_s)}{2 r_s}, \quad A = V(r_s) + B r_s^2
              \qquad (r < r_s),

    matched in value and slope at ``r_s`` (``V'(r_s) < 0``, so ``B > 0``: the core keeps
    repelling). Then ``phi'(r)/r = -2B`` is constant, the gradient ``-2B (x_i - x_j)`` is linear
    in the pair vector and exactly zero for coincident atoms (where its direction is undefined),
    and ``phi(0) = A`` is finite: ``A = 3044 eps`` for ``r_s = 0.6 r_m`` (and
    ``V(0.6 r_m) = 417 eps``, far above anything a physical configuration reaches: ``V(0.8 r_m)
    = 7 eps``).

    Parameters
    ----------
    bond_length : float
        ``r_m``, the distance of the minimum, in the positions' length unit.
    epsilon : float
        Depth of the minimum (energy of one bond).
    cutoff : float
        ``r_c / r_m``. The default 2.0 keeps the first neighbour shells of the square (``sqrt 2``),
        hexagonal and fcc (``sqrt 3``) lattices and cuts a tail worth ``|V(2 r_m)| = 0.03 eps``,
        while an fcc crystal has 42 neighbours per atom closer than ``r_c``, so the cost stays
        small and linear in ``n``.
    soft_core : float
        ``r_s / r_m``, in (0, 1).
    switch_width : float
        ``(r_c - r_on) / r_m``, the width of the switching region (clipped so ``r_on >= r_m``).
    """

    def __init__(self, bond_length, epsilon=1.0, cutoff=2.0, soft_core=0.6, switch_width=0.5):
        self.bond_length = _positive(bond_length, "bond_length")
        self.epsilon = _positive(epsilon, "epsilon")
        cutoff = _positive(cutoff, "cutoff")
        if cutoff <= 1.0:
            raise InputError(f"cutoff must exceed 1 (it is in units of bond_length), got {cutoff}")
        soft_core = _positive(soft_core, "soft_core")
        if soft_core >= 1.0:
            raise InputError(f"soft_core must be below 1 (units of bond_length), got {soft_core}")
        switch_width = _positive(switch_width, "switch_width")
        rm = self.bond_length
        self.cutoff, self.soft_core, self.switch_width = cutoff, soft_core, switch_width
        self.cutoff_radius = cutoff * rm
        self.switch_radius = max(self.cutoff_radius - switch_width * rm, rm)
        self.core_radius = soft_core * rm
        v_s, dv_r_s = self._lj(np.array(self.core_radius ** 2))
        self._core_b = -0.5 * float(dv_r_s)  # B = -V'(r_s) / (2 r_s)
        self._core_a = float(v_s) + self._core_b * self.core_radius ** 2

    def _lj(self, r2):
        """Plain LJ ``(V, V'/r)`` at squared distances ``r2 > 0``."""
        u3 = (self.bond_length ** 2 / r2) ** 3
        u6 = u3 * u3
        return self.epsilon * (u6 - 2.0 * u3), 12.0 * self.epsilon * (u3 - u6) / r2

    def pair_terms(self, r2):
        r2 = np.asarray(r2, dtype=float)
        phi = np.zeros(r2.shape)
        dphi_r = np.zeros(r2.shape)
        core = r2 < self.core_radius ** 2
        phi[core] = self._core_a - self._core_b * r2[core]
        dphi_r[core] = -2.0 * self._core_b
        mid = ~core & (r2 < self.cutoff_radius ** 2)
        v, dv_r = self._lj(r2[mid])
        r = np.sqrt(r2[mid])
        width = self.cutoff_radius - self.switch_radius
        t = np.clip((r - self.switch_radius) / width, 0.0, 1.0)
        s = 1.0 - t ** 3 * (10.0 - 15.0 * t + 6.0 * t * t)
        ds = -30.0 * t * t * (1.0 - t) ** 2 / width
        phi[mid] = v * s
        dphi_r[mid] = dv_r * s + v * ds / r
        return phi, dphi_r

    def __repr__(self) -> str:
        return (f"LennardJones(bond_length={self.bond_length}, epsilon={self.epsilon}, "
                f"cutoff={self.cutoff}, soft_core={self.soft_core})")


# -- effective-medium theory -----------------------------------------------------------------------
#: Elements with EMT parameters fitted for real use (ASE's extra H C N O are "not for serious use").
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")


class _EMTTables:
    """ASE's EMT parameters and cutoff for the supported elements, as arrays (eV, Angstrom).

    Everything is taken from :mod:`ase.calculators.emt` (``parameters``, ``beta``) with the same
    unit conversions and the same cutoff rule (``asap_cutoff=False``: the cutoff comes from the
    largest Wigner-Seitz radius of the whole parameter table).
    """

    def __init__(self):
        from ase.calculators import emt
        from ase.units import Bohr

        beta = float(emt.beta)
        p = np.array([emt.parameters[e] for e in EMT_ELEMENTS], dtype=float)
        self.beta = beta
        self.E0 = p[:, 0]
        self.s0 = p[:, 1] * Bohr
        self.V0 = p[:, 2]
        self.eta2 = p[:, 3] / Bohr
        self.kappa = p[:, 4] / Bohr
        self.lam = p[:, 5] / Bohr
        self.n0 = p[:, 6] / Bohr ** 3
        maxseq = max(par[1] for par in emt.parameters.values()) * Bohr
        r1nn = beta * maxseq
        self.rc = r1nn * 0.5 * (np.sqrt(3.0) + 2.0)
        self.acut = np.log(1.0 / 1e-4 - 1.0) / (2.0 * r1nn - self.rc)
        self.rc_list = self.rc + 0.5
        # gamma1, gamma2 normalise sigma1, sigma2 to their values in the perfect fcc crystal
        n = np.array([12.0, 6.0, 24.0])
        r = beta * self.s0[:, None] * np.sqrt([1.0, 2.0, 3.0])[None, :]
        w = 1.0 / (1.0 + np.exp(self.acut * (r - self.rc)))
        x = n * w / 12.0
        dr = r - beta * self.s0[:, None]
        gamma1 = np.sum(x * np.exp(-self.eta2[:, None] * dr), axis=1)
        gamma2 = np.sum(x * np.exp(-self.kappa[:, None] / beta * dr), axis=1)
        self.inv12gamma1 = 1.0 / (12.0 * gamma1)
        self.pair_prefactor = -0.5 * self.V0 / gamma2

    def directed(self, a, o, r):
        """Terms of the directed pair (self ``a``, other ``o``) at distance ``r``.

        Returns ``dsigma1`` (contribution of ``o`` to ``sigma1`` of ``a``), its ``r`` derivative,
        ``es`` (the pair-energy share of ``a``'s ``E_AS`` term; ``phi_ij = es(i,j) + es(j,i)``) and
        its ``r`` derivative.
        """
        beta = self.beta
        w = 1.0 / (1.0 + np.exp(self.acut * (r - self.rc)))
        dlogw = self.acut * (w - 1.0)  # (dw/dr) / w
        chi = self.n0[o] / self.n0[a]
        sig1 = np.exp(-self.eta2[o] * (r - beta * self.s0[o])) * chi * w
        es = self.pair_prefactor[a] * np.exp(-self.kappa[o] * (r / beta - self.s0[o])) * chi * w
        return sig1, sig1 * (dlogw - self.eta2[o]), es, es * (dlogw - self.kappa[o] / beta)

    def embedding(self, sigma1, z, has_neighbours):
        """``E_c(sigma1) - E0`` of atoms of species ``z`` and ``dE_c/dsigma1``.

        An atom without neighbours has energy ``-E0`` (ASE skips it), i.e. EMT energies are
        relative to the bulk crystal, where ``E_c = E0``.
        """
        beta = self.beta
        e0, lam, kappa, v0 = self.E0[z], self.lam[z], self.kappa[z], self.V0[z]
        sig = np.where(has_neighbours, sigma1, 1.0)
        ds = -np.log(sig * self.inv12gamma1[z]) / (beta * self.eta2[z])
        el = np.exp(-lam * ds)
        ek = 6.0 * v0 * np.exp(-kappa * ds)
        e = e0 * (1.0 + lam * ds) * el + ek - e0
        de_dds = -e0 * lam * lam * ds * el - kappa * ek
        de_dsig = de_dds / (-beta * self.eta2[z] * sig)
        return np.where(has_neighbours, e, -e0), np.where(has_neighbours, de_dsig, 0.0)


@lru_cache(maxsize=None)
def _emt_tables() -> _EMTTables:
    return _EMTTables()


@lru_cache(maxsize=None)
def emt_reference(element: str) -> dict:
    """Bulk fcc reference of ``element`` under ASE's EMT, computed once and cached.

    Returns a dict with ``lattice_constant`` and ``nearest_neighbour`` (Angstrom) at the EMT
    equilibrium, ``cohesive_energy`` (eV per atom, isolated atom minus bulk, positive) and
    ``bond_energy`` = ``cohesive_energy / 6`` (each atom has 12 bonds, each shared by 2 atoms).
    """
    from ase import Atoms
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from scipy.optimize import minimize_scalar

    tables = _emt_tables()
    z = EMT_ELEMENTS.index(element)
    a0 = tables.beta * tables.s0[z] * np.sqrt(2.0)  # EMT's fcc lattice constant by construction

    def e_bulk(a):
        atoms = bulk(element, "fcc", a=a)
        atoms.calc = EMT()
        return atoms.get_potential_energy()

    res = minimize_scalar(e_bulk, bounds=(0.95 * a0, 1.05 * a0), method="bounded",
                          options={"xatol": 1e-6 * a0})
    atom = Atoms(element)
    atom.calc = EMT()
    e_coh = float(atom.get_potential_energy() - res.fun)
    return {"lattice_constant": float(res.x), "nearest_neighbour": float(res.x / np.sqrt(2.0)),
            "cohesive_energy": e_coh, "bond_energy": e_coh / 6.0}


class EMTPotential(Potential):
    r"""Effective-medium theory (ASE's EMT) for the fcc metals Al Cu Ag Au Ni Pd Pt, 3D only.

    **Energy** (Jacobsen, Stoltze, Norskov, Surf. Sci. 366, 394 (1996); ASE's formulation).
    Each atom ``i`` sees the neighbour density ``sigma1_i = sum_j chi_ij exp(-eta2_j (r_ij -
    beta s0_j)) w(r_ij)``, with ``w`` a logistic cutoff between the 3rd and 4th fcc shells; its
    energy is

    .. math:: E_i = E_c(s_i) - E_0 + \tfrac12 \sum_j \left[ e_{ij} + e_{ji} \right], \qquad
              s_i = -\frac{\ln(\sigma_{1,i} / 12\gamma_1)}{\beta \eta_2},

    ``E_c(s) = E0 (1 + lambda s) exp(-lambda s) + 6 V0 exp(-kappa s)`` (cohesive function) and
    ``e_ij = -V0_i / (2 gamma2_i) chi_ij exp(-kappa_j (r_ij / beta - s0_j)) w(r_ij)``
    (atomic-sphere correction, a pair term). Energies are in eV and relative to the bulk crystal
    (ASE/ASAP convention): an atom in perfect bulk has ``E_i = 0`` and an isolated atom ``-E0 > 0``
    (the cohesive energy), so adding an atom lowers ``V`` only at sites with a bulk-like
    neighbourhood, unlike :class:`LennardJones` whose isolated atom has energy 0.

    **Gradient.** ``dV/dx = sum over pairs of dV/dr_ij (x_i - x_j)/r_ij`` with
    ``dV/dr_ij = E_c'(sigma1_i) dsigma1_i/dr + E_c'(sigma1_j) dsigma1_j/dr + de_ij/dr +
    de_ji/dr``; it equals ``-forces`` of :class:`ase.calculators.emt.EMT`.

    **Insertion and removal.** Adding atom ``c`` changes only ``c``'s own energy, the pair terms
    ``e_ci + e_ic`` and ``sigma1`` of its neighbours ``i`` (``r < rc_list`` = 5.9 A):

    .. math:: \Delta V = E_c(\sigma_{1,c}) - E_{0,c} + \sum_{i \in N(c)} \left[ e_{ci} + e_{ic}
              + F_i(\sigma_{1,i} + \delta\sigma_{1,i}) - F_i(\sigma_{1,i}) \right]

    with ``F_i = E_c - E0`` (``-E0`` without neighbours). Removal is the same with the signs
    flipped. Both are exact (equal to energy differences from ASE to rounding) and vectorised over
    candidate-atom pairs: cost ``O(n k + m k)`` for ``n`` atoms, ``m`` candidates and ``k``
    neighbours within 5.9 A (54 in bulk Pt), i.e. milliseconds for thousands of candidates,
    where calling ASE once per candidate would take ~ 0.5 ms per atom per candidate.

    **Units.** EMT works in Angstrom. With ``bond_length`` given (the nearest-neighbour distance
    of the data, in the data's unit), positions are scaled by ``s = r_nn / bond_length`` before
    EMT, where ``r_nn`` is the reference element's EMT nearest-neighbour distance, and the
    gradient is multiplied by ``s``; without it, positions are taken to be in Angstrom.

    Parameters
    ----------
    species_map : dict, optional
        Maps species names of the data to EMT elements, e.g. ``{"X": "Pt"}``. Names not in the
        map must be EMT elements themselves.
    element : str, optional
        Reference element for ``epsilon`` and the length scale, and the species of all atoms
        when ``species`` is not given. Default: the most common target of ``species_map``, else
        the first of ``species``, else the dominant species of the first configuration evaluated.
    bond_length : float, optional
        Nearest-neighbour distance in the data's length unit (see Units).
    species : sequence of str, optional
        Species names the data can contain; used to choose the reference element.
    engine : {"numpy", "ase"}
        ``"numpy"`` (default): the vectorised formulas above, ``O(n)``; ``"ase"``: ASE's
        :class:`~ase.calculators.emt.EMT` calculator (a Python loop over atoms, ~ 0.5 ms per
        atom), for checking. Insertion/removal energies always use the vectorised formulas.

    Attributes
    ----------
    epsilon : float
        Cohesive energy per bond of the reference element, ``|E_coh| / 6`` (12 neighbours, each
        bond shared by 2 atoms), from an EMT bulk calculation (cached): 0.98 eV for Pt.
    """

    def __init__(self, species_map=None, element=None, bond_length=None, species=None,
                 engine="numpy"):
        self.species_map = {str(k): str(v) for k, v in dict(species_map or {}).items()}
        for name, target in self.species_map.items():
            self._check_element(target, f"species_map[{name!r}]")
        if engine not in ("numpy", "ase"):
            raise InputError(f"engine must be 'numpy' or 'ase', got {engine!r}")
        self.engine = engine
        self._bond_length = None if bond_length is None else _positive(bond_length, "bond_length")
        self._element = None
        if element is not None:
            self._element = self._check_element(str(element), "element")
        elif self.species_map:
            self._element = Counter(self.species_map.values()).most_common(1)[0][0]
        elif species is not None and len(species):
            self._element = self._elements(np.asarray(list(species), dtype=object))[0]

    # -- species and units ---------------------------------------------------------------------
    @staticmethod
    def _check_element(name, what="species"):
        if name not in EMT_ELEMENTS:
            raise InputError(
                f"{what} {name!r} is not supported by EMT (supported: {' '.join(EMT_ELEMENTS)}); "
                "pass species_map, e.g. {'X': 'Pt'}"
            )
        return name

    def _elements(self, species) -> list:
        names = [self.species_map.get(str(s), str(s)) for s in np.unique(species)]
        for name in names:
            self._check_element(name)
        return names

    def _species_index(self, species, n) -> np.ndarray:
        """Indices into :data:`EMT_ELEMENTS` for ``n`` atoms."""
        if species is None:
            if self._element is None:
                raise InputError("EMTPotential needs the atoms' species or element=")
            return np.full(n, EMT_ELEMENTS.index(self._element), dtype=np.intp)
        sp = np.asarray(species, dtype=object).reshape(-1)
        if len(sp) == 1 and n != 1:
            sp = np.repeat(sp, n)
        if len(sp) != n:
            raise InputError(f"{len(sp)} species for {n} atoms")
        names, inverse = np.unique(sp.astype(str), return_inverse=True)
        codes = np.array([EMT_ELEMENTS.index(e) for e in self._elements(names)], dtype=np.intp)
        z = codes[inverse]
        if self._element is None and n:
            self._element = EMT_ELEMENTS[np.bincount(z).argmax()]  # dominant species, frozen
        return z

    def _reference(self) -> dict:
        if self._element is None:
            raise InputError(
                "EMTPotential needs element= or species_map (or species=) to define epsilon "
                "before any configuration is evaluated"
            )
        return emt_reference(self._element)

    @property
    def element(self):
        return self._element

    @property
    def epsilon(self) -> float:
        return self._reference()["bond_energy"]

    @property
    def bond_length(self) -> float:
        if self._bond_length is not None:
            return self._bond_length
        return self._reference()["nearest_neighbour"]

    @property
    def scale(self) -> float:
        """Angstrom per data length unit."""
        if self._bond_length is None:
            return 1.0
        return self._reference()["nearest_neighbour"] / self._bond_length

    def _setup(self, positions, species):
        x = _as_positions(positions)
        if x.shape[1] != 3:
            raise InputError("the EMT potential needs 3D positions")
        z = self._species_index(species, len(x))
        return x * self.scale, z

    # -- shared pieces -------------------------------------------------------------------------
    def _state(self, xa, z):
        """Pairs within the EMT range and every atom's ``sigma1`` and neighbour count."""
        t = _emt_tables()
        n = len(xa)
        pairs = cKDTree(xa).query_pairs(t.rc_list, output_type="ndarray") if n > 1 else \
            np.zeros((0, 2), dtype=np.intp)
        d = xa[pairs[:, 0]] - xa[pairs[:, 1]]
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        keep = r < t.rc_list  # ASE's strict inequality
        pairs, d, r = pairs[keep], d[keep], r[keep]
        i, j = pairs[:, 0], pairs[:, 1]
        s_ij, ds_ij, e_ij, de_ij = t.directed(z[i], z[j], r)  # terms seen by i
        s_ji, ds_ji, e_ji, de_ji = t.directed(z[j], z[i], r)  # terms seen by j
        sigma1 = np.bincount(i, s_ij, n) + np.bincount(j, s_ji, n)
        count = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
        return dict(i=i, j=j, d=d, r=r, s_ij=s_ij, s_ji=s_ji, ds_ij=ds_ij, ds_ji=ds_ji,
                    pair=e_ij + e_ji,
                    dpair=de_ij + de_ji, sigma1=sigma1, count=count)

    def _atom_energies(self, z, st):
        n = len(z)
        emb, deds = _emt_tables().embedding(st["sigma1"], z, st["count"] > 0)
        half = 0.5 * st["pair"]
        return emb + np.bincount(st["i"], half, n) + np.bincount(st["j"], half, n), deds

    # -- interface -----------------------------------------------------------------------------
    def energy_and_gradient(self, positions, species=None):
        xa, z = self._setup(positions, species)
        if self.engine == "ase":
            e, grad = self._ase_energy_and_gradient(xa, z)
            return e, grad * self.scale
        st = self._state(xa, z)
        energies, deds = self._atom_energies(z, st)
        de_dr = deds[st["i"]] * st["ds_ij"] + deds[st["j"]] * st["ds_ji"] + st["dpair"]
        r = st["r"]
        coef = np.divide(de_dr, r, out=np.zeros_like(r), where=r > 0)  # r = 0: no direction
        f = coef[:, None] * st["d"]
        grad = np.zeros_like(xa)
        for k in range(3):
            grad[:, k] = (np.bincount(st["i"], f[:, k], len(xa))
                          - np.bincount(st["j"], f[:, k], len(xa)))
        return float(energies.sum()), grad * self.scale

    def _ase_energy_and_gradient(self, xa, z):
        from ase import Atoms
        from ase.calculators.emt import EMT

        atoms = Atoms([EMT_ELEMENTS[k] for k in z], positions=xa)
        atoms.calc = EMT()
        with np.errstate(invalid="ignore", divide="ignore"):  # ASE divides by r = 0
            e = float(atoms.get_potential_energy())
            grad = -atoms.get_forces()
        grad[~np.all(np.isfinite(grad), axis=1)] = 0.0  # coincident atoms: no direction
        return e, grad

    def energy(self, positions, species=None):
        return float(np.sum(self.atom_energies(positions, species)))

    def atom_energies(self, positions, species=None):
        xa, z = self._setup(positions, species)
        return self._atom_energies(z, self._state(xa, z))[0]

    def insertion_energy(self, positions, candidates, species=None, candidate_species=None):
        xa, z = self._setup(positions, species)
        c = _as_positions(candidates, "candidates", 3) * self.scale
        m = len(c)
        if m == 0:
            return np.zeros(0)
        zc = self._species_index(candidate_species, m)  # None: the reference element
        t = _emt_tables()
        st = self._state(xa, z)
        if len(xa):
            hits = cKDTree(c).sparse_distance_matrix(cKDTree(xa), t.rc_list, output_type="ndarray")
            hits = hits[hits["v"] < t.rc_list]
        else:
            hits = np.zeros(0, dtype=[("i", np.intp), ("j", np.intp), ("v", float)])
        k, i, r = hits["i"], hits["j"], hits["v"]
        s_ci, _, e_ci, _ = t.directed(zc[k], z[i], r)  # terms seen by the candidate
        s_ic, _, e_ic, _ = t.directed(z[i], zc[k], r)  # terms seen by atom i
        sigma_c = np.bincount(k, s_ci, m)
        own = t.embedding(sigma_c, zc, np.bincount(k, minlength=m) > 0)[0]
        had = st["count"][i] > 0
        before = t.embedding(st["sigma1"][i], z[i], had)[0]
        after = t.embedding(st["sigma1"][i] + s_ic, z[i], np.ones(len(i), bool))[0]
        return own + np.bincount(k, e_ci + e_ic + after - before, m)

    def removal_energy(self, positions, species=None):
        xa, z = self._setup(positions, species)
        n = len(xa)
        if n == 0:
            return np.zeros(0)
        t = _emt_tables()
        st = self._state(xa, z)
        own = t.embedding(st["sigma1"], z, st["count"] > 0)[0]
        # removing a changes sigma1 of each neighbour b by -(contribution of a to b)
        a = np.concatenate([st["i"], st["j"]])
        b = np.concatenate([st["j"], st["i"]])
        lost = np.concatenate([st["s_ji"], st["s_ij"]])
        before = t.embedding(st["sigma1"][b], z[b], st["count"][b] > 0)[0]
        left = st["count"][b] > 1
        after = t.embedding(np.where(left, st["sigma1"][b] - lost, 1.0), z[b], left)[0]
        pair = np.concatenate([st["pair"], st["pair"]])
        return -own + np.bincount(a, after - before - pair, n)

    def __repr__(self) -> str:
        return (f"EMTPotential(element={self._element!r}, species_map={self.species_map}, "
                f"bond_length={self._bond_length})")



# -- factory ---------------------------------------------------------------------------------------
#: Potential names accepted by :func:`make_potential` (and the CLI's ``--potential``).
POTENTIALS = {"none": NoPotential, "lj": LennardJones, "emt": EMTPotential}


def make_potential(name, bond_length, ndim, **kwargs) -> Potential:
    """Build a potential by name: ``"none"``, ``"lj"`` or ``"emt"``.

    Parameters
    ----------
    name : str
        Potential name (case-insensitive).
    bond_length : float
        Nearest-neighbour distance of the material in the data's length unit: the minimum of
        :class:`LennardJones`, the length scale of :class:`EMTPotential`.
    ndim : int
        2 or 3; EMT needs 3.
    **kwargs
        Options of the potential's class (e.g. ``epsilon``, ``cutoff``, ``soft_core`` for
        ``"lj"``; ``species_map``, ``element`` for ``"emt"``). ``species`` (the species names of
        the data) is accepted by all and used by EMT to choose its reference element.
    """
    key = str(name).strip().lower()
    if key not in POTENTIALS:
        raise InputError(f"unknown potential {name!r} (choose from {', '.join(POTENTIALS)})")
    if ndim not in (2, 3):
        raise InputError(f"ndim must be 2 or 3, got {ndim!r}")
    cls = POTENTIALS[key]
    if key == "emt" and ndim != 3:
        raise InputError("the EMT potential is 3D only; use 'lj' or 'none' for 2D data")
    species = kwargs.pop("species", None)
    valid = [p for p in inspect.signature(cls).parameters if p != "bond_length"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)} for potential {key!r} "
                         f"(valid: {', '.join(valid) or 'none'})")
    if key == "emt":
        kwargs["species"] = species
    return cls(bond_length=bond_length, **kwargs)
