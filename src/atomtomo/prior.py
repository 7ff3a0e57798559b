r"""The solver's prior: a potential plus a sum of energy terms.

.. math::

    E(x, s) = V(x, s) + \sum_k T_k(x),

with ``V`` the interatomic potential (:mod:`atomtomo.potentials`: pair or EMT; its ``epsilon``
and ``bond_length`` set the unit of ``alpha``) and each ``T_k`` a term a search stage adds:
the hull pressure (:class:`atomtomo.hull_prior.HullPressure`), a lattice or site well
(:class:`atomtomo.lattice_prior.LatticeWell`, :class:`~atomtomo.lattice_prior.SiteWell`), the
field of fixed neighbouring atoms (``atomtomo.solvers.layers.NeighbourField``). This is the
pattern of ASE's ``SumCalculator``: one interface, summed term by term, so a stage changes the
prior by adding or replacing a term and a move that needs one term finds it in :attr:`Prior.terms`.

A term has ``energy_and_gradient(points) -> (float, (n, d))`` and ``atom_energies(points) ->
(n,)``. That suffices for a *one-body* term ``T(x) = sum_i u(x_i)`` (a well, a field):
inserting an atom at ``c`` adds ``u(c)``, removing atom ``i`` takes ``u(x_i)`` away, and no atom
reaches beyond its own position. A many-body term (the hull pressure) declares its own
``insertion_energy(points, candidates)``, ``removal_energy(points)`` and
``global_context(points)``. Terms do not depend on species.

The sums run in the order the terms were added, so a prior built term by term gives bit for bit
the values of the nested wrappers it replaces.
"""

from __future__ import annotations

import numpy as np

from .potentials import Potential


def term_energy(term, points) -> float:
    """``T(x)`` of one term."""
    energy = getattr(term, "energy", None)
    if energy is not None:
        return energy(points)
    return float(term.atom_energies(points).sum())


def term_insertion(term, points, candidates) -> np.ndarray:
    """``T(x + one atom at c) - T(x)`` for each candidate ``c``."""
    insertion = getattr(term, "insertion_energy", None)
    if insertion is not None:
        return insertion(points, candidates)
    return term.atom_energies(np.asarray(candidates, float))


def term_removal(term, points) -> np.ndarray:
    """``T(x without atom i) - T(x)`` for each atom ``i`` (negative: the change)."""
    removal = getattr(term, "removal_energy", None)
    if removal is not None:
        return removal(points)
    return -term.atom_energies(points)


class Prior(Potential):
    """``V(x, s) + sum_k T_k(x)``: the potential ``base`` plus ``terms`` (see the module docstring).

    Exposes ``base``'s ``epsilon``, ``bond_length`` and ``cutoff_radius`` (so ``alpha`` keeps its
    meaning and the local relaxation its reach).

    Parameters
    ----------
    base : Potential
        The interatomic potential.
    terms : sequence, optional
        Energy terms, summed in this order.

    Examples
    --------
    >>> from atomtomo.hull_prior import HullPressure
    >>> from atomtomo.potentials import make_potential
    >>> lj = make_potential("lj", 1.0, 2)
    >>> prior = Prior(lj).with_term(HullPressure(0.5))
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> bool(np.isclose(prior.energy(x), lj.energy(x) + 0.5 * 0.5))  # hull area 1/2
    True
    """

    def __init__(self, base: Potential, terms=()):
        if isinstance(base, Prior):  # flatten: a prior of a prior is one sum
            terms = [*base.terms, *terms]
            base = base.base
        self.base = base
        self.terms = list(terms)
        self.epsilon = base.epsilon
        self.bond_length = base.bond_length
        self.cutoff_radius = getattr(base, "cutoff_radius", 0.0)

    # -- building ----------------------------------------------------------------------------
    def with_term(self, term) -> Prior:
        """A new prior with ``term`` added (this one is unchanged)."""
        return Prior(self.base, [*self.terms, term])

    def replace(self, old, new) -> None:
        """Put ``new`` in place of the term ``old`` (the same object), in place."""
        k = next(i for i, t in enumerate(self.terms) if t is old)
        self.terms[k] = new

    def find(self, kind):
        """The last term that is an instance of ``kind`` (a class or tuple), else None."""
        return next((t for t in reversed(self.terms) if isinstance(t, kind)), None)

    # -- the Potential interface -------------------------------------------------------------
    def global_context(self, positions):
        mask = self.base.global_context(positions)
        for term in self.terms:
            context = getattr(term, "global_context", None)
            extra = None if context is None else context(positions)
            if extra is not None:
                mask = extra if mask is None else mask | extra
        return mask

    def energy_and_gradient(self, positions, species=None):
        e, g = self.base.energy_and_gradient(positions, species)
        for term in self.terms:
            u, gu = term.energy_and_gradient(positions)
            e, g = e + u, g + gu
        return e, g

    def energy(self, positions, species=None):
        e = self.base.energy(positions, species)
        for term in self.terms:
            e = float(e + term_energy(term, positions))
        return e

    def atom_energies(self, positions, species=None):
        out = self.base.atom_energies(positions, species)
        for term in self.terms:
            out = out + term.atom_energies(positions)
        return out

    def insertion_energy(self, positions, candidates, species=None, candidate_species=None):
        out = self.base.insertion_energy(positions, candidates, species, candidate_species)
        for term in self.terms:
            out = out + term_insertion(term, positions, candidates)
        return out

    def removal_energy(self, positions, species=None):
        out = self.base.removal_energy(positions, species)
        for term in self.terms:
            out = out + term_removal(term, positions)
        return out

    def __repr__(self) -> str:
        return " + ".join([repr(self.base), *(type(t).__name__ for t in self.terms)])
