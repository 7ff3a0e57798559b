"""Checkpoint files of the resumable solvers: one ``.npz`` holding arrays and a JSON record.

A checkpoint belongs to one run: it records the run's settings (and a digest of its data), and
:func:`check_settings` refuses to resume it under different ones, naming what changed.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .._io import atomic_path
from ..errors import InputError, first_line


def digest(*arrays) -> str:
    """A short hash of the arrays' values (checkpoints name the data and start they belong to)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _plain(value):
    """JSON for numpy scalars: their Python value."""
    return value.item() if hasattr(value, "item") else value


def _as_json(value):
    """``value`` as it reads back from JSON (tuples become lists, numpy scalars Python ones)."""
    return json.loads(json.dumps(value, default=_plain))


def write_checkpoint(path, meta: dict, arrays: dict) -> None:
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta, default=_plain)), **arrays)


def read_checkpoint(path):
    """``(meta, arrays)`` of a checkpoint; :class:`InputError` if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except Exception as exc:
        what = (f"{first_line(exc)}" if isinstance(exc, (KeyError, json.JSONDecodeError))
                else "not a checkpoint file (an .npz archive written by --checkpoint)")
        raise InputError(f"cannot read checkpoint {path}: {what}") from None
    return meta, arrays


def check_settings(path, saved: dict, now: dict) -> None:
    """Refuse to resume the checkpoint at ``path`` when its settings differ from the run's."""
    saved, now = _as_json(saved), _as_json(now)
    if saved != now:
        differ = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        what = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
        raise InputError(f"checkpoint {path} belongs to another run ({what}); "
                         "resume with the same settings or start without --resume")
