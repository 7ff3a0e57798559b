r"""An explicit-lattice prior: a well at every site of a 2D crystal lattice.

A pair potential only knows distances. Two projections of a crystal along zone axes leave
re-paired configurations that fit the data as well as the truth, and atoms that the data and
Lennard-Jones let drift a fraction of a spacing off their columns; a prior that knows the
lattice (its type, spacing, orientation and offset) prefers atoms *on sites* and leaves the
deviations -- relaxations, interstitials -- to the data. It is added to the pair potential, not a
replacement: the pair term still keeps atoms apart and bonded. The solver
(:mod:`atomtomo.solvers.global_search`) takes the lattice that fits the data best
(:mod:`atomtomo.solvers.lattice_seed`) as a start and fits it to the atoms of its first search
stage with :func:`fit_well` before it searches on with the well.

**Energy.** With ``d_i`` the distance of atom ``i`` to the nearest lattice site and ``w`` the
width of the well,

.. math::

    U(x) = \beta\,\varepsilon \sum_i \bigl(1 - e^{-d_i^2 / 2 w^2}\bigr),
    \qquad \frac{\partial U}{\partial x_i} = \beta\,\varepsilon\, e^{-d_i^2 / 2 w^2}\,
    \frac{x_i - s_i}{w^2},

where ``s_i`` is the nearest site and ``epsilon`` the pair potential's bond depth, so ``beta``
counts bonds: ``beta = 10`` makes an atom far from every site cost as much as ten bonds. The
energy is bounded (an interstitial pays at most ``beta epsilon``), smooth inside each site's
cell and continuous across cells (it is the same function of ``d`` on both sides of a cell
boundary). The nearest site of a point is a corner of the lattice cell holding it (true for the
square and the triangular lattice), so four candidates are checked, vectorised over atoms.

``w`` is :data:`WELL_WIDTH` = 0.15 bond lengths: wide enough for the relaxation around point defects, narrow
enough that a site's pull ends before the next site (half a spacing away is ``3.3 w``).

**Strain.** A strained crystal is not one lattice. Around an edge dislocation the lattice shifts
continuously by up to a Burgers vector as one goes round the core, so one lattice leaves the
atoms on the far side up to half a spacing off its sites, where the well no longer pulls; the
neighbours of a point defect sit 0.2-0.6 spacings off. :func:`strained_sites` puts the sites
where each atom's *neighbours* say they are: the offsets ``d_j`` of the atoms from the fitted
lattice are defined modulo the lattice, so atom ``i``'s local shift is their mean on the circle,
in fractional coordinates ``f_j = B^{-1} d_j``,

.. math::

    t_i = B\,\frac{1}{2\pi} \arg \sum_{j \ne i} e^{-r_{ij}^2 / 2 R^2}\, e^{2\pi i f_j}

(componentwise, ``R`` one bond length). The strain changes within a shell, most near a core,
where a plain mean lags behind it, so the shift is fitted as a plane: the offsets unwrapped
around ``t_i``, ``u_j = f_j - t_i - round(f_j - t_i)``, are fitted by ``c_i + G_i (x_j - x_i)``
by weighted least squares (same weights; a ridge of 0.1 times the total weight on ``G_i``
keeps atoms with few or collinear neighbours at the plain mean). The sites are the shifted
lattice's site ``s`` nearest ``x_i`` and its first shell, each moved by the fitted shift at that
point, ``B (t_i + c_i + G_i (s - x_i))``, for every atom, with sites closer than 0.3 bond lengths
merged into their mean. Around an edge dislocation this holds 93-94 % of the atoms within 0.05
bond lengths of a site, against 62-63 % for the plain mean and under 50 % for one lattice. Leaving atom ``i`` out of its own shift makes its site a prediction from its
neighbours, not a copy of itself. :class:`SiteWell` is the same well ``U`` at such an explicit
set of sites (nearest site by a k-d tree; ``U`` is still continuous, since the distance to the
nearest of a finite set of points is).

Both wells are one-body terms of the solver's prior (:class:`atomtomo.prior.Prior`): inserting an
atom at ``c`` adds ``U(c)``, removing atom ``i`` takes ``U(x_i)`` away.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .errors import InputError

__all__ = ["LatticeWell", "SiteWell", "WELL_WIDTH", "fit_well", "strained_sites"]

#: Width ``w`` of the well, in bond lengths (see the module docstring).
WELL_WIDTH = 0.15

#: Range ``R`` of the neighbour average of :func:`strained_sites`, in bond lengths.
STRAIN_RANGE = 1.0

#: Ridge on the strain gradient of :func:`strained_sites`, relative to the total neighbour weight.
SLOPE_RIDGE = 0.1

#: Sites of :func:`strained_sites` closer than this (in bond lengths) become one.
SITE_MERGE = 0.3

_CELL_CORNERS = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)


class _Well:
    """``U`` from the points' offsets to their nearest sites (``offsets``, defined by subclasses)."""

    depth: float
    width: float

    def offsets(self, points) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def atom_energies(self, points) -> np.ndarray:
        d = self.offsets(points)
        return self.depth * (1.0 - np.exp(-np.einsum("ij,ij->i", d, d) / (2 * self.width ** 2)))

    def energy_and_gradient(self, points):
        d = self.offsets(points)
        g = np.exp(-np.einsum("ij,ij->i", d, d) / (2 * self.width ** 2))
        return (float(self.depth * np.sum(1.0 - g)),
                (self.depth * g / self.width ** 2)[:, None] * d)


class LatticeWell(_Well):
    """The one-body energy ``U`` above, for a 2D lattice with basis ``basis`` (columns are the
    lattice vectors) through ``origin``.

    Parameters
    ----------
    basis : (2, 2) array
        Lattice vectors as columns.
    origin : (2,) array
        Position of one site.
    depth : float
        ``beta * epsilon``: the energy of an atom far from every site.
    width : float
        ``w``, in the positions' unit.
    """

    def __init__(self, basis, origin, depth: float, width: float):
        self.basis = np.asarray(basis, float)
        if self.basis.shape != (2, 2) or abs(np.linalg.det(self.basis)) < 1e-12:
            raise InputError("a lattice well needs two independent 2D lattice vectors")
        self.inverse = np.linalg.inv(self.basis)
        self.origin = np.asarray(origin, float).reshape(2)
        self.depth = float(depth)
        self.width = float(width)

    def offsets(self, points) -> np.ndarray:
        """``x - s(x)``: each point's vector from its nearest site, ``(m, 2)``."""
        x = np.asarray(points, float)
        corner = np.floor((x - self.origin) @ self.inverse.T)
        # the four corners of each point's cell, (m, 4, 2), and the nearest of them
        d = x[:, None, :] - ((corner[:, None, :] + _CELL_CORNERS) @ self.basis.T + self.origin)
        nearest = np.argmin(np.einsum("mkj,mkj->mk", d, d), axis=1)
        return d[np.arange(len(x)), nearest]


class SiteWell(_Well):
    """The well ``U`` at an explicit set of sites, e.g. those of :func:`strained_sites`.

    Parameters
    ----------
    sites : (m, 2) array_like
        The sites, ``m >= 1``.
    lattice : LatticeWell
        The lattice the sites were derived from; its depth and width are the well's, and its
        ``basis`` (with ``inverse`` and ``origin``) names the crystal in the output and the
        checkpoint.
    """

    def __init__(self, sites, lattice: LatticeWell):
        self.sites = np.asarray(sites, float)
        if self.sites.ndim != 2 or self.sites.shape[1] != 2 or len(self.sites) == 0:
            raise InputError(f"a site well needs (m, 2) sites with m >= 1, got shape {self.sites.shape}")
        self.lattice = lattice
        self.basis, self.inverse, self.origin = lattice.basis, lattice.inverse, lattice.origin
        self.depth, self.width = lattice.depth, lattice.width
        self._tree = cKDTree(self.sites)

    def offsets(self, points) -> np.ndarray:
        x = np.asarray(points, float).reshape(-1, 2)
        if len(x) == 0:
            return np.zeros((0, 2))
        return x - self.sites[self._tree.query(x)[1]]


def _rotation(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s], [s, c]])


def fit_well(well: LatticeWell, points, widths=(2.0, 1.0)) -> LatticeWell:
    r"""The lattice of ``well``, turned and shifted to fit ``points``: a well for a crystal's atoms.

    A lattice fitted to the *data* (:mod:`atomtomo.solvers.lattice_seed`) is found by a scan and
    is off by 1-5 degrees on small, strained crystals; at the edge of a crystal three spacings
    across that puts sites 0.05-0.25 spacings off the atoms, and a well of width 0.15 spacings
    pulls them there. Fitting the lattice to a reconstruction's atoms instead minimises the
    well's own energy ``U`` over the rotation ``t`` (about the atoms' centroid) and the shift
    ``s`` of the lattice (the spacing stays the bond length),

    .. math:: \min_{t, s} \sum_i \bigl(1 - e^{-d_i(t, s)^2 / 2 w^2}\bigr),

    which is robust: an interstitial or an atom a defect pushed off its site costs at most 1,
    whatever its distance. Nelder-Mead runs first with the width multiplied by ``widths[0]``
    (a wider basin, from a start up to a few degrees off) and then at the well's own width.
    On 16 two-angle crops with defects, fitted to the Lennard-Jones reconstruction, the angle
    came within 0.1-1.0 degree of the truth's where the scan was 0.0-3.5 degrees off (away
    from dislocations, whose lattice turns across the core).

    Parameters
    ----------
    well : LatticeWell
        The starting lattice (its basis, origin, depth and width).
    points : (n, 2) array_like
        The atoms.
    widths : sequence of float
        Width multipliers of the successive fits.

    Returns
    -------
    LatticeWell
        The same depth and width, on the fitted lattice.
    """
    x = np.asarray(points, float)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise InputError(f"fit_well needs (n, 2) points with n >= 1, got shape {x.shape}")
    centre = x.mean(axis=0)

    def moved(p, width):
        turn = _rotation(p[0])
        return LatticeWell(turn @ well.basis, centre + turn @ (well.origin - centre) + p[1:],
                           well.depth, width)

    step = 0.05 * np.linalg.norm(well.basis[:, 0])  # a twentieth of a spacing; and 1 degree
    p = np.zeros(3)
    for factor in widths:
        width = factor * well.width
        simplex = p + np.vstack([np.zeros(3), np.diag([np.radians(1.0), step, step])])
        p = minimize(lambda q: moved(q, width).atom_energies(x).sum(), p, method="Nelder-Mead",
                     options={"initial_simplex": simplex, "xatol": 1e-9, "fatol": 1e-12,
                              "maxiter": 2000}).x
    return moved(p, well.width)


def strained_sites(well: LatticeWell, points, spacing_range: float = STRAIN_RANGE,
                   merge: float = SITE_MERGE, affine: bool = True) -> np.ndarray:
    """Sites of ``well``'s lattice shifted to follow the strain of the crystal ``points``.

    Each atom's local shift of the lattice is fitted to its neighbours' offsets from the
    lattice's sites: their circular mean, and with ``affine`` a plane through them (the module
    docstring derives both). The sites are the shifted lattice's site nearest each atom and that
    site's first neighbour shell; sites closer than ``merge`` bond lengths are replaced by their
    mean. An unstrained crystal on the lattice gets the lattice's own sites
    around it; an atom with no neighbour within ``5 R`` keeps the unshifted lattice.

    Parameters
    ----------
    well : LatticeWell
        A lattice fitted to ``points`` (:func:`fit_well`); its spacing is the bond length.
    points : (n, 2) array_like
        The atoms, ``n >= 1``.
    spacing_range : float
        ``R``, the range of the neighbour average, in bond lengths.
    merge : float
        Merging distance, in bond lengths.
    affine : bool
        Fit the shift's gradient as well (default); ``False`` keeps the plain circular mean.

    Returns
    -------
    (m, 2) ndarray
        The sites.

    Examples
    --------
    >>> well = LatticeWell(np.eye(2), (0.0, 0.0), 1.0, 0.15)
    >>> grid = np.stack(np.meshgrid(range(4), range(4)), -1).reshape(-1, 2)
    >>> atoms = grid + [0.3, 0.2]  # a crystal off the lattice's sites
    >>> round(float(np.abs(well.offsets(atoms)).max()), 2), len(strained_sites(well, atoms))
    (0.3, 32)
    >>> strained = SiteWell(strained_sites(well, atoms), well)
    >>> bool(np.abs(strained.offsets(atoms)).max() < 1e-12)  # the sites follow the crystal
    True
    """
    x = np.asarray(points, float)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise InputError(f"strained_sites needs (n, 2) points with n >= 1, got shape {x.shape}")
    basis, inverse = well.basis, well.inverse
    spacing = float(np.linalg.norm(basis[:, 0]))
    reach = spacing_range * spacing
    # neighbour pairs (both orders, no self pairs) and their Gaussian weights
    pairs = cKDTree(x).query_pairs(5 * reach, output_type="ndarray")
    i, j = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    r2 = np.einsum("ij,ij->i", x[i] - x[j], x[i] - x[j])
    weight = np.exp(-r2 / (2 * reach ** 2))
    offset = well.offsets(x)
    phase = np.exp(2j * np.pi * (offset @ inverse.T))  # (n, 2): offsets on the circle
    mean = np.stack([np.bincount(i, weight * phase[j, k].real, len(x))
                     + 1j * np.bincount(i, weight * phase[j, k].imag, len(x)) for k in (0, 1)],
                    axis=1)
    centre = np.angle(mean) / (2 * np.pi)  # (n, 2) fractional shift at each atom
    cells = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], float) @ basis.T
    shell = cells[np.linalg.norm(cells, axis=1) < 1.01 * spacing]
    slope = np.zeros((len(x), 2, 2))
    if affine:
        centre, slope = _affine_shift(x, i, j, weight, offset @ inverse.T, centre, spacing,
                                      SLOPE_RIDGE)
    # the shifted lattice's site nearest each atom, and its first shell
    site = x - offset + centre @ basis.T
    site = site + np.round((x - site) @ inverse.T) @ basis.T
    near = site[:, None, :] + shell[None]  # (n, s, 2); the shift changes across the shell
    sites = (near + np.einsum("nsl,nlk->nsk", (near - x[:, None, :]) / spacing, slope)
             @ basis.T).reshape(-1, 2)
    close = cKDTree(sites).query_pairs(merge * spacing, output_type="ndarray")
    graph = coo_matrix((np.ones(len(close)), (close[:, 0], close[:, 1])), (len(sites),) * 2)
    n_groups, group = connected_components(graph, directed=False)
    return np.stack([np.bincount(group, sites[:, k], n_groups) for k in (0, 1)], axis=1) \
        / np.bincount(group, minlength=n_groups)[:, None]


def _affine_shift(x, i, j, weight, fraction, centre, spacing, ridge):
    """Local shift and its gradient from a weighted linear fit of the neighbours' offsets.

    For atom ``i`` the neighbours' fractional offsets, unwrapped around the circular mean
    ``centre_i``, are fitted by ``c + G (x_j - x_i) / spacing`` (weights ``weight``, ridge
    ``ridge`` times the total weight on ``G``). Returns ``centre + c`` and ``G`` as (n, 2, 2)
    with ``G[n, l, k]`` the change of fractional component ``k`` per bond length along ``l``.
    """
    n = len(x)
    d = fraction[j] - centre[i]
    d -= np.round(d)  # unwrapped around the mean
    z = np.concatenate([np.ones((len(i), 1)), (x[j] - x[i]) / spacing], axis=1)  # (p, 3)
    outer = np.zeros((n, 3, 3))
    np.add.at(outer, i, weight[:, None, None] * z[:, :, None] * z[:, None, :])
    right = np.zeros((n, 3, 2))
    np.add.at(right, i, weight[:, None, None] * z[:, :, None] * d[:, None, :])
    total = outer[:, 0, 0]
    outer[:, 1, 1] += ridge * total + 1e-12
    outer[:, 2, 2] += ridge * total + 1e-12
    outer[:, 0, 0] += 1e-12
    beta = np.linalg.solve(outer, right)  # (n, 3, 2)
    return centre + beta[:, 0, :], beta[:, 1:, :]
