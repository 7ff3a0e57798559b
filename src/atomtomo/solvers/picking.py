r"""Atom picking: from a grid image to a list of atoms.

A grid image of the grid methods is a mass per grid point (:mod:`atomtomo.solvers.grid`): an
atom of weight ``w`` on a grid point is the value ``w`` there, one between grid points spreads
its mass over the neighbouring points. Picking:

1. **candidates**: the positive ``3^d`` local maxima of the image
   (:func:`scipy.ndimage.maximum_filter`);
2. **mass**: the image summed over the ``3^d`` neighbourhood of each maximum, an estimate of the
   atom's integrated intensity (robust where an off-grid atom splits its mass between points);
3. **separation**: maxima within ``min_separation`` of a stronger one (by mass) are dropped
   (non-maximum suppression with a k-d tree);
4. **species**: the species whose weight is nearest the maximum's mass (one species: trivial);
5. **how many**: the strongest maxima (by mass) while their species weights add up closest to
   the data's total mass, ``sum(y) Delta^(d-1) / n_angles`` (spec section 2; with one species
   of weight ``w`` that is ``round(mass / w)`` atoms), or ``n_atoms`` if given; maxima with
   mass below ``min_mass`` (default: any positive mass) are never picked;
6. **sub-pixel position**: per axis, the vertex of the parabola through the maximum and its two
   neighbours (clipped to half a cell).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..configuration import Configuration
from ..errors import InputError
from .grid import PixelGrid


def local_maxima(image, threshold: float = 0.0) -> np.ndarray:
    """Multi-indices ``(m, d)`` of the ``3^d`` local maxima of ``image`` above ``threshold``,
    strongest first (ties: lowest flat index first)."""
    image = np.asarray(image, dtype=float)
    peak = ndimage.maximum_filter(image, size=3, mode="constant", cval=-np.inf)
    idx = np.argwhere((image == peak) & (image > threshold))
    order = np.argsort(-image[tuple(idx.T)], kind="stable")
    return idx[order].reshape(-1, image.ndim)


def suppress_close(points, separation: float) -> np.ndarray:
    """Mask of the points (sorted strongest first) that no stronger point lies within
    ``separation`` of: non-maximum suppression in one vectorised pass."""
    points = np.asarray(points, dtype=float)
    keep = np.ones(len(points), bool)
    if len(points) > 1 and separation > 0:
        pairs = cKDTree(points).query_pairs(separation, output_type="ndarray")
        if len(pairs):
            keep[np.max(pairs, axis=1)] = False
    return keep


def subpixel_offsets(image, idx) -> np.ndarray:
    """Per-axis parabolic refinement of maxima at multi-indices ``idx``: offsets in cells,
    within [-0.5, 0.5] (0 on the image border)."""
    image = np.asarray(image, dtype=float)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, image.ndim)
    off = np.zeros(idx.shape)
    centre = image[tuple(idx.T)]
    for axis in range(image.ndim):  # loop over the 2-3 axes, vectorised over maxima
        n = image.shape[axis]
        inner = (idx[:, axis] > 0) & (idx[:, axis] < n - 1)
        lo, hi = idx.copy(), idx.copy()
        lo[:, axis] = np.clip(idx[:, axis] - 1, 0, n - 1)
        hi[:, axis] = np.clip(idx[:, axis] + 1, 0, n - 1)
        f_lo, f_hi = image[tuple(lo.T)], image[tuple(hi.T)]
        curv = f_lo - 2 * centre + f_hi
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(curv < 0, 0.5 * (f_lo - f_hi) / curv, 0.0)
        off[:, axis] = np.where(inner, np.clip(d, -0.5, 0.5), 0.0)
    return off


def neighbourhood_mass(image, idx) -> np.ndarray:
    """The image summed over the ``3^d`` cube around each multi-index (clipped at the border)."""
    image = np.asarray(image, dtype=float)
    box = ndimage.uniform_filter(image, size=3, mode="constant", cval=0.0) * 3 ** image.ndim
    return box[tuple(np.asarray(idx, dtype=np.int64).reshape(-1, image.ndim).T)]


def pick_atoms(image, grid: PixelGrid, species_weights: dict, *, n_atoms: int | None = None,
               total_mass: float | None = None, min_separation: float | None = None,
               min_mass: float | None = None, info: dict | None = None) -> Configuration:
    """Atoms from a grid image (see the module docstring).

    Parameters
    ----------
    image : ndarray of shape ``grid.shape``
        Mass per grid point.
    grid : PixelGrid
    species_weights : dict
        ``{species: weight}``.
    n_atoms : int, optional
        How many atoms to pick; fewer are picked if the image has fewer maxima.
    total_mass : float, optional
        Without ``n_atoms``: pick the strongest maxima while their species weights add up
        closest to this mass (with one species of weight ``w``: ``round(total_mass / w)``
        atoms). Without either: every maximum passing ``min_mass``.
    min_separation : float, optional
        Smallest distance between picked atoms (default: 1.5 grid cells).
    min_mass : float, optional
        Smallest neighbourhood mass of a picked maximum (default: any positive mass; the count
        decides). An absolute threshold, e.g. half the lightest species weight, suits sharp
        images (FISTA) better than blurred ones (SIRT with few angles).
    info : dict, optional
        Goes to the configuration's ``info``.
    """
    image = np.asarray(image, dtype=float)
    if image.shape != tuple(grid.shape):
        raise InputError(f"image of shape {image.shape} does not match the grid {grid.shape}")
    names = list(species_weights) or ["X"]
    weights = np.array([species_weights.get(s, 1.0) for s in names], dtype=float)
    sep = 1.5 * float(np.min(grid.spacing)) if min_separation is None else float(min_separation)
    idx = local_maxima(image, threshold=0.0)
    mass = neighbourhood_mass(image, idx)
    order = np.argsort(-mass, kind="stable")  # strongest (by mass) first
    idx, mass = idx[order], mass[order]
    keep = suppress_close(grid.position(idx), sep)
    keep &= mass > 0 if min_mass is None else mass >= min_mass
    idx, mass = idx[keep], mass[keep]
    kind = np.argmin(np.abs(mass[:, None] - weights[None, :]), axis=1).reshape(-1)
    if n_atoms is not None:
        n = max(int(n_atoms), 0)
    elif total_mass is not None:
        picked = np.concatenate([[0.0], np.cumsum(weights[kind])])
        n = int(np.argmin(np.abs(picked - float(total_mass))))
    else:
        n = len(idx)
    idx, kind = idx[:n], kind[:n]
    positions = grid.position(idx + subpixel_offsets(image, idx))
    positions = np.clip(positions, grid.box[:, 0], grid.box[:, 1]).reshape(-1, grid.ndim)
    species = np.array(names, dtype=object)[kind]
    return Configuration(positions, species, dict(species_weights), dict(info or {}))
