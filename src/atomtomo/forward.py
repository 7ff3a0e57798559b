r"""The analytic forward model: Gaussian atoms projected onto pixel-averaging detectors.

Spec section 2. The projection of a normalised Gaussian of width :math:`\sigma` along any line is
a 1D (2D) or 2D (3D) Gaussian of the same width, and a pixel of width :math:`\Delta` centred at
:math:`c` records its average over :math:`[c - \Delta/2, c + \Delta/2]`:

.. math::

    B(t) = \frac{\Phi\left(\frac{t + \Delta/2}{\sigma}\right)
                 - \Phi\left(\frac{t - \Delta/2}{\sigma}\right)}{\Delta},
    \qquad
    B'(t) = \frac{\varphi\left(\frac{t + \Delta/2}{\sigma}\right)
                  - \varphi\left(\frac{t - \Delta/2}{\sigma}\right)}{\sigma\Delta}.

2D: :math:`p[a, j] = \sum_i w_i B(c_j - s_i(a))`;
3D: :math:`p[a, r, c] = \sum_i w_i B(c_c - u_i(a)) B(c_r - v_i(a))`.

Every atom touches only the pixels within ``truncation * sigma + Delta / 2`` of where it lands,
so each operation below costs O(atoms x angles x support) (support = pixels per atom, squared in
3D), independent of the detector size. The per-atom windows are built with array operations and
scattered with :func:`numpy.bincount`; there is no Python loop over atoms or pixels.

The model is linear in the weights, ``A(x) w = sum_i w_i a(x_i)``. Its adjoint with respect to
the weights is the correlation of a residual with one atom placed at each of a set of points,
:meth:`ForwardModel.correlate`; :meth:`ForwardModel.gradient` is the vector-Jacobian product
with respect to positions and weights.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .errors import InputError
from .geometry import Geometry

#: Half-width of the support of each atom, in units of sigma. Beyond 7 sigma a Gaussian is below
#: 2.3e-11 of its peak, far under any detector noise.
TRUNCATION = 7.0

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

# Bound on the number of (atom, angle, support) entries handled at once, to cap memory.
_CHUNK_ENTRIES = 4_000_000


def pixel_kernel(t, sigma, delta):
    """``B(t)``: the pixel-averaged 1D Gaussian profile at offset ``t`` (accurate in both tails)."""
    a = (t + delta / 2) / sigma
    b = (t - delta / 2) / sigma
    # Phi(a) - Phi(b) loses all digits when both are near 1; use the upper tails there.
    upper = b > 0
    diff = np.where(upper, ndtr(-b) - ndtr(-a), ndtr(a) - ndtr(b))
    return diff / delta


def pixel_kernel_derivative(t, sigma, delta):
    """``dB/dt``."""
    a = (t + delta / 2) / sigma
    b = (t - delta / 2) / sigma
    return (np.exp(-0.5 * a * a) - np.exp(-0.5 * b * b)) * (_INV_SQRT_2PI / (sigma * delta))


class ForwardModel:
    """Projections of Gaussian atoms for a :class:`~atomtomo.geometry.Geometry`.

    Parameters
    ----------
    geometry : Geometry
    sigma : float
        Standard deviation of every atom's Gaussian, in the data's length unit.
    truncation : float
        Support half-width in units of ``sigma``.

    Examples
    --------
    >>> import numpy as np
    >>> from atomtomo import Geometry, ForwardModel
    >>> geo = Geometry.from_angles(2, np.radians([0, 90]), 64, 1 / 64)
    >>> model = ForwardModel(geo, sigma=0.01)
    >>> p = model.project([[0.1, -0.2]], [1.0])
    >>> float(p.sum() * geo.pixel_size / geo.n_angles)  # mass identity, spec section 2
    1.0
    """

    def __init__(self, geometry: Geometry, sigma: float, truncation: float = TRUNCATION):
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise InputError(f"sigma must be a number, got {sigma!r}") from None
        if not np.isfinite(sigma) or sigma <= 0:
            raise InputError(f"sigma must be positive, got {sigma}")
        self.geometry = geometry
        self.sigma = sigma
        self.truncation = float(truncation)
        delta = geometry.pixel_size
        self._radius = self.truncation * sigma + delta / 2
        # Pixel centres in [t - radius, t + radius]: at most floor(2 radius / delta) + 1 of them.
        self._support = int(np.floor(2 * self._radius / delta)) + 1

    # -- windows -----------------------------------------------------------------------------
    def _window(self, coord, n, derivative=False):
        """Pixel indices and kernel values of the support window around detector ``coord``.

        Returns ``idx`` (..., K) clipped into range, ``val`` (..., K) zero outside the detector,
        and, if ``derivative``, ``dval = dB/dt`` at ``c_j - coord``. The K pixels share K + 1
        edges, so the normal CDF is evaluated once per edge, not twice per pixel.
        """
        delta, sigma = self.geometry.pixel_size, self.sigma
        offset = (n - 1) / 2
        if _window_kernel is not None:
            c = np.ascontiguousarray(coord, dtype=float).ravel()
            idx, val, dval = _window_kernel(c, n, delta, sigma, self._radius, self._support,
                                            derivative)
            shape = (*np.shape(coord), self._support)
            idx, val = idx.reshape(shape), val.reshape(shape)
            return (idx, val, dval.reshape(shape)) if derivative else (idx, val)
        j0 = np.ceil((coord - self._radius) / delta + offset).astype(np.int64)
        idx = j0[..., None] + np.arange(self._support)
        # Standardised pixel edges (c_j -+ delta/2 - coord) / sigma, K + 1 of them.
        z = ((j0[..., None] + np.arange(self._support + 1) - offset - 0.5) * delta
             - coord[..., None]) / sigma
        tail = ndtr(-np.abs(z))  # exact in both tails
        lo, hi = z[..., :-1], z[..., 1:]
        t_lo, t_hi = tail[..., :-1], tail[..., 1:]
        # Phi(hi) - Phi(lo) from tail probabilities, without cancellation near 0 or 1.
        diff = np.where(lo >= 0, t_lo - t_hi, np.where(hi <= 0, t_hi - t_lo, 1.0 - t_lo - t_hi))
        inside = (idx >= 0) & (idx < n)
        val = np.where(inside, diff, 0.0) / delta
        idx = np.clip(idx, 0, n - 1)
        if derivative:
            dens = np.exp(-0.5 * z * z)
            dval = np.where(inside, dens[..., 1:] - dens[..., :-1], 0.0) * (
                _INV_SQRT_2PI / (sigma * delta))
            return idx, val, dval
        return idx, val

    def _chunks(self, n):
        """Slices over atoms so that one chunk holds at most ``_CHUNK_ENTRIES`` entries."""
        per_atom = self.geometry.n_angles * self._support ** (self.geometry.ndim - 1)
        step = max(1, _CHUNK_ENTRIES // max(per_atom, 1))
        return [slice(i, min(i + step, n)) for i in range(0, max(n, 1), step)]

    def _check(self, positions, weights=None):
        pos = np.asarray(positions, dtype=float)
        if pos.ndim == 1 and pos.size == 0:
            pos = pos.reshape(0, self.geometry.ndim)
        if pos.ndim != 2 or pos.shape[1] != self.geometry.ndim:
            raise InputError(
                f"positions of shape {pos.shape} do not match a {self.geometry.ndim}D geometry"
            )
        if weights is None:
            return pos, np.ones(len(pos))
        w = np.broadcast_to(np.asarray(weights, dtype=float), (len(pos),))
        return pos, w

    # -- forward -----------------------------------------------------------------------------
    def project(self, positions, weights=None) -> np.ndarray:
        """Projections of atoms at ``positions`` with ``weights``; shape ``geometry.data_shape``."""
        pos, w = self._check(positions, weights)
        geo = self.geometry
        size = int(np.prod(geo.data_shape))
        out = np.zeros(size)
        for sl in self._chunks(len(pos)):
            out += self._project_chunk(pos[sl], w[sl], size)
        return out.reshape(geo.data_shape)

    def _project_chunk(self, pos, w, size):
        geo = self.geometry
        if len(pos) == 0:
            return 0.0
        angle_offset = np.arange(geo.n_angles)[:, None, None]
        if geo.ndim == 2:
            (n_det,) = geo.detector_shape
            idx, val = self._window(geo.detector_coordinates(pos), n_det)
            flat = angle_offset * n_det + idx
            vals = val * w[None, :, None]
        else:
            n_rows, n_cols = geo.detector_shape
            u, v = geo.detector_coordinates(pos)
            iu, bu = self._window(u, n_cols)
            iv, bv = self._window(v, n_rows)
            flat = (angle_offset[..., None] * n_rows + iv[..., :, None]) * n_cols + iu[..., None, :]
            vals = (bv * w[None, :, None])[..., :, None] * bu[..., None, :]
        return np.bincount(flat.ravel(), weights=vals.ravel(), minlength=size)

    # -- adjoints ----------------------------------------------------------------------------
    def gradient(self, positions, weights, residual):
        """Vector-Jacobian product: the gradient of ``<residual, project(x, w)>``.

        For the data term ``0.5 ||project(x, w) - y||^2`` pass ``residual = project(x, w) - y``.

        Returns
        -------
        grad_positions : (n, d) ndarray
        grad_weights : (n,) ndarray
            Equal to :meth:`correlate` ``(residual, positions)``.
        """
        pos, w = self._check(positions, weights)
        r = self._check_residual(residual)
        gx = np.zeros_like(pos)
        gw = np.zeros(len(pos))
        for sl in self._chunks(len(pos)):
            gx[sl], gw[sl] = self._gradient_chunk(pos[sl], w[sl], r, need_positions=True)
        return gx, gw

    def correlate(self, residual, points) -> np.ndarray:
        """``<residual, a(p)>`` for one unit atom at each of ``points`` (the back-projection).

        This is the adjoint of :meth:`project` with respect to the weights, and what the add
        step of a conditional-gradient solver evaluates on a grid of candidate points.
        """
        pts, w = self._check(points)
        r = self._check_residual(residual)
        out = np.zeros(len(pts))
        for sl in self._chunks(len(pts)):
            _, out[sl] = self._gradient_chunk(pts[sl], w[sl], r, need_positions=False)
        return out

    def _check_residual(self, residual):
        r = np.asarray(residual, dtype=float)
        if r.shape != self.geometry.data_shape:
            raise InputError(
                f"data of shape {r.shape} do not match the geometry's {self.geometry.data_shape}"
            )
        return r

    def _gradient_chunk(self, pos, w, r, need_positions):
        geo = self.geometry
        a_idx = np.arange(geo.n_angles)[:, None, None]
        if geo.ndim == 2:
            (n_det,) = geo.detector_shape
            idx, val, dval = self._window(geo.detector_coordinates(pos), n_det, derivative=True)
            g = r[a_idx, idx]  # (A, n, K)
            gw = np.einsum("ank,ank->n", g, val)
            if not need_positions:
                return None, gw
            # d/ds B(c - s) = -B'(c - s); ds/dx = e_a.
            ds = -np.einsum("ank,ank->an", g, dval) * w[None, :]
            gx = ds.T @ geo.directions
            return gx, gw
        n_rows, n_cols = geo.detector_shape
        u, v = geo.detector_coordinates(pos)
        iu, bu, dbu = self._window(u, n_cols, derivative=True)
        iv, bv, dbv = self._window(v, n_rows, derivative=True)
        g = r[a_idx[..., None], iv[..., :, None], iu[..., None, :]]  # (A, n, Kv, Ku)
        h = np.einsum("ankl,anl->ank", g, bu)
        gw = np.einsum("ank,ank->n", h, bv)
        if not need_positions:
            return None, gw
        hd = np.einsum("ankl,anl->ank", g, dbu)
        du = -np.einsum("ank,ank->an", hd, bv) * w[None, :]
        dv = -np.einsum("ank,ank->an", h, dbv) * w[None, :]
        e_u = geo.directions[:, 0, :]
        e_v = geo.directions[:, 1, :]
        gx = du.T @ e_u + dv.T @ e_v
        return gx, gw

    def data_term(self, positions, weights, data):
        """``0.5 ||project(x, w) - data||^2``, its gradient in ``x`` and the residual, sharing
        one evaluation of the support windows (what a local optimiser calls)."""
        pos, w = self._check(positions, weights)
        r_flat = None
        if len(pos) * self.geometry.n_angles * self._support ** (self.geometry.ndim - 1) > _CHUNK_ENTRIES:
            r = self.project(pos, w) - data
            return 0.5 * float(np.sum(r * r)), self.gradient(pos, w, r)[0], r
        geo = self.geometry
        size = int(np.prod(geo.data_shape))
        a_idx = np.arange(geo.n_angles)[:, None, None]
        if geo.ndim == 2:
            (n_det,) = geo.detector_shape
            idx, val, dval = self._window(geo.detector_coordinates(pos), n_det, derivative=True)
            flat = a_idx * n_det + idx
            r_flat = np.bincount(flat.ravel(), weights=(val * w[None, :, None]).ravel(),
                                 minlength=size) - np.ravel(data)
            g = r_flat[flat]
            ds = -np.einsum("ank,ank->an", g, dval) * w[None, :]
            gx = ds.T @ geo.directions
        else:
            n_rows, n_cols = geo.detector_shape
            u, v = geo.detector_coordinates(pos)
            iu, bu, dbu = self._window(u, n_cols, derivative=True)
            iv, bv, dbv = self._window(v, n_rows, derivative=True)
            flat = (a_idx[..., None] * n_rows + iv[..., :, None]) * n_cols + iu[..., None, :]
            vals = (bv * w[None, :, None])[..., :, None] * bu[..., None, :]
            r_flat = np.bincount(flat.ravel(), weights=vals.ravel(), minlength=size) - np.ravel(data)
            g = r_flat[flat]
            h = np.einsum("ankl,anl->ank", g, bu)
            hd = np.einsum("ankl,anl->ank", g, dbu)
            du = -np.einsum("ank,ank->an", hd, bv) * w[None, :]
            dv = -np.einsum("ank,ank->an", h, dbv) * w[None, :]
            gx = du.T @ geo.directions[:, 0, :] + dv.T @ geo.directions[:, 1, :]
        return 0.5 * float(r_flat @ r_flat), gx, r_flat.reshape(geo.data_shape)

    def backproject(self, residual, points) -> np.ndarray:
        """Alias of :meth:`correlate`, under the tomographer's name."""
        return self.correlate(residual, points)

    def self_energy(self, points) -> np.ndarray:
        """``||a(p)||^2`` for a unit atom at each point (smaller near the detector's edges)."""
        pts, _ = self._check(points)
        geo = self.geometry
        out = np.zeros(len(pts))
        for sl in self._chunks(len(pts)):
            p = pts[sl]
            if geo.ndim == 2:
                _, val = self._window(geo.detector_coordinates(p), geo.detector_shape[0])
                out[sl] = np.einsum("ank,ank->n", val, val)
            else:
                u, v = geo.detector_coordinates(p)
                _, bu = self._window(u, geo.detector_shape[1])
                _, bv = self._window(v, geo.detector_shape[0])
                out[sl] = np.einsum("an,an->n", (bu * bu).sum(-1), (bv * bv).sum(-1))
        return out

    def _separable_profiles(self, axes):
        """Dense pixel profiles of a 3D single-axis tensor grid: ``bv`` (n_y, n_rows) and, per
        angle, ``bu`` (n_angles, n_x * n_z, n_cols)."""
        geo, delta = self.geometry, self.geometry.pixel_size
        xs, ys, zs = (np.asarray(a, float) for a in axes)
        bv = pixel_kernel(geo.pixel_centres(0)[None, :] - ys[:, None], self.sigma, delta)
        e_u = geo.directions[:, 0, :]
        u = e_u[:, 0, None, None] * xs[None, :, None] + e_u[:, 2, None, None] * zs[None, None, :]
        u = u.reshape(geo.n_angles, -1)
        bu = pixel_kernel(geo.pixel_centres(1)[None, None, :] - u[..., None], self.sigma, delta)
        return bv, bu

    def correlate_grid(self, residual, axes) -> np.ndarray:
        """:meth:`correlate` at every point of the tensor grid ``axes`` = (xs, ys[, zs]).

        Returns the values in ``meshgrid(*axes, indexing="ij")`` order, raveled. In 3D with
        the single-axis geometry the atom's projection is separable, so the whole grid costs two
        matrix products per angle (rows with ``y``, columns with ``(x, z)``) instead of one
        window per point.
        """
        r = self._check_residual(residual)
        geo = self.geometry
        if geo.ndim == 3 and geo.single_axis:
            bv, bu = self._separable_profiles(axes)
            n_x, n_y, n_z = (len(a) for a in axes)
            total = np.zeros((n_y, n_x * n_z))
            for a in range(geo.n_angles):  # few angles; each is two dense products
                total += (bv @ r[a]) @ bu[a].T
            return total.reshape(n_y, n_x, n_z).transpose(1, 0, 2).ravel()
        mesh = np.meshgrid(*axes, indexing="ij")
        return self.correlate(r, np.stack([m.ravel() for m in mesh], axis=1))

    def self_energy_grid(self, axes) -> np.ndarray:
        """:meth:`self_energy` on a tensor grid, in the order of :meth:`correlate_grid`."""
        geo = self.geometry
        if geo.ndim == 3 and geo.single_axis:
            bv, bu = self._separable_profiles(axes)
            sv = (bv * bv).sum(-1)  # (n_y,)
            su = (bu * bu).sum(-1)  # (A, n_xz)
            n_x, n_y, n_z = (len(a) for a in axes)
            total = np.einsum("y,ak->yk", sv, su)
            return total.reshape(n_y, n_x, n_z).transpose(1, 0, 2).ravel()
        mesh = np.meshgrid(*axes, indexing="ij")
        return self.self_energy(np.stack([m.ravel() for m in mesh], axis=1))

    def atom_data_energy(self, position=None) -> float:
        """``0.5 ||a(p)||^2`` of one unit atom, at the origin unless ``position`` is given.

        This is the natural unit of the data term: the data energy of one isolated atom.
        """
        p = np.zeros((1, self.geometry.ndim)) if position is None else np.reshape(position, (1, -1))
        return 0.5 * float(self.self_energy(p)[0])

    # -- reference implementation ------------------------------------------------------------
    def project_dense(self, positions, weights=None) -> np.ndarray:
        """The same projections evaluated at every pixel, without truncation.

        O(atoms x angles x detector pixels): a reference for tests and benchmarks, not for use.
        """
        pos, w = self._check(positions, weights)
        geo, delta = self.geometry, self.geometry.pixel_size
        if geo.ndim == 2:
            s = geo.detector_coordinates(pos)
            c = geo.pixel_centres()
            b = pixel_kernel(c[None, None, :] - s[..., None], self.sigma, delta)
            return np.einsum("anj,n->aj", b, w)
        u, v = geo.detector_coordinates(pos)
        bu = pixel_kernel(geo.pixel_centres(1)[None, None, :] - u[..., None], self.sigma, delta)
        bv = pixel_kernel(geo.pixel_centres(0)[None, None, :] - v[..., None], self.sigma, delta)
        return np.einsum("anr,anc->arc", bv * w[None, :, None], bu)


def _make_window_kernel():
    """A compiled version of :meth:`ForwardModel._window` when numba is installed.

    Same arithmetic as the numpy path (tail probabilities per pixel edge, no cancellation),
    one pass per atom and no temporaries; the numpy path stays the reference.
    """
    try:
        import math

        import numba
    except ImportError:  # numba is optional (extra "fast")
        return None

    @numba.njit(cache=True, nogil=True)
    def kernel(coord, n, delta, sigma, radius, support, derivative):
        m = coord.shape[0]
        idx = np.empty((m, support), np.int64)
        val = np.zeros((m, support))
        dval = np.zeros((m, support) if derivative else (0, support))
        offset = (n - 1) / 2.0
        inv_sqrt2 = 1.0 / math.sqrt(2.0)
        dscale = 1.0 / (math.sqrt(2.0 * math.pi) * sigma * delta)
        for i in range(m):
            j0 = math.ceil((coord[i] - radius) / delta + offset)
            z_lo = ((j0 - offset - 0.5) * delta - coord[i]) / sigma
            t_lo = 0.5 * math.erfc(abs(z_lo) * inv_sqrt2)
            d_lo = math.exp(-0.5 * z_lo * z_lo)
            for k in range(support):
                j = j0 + k
                z_hi = z_lo + delta / sigma
                t_hi = 0.5 * math.erfc(abs(z_hi) * inv_sqrt2)
                d_hi = math.exp(-0.5 * z_hi * z_hi) if derivative else 0.0
                if 0 <= j < n:
                    if z_lo >= 0:
                        diff = t_lo - t_hi
                    elif z_hi <= 0:
                        diff = t_hi - t_lo
                    else:
                        diff = 1.0 - t_lo - t_hi
                    val[i, k] = diff / delta
                    if derivative:
                        dval[i, k] = (d_hi - d_lo) * dscale
                    idx[i, k] = j
                else:
                    idx[i, k] = 0 if j < 0 else n - 1
                z_lo, t_lo, d_lo = z_hi, t_hi, d_hi
        return idx, val, dval

    return kernel


_window_kernel = _make_window_kernel()
