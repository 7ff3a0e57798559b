r"""Choosing the weight of the energy term, ``--alpha auto``: the discrepancy principle.

Rule (Morozov's discrepancy principle). Data with additive noise of standard deviation
:math:`\sigma_n` on :math:`N` pixels are fitted by the true configuration to
:math:`\lVert r \rVert^2 \approx N \sigma_n^2`; fitting them better fits noise, fitting them
worse ignores data. So we take the *largest* ``alpha`` — the most help from the prior — whose
reconstruction still explains the data as well as the truth would:

.. math::

    \lVert A(x_\alpha) - y \rVert^2 \le N \sigma_n^2 + 0.02\, E_1 ,

where the floor :math:`0.02 E_1` (a fiftieth of one atom's data energy) makes the rule usable on
noiseless data. The target is the *expected* misfit, with no allowance for the
:math:`\chi^2_N` spread: a reconstruction at small ``alpha`` fits noise (its misfit is below
:math:`N \sigma_n^2`), so the rule lets the prior spend exactly that overfit and no more.
A looser target (three standard deviations of the spread plus :math:`0.1 E_1`, tried first)
chose ``alpha`` up to 0.1 on dislocations, where the Lennard-Jones term then pulled strained
atoms more than 0.1 bond lengths off their true places (F1 of the relaxed truth 0.67 at
``alpha = 0.1`` against 0.92 at 0.03, measured on a 2-angle case).

Why this rule: it needs no ground truth and no extra tuning constant beyond the noise level,
it is cheap here (each ``alpha`` of the ladder is a local polish of one global-search result,
not a new search, and the ladder is walked from the top down, stopping at the first ``alpha``
that meets the target: :func:`ladder_order`, :func:`ladder_settled`), and it behaves as the poster's alpha sweep shows — too large an ``alpha``
moves atoms off the data (defect atoms are pushed away or pruned), which shows up at once as a
discrepancy above the noise. The noise level is the file's ``noise_std`` when given, else
estimated from the residual of the least-regularised reconstruction of the ladder (divided by
the degrees of freedom left, ``N - d n``).

The global search itself runs at :data:`AUTO_SEARCH_ALPHA` = 0.01, a value large enough for the
prior to separate re-paired configurations (which fit two-angle data equally well) and small
enough not to remove defect atoms or bend strained crystals; the ladder then polishes that
configuration at each ``alpha`` from 0 up to :data:`AUTO_SEARCH_ALPHA`, and the rule picks
among them. Larger values are not offered: on 24 blind cases (random square and hexagonal
lattices with defects, 2 and 3 angles, 1 % noise) the F1 of the polished configurations was
highest at ``alpha`` <= 0.01 and fell above it (the Lennard-Jones term favours hexagonal packing,
so it shears square lattices: one case went from F1 1.0 at 0.01 to 0.9 at 0.03 and 0.7 at 0.1,
and a further search at 0.03 ended at 0.25). When the rule keeps ``alpha`` = 0.01, a second,
shorter basin-hopping stage searches on at it (not after the lattice stage of
:mod:`~atomtomo.solvers.global_search`, which has just searched at it). When no ``alpha`` of
the ladder reaches the target — the search did not find a configuration that explains the
data — 0.01 is kept too.
"""

from __future__ import annotations

import numpy as np

#: alpha used by the global search when ``alpha="auto"``.
AUTO_SEARCH_ALPHA = 0.01

#: Floor of the discrepancy target, in atom data energies (makes the rule usable without noise).
NOISELESS_FLOOR = 0.02


def alpha_ladder():
    """The values of ``alpha`` tried by the discrepancy principle, increasing, up to
    :data:`AUTO_SEARCH_ALPHA`."""
    return [a for a in (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2) if a <= AUTO_SEARCH_ALPHA]


def discrepancy_target(n_data: int, noise_var: float, atom_energy: float) -> float:
    """``N sigma_n^2 + 0.02 E_1``: the expected misfit of the true atoms, plus a floor."""
    return n_data * noise_var + NOISELESS_FLOOR * atom_energy


def explains_data(problem, discrepancy: float, atom_energy: float):
    """Whether a misfit ``||r|| = discrepancy`` meets :func:`discrepancy_target` for the file's
    noise level; None when the file gives none (the target would be estimated from this very
    misfit). A result that misses it has left part of the data unexplained: the search failed,
    or the model (``atom_sigma``, ``noise_std``) does not fit the data."""
    if problem.noise_std is None:
        return None
    target = discrepancy_target(problem.data.size, float(problem.noise_std) ** 2, atom_energy)
    return bool(discrepancy ** 2 <= target)


def ladder_order(noise_known: bool):
    """The order the ladder is tried in: from the top (the search's own alpha) down, so that the
    first alpha that meets the target is the largest that does -- the rule's choice -- and the
    smaller ones need no polish. Without the file's noise level ``alpha = 0`` goes first: its
    misfit estimates the noise."""
    top_down = alpha_ladder()[::-1]
    return top_down if noise_known else [top_down[-1], *top_down[:-1]]


def _target(driver):
    """``(target, source)``: the discrepancy target of ``driver``'s data and where its noise
    level comes from (the file, or the misfit of the ``alpha = 0`` trial)."""
    problem = driver.problem
    n_data = problem.data.size
    if problem.noise_std is not None:
        noise_var = float(problem.noise_std) ** 2
        source = f"noise_std={problem.noise_std:.3g} from the file"
    else:
        a0, d0, s0 = min(driver.alpha_trials, key=lambda t: t[0])
        dof = max(n_data - problem.ndim * s0.n, 1)
        noise_var = d0 / dof
        source = f"noise std estimated {np.sqrt(noise_var):.3g}"
    return discrepancy_target(n_data, noise_var, driver.atom_energy), source


def ladder_settled(driver) -> bool:
    """Whether the trials so far decide :func:`choose_alpha`: every alpha of the ladder has
    been tried, or one meets the target and every larger one has been tried (the rule takes
    the largest that meets it, so the smaller ones cannot change the choice)."""
    tried = {a for a, _, _ in driver.alpha_trials}
    ladder = alpha_ladder()
    if tried >= set(ladder):
        return True
    if driver.problem.noise_std is None and 0.0 not in tried:
        return False
    target, _ = _target(driver)
    return any(d <= target and all(b in tried for b in ladder if b > a)
               for a, d, _ in driver.alpha_trials)


def choose_alpha(driver):
    """Pick ``alpha`` from ``driver.alpha_trials`` = [(alpha, ||r||^2, state), ...].

    Returns ``(alpha, reason)``; ``reason`` is a short text written into the output file.
    """
    target, source = _target(driver)
    ok = [a for a, d, _ in driver.alpha_trials if d <= target]
    if ok:
        return max(ok), f"discrepancy principle ({source}; target ||r||^2<={target:.4g})"
    return AUTO_SEARCH_ALPHA, (f"discrepancy principle: no alpha reached the target "
                               f"||r||^2<={target:.4g} ({source}); kept the search's alpha")
