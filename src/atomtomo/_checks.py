"""Checks of scalar arguments shared by the public functions (validation at the boundary).

Each returns the value as a ``float`` or raises :class:`~atomtomo.errors.InputError` with a
one-line message that names the argument.
"""

from __future__ import annotations

import math

from .errors import InputError


def finite_number(value, name: str) -> float:
    """``value`` as a finite float."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    return v


def positive_number(value, name: str) -> float:
    """``value`` as a finite float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return v
