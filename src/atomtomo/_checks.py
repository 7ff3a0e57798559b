"""Checks of arguments shared by the public functions (validation at the boundary).

Each returns the value converted (a ``float``, a box array) or raises
:class:`~atomtomo.errors.InputError` with a one-line message that names the argument.
"""

from __future__ import annotations

import math
import os

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


# ---------------------------------------------------------------------------------------------
# Bounded memory, meaningful data: checked before anything large is allocated or solved.
# ---------------------------------------------------------------------------------------------
#: Largest working memory (bytes) one array computation may plan for, unless the environment
#: variable ``ATOMTOMO_MAX_MEMORY`` (bytes, or with a suffix: ``512M``, ``16G``) says otherwise.
MAX_MEMORY_BYTES = 4 * 2**30

#: Bytes per entry of a per-atom kernel window in the projector (index, value, edges, tails,
#: differences and the scatter's products: about eight float64/int64 arrays of one shape).
WINDOW_ENTRY_BYTES = 64

#: Copies of the data array a solver keeps at once (data, model, residual, gradient work).
DATA_COPIES = 4

#: Projections whose largest magnitude exceeds this cannot be fitted in float64 (squares and
#: sums of the objective overflow or lose all precision): rescale such data.
MAX_DATA_MAGNITUDE = 1e100


def max_memory_bytes() -> int:
    """The memory limit: ``ATOMTOMO_MAX_MEMORY`` if set (``4G``, ``512M``, bytes), else
    :data:`MAX_MEMORY_BYTES`."""
    text = os.environ.get("ATOMTOMO_MAX_MEMORY", "").strip()
    if not text:
        return MAX_MEMORY_BYTES
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    scale = units.get(text[-1].upper(), 1)
    try:
        value = float(text[:-1] if text[-1].upper() in units else text) * scale
    except ValueError:
        raise InputError(f"ATOMTOMO_MAX_MEMORY must be a size like 4G or 512M, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"ATOMTOMO_MAX_MEMORY must be positive, got {text!r}")
    return int(value)


def _size(nbytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} bytes"


def check_memory(nbytes: float, what: str) -> None:
    """Refuse a computation that would need more than :func:`max_memory_bytes`."""
    limit = max_memory_bytes()
    if not nbytes <= limit:  # NaN or inf too
        raise InputError(f"{what} would need about {_size(nbytes)} of memory, more than the "
                         f"limit of {_size(limit)} (set ATOMTOMO_MAX_MEMORY to raise it)")


def check_projector_size(n_angles: int, detector_shape, support: float) -> None:
    """Refuse a projector whose data or per-atom windows would not fit in memory.

    ``support`` is the window width K in pixels (about ``8 sigma / pixel_size``): one atom's
    projection touches ``n_angles K^(ndim-1)`` detector pixels; the data hold
    ``n_angles prod(detector_shape)`` values, kept in :data:`DATA_COPIES` copies.
    """
    shape = [float(n) for n in detector_shape]
    data = float(n_angles) * math.prod(shape)
    check_memory(DATA_COPIES * 8 * data,
                 f"{int(n_angles)} projections of {'x'.join(str(int(n)) for n in shape)} pixels")
    window = float(n_angles) * float(support) ** len(shape)
    check_memory(WINDOW_ENTRY_BYTES * window,
                 f"one atom's projection ({float(support):.3g} pixels wide: atom width / pixel "
                 "size too large)")


def check_data_scale(projections, where: str) -> None:
    """Refuse projections the objective cannot be evaluated on (NaN, inf, or so large that
    their squares overflow: a run on them never converges and never stops)."""
    p = np.asarray(projections)
    if not np.all(np.isfinite(p)):
        raise InputError(f"{where}: projections contain NaN or infinite values")
    peak = float(np.max(np.abs(p))) if p.size else 0.0
    if peak > MAX_DATA_MAGNITUDE:
        raise InputError(f"{where}: projection values up to {peak:.3g} are too large to fit "
                         f"(the objective's squares overflow above {MAX_DATA_MAGNITUDE:g}); "
                         "rescale the data")


#: Two projection directions closer than this (radians) carry the same information.
SAME_DIRECTION = 1e-4


def check_beams(beams, ndim: int, where: str, reconstruct: bool = True) -> None:
    """Refuse a set of projections that cannot determine atom positions.

    ``beams`` are the unit beam directions, one per projection. Two projections along the same
    or opposite beams (``theta`` and ``theta + pi``: the same projection, mirrored) add no
    information. With ``reconstruct``, also one projection in 2D: it leaves every atom's
    position along the beam free (simulating one is fine).
    """
    b = np.asarray(beams, dtype=float).reshape(len(beams), -1)
    if reconstruct and ndim == 2 and len(b) < 2:
        raise InputError(f"{where}: a 2D reconstruction needs at least 2 projection angles: one "
                         "projection leaves every atom's position along the beam free")
    cos = np.abs(b @ b.T)
    np.fill_diagonal(cos, 0.0)
    i, j = np.unravel_index(int(np.argmax(cos)), cos.shape) if len(b) > 1 else (0, 0)
    if len(b) > 1 and cos[i, j] > math.cos(SAME_DIRECTION):
        raise InputError(f"{where}: projections {min(i, j) + 1} and {max(i, j) + 1} look along "
                         "the same line (equal or opposite angles, e.g. 0 and 180 degrees: the "
                         "same projection, mirrored); each angle must add a new direction")


def looks_like_degrees(angles_rad) -> bool:
    """True when angles stored in radians are probably degrees (some ``|angle| > 2 pi``)."""
    a = np.asarray(angles_rad, dtype=float)
    return bool(a.size and np.max(np.abs(a)) > 2 * math.pi + 1e-9)


#: A box may reach at most this many detector half-widths from the axis: beyond it, no
#: projection sees an atom, and the search spends its time in empty space.
MAX_BOX_REACH = 2.0


def check_box_in_view(box, detector_shape, pixel_size: float, where: str) -> None:
    """Refuse a reconstruction box far larger than the detectors' field of view.

    The detector is centred on the axis, ``n pixel_size / 2`` either side. In 2D every box
    coordinate, in 3D (tilt axis ``y``) ``x`` and ``z`` against the columns and ``y`` against
    the rows, may reach :data:`MAX_BOX_REACH` times that.
    """
    half = [n * pixel_size / 2 for n in detector_shape]
    box = np.asarray(box, dtype=float)
    if box.size != 2 * (len(half) + 1):
        return  # a box of the wrong shape is refused where it is used, with its own message
    box = box.reshape(-1, 2)
    if len(box) == 2:
        reach = [(np.max(np.abs(box)), half[0])]
    else:
        reach = [(np.max(np.abs(box[[0, 2]])), half[1]), (np.max(np.abs(box[1])), half[0])]
    for r, h in reach:
        if not r <= MAX_BOX_REACH * h:
            raise InputError(f"{where}: the box reaches {r:.4g} from the axis but the detector "
                             f"sees only {h:.4g} either side; no projection sees atoms out there "
                             "(give a box within the field of view)")
