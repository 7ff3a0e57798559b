"""Checks of arguments shared by the public functions (validation at the boundary).

Each returns the value converted (a ``float``, a box array) or raises
:class:`~atomtomo.errors.InputError` with a one-line message that names the argument.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError


def short_repr(value) -> str:
    """``repr(value)`` on one line, at most 60 characters (for error messages)."""
    if isinstance(value, np.generic):  # 3.0, not np.float64(3.0)
        value = value.item()
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def box_array(value, ndim: int, where: str | None = None) -> np.ndarray | None:
    """``value`` as a ``(ndim, 2)`` float array of finite (lo, hi) pairs with lo < hi, or None.

    ``where`` prefixes the error messages (a file or function name).
    """
    if value is None:
        return None
    what = f"{where}: box" if where else "box"
    try:
        box = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers, got {short_repr(value)}") from None
    if box.shape != (ndim, 2):
        raise InputError(f"{what} must have shape ({ndim}, 2) (lo, hi per axis), "
                         f"got {box.shape}")
    if not np.all(np.isfinite(box)):
        raise InputError(f"{what} contains NaN or infinite values")
    if np.any(box[:, 0] >= box[:, 1]):
        raise InputError(f"{what} needs lo < hi on every axis, got {box.tolist()}")
    return box


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
