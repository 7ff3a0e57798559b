r"""Crystal physics shared by the phantom generators and the solver: rotations and the
Volterra displacement field of an edge dislocation.

Both :mod:`atomtomo.phantoms` (which builds dislocated test crystals) and
:mod:`atomtomo.solvers.dislocation_fit` (which fits dislocated crystals to measured data) use
this module, so the solver depends on the physics, not on the test-data generator.

Edge dislocation (Volterra)
---------------------------
Isotropic elasticity (Hirth & Lothe, *Theory of Dislocations*, 2nd ed., eqs. 3-45 and 3-46). In the
frame of the dislocation -- ``x`` along the Burgers vector ``b``, ``y`` normal to the slip plane,
core at the origin, ``r^2 = x^2 + y^2`` -- with Poisson ratio ``nu``::

    u_x =  b/(2 pi) [ theta + x y / (2 (1 - nu) r^2) ]
    u_y = -b/(2 pi) [ (1 - 2 nu)/(4 (1 - nu)) ln(r^2 / b^2) + (x^2 - y^2) / (4 (1 - nu) r^2) ]

``theta`` is the polar angle measured so that its jump of ``2 pi`` (and the jump ``b`` of ``u_x``)
lies on the Volterra cut. With the cut on the slip plane (``theta`` in ``[-pi, pi)``, the default)
the field turns a perfect lattice into a dislocated one without adding atoms; the extra half-row
lies on the side ``y > 0`` for ``b > 0``. With the cut along the extra half-row itself one inserts
a half-row of atoms into the opened gap (used by :func:`atomtomo.phantoms.defects.poster_dislocation`).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def rotation_matrix(angle: float) -> np.ndarray:
    """The 2x2 matrix rotating vectors counter-clockwise by ``angle`` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def edge_dislocation_displacement(points, burgers, core=(0.0, 0.0), poisson=0.3, cut_angle=-np.pi):
    """Volterra displacement field of an edge dislocation in 2D (see the module docstring).

    Parameters
    ----------
    points : (n, 2) array_like
        Where to evaluate the field (positions in the undislocated reference).
    burgers : (2,) array_like
        Burgers vector ``b`` (lies in the slip plane; its length is ``b``).
    core : (2,) array_like
        Position of the dislocation line.
    poisson : float
        Poisson ratio ``nu`` (0 <= nu < 0.5).
    cut_angle : float
        Direction of the Volterra cut in the dislocation frame (radians from ``b``): ``-pi`` puts
        it on the slip plane behind the core (default); ``+-pi/2`` along the half-row normal to
        it. Points on the cut get the mean of the two sides.

    Returns
    -------
    (n, 2) ndarray
        The displacements.
    """
    pts = np.asarray(points, dtype=float)
    bvec = np.asarray(burgers, dtype=float)
    b = float(np.linalg.norm(bvec))
    if b == 0 or not np.isfinite(b):
        raise InputError("the Burgers vector must be non-zero")
    nu = float(poisson)
    if not 0 <= nu < 0.5:
        raise InputError(f"poisson ratio must be in [0, 0.5), got {nu}")
    ex = bvec / b
    ey = np.array([-ex[1], ex[0]])
    rel = pts - np.asarray(core, dtype=float)
    x, y = rel @ ex, rel @ ey
    r2 = x * x + y * y
    if np.any(r2 < (1e-6 * b) ** 2):
        raise InputError("an atom sits on the dislocation core")
    phase = np.mod(np.arctan2(y, x) - cut_angle, 2 * np.pi)
    on_cut = np.minimum(phase, 2 * np.pi - phase) < 1e-9
    theta = cut_angle + np.where(on_cut, np.pi, phase)
    k = 1.0 / (4 * (1 - nu))
    ux = b / (2 * np.pi) * (theta + 2 * k * x * y / r2)
    uy = -b / (2 * np.pi) * ((1 - 2 * nu) * k * np.log(r2 / b**2) + k * (x * x - y * y) / r2)
    return ux[:, None] * ex + uy[:, None] * ey
