"""Shared test helper: gradients by central finite differences."""

import numpy as np


def finite_difference(potential, x, species=None, h=1e-6):
    """``dV/dx`` of ``potential.energy_and_gradient(x, species)[0]`` by central differences
    (``species`` is left out of the call when None, for energies of positions alone)."""
    def energy(y):
        args = (y,) if species is None else (y, species)
        return potential.energy_and_gradient(*args)[0]

    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (energy(xp) - energy(xm)) / (2 * h)
    return grad
