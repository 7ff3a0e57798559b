"""Output: atomic files (a file under its final name is complete or absent), plain JSON values."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from pathlib import Path

import numpy as np


def _create_temporary(directory: Path, path: Path) -> Path:
    """Create a new empty file beside ``path`` with the permissions any new file gets (0666
    minus the umask, applied by the OS: reading the umask would mean setting it, which is not
    thread-safe)."""
    while True:
        tmp = directory / f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A failure or an interruption (KeyboardInterrupt included) removes the temporary file, so no
    half-written file is ever left under the output name. The temporary name keeps the suffix of
    ``path`` so that writers that dispatch on the extension (ase, imageio, matplotlib) still work.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        from .errors import InputError

        raise InputError(f"output directory does not exist: {directory}")
    tmp = _create_temporary(directory, path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def output_directory(path) -> Path:
    """Create the output directory ``path`` (its parent must exist) and return it.

    Raises :class:`~atomtomo.errors.InputError` when ``path`` is a file or its parent is missing.
    """
    from .errors import InputError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory does not exist: {parent}")
    out.mkdir(exist_ok=True)
    return out


def jsonable(value):
    """Plain-JSON version of ``value``: numpy to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)  # paths and anything else
