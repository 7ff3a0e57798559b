"""Projection geometry (spec section 2): where each atom lands on the detector.

2D, one 1D detector per angle: an atom at ``(x, y)`` lands at ``s = x cos(theta) + y sin(theta)``,
or ``s = x . e`` for a general unit direction ``e``.

3D, one 2D detector per angle, single tilt axis ``y`` (beam along ``z`` at ``theta = 0``)::

    u = x cos(theta) + z sin(theta)     (detector columns)
    v = y                               (detector rows)

or ``u = x . e_u``, ``v = x . e_v`` for a general orthonormal frame ``(e_u, e_v)``.

The detector has ``n`` pixels of width ``pixel_size`` centred on the axis: pixel ``j`` has centre
``c_j = (j - (n - 1) / 2) * pixel_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import positive_number
from .errors import InputError


@dataclass(frozen=True, eq=False)
class Geometry:
    """Detector geometry of a tilt series.

    Use :meth:`from_angles` or :meth:`from_directions` rather than the constructor.

    Attributes
    ----------
    ndim : int
        2 or 3.
    detector_shape : tuple of int
        ``(n_det,)`` in 2D, ``(n_rows, n_cols)`` in 3D.
    pixel_size : float
        Pixel width Delta, in the data's length unit.
    directions : ndarray
        ``(n_angles, 2)`` unit vectors in 2D; ``(n_angles, 2, 3)`` frames ``(e_u, e_v)`` in 3D.
    angles : ndarray or None
        Tilt angles in radians, when the geometry is single-axis.
    """

    ndim: int
    detector_shape: tuple
    pixel_size: float
    directions: np.ndarray
    angles: np.ndarray | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_angles(cls, ndim, angles, detector_shape, pixel_size) -> Geometry:
        """Single-axis geometry from tilt ``angles`` in radians."""
        angles = np.atleast_1d(np.asarray(angles, dtype=float))
        if angles.ndim != 1 or len(angles) == 0:
            raise InputError("at least one angle is needed")
        if not np.all(np.isfinite(angles)):
            raise InputError("angles must be finite numbers")
        c, s = np.cos(angles), np.sin(angles)
        if ndim == 2:
            directions = np.stack([c, s], axis=1)
        elif ndim == 3:
            e_u = np.stack([c, np.zeros_like(c), s], axis=1)
            e_v = np.broadcast_to([0.0, 1.0, 0.0], e_u.shape)
            directions = np.stack([e_u, e_v], axis=1)
        else:
            raise InputError(f"ndim must be 2 or 3, got {ndim}")
        return cls._checked(ndim, detector_shape, pixel_size, directions, angles)

    @classmethod
    def from_directions(cls, ndim, directions, detector_shape, pixel_size, angles=None) -> Geometry:
        """General geometry: unit directions (2D) or orthonormal frames (3D)."""
        directions = np.asarray(directions, dtype=float)
        expected = "(n_angles, 2)" if ndim == 2 else "(n_angles, 2, 3)"
        ok = (ndim == 2 and directions.ndim == 2 and directions.shape[1] == 2) or (
            ndim == 3 and directions.ndim == 3 and directions.shape[1:] == (2, 3)
        )
        if not ok:
            raise InputError(f"detector directions must have shape {expected}, got {directions.shape}")
        if not np.all(np.isfinite(directions)):
            raise InputError("detector directions contain NaN or infinite values")
        if ndim == 2:
            norms = np.linalg.norm(directions, axis=1)
            if np.max(np.abs(norms - 1)) > 1e-6:
                raise InputError("detector_directions must be unit vectors")
        else:
            gram = np.einsum("aij,akj->aik", directions, directions)
            if np.max(np.abs(gram - np.eye(2))) > 1e-6:
                raise InputError("detector_frames must be orthonormal pairs (e_u, e_v)")
        if angles is not None:
            angles = np.asarray(angles, dtype=float)
        return cls._checked(ndim, detector_shape, pixel_size, directions, angles)

    @classmethod
    def _checked(cls, ndim, detector_shape, pixel_size, directions, angles):
        shape = tuple(int(n) for n in np.atleast_1d(detector_shape))
        if len(shape) != ndim - 1:
            raise InputError(
                f"a {ndim}D geometry needs a detector of {ndim - 1} dimension(s), got shape {shape}"
            )
        if any(n < 1 for n in shape):
            raise InputError(f"detector size must be positive, got {shape}")
        pixel_size = positive_number(pixel_size, "pixel size")
        directions = np.array(directions, dtype=float)
        directions.setflags(write=False)
        return cls(ndim, shape, pixel_size, directions, angles)

    # -- derived quantities -----------------------------------------------------------------
    @property
    def n_angles(self) -> int:
        return len(self.directions)

    @property
    def beams(self) -> np.ndarray:
        """Unit beam direction of every projection, ``(n_angles, ndim)``: 2D, the detector line's
        direction turned by 90 degrees; 3D, the normal ``e_u x e_v`` of the detector frame.
        Equal or opposite beams give the same projection (mirrored)."""
        d = self.directions
        if self.ndim == 2:
            return np.stack([-d[:, 1], d[:, 0]], axis=1)
        return np.cross(d[:, 0], d[:, 1])

    @property
    def data_shape(self) -> tuple:
        """Shape of the projections array: ``(n_angles, *detector_shape)``."""
        return (self.n_angles, *self.detector_shape)

    def pixel_centres(self, axis: int = -1) -> np.ndarray:
        """Pixel centres ``c_j`` along a detector axis (0 = rows in 3D, -1 = columns / 1D)."""
        n = self.detector_shape[axis]
        return (np.arange(n) - (n - 1) / 2) * self.pixel_size

    def detector_coordinates(self, positions) -> np.ndarray:
        """Where atoms land: ``(n_angles, n)`` values of ``s`` in 2D, ``(2, n_angles, n)`` of
        ``(u, v)`` in 3D."""
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 2 or positions.shape[1] != self.ndim:
            raise InputError(
                f"positions of shape {positions.shape} do not match a {self.ndim}D geometry"
            )
        if self.ndim == 2:
            return self.directions @ positions.T
        return np.einsum("akd,nd->kan", self.directions, positions)

    def default_box(self) -> np.ndarray:
        """Reconstruction domain when the data names none: the region the detector spans.

        2D: the square ``[-W/2, W/2]^2`` with ``W = n_det * pixel_size``. 3D: ``x`` and ``z`` span
        the detector's columns, ``y`` its rows. Shape ``(ndim, 2)``.
        """
        half = np.array(self.detector_shape, dtype=float) * self.pixel_size / 2
        if self.ndim == 2:
            extents = [half[0], half[0]]
        else:
            extents = [half[1], half[0], half[1]]
        return np.array([[-h, h] for h in extents])

    @property
    def single_axis(self) -> bool:
        """True when the geometry is the spec's single-axis tilt (3D: frames with ``e_v = y``)."""
        if self.ndim == 2:
            return True
        e_v = self.directions[:, 1, :]
        e_u = self.directions[:, 0, :]
        return bool(np.allclose(e_v, [0, 1, 0], atol=1e-12) and np.allclose(e_u[:, 1], 0, atol=1e-12))

    def __repr__(self) -> str:
        ang = (
            "angles=" + ",".join(f"{np.degrees(a):.4g}" for a in self.angles) + " deg"
            if self.angles is not None
            else f"{self.n_angles} general directions"
        )
        return (
            f"Geometry({self.ndim}D, {ang}, detector={'x'.join(map(str, self.detector_shape))}, "
            f"pixel_size={self.pixel_size:g})"
        )
