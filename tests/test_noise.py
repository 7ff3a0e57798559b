"""Noise models: seeded and reproducible, with the advertised statistics."""

from __future__ import annotations

import numpy as np
import pytest

from atomtomo.errors import InputError
from atomtomo.noise import add_gaussian_noise, add_poisson_noise

N = 200_000  # samples for the statistical checks (the bounds below are > 5 standard errors)


def test_gaussian_absolute_std_and_mean():
    p = np.linspace(0.0, 3.0, N).reshape(400, 500)
    noisy, std = add_gaussian_noise(p, std=0.05, seed=1)
    assert std == 0.05 and noisy.shape == p.shape and noisy.dtype == np.float64
    e = noisy - p
    # std of the sample std ~ std / sqrt(2N); of the mean ~ std / sqrt(N)
    assert abs(e.std() / 0.05 - 1) < 5 / np.sqrt(2 * N)
    assert abs(e.mean()) < 5 * 0.05 / np.sqrt(N)
    # white: neighbouring errors are uncorrelated
    assert abs(np.corrcoef(e.ravel()[:-1], e.ravel()[1:])[0, 1]) < 5 / np.sqrt(N)


def test_gaussian_relative_std():
    p = np.array([[0.0, -4.0, 1.0], [2.0, 0.5, 0.1]])
    noisy, std = add_gaussian_noise(p, relative=0.01, seed=0)
    assert std == pytest.approx(0.04)  # 1 % of max |p|
    big = np.full((500, 400), 2.0)
    big[0, 0] = 10.0
    noisy, std = add_gaussian_noise(big, relative=0.05, seed=2)
    assert std == pytest.approx(0.5)
    assert abs((noisy - big).std() / 0.5 - 1) < 5 / np.sqrt(2 * big.size)


def test_gaussian_seeded_and_reproducible():
    p = np.zeros((3, 64))
    a, _ = add_gaussian_noise(p, std=1.0, seed=42)
    b, _ = add_gaussian_noise(p, std=1.0, seed=42)
    c, _ = add_gaussian_noise(p, std=1.0, seed=43)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # a Generator is accepted and advanced
    rng = np.random.default_rng(42)
    d, _ = add_gaussian_noise(p, std=1.0, seed=rng)
    np.testing.assert_array_equal(d, a)
    e, _ = add_gaussian_noise(p, std=1.0, seed=rng)
    assert not np.allclose(d, e)
    # zero noise returns the data unchanged; the input is never modified
    q = np.arange(6.0)
    out, std = add_gaussian_noise(q, std=0.0, seed=1)
    np.testing.assert_array_equal(out, q)
    add_gaussian_noise(q, std=1.0, seed=1)
    np.testing.assert_array_equal(q, np.arange(6.0))


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "exactly one"),
    ({"std": 0.1, "relative": 0.1}, "exactly one"),
    ({"std": -0.1}, ">= 0"),
    ({"relative": -0.1}, ">= 0"),
    ({"std": np.nan}, "finite"),
    ({"std": "lots"}, "number"),
])
def test_gaussian_bad_parameters(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        add_gaussian_noise(np.ones(4), **kwargs)


def test_gaussian_rejects_nan_data():
    with pytest.raises(InputError, match="NaN"):
        add_gaussian_noise(np.array([1.0, np.nan]), std=0.1)


@pytest.mark.parametrize("dose, area, value", [(1e3, 0.01, 2.0), (50.0, 0.04, 0.3),
                                               (1e6, 1e-4, 7.0)])
def test_poisson_mean_and_variance(dose, area, value):
    """N ~ Poisson(dose * area * p), noisy = N / (dose * area): mean p, variance p / (dose area)."""
    p = np.full(N, value)
    noisy, std = add_poisson_noise(p, dose, area, seed=3)
    lam = dose * area * value
    counts = noisy * dose * area
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # whole electrons
    var = value / (dose * area)
    assert abs(noisy.mean() - value) < 5 * np.sqrt(var / N)
    # the sample variance of a Poisson variable has variance ~ (lam + 2 lam^2) / N (in counts)
    assert abs(noisy.var() / var - 1) < 5 * np.sqrt((lam + 2 * lam**2) / N) / lam
    assert std == pytest.approx(np.sqrt(var))


def test_poisson_varies_with_signal_and_is_seeded():
    p = np.concatenate([np.full(N, 0.5), np.full(N, 4.0), np.zeros(1000)])
    noisy, std = add_poisson_noise(p, 200.0, 0.05, seed=9)
    lo, hi, zero = noisy[:N], noisy[N:2 * N], noisy[2 * N:]
    assert np.all(zero == 0.0)  # no signal, no electrons
    assert lo.var() == pytest.approx(0.5 / 10.0, rel=0.02)
    assert hi.var() == pytest.approx(4.0 / 10.0, rel=0.02)
    assert std == pytest.approx(np.sqrt(p.mean() / 10.0))
    again, _ = add_poisson_noise(p, 200.0, 0.05, seed=9)
    np.testing.assert_array_equal(noisy, again)
    other, _ = add_poisson_noise(p, 200.0, 0.05, seed=10)
    assert not np.array_equal(noisy, other)


def test_poisson_high_dose_converges_to_data():
    p = np.random.default_rng(0).random((3, 50))
    noisy, std = add_poisson_noise(p, 1e12, 1.0, seed=0)
    np.testing.assert_allclose(noisy, p, atol=1e-4)
    assert std < 1e-5


def test_poisson_tolerates_rounding_below_zero():
    p = np.array([1.0, -1e-17, 0.0])
    noisy, _ = add_poisson_noise(p, 10.0, 1.0, seed=0)
    assert noisy[1] == 0.0


@pytest.mark.parametrize("data, dose, area, fragment", [
    (np.ones(3), 0.0, 1.0, "dose"),
    (np.ones(3), -5.0, 1.0, "dose"),
    (np.ones(3), np.inf, 1.0, "dose"),
    (np.ones(3), 10.0, 0.0, "pixel area"),
    (np.ones(3), 10.0, "big", "pixel area"),
    (np.array([1.0, -0.5]), 10.0, 1.0, "non-negative"),
    (np.array([1.0, np.nan]), 10.0, 1.0, "NaN"),
    (np.ones(3), 1e300, 1.0, "dose too high"),
])
def test_poisson_bad_input(data, dose, area, fragment):
    with pytest.raises(InputError, match=fragment) as exc:
        add_poisson_noise(data, dose, area, seed=0)
    assert "\n" not in str(exc.value)
