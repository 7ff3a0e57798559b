"""Search budget for many-angle data: the global search is for ambiguity, not for many angles.

The basin-hopping budget of ADCG (``hops``, default ``min(400, 80 + 6 n_expected)`` beyond two
angles) is there because two or three projections leave many configurations that fit the data
equally well. With many projections (a measured tilt series of 20-60 images) the data leave
little ambiguity: the greedy add-move-prune loop already ends in the right configuration and the
hops only re-confirm it. So, where the data are over-determined, the default budget is cut:

* over-determined: at least :data:`MANY_ANGLES` projections (counted as distinct directions);
* then the default ``hops`` is :data:`MANY_ANGLE_HOPS` and ``restarts`` 1, unless the caller
  sets them.

The rule depends only on the angle count, not on any phantom. Measured (2D random-lattice
phantom, 24 atoms, 1 % noise, alpha auto, shared machine, so times are inflated and only their
ratios count): docs/decisions/2026-12-07-many-angles.md.
"""

from __future__ import annotations

import numpy as np

#: From this many distinct projection directions on, the data count as over-determined.
MANY_ANGLES = 8
#: The basin-hopping budget used then (a short confirmation, not a search).
MANY_ANGLE_HOPS = 0


def distinct_directions(geometry, tol_deg: float = 0.5) -> int:
    """Number of projection directions more than ``tol_deg`` apart (opposite beams count once)."""
    beams = geometry.beams
    kept = []
    cos_tol = np.cos(np.radians(tol_deg))
    for b in beams:
        if not any(abs(float(b @ k)) >= cos_tol for k in kept):
            kept.append(b)
    return len(kept)


def many_angle_options(problem, options: dict) -> tuple[dict, str | None]:
    """``options`` with the many-angle defaults added where the caller gave none, and a note
    saying so (``None`` when nothing changed)."""
    n = distinct_directions(problem.geometry)
    if n < MANY_ANGLES:
        return dict(options), None
    out = dict(options)
    added = {}
    for key, value in (("hops", MANY_ANGLE_HOPS), ("restarts", 1)):
        if key not in out:
            out[key] = added[key] = value
    if not added:
        return out, None
    text = ", ".join(f"{k}={v}" for k, v in added.items())
    return out, (f"{n} projection directions: the data are over-determined, so the global "
                 f"search budget is cut ({text}; set --option hops=N to override)")
