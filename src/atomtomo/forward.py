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
scattered with :func:`numpy.bincount`; there is no Python loop over atoms or pixels. With numba
installed (extra ``fast``), the windows and the 3D scatter/gather of each atom's K x K outer
product run as compiled loops instead (the numpy path stays the reference; they agree to
~1e-15), which is what ``benchmarks/bench_forward.py`` measures.

The model is linear in the weights, ``A(x) w = sum_i w_i a(x_i)``. Its adjoint with respect to
the weights is the correlation of a residual with one atom placed at each of a set of points,
:meth:`ForwardModel.correlate`; :meth:`ForwardModel.gradient` is the vector-Jacobian product
with respect to positions and weights.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ._checks import check_projector_size, positive_number
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


def grid_points(axes) -> np.ndarray:
    """The points of the tensor grid ``axes``, ``(m, d)`` in ``meshgrid(..., indexing="ij")``
    order."""
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


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
        sigma = positive_number(sigma, "sigma")
        self.geometry = geometry
        self.sigma = sigma
        self.truncation = float(truncation)
        delta = geometry.pixel_size
        self._radius = self.truncation * sigma + delta / 2
        # Pixel centres in [t - radius, t + radius]: at most floor(2 radius / delta) + 1 of them.
        check_projector_size(geometry.n_angles, geometry.detector_shape, 2 * self._radius / delta)
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
        if self.geometry.ndim == 3 and _kernels_3d is not None:
            per_atom = 6 * self.geometry.n_angles * self._support  # only the 1D windows
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
        out = np.zeros(geo.data_shape)
        for sl in self._chunks(len(pos)):
            self._project_into(pos[sl], w[sl], out)
        return out

    def _project_into(self, pos, w, out):
        """Add the projections of ``pos`` to ``out`` (``geometry.data_shape``, C-contiguous)."""
        geo = self.geometry
        if len(pos) == 0:
            return
        angle_offset = np.arange(geo.n_angles)[:, None, None]
        if geo.ndim == 2:
            (n_det,) = geo.detector_shape
            idx, val = self._window(geo.detector_coordinates(pos), n_det)
            flat = angle_offset * n_det + idx
            vals = val * w[None, :, None]
        else:
            n_rows, n_cols = geo.detector_shape
            iu, bu, iv, bv = self._windows_3d(pos)
            if _kernels_3d is not None:
                # Same products, added in the same order as the bincount below, without the
                # (A, n, K, K) index and value arrays.
                _kernels_3d[0](iu, bu, iv, bv, w, out)
                return
            iv, bv = np.broadcast_to(iv, iu.shape), np.broadcast_to(bv, bu.shape)
            flat = (angle_offset[..., None] * n_rows + iv[..., :, None]) * n_cols + iu[..., None, :]
            vals = (bv * w[None, :, None])[..., :, None] * bu[..., None, :]
        out.reshape(-1)[...] += np.bincount(flat.ravel(), weights=vals.ravel(), minlength=out.size)

    def _windows_3d(self, pos, derivative=False):
        """Column (``u``) and row (``v``) windows of 3D atoms: ``iu, bu[, dbu], iv, bv[, dbv]``.

        Column arrays are ``(A, n, K)``. In the single-axis geometry ``v = y`` at every angle, so
        the row window is computed once and has a leading axis of length 1 (it broadcasts over
        the angles); otherwise the row arrays are ``(A, n, K)`` too.
        """
        geo = self.geometry
        n_rows, n_cols = geo.detector_shape
        e_u, e_v = geo.directions[:, 0, :], geo.directions[:, 1, :]
        cols = self._window(e_u @ pos.T, n_cols, derivative)
        if np.all(e_v == e_v[0]):
            rows = self._window((pos @ e_v[0])[None, :], n_rows, derivative)
        else:
            rows = self._window(e_v @ pos.T, n_rows, derivative)
        return (*cols, *rows)

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
        iu, bu, dbu, iv, bv, dbv = self._windows_3d(pos, derivative=True)
        if _kernels_3d is not None:
            gw, du, dv = _kernels_3d[1](iu, bu, dbu, iv, bv, dbv, w, r)
            gx = self._position_gradient_3d(du, dv)
            return (gx if need_positions else None), gw
        shape = iu.shape
        iv, bv, dbv = (np.broadcast_to(x, shape) for x in (iv, bv, dbv))
        g = r[a_idx[..., None], iv[..., :, None], iu[..., None, :]]  # (A, n, Kv, Ku)
        h = np.einsum("ankl,anl->ank", g, bu)
        gw = np.einsum("ank,ank->n", h, bv)
        if not need_positions:
            return None, gw
        hd = np.einsum("ankl,anl->ank", g, dbu)
        du = -np.einsum("ank,ank->an", hd, bv) * w[None, :]
        dv = -np.einsum("ank,ank->an", h, dbv) * w[None, :]
        return self._position_gradient_3d(du, dv), gw

    def _position_gradient_3d(self, du, dv):
        """Chain rule from detector coordinates to positions: ``du, dv`` (A, n) are the
        derivatives along each angle's column and row axes ``e_u, e_v``."""
        directions = self.geometry.directions
        return du.T @ directions[:, 0, :] + dv.T @ directions[:, 1, :]

    def data_term(self, positions, weights, data):
        """``0.5 ||project(x, w) - data||^2``, its gradient in ``x`` and the residual, sharing
        one evaluation of the support windows (what a local optimiser calls)."""
        pos, w = self._check(positions, weights)
        data = self._check_residual(data)
        r_flat = None
        if len(self._chunks(len(pos))) > 1:
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
        elif _kernels_3d is not None:
            iu, bu, dbu, iv, bv, dbv = self._windows_3d(pos, derivative=True)
            r = np.zeros(geo.data_shape)
            _kernels_3d[0](iu, bu, iv, bv, w, r)
            r -= data
            _, du, dv = _kernels_3d[1](iu, bu, dbu, iv, bv, dbv, w, r)
            gx = self._position_gradient_3d(du, dv)
            r_flat = r.ravel()
        else:
            n_rows, n_cols = geo.detector_shape
            iu, bu, dbu, iv, bv, dbv = self._windows_3d(pos, derivative=True)
            iv, bv, dbv = (np.broadcast_to(x, iu.shape) for x in (iv, bv, dbv))
            flat = (a_idx[..., None] * n_rows + iv[..., :, None]) * n_cols + iu[..., None, :]
            vals = (bv * w[None, :, None])[..., :, None] * bu[..., None, :]
            r_flat = np.bincount(flat.ravel(), weights=vals.ravel(), minlength=size) - np.ravel(data)
            g = r_flat[flat]
            h = np.einsum("ankl,anl->ank", g, bu)
            hd = np.einsum("ankl,anl->ank", g, dbu)
            du = -np.einsum("ank,ank->an", hd, bv) * w[None, :]
            dv = -np.einsum("ank,ank->an", h, dbv) * w[None, :]
            gx = self._position_gradient_3d(du, dv)
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

    def design_matrix(self, points, weight: float = 1.0) -> np.ndarray:
        """The projections of one atom of ``weight`` at each point as the columns of a dense
        ``(data size, len(points))`` matrix ``A`` (so ``A @ w`` is :meth:`project` with weights
        ``weight * w``): the linear model of occupancies on fixed sites.

        Built from the same truncated windows as :meth:`project`, one scatter for all columns.
        """
        pts, _ = self._check(points)
        geo = self.geometry
        size = int(np.prod(geo.data_shape))
        out = np.zeros(size * len(pts))
        for sl in self._chunks(len(pts)):
            p = pts[sl]
            atom = np.arange(sl.start, sl.stop)
            if geo.ndim == 2:
                (n_det,) = geo.detector_shape
                idx, val = self._window(geo.detector_coordinates(p), n_det)
                row = np.arange(geo.n_angles)[:, None, None] * n_det + idx
                flat, vals = row * len(pts) + atom[None, :, None], val
            else:
                n_rows, n_cols = geo.detector_shape
                iu, bu, iv, bv = self._windows_3d(p)
                iv, bv = np.broadcast_to(iv, iu.shape), np.broadcast_to(bv, bu.shape)
                row = ((np.arange(geo.n_angles)[:, None, None, None] * n_rows + iv[..., :, None])
                       * n_cols + iu[..., None, :])
                flat = row * len(pts) + atom[None, :, None, None]
                vals = bv[..., :, None] * bu[..., None, :]
            # entries outside the detector are clipped onto its edge with value 0: add, not set
            out += np.bincount(flat.ravel(), weights=vals.ravel(), minlength=out.size)
        return weight * out.reshape(size, len(pts))

    def _separable_profiles(self, axes):
        """Dense pixel profiles of a 3D single-axis tensor grid: ``bv`` (n_y, n_rows) and, per
        angle, ``bu`` (n_angles, n_x * n_z, n_cols)."""
        geo, delta = self.geometry, self.geometry.pixel_size
        xs, ys, zs = (np.asarray(a, float) for a in axes)
        bv = pixel_kernel(geo.pixel_centres(0)[None, :] - ys[:, None], self.sigma, delta)
        e_u = geo.directions[:, 0, :]
        u = (e_u[:, 0, None, None] * xs[None, :, None]
             + e_u[:, 2, None, None] * zs[None, None, :]).reshape(geo.n_angles, -1)
        bu = pixel_kernel(geo.pixel_centres(1)[None, None, :] - u[..., None], self.sigma, delta)
        # Row-major (n_cols, n_xz) per angle, so that the product below streams through it.
        return bv, np.ascontiguousarray(bu.transpose(0, 2, 1))

    def grid_correlator(self, axes):
        """A function ``residual -> correlate_grid(residual, axes)`` for repeated use.

        The pixel profiles (3D single-axis) or support windows (2D, when they fit in memory)
        of the grid are computed once, here; a solver that correlates the same candidate grid
        every iteration keeps the returned function.
        """
        geo = self.geometry
        if geo.ndim == 3 and geo.single_axis:
            bv, bu_t = self._separable_profiles(axes)
            n_x, n_y, n_z = (len(a) for a in axes)

            def separable(residual):
                r = self._check_residual(residual)
                total = np.zeros((n_y, n_x * n_z))
                for a in range(geo.n_angles):  # few angles; each is two dense products
                    total += (bv @ r[a]) @ bu_t[a]
                return total.reshape(n_y, n_x, n_z).transpose(1, 0, 2).ravel()

            return separable
        points = grid_points(axes)
        if geo.ndim == 2 and len(points) * geo.n_angles * self._support <= _CHUNK_ENTRIES:
            idx, val = self._window(geo.detector_coordinates(points), geo.detector_shape[0])
            angle = np.arange(geo.n_angles)[:, None, None]

            def windowed(residual):
                g = self._check_residual(residual)[angle, idx]
                return np.einsum("amk,amk->m", g, val)

            return windowed
        return lambda residual: self.correlate(residual, points)

    def correlate_grid(self, residual, axes) -> np.ndarray:
        """:meth:`correlate` at every point of the tensor grid ``axes`` = (xs, ys[, zs]).

        Returns the values in ``meshgrid(*axes, indexing="ij")`` order, raveled. In 3D with
        the single-axis geometry the atom's projection is separable, so the whole grid costs two
        matrix products per angle (rows with ``y``, columns with ``(x, z)``) instead of one
        window per point. For many residuals on one grid use :meth:`grid_correlator`.
        """
        return self.grid_correlator(axes)(residual)

    def self_energy_grid(self, axes) -> np.ndarray:
        """:meth:`self_energy` on a tensor grid, in the order of :meth:`correlate_grid`."""
        geo = self.geometry
        if geo.ndim == 3 and geo.single_axis:
            bv, bu_t = self._separable_profiles(axes)
            sv = (bv * bv).sum(-1)  # (n_y,)
            su = (bu_t * bu_t).sum(1)  # (A, n_xz)
            n_x, n_y, n_z = (len(a) for a in axes)
            total = np.einsum("y,ak->yk", sv, su)
            return total.reshape(n_y, n_x, n_z).transpose(1, 0, 2).ravel()
        return self.self_energy(grid_points(axes))

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
            return np.matmul(w, b)  # (A, N): w @ B_a per angle
        u, v = geo.detector_coordinates(pos)
        bu = pixel_kernel(geo.pixel_centres(1)[None, None, :] - u[..., None], self.sigma, delta)
        bv = pixel_kernel(geo.pixel_centres(0)[None, None, :] - v[..., None], self.sigma, delta)
        # p_a = BV_a^T diag(w) BU_a: one (rows x n) @ (n x cols) product per angle.
        return np.matmul(np.swapaxes(bv * w[None, :, None], 1, 2), bu)


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


def _make_kernels_3d():
    """Compiled scatter (projection) and gather (vector-Jacobian product) of separable 3D atoms.

    An atom's projection is the outer product of its row window ``bv`` and column window ``bu``.
    The numpy path materialises every ``(row, column)`` pair of that product (``A n K^2``
    indices and values) and scatters them with :func:`numpy.bincount`; these loops touch the
    same pixels in the same order straight from the 1D windows. Row windows may have a leading
    axis of length 1 (shared by all angles). ``None`` without numba.
    """
    try:
        import numba
    except ImportError:  # numba is optional (extra "fast")
        return None

    @numba.njit(cache=True, nogil=True)
    def scatter(iu, bu, iv, bv, w, out):
        n_angles, n, ku = iu.shape
        kv = iv.shape[2]
        shared = iv.shape[0] == 1
        for a in range(n_angles):
            av = 0 if shared else a
            for i in range(n):
                c0 = iu[a, i, 0]
                inside = iu[a, i, ku - 1] - c0 == ku - 1  # window not clipped: contiguous
                bu_i = bu[a, i]
                for k in range(kv):
                    b = bv[av, i, k] * w[i]
                    if b == 0.0:  # row outside the detector (or underflow): adds nothing
                        continue
                    row = iv[av, i, k]
                    if inside:  # a contiguous row segment: vectorised
                        seg = out[a, row, c0:c0 + ku]
                        for m in range(ku):
                            seg[m] += b * bu_i[m]
                    else:
                        for m in range(ku):
                            out[a, row, iu[a, i, m]] += b * bu_i[m]

    # Reassociation lets the two dot products per row vectorise; it changes the last bits only.
    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
    def gather(iu, bu, dbu, iv, bv, dbv, w, r):
        n_angles, n, ku = iu.shape
        kv = iv.shape[2]
        shared = iv.shape[0] == 1
        gw = np.zeros(n)
        du = np.empty((n_angles, n))
        dv = np.empty((n_angles, n))
        for a in range(n_angles):
            av = 0 if shared else a
            for i in range(n):
                c0 = iu[a, i, 0]
                inside = iu[a, i, ku - 1] - c0 == ku - 1
                bu_i, dbu_i = bu[a, i], dbu[a, i]
                s_w = 0.0
                s_u = 0.0
                s_v = 0.0
                for k in range(kv):
                    if bv[av, i, k] == 0.0 and dbv[av, i, k] == 0.0:
                        continue
                    row = iv[av, i, k]
                    h = 0.0
                    hd = 0.0
                    if inside:
                        seg = r[a, row, c0:c0 + ku]
                        for m in range(ku):
                            h += seg[m] * bu_i[m]
                            hd += seg[m] * dbu_i[m]
                    else:
                        for m in range(ku):
                            g = r[a, row, iu[a, i, m]]
                            h += g * bu_i[m]
                            hd += g * dbu_i[m]
                    s_w += h * bv[av, i, k]
                    s_u += hd * bv[av, i, k]
                    s_v += h * dbv[av, i, k]
                gw[i] += s_w
                # d/du B(c - u) = -B'(c - u), likewise for v.
                du[a, i] = -s_u * w[i]
                dv[a, i] = -s_v * w[i]
        return gw, du, dv

    return scatter, gather


_kernels_3d = _make_kernels_3d()
