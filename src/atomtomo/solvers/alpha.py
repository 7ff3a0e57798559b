r"""Choosing the weight of the energy term, ``--alpha auto``: the discrepancy principle.

Rule (Morozov's discrepancy principle). Data with additive noise of standard deviation
:math:`\sigma_n` on :math:`N` pixels cannot be fitted better than
:math:`\lVert r \rVert^2 \approx N \sigma_n^2` by the true configuration; fitting them better
fits noise, fitting them much worse ignores data. So we take the *largest* ``alpha`` — the most
help from the prior — whose reconstruction still explains the data to within the noise:

.. math::

    \lVert A(x_\alpha) - y \rVert^2 \le N \sigma_n^2 \left(1 + 3\sqrt{2/N}\right)
                                        + 0.1\, E_1 ,

where :math:`3\sqrt{2/N}` allows three standard deviations of the :math:`\chi^2_N` spread and the
floor :math:`0.1 E_1` (a tenth of one atom's data energy) makes the rule usable on noiseless data.

Why this rule: it needs no ground truth and no extra tuning constant beyond the noise level,
it is cheap here (each ``alpha`` of the ladder is a local polish of one global-search result,
not a new search), and it behaves as the poster's alpha sweep shows — too large an ``alpha``
moves atoms off the data (defect atoms are pushed away or pruned), which shows up at once as a
discrepancy above the noise. The noise level is the file's ``noise_std`` when given, else
estimated from the residual of the least-regularised reconstruction of the ladder (divided by
the degrees of freedom left, ``N - d n``).

The global search itself runs at :data:`AUTO_SEARCH_ALPHA`, a value large enough for the prior
to separate re-paired configurations (which fit two-angle data equally well) and small enough
not to remove defect atoms; the ladder then tunes ``alpha`` around that configuration.
"""

from __future__ import annotations

import numpy as np

#: alpha used by the global search when ``alpha="auto"``.
AUTO_SEARCH_ALPHA = 0.01


def alpha_ladder():
    """The values of ``alpha`` tried by the discrepancy principle, increasing."""
    return [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]


def discrepancy_target(n_data: int, noise_var: float, atom_energy: float) -> float:
    return n_data * noise_var * (1 + 3 * np.sqrt(2.0 / n_data)) + 0.1 * atom_energy


def choose_alpha(driver):
    """Pick ``alpha`` from ``driver.alpha_trials`` = [(alpha, ||r||^2, state), ...].

    Returns ``(alpha, reason)``; ``reason`` is a short text written into the output file.
    """
    problem = driver.problem
    n_data = problem.data.size
    trials = sorted(driver.alpha_trials, key=lambda t: t[0])
    if problem.noise_std is not None:
        noise_var = float(problem.noise_std) ** 2
        source = f"noise_std={problem.noise_std:.3g} from the file"
    else:
        a0, d0, s0 = trials[0]
        dof = max(n_data - problem.ndim * s0.n, 1)
        noise_var = d0 / dof
        source = f"noise std estimated {np.sqrt(noise_var):.3g}"
    target = discrepancy_target(n_data, noise_var, driver.atom_energy)
    ok = [a for a, d, _ in trials if d <= target]
    chosen = max(ok) if ok else trials[0][0]
    reason = f"discrepancy principle ({source}; target ||r||^2<={target:.4g})"
    return chosen, reason
