"""Image formation of measured projections: intensity scale, atom width and background.

Spec section 3 models a measured tilt series as

    y[a] = s * p[a] + b[a],        p = sum_k p_k,   p_k = w_k * (projection of species k atoms)

with ``p`` the projections of section 2 (atoms of width ``sigma``), ``s`` the intensity scale
(data units per unit atom: the integrated intensity of one atom of weight 1) and ``b[a] >= 0`` a
smooth background of projection ``a``. This module holds pure functions on arrays for the three
unknowns:

* the background model: per projection a non-negative combination of Bernstein polynomials of
  low degree on the detector (a tensor product in 3D). Bernstein polynomials are non-negative, so
  non-negative coefficients give a non-negative background, and a non-negative least-squares
  (NNLS) fit keeps the whole problem linear;
* estimates from the data alone (no atoms): :func:`baseline` (an asymmetric least-squares lower
  envelope), :func:`peak_widths` and :func:`estimate_sigma` (Gaussians fitted to the resolved
  peaks), :func:`estimate_scale` (the quantum of the peaks' integrated intensities: a column of
  n atoms holds n times the intensity of one; the multiple chosen with the atom count between
  the largest ellipsoid inside the projections' support and the support itself,
  :func:`support_measure`), :func:`estimate_noise_std`;
* refinement given atoms: :func:`fit_scale_background` (scales and background jointly, one exact
  NNLS on the normal equations) and :func:`fit_sigma` (a bounded 1-D minimisation of the
  residual over ``sigma``, scales and background refitted at every trial width).

The alternation with a reconstruction lives in :mod:`atomtomo.solvers.imaging_fit`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import ndimage, optimize
from scipy.special import comb, erf

from .errors import InputError

#: Default degree of the background polynomials (per detector axis).
BACKGROUND_DEGREE = 2


# ---------------------------------------------------------------------------------------------
# background model
# ---------------------------------------------------------------------------------------------
def bernstein(n: int, degree: int) -> np.ndarray:
    """Bernstein basis of ``degree`` on ``n`` pixel centres spread over [0, 1]: shape
    ``(n, degree + 1)``; every column is >= 0 and the rows sum to 1."""
    t = (np.arange(n) + 0.5) / n
    k = np.arange(degree + 1)
    return comb(degree, k) * t[:, None] ** k * (1 - t[:, None]) ** (degree - k)


def background_basis(detector_shape, degree: int = BACKGROUND_DEGREE) -> np.ndarray:
    """The background basis of one projection: ``(n_pixels, n_terms)`` with ``n_pixels`` the
    detector's pixel count (row-major in 3D) and ``n_terms = degree + 1`` (2D) or
    ``(degree + 1)^2`` (3D: a tensor product, rows x columns)."""
    shape = tuple(int(n) for n in np.atleast_1d(detector_shape))
    if degree < 0:
        raise InputError(f"background degree must be >= 0, got {degree}")
    if len(shape) == 1:
        return bernstein(shape[0], degree)
    rows, cols = bernstein(shape[0], degree), bernstein(shape[1], degree)
    return np.einsum("ri,cj->rcij", rows, cols).reshape(shape[0] * shape[1], -1)


def evaluate_background(coefficients, detector_shape, degree: int = BACKGROUND_DEGREE):
    """Background ``(n_angles, *detector_shape)`` from coefficients ``(n_angles, n_terms)``."""
    basis = background_basis(detector_shape, degree)
    coefficients = np.asarray(coefficients, float)
    return (coefficients @ basis.T).reshape(len(coefficients), *detector_shape)


def smooth_background(detector_shape, n_angles: int, level: float, *, degree: int = 2,
                      seed=None) -> np.ndarray:
    """A random smooth non-negative background for simulations: per projection a Bernstein
    polynomial of ``degree`` with coefficients uniform in ``[0.2, 1] * level``."""
    rng = np.random.default_rng(seed)
    n_terms = background_basis(detector_shape, degree).shape[1]
    coeffs = level * rng.uniform(0.2, 1.0, size=(n_angles, n_terms))
    return evaluate_background(coeffs, detector_shape, degree)


def baseline(data, degree: int = BACKGROUND_DEGREE, *, margin: float = 0.0) -> np.ndarray:
    """Background estimated from the data alone: the largest model background under the data.

    Per projection, the non-negative background model ``b = B c`` (``c >= 0``) with the largest
    integral that stays below the data plus ``margin`` (about 2-3 noise standard deviations):
    a linear programme (HiGHS). It touches the floor between the peaks; where atoms overlap
    everywhere (thick or dense samples) there is no floor and it lies above the true background,
    which the refinement given atoms (:func:`fit_scale_background`) corrects.
    """
    data = np.asarray(data, float)
    det = data.shape[1:]
    basis = background_basis(det, degree)
    cost = -basis.sum(axis=0)
    out = np.empty_like(data)
    for a in range(len(data)):
        y = data[a].reshape(-1) + margin
        res = optimize.linprog(cost, A_ub=basis, b_ub=y, bounds=(0, None), method="highs")
        coef = res.x if res.status == 0 else np.zeros(basis.shape[1])
        out[a] = (basis @ coef).reshape(det)
    return out


# ---------------------------------------------------------------------------------------------
# peaks: width and integrated intensity from the data alone
# ---------------------------------------------------------------------------------------------
def _pixel_gaussian(t, sigma, delta):
    """Pixel-averaged unit Gaussian at offsets ``t`` (spec section 2, ``B``)."""
    s = sigma * math.sqrt(2)
    return (erf((t + delta / 2) / s) - erf((t - delta / 2) / s)) / (2 * delta)


def peak_widths(signal, pixel_size: float, *, threshold: float = 0.15, max_peaks: int = 400,
                sigma_guess: float | None = None):
    """Gaussians fitted to the local maxima of background-free projections.

    Parameters
    ----------
    signal : ndarray
        ``(n_angles, n_det)`` or ``(n_angles, rows, cols)``, background removed.
    pixel_size : float
    threshold : float
        Only maxima above ``threshold`` times the largest value are fitted.
    max_peaks : int
        At most this many (the highest) are fitted.
    sigma_guess : float, optional
        Sets the fitting window (half-width ``3 sigma_guess``); default two pixels.

    Returns
    -------
    sigmas, integrals : ndarray
        Width and integrated intensity (``a`` in ``a * B``, data units x length^(ndim-1)) of
        every peak whose fit converged.
    """
    signal = np.asarray(signal, float)
    d = signal.ndim - 1
    delta = float(pixel_size)
    guess = 2 * delta if sigma_guess is None else float(sigma_guess)
    half = max(2, int(math.ceil(3 * guess / delta)))
    footprint = np.ones((1,) + (2 * half + 1,) * d, bool)
    peaks = (signal == ndimage.maximum_filter(signal, footprint=footprint, mode="constant",
                                              cval=-np.inf))
    peaks &= signal > threshold * signal.max()
    idx = np.argwhere(peaks)
    idx = idx[np.argsort(-signal[tuple(idx.T)])][:max_peaks]
    offsets = np.arange(-half, half + 1) * delta
    maxima_all = []  # 1D: every local maximum of each projection, for the neighbour terms
    if d == 1:
        local = signal == ndimage.maximum_filter(signal, size=(1, 3), mode="nearest")
        local &= signal > 0.02 * signal.max()
        maxima_all = [np.nonzero(row)[0] for row in local]
    sigmas, integrals = [], []
    for pk in idx:
        a, centre = pk[0], pk[1:]
        lo = centre - half
        hi = centre + half + 1
        if np.any(lo < 0) or np.any(hi > signal.shape[1:]):
            continue
        patch = signal[(a,) + tuple(slice(l, h) for l, h in zip(lo, hi))]
        if d == 1:
            # Neighbouring maxima whose tails reach into the window are fitted with the same
            # width: a free offset alone would take their shoulders and narrow the central peak.
            reach = half + int(math.ceil(2 * guess / delta))
            near = maxima_all[a][np.abs(maxima_all[a] - centre[0]) <= reach]
            shifts = (near[near != centre[0]] - centre[0]) * delta

            def model(_, amp, s, c, off, *rest):
                out = amp * _pixel_gaussian(offsets - c, s, delta) + off
                for t, a_j, c_j in zip(shifts, rest[0::2], rest[1::2]):
                    out = out + a_j * _pixel_gaussian(offsets - t - c_j, s, delta)
                return out
        else:
            shifts = np.zeros(0)

            def model(_, amp, s, c, off, c2=0.0):
                return (amp * np.outer(_pixel_gaussian(offsets - c, s, delta),
                                       _pixel_gaussian(offsets - c2, s, delta)) + off).ravel()
        peak = float(patch.max())
        unit = guess ** d * (2 * math.pi) ** (d / 2)
        p0 = [peak * unit, guess, 0.0, 0.0] + ([0.0] if d == 2 else [])
        bounds = ([0, 0.2 * delta, -delta, -np.inf] + ([-delta] if d == 2 else []),
                  [np.inf, 2 * half * delta, delta, np.inf] + ([delta] if d == 2 else []))
        for t in shifts:
            j = int(round(centre[0] + t / delta))
            p0 += [max(float(signal[a, j]), 0.0) * unit, 0.0]
            bounds[0].extend([0, -delta])
            bounds[1].extend([np.inf, delta])
        try:
            with warnings.catch_warnings():  # covariance unused: its warning is noise here
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                popt, _ = optimize.curve_fit(model, None, patch.ravel(), p0=p0, bounds=bounds,
                                             maxfev=400 * (1 + len(shifts)))
        except (RuntimeError, ValueError):
            continue
        sigmas.append(popt[1])
        integrals.append(popt[0])
    return np.asarray(sigmas), np.asarray(integrals)


def estimate_sigma(signal, pixel_size: float) -> float:
    """Atom width from the data alone: the typical width of the narrowest resolved peaks.

    Peaks are columns of atoms, single atoms or unresolved groups; groups only broaden, so the
    estimate is the median of the narrower half of the fitted widths (two passes: the second
    with a fitting window set by the first)."""
    guess = None
    for _ in range(2):
        sigmas, _ = peak_widths(signal, pixel_size, sigma_guess=guess)
        if len(sigmas) == 0:
            raise InputError("cannot estimate the atom width: no resolved peak in the data; "
                             "give --sigma")
        narrow = np.sort(sigmas)[: max(1, (len(sigmas) + 1) // 2)]
        guess = float(np.median(narrow))
    return guess


#: Atoms per bond_length^ndim of condensed matter: 2D between the square (1) and hexagonal
#: (1.155) lattices, 3D between bcc (1.299) and fcc/hcp (1.414); amorphous metals lie between.
PACKING = {2: 1.07, 3: 1.36}


def support_halfspaces(signal, geometry, bond_length: float, *,
                       threshold: float = 0.1) -> np.ndarray:
    """The strips (2D) or slabs (3D) the projections confine the atoms to, as half-spaces.

    Every projection confines the atoms to ``lo <= x . e <= hi`` where its background-free
    signal exceeds ``threshold`` times its maximum, widened by a quarter bond length on each side
    (an atom's cell reaches half a bond length beyond its centre, the threshold crossing lies
    about two atom widths beyond it). Returns rows ``(e, -hi)`` and ``(-e, lo)``: ``row[:-1] . x
    + row[-1] <= 0`` (the convention of :class:`scipy.spatial.HalfspaceIntersection`).
    """
    signal = np.asarray(signal, float)
    pad = bond_length / 4
    halfspaces = []
    for a in range(geometry.n_angles):
        frame = np.atleast_2d(geometry.directions[a])
        axes = [(frame[0], -1)] if geometry.ndim == 2 else [(frame[0], 1), (frame[1], 0)]
        img = signal[a]
        for e, axis in axes:
            profile = img if img.ndim == 1 else img.sum(axis=axis)
            above = np.nonzero(profile > threshold * profile.max())[0]
            if len(above) == 0:
                continue
            c = geometry.pixel_centres(-1 if (geometry.ndim == 2 or axis == 0) else 0)
            lo, hi = c[above[0]] - pad, c[above[-1]] + pad
            halfspaces.append(np.append(e, -hi))   # e.x - hi <= 0
            halfspaces.append(np.append(-e, lo))   # lo - e.x <= 0
    return np.array(halfspaces)


def _chebyshev_centre(A, b):
    """Centre and radius of the largest ball in ``A x <= b`` (a linear programme), or None."""
    d = A.shape[1]
    res = optimize.linprog(np.r_[np.zeros(d), -1.0], A_ub=np.c_[A, np.linalg.norm(A, axis=1)],
                           b_ub=b, bounds=[(None, None)] * d + [(0, None)], method="highs")
    if res.status != 0 or not res.x[-1] > 0:
        return None
    return res.x[:-1], float(res.x[-1])


def inscribed_ellipsoid_measure(A, b) -> float:
    """Area / volume of the largest ellipsoid inside the polytope ``A x <= b``.

    The ellipsoid ``{L u + c : |u| <= 1}`` (``L`` lower triangular with a positive diagonal)
    lies inside when ``a_i . c + |L^T a_i| <= b_i`` for every row; ``log det L`` is maximised
    under these constraints (a small smooth convex programme, SLSQP, from the largest inscribed
    ball). Returns nan when the polytope is empty or unbounded.
    """
    A, b = np.asarray(A, float), np.asarray(b, float)
    d = A.shape[1]
    ball = _chebyshev_centre(A, b)
    if ball is None:
        return float("nan")
    tril = np.tril_indices(d)
    diag = np.nonzero(tril[0] == tril[1])[0]
    m = len(tril[0])

    def unpack(x):
        L = np.zeros((d, d))
        L[tril] = x[:m]
        L[np.diag_indices(d)] = np.exp(L[np.diag_indices(d)])
        return L, x[m:]

    def inside(x):
        L, c = unpack(x)
        return b - A @ c - np.linalg.norm(A @ L, axis=1)

    x0 = np.zeros(m + d)
    x0[diag] = math.log(0.99 * ball[1])
    x0[m:] = ball[0]
    res = optimize.minimize(lambda x: -x[diag].sum(), x0, method="SLSQP",
                            constraints=[{"type": "ineq", "fun": inside}])
    L, c = unpack(res.x)
    room = b - A @ c
    if not np.all(room > 0):  # the centre left the polytope: the start is inside
        L, c = unpack(x0)
        room = b - A @ c
    # SLSQP ends within its tolerance of the boundary, on either side: shrink to fit exactly
    L = L * min(1.0, float(np.min(room / np.linalg.norm(A @ L, axis=1))))
    unit = math.pi if d == 2 else 4 * math.pi / 3
    return float(unit * abs(np.linalg.det(L)))


def support_measure(signal, geometry, bond_length: float, *, threshold: float = 0.1,
                    kind: str = "inscribed") -> float:
    """Area (2D) or volume (3D) the atoms occupy, from the projections' supports alone.

    The intersection of the strips / slabs of :func:`support_halfspaces` is a convex polytope
    that contains the sample. Its own measure (``kind="hull"``) overestimates a sample seen from
    few directions: the polytope of a disk seen from 3 angles is a hexagon (+10 %), that of a
    sphere seen from 3 single-axis angles a hexagonal prism (+65 %), and irregular shapes fill
    less. ``kind="inscribed"`` (default) measures the largest ellipsoid inside the polytope
    instead (:func:`inscribed_ellipsoid_measure`): exact for ellipses and ellipsoids, 21 % low
    for a square seen along its edges.
    """
    from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError

    if kind not in ("inscribed", "hull"):
        raise InputError(f"support measure kind must be 'inscribed' or 'hull', got {kind!r}")
    halfspaces = support_halfspaces(signal, geometry, bond_length, threshold=threshold)
    if len(halfspaces) < 2 * geometry.ndim:
        return float("nan")
    A, b = halfspaces[:, :-1], -halfspaces[:, -1]
    try:
        if kind == "inscribed":
            return inscribed_ellipsoid_measure(A, b)
        ball = _chebyshev_centre(A, b)
        if ball is None:
            return float("nan")
        hull = ConvexHull(HalfspaceIntersection(halfspaces, ball[0]).intersections)
    except (QhullError, ValueError):  # degenerate support (one angle, few pixels): no estimate
        return float("nan")
    return float(hull.volume)


#: Relative slack of the atom-count range in :func:`estimate_scale` (the inscribed ellipsoid is
#: no strict lower bound for sparse or non-convex samples, nor the hull an upper one).
COUNT_SLACK = 1.15


def estimate_scale(signal, pixel_size: float, sigma: float, *, weight: float = 1.0,
                   expected_count: float | None = None) -> float:
    """Intensity scale from the data alone: the quantum of the peaks' integrated intensities.

    A column of ``n`` atoms (weight ``w``) integrates to ``n * w * s``. Among the peaks whose
    fitted width is within 25 % of ``sigma`` (resolved columns), a quantum ``q`` explains the
    integrals when they lie near integer multiples of it: the comb score ``mean cos(2 pi I / q)``
    is high. Every fraction ``q / k`` of a good quantum scores as well, so the choice among the
    good ones (score within 80 % of the best) needs one more fact: ``expected_count``, an atom
    count or a range ``(low, high)`` of it (e.g. from :func:`support_measure` of the inscribed
    ellipsoid and of the hull, and the bond length). Among the good quanta whose count
    ``mass / q`` lies in the range (widened by 15 %) the largest is taken; when none
    does (overlapping columns blur the quantisation), ``mass / sqrt(low high)`` itself. Without
    a count, the largest good quantum. Returns ``s = q / weight``.
    """
    counts = None
    if expected_count is not None:
        counts = np.sort(np.atleast_1d(np.asarray(expected_count, float)))[[0, -1]]
        if not (np.all(np.isfinite(counts)) and counts[0] > 0):
            counts = None
    sigmas, integrals = peak_widths(signal, pixel_size, sigma_guess=sigma)
    keep = (np.abs(sigmas - sigma) < 0.25 * sigma) & (integrals > 0)
    if keep.sum() < 3:
        keep = integrals > 0
    values = integrals[keep]
    if len(values) == 0:
        raise InputError("cannot estimate the intensity scale: no resolved peak in the data; "
                         "give --intensity-scale")
    d = np.asarray(signal).ndim - 1
    mass = float(np.mean(np.asarray(signal, float).reshape(len(signal), -1).sum(axis=1))
                 * pixel_size ** d)
    high = float(np.percentile(values, 10)) * 1.15
    grid = np.geomspace(high / 40, high, 1500)
    score = np.array([np.mean(np.cos(2 * np.pi * values / q)) for q in grid])
    best = score.max()
    peaks = np.nonzero((score >= 0.8 * best) & (score >= np.r_[-np.inf, score[:-1]])
                       & (score >= np.r_[score[1:], -np.inf]))[0]
    if best < 0.3 or len(peaks) == 0:
        q = high / 1.15  # no quantisation visible: the weakest peaks are taken as one atom
    elif counts is not None:
        lo, hi = counts
        target = mass / math.sqrt(lo * hi)
        n_at = mass / grid[peaks]
        inside = peaks[(n_at >= lo / COUNT_SLACK) & (n_at <= hi * COUNT_SLACK)]
        if len(inside) == 0:  # no quantum near the count: trust it
            return target / weight
        q = float(grid[inside[-1]])  # fractions of the quantum fit too: the largest
    else:
        q = float(grid[peaks[-1]])
    n = np.maximum(np.round(values / q), 1)
    q = float(np.sum(values * n) / np.sum(n * n))  # the least-squares quantum
    return q / weight


def estimate_noise_std(data) -> float:
    """Noise standard deviation from the data alone, from second differences along the last
    detector axis (the atoms are several pixels wide, so their second differences are small
    against white noise): ``1.4826 MAD(d2) / sqrt(6)``."""
    data = np.asarray(data, float)
    d2 = data[..., 2:] - 2 * data[..., 1:-1] + data[..., :-2]
    if d2.size == 0:
        return 0.0
    mad = np.median(np.abs(d2 - np.median(d2)))
    return float(1.4826 * mad / math.sqrt(6))


# ---------------------------------------------------------------------------------------------
# refinement given atoms
# ---------------------------------------------------------------------------------------------
def fit_scale_background(data, parts, *, background: bool = True, degree: int = BACKGROUND_DEGREE,
                         scales=None, ridge: float = 1e-10):
    """Least-squares fit of ``data ~ sum_k s_k parts[k] + b`` with ``s_k >= 0`` and ``b`` the
    non-negative background model, exactly (one NNLS).

    Parameters
    ----------
    data : ndarray
        ``(n_angles, *detector)``.
    parts : ndarray
        ``(n_parts, n_angles, *detector)``: the model projections each scale multiplies (one part
        for one common scale; one per species for per-species scales).
    background : bool
        Fit the background (else ``b = 0``).
    degree : int
        Degree of the background polynomials.
    scales : array_like, optional
        Fixed scales (only the background is fitted).
    ridge : float
        Relative diagonal loading of the normal equations (conditioning only).

    Returns
    -------
    scales : ndarray (n_parts,)
    background : ndarray like ``data``
    """
    data = np.asarray(data, float)
    parts = np.asarray(parts, float)
    n_a, det = data.shape[0], data.shape[1:]
    y = data.reshape(n_a, -1)
    P = parts.reshape(len(parts), n_a, -1)
    if scales is not None:
        scales = np.asarray(scales, float)
        y = y - np.einsum("k,kap->ap", scales, P)
        P = P[:0]
    if not background:
        if scales is not None:
            return scales, np.zeros_like(data)
        A = P.reshape(len(P), -1).T
        s, _ = optimize.nnls(A, y.reshape(-1))
        return s, np.zeros_like(data)
    B = background_basis(det, degree)
    m, k = len(P), B.shape[1]
    n = m + n_a * k
    # Normal equations G x = h of the block design [P_1..P_m | diag(B, ..., B)].
    G = np.zeros((n, n))
    h = np.zeros(n)
    G[:m, :m] = np.einsum("iap,jap->ij", P, P)
    h[:m] = np.einsum("iap,ap->i", P, y)
    BtB = B.T @ B
    for a in range(n_a):
        sl = slice(m + a * k, m + (a + 1) * k)
        G[sl, sl] = BtB
        G[:m, sl] = P[:, a] @ B
        G[sl, :m] = G[:m, sl].T
        h[sl] = B.T @ y[a]
    G[np.diag_indices(n)] += ridge * max(np.trace(G) / n, 1e-300)
    R = np.linalg.cholesky(G).T  # G = R^T R
    x, _ = optimize.nnls(R, np.linalg.solve(R.T, h), maxiter=50 * n)
    coef = x[m:].reshape(n_a, k)
    bg = (coef @ B.T).reshape(n_a, *det)
    return (x[:m] if scales is None else scales), bg


def fit_sigma(data, project, sigma0: float, *, background: bool = True,
              degree: int = BACKGROUND_DEGREE, scales=None, bounds=(0.6, 1.6),
              xtol: float = 1e-3):
    """Atom width given atoms: minimise ``||data - s p_sigma - b||`` over ``sigma`` (bounded
    Brent), with the scales and background refitted at every trial (a profile likelihood).

    ``project(sigma)`` returns the model parts ``(n_parts, n_angles, *detector)`` at width
    ``sigma``; ``bounds`` are relative to ``sigma0``. Returns ``(sigma, scales, background)``.
    """
    data = np.asarray(data, float)

    def misfit(sig):
        parts = project(sig)
        s, bg = fit_scale_background(data, parts, background=background, degree=degree,
                                     scales=scales)
        r = data - np.einsum("k,k...->...", s, parts) - bg
        return float(np.sum(r * r))

    res = optimize.minimize_scalar(misfit, bounds=(bounds[0] * sigma0, bounds[1] * sigma0),
                                   method="bounded", options={"xatol": xtol * sigma0})
    sig = float(res.x)
    s, bg = fit_scale_background(data, project(sig), background=background, degree=degree,
                                 scales=scales)
    return sig, s, bg
