"""Noise models for simulated tilt series (seeded, so every experiment can be repeated).

Two models:

* additive Gaussian noise, given either as an absolute standard deviation or *relative* to the
  signal: ``relative = r`` means ``std = r * max |p|`` over the whole noiseless stack ``p``, so
  "1 % noise" is ``relative=0.01``;
* shot (Poisson) noise of a finite electron dose: a pixel of area ``A`` that would record ``p``
  counts ``N ~ Poisson(dose * A * p)`` electrons, and the noisy value is ``N / (dose * A)``, in
  the units of ``p``.

Both return the noisy array and the noise standard deviation, which the tilt series records as
``noise_std`` (spec section 3).
"""

from __future__ import annotations

import numpy as np

from ._checks import finite_number as _number, positive_number
from .errors import InputError


def _finite_array(projections) -> np.ndarray:
    p = np.asarray(projections, dtype=float)
    if not np.all(np.isfinite(p)):
        raise InputError("projections contain NaN or infinite values")
    return p


def add_gaussian_noise(projections, std=None, relative=None, seed=None):
    """Add white Gaussian noise.

    Parameters
    ----------
    projections : array_like
        Noiseless data.
    std : float, optional
        Absolute standard deviation, in the data's units.
    relative : float, optional
        Standard deviation as a fraction of ``max |projections|`` (``0.01`` = "1 % noise").
        Give exactly one of ``std`` and ``relative``.
    seed : int or numpy.random.Generator, optional
        Seed of the noise; the same seed gives the same noise.

    Returns
    -------
    noisy : ndarray
        ``projections + std_used * N(0, 1)``, float64.
    std_used : float
        The absolute standard deviation that was applied.
    """
    if (std is None) == (relative is None):
        raise InputError("give exactly one of an absolute noise std and a relative noise level")
    p = _finite_array(projections)
    if std is not None:
        std_used = _number(std, "noise std")
        if std_used < 0:
            raise InputError(f"noise std must be >= 0, got {std_used}")
    else:
        rel = _number(relative, "relative noise")
        if rel < 0:
            raise InputError(f"relative noise must be >= 0, got {rel}")
        std_used = rel * (float(np.max(np.abs(p))) if p.size else 0.0)
    rng = np.random.default_rng(seed)
    return p + std_used * rng.standard_normal(p.shape), float(std_used)


def add_poisson_noise(projections, dose, pixel_area, seed=None):
    """Shot noise of a finite electron dose.

    Parameters
    ----------
    projections : array_like
        Noiseless, non-negative data (density per unit detector area, as the forward model gives).
    dose : float
        Electrons per unit area (in the data's length unit squared) at ``projections == 1``.
    pixel_area : float
        Area of one pixel: ``pixel_size**2`` for a 2D detector, ``pixel_size`` for a 1D one.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    noisy : ndarray
        ``Poisson(dose * pixel_area * p) / (dose * pixel_area)``: unbiased, in the units of ``p``.
    std_estimate : float
        ``sqrt(mean(p) / (dose * pixel_area))``, the root-mean-square noise standard deviation.
    """
    dose = positive_number(dose, "dose")
    pixel_area = positive_number(pixel_area, "pixel area")
    p = _finite_array(projections)
    scale = float(np.max(np.abs(p))) if p.size else 0.0
    # The forward model can return -1e-17 where the true value is 0; anything larger is an error.
    if p.size and np.min(p) < -1e-9 * max(scale, 1e-300):
        raise InputError(f"Poisson noise needs non-negative projections, minimum is {np.min(p):.3g}")
    counts_per_unit = dose * pixel_area
    lam = np.clip(p, 0.0, None) * counts_per_unit
    rng = np.random.default_rng(seed)
    try:
        counts = rng.poisson(lam)
    except ValueError as exc:  # numpy refuses expectations above ~9e18
        raise InputError(f"dose too high for Poisson sampling ({exc})") from None
    noisy = counts / counts_per_unit
    std_estimate = np.sqrt(float(np.mean(np.clip(p, 0.0, None))) / counts_per_unit) if p.size else 0.0
    return noisy, float(std_estimate)
