"""Output: atomic files (a file under its final name is complete or absent), plain JSON values."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
from pathlib import Path

import numpy as np

#: Longest file name (bytes) most file systems take (NAME_MAX of ext4, xfs, btrfs, APFS, NTFS).
NAME_MAX = 255

#: Temporary files alive in this process (removed by :func:`remove_temporaries` when a second
#: interrupt forces the process to exit without unwinding).
_LIVE_TEMPORARIES: set[Path] = set()


def _temporary_name(path: Path) -> str:
    """``.STEM.XXXXXXXX.partSUFFIX``, or a short ``.atomtomo-XXXXXXXX.partSUFFIX`` when that
    would not fit in :data:`NAME_MAX` bytes (an output name of 241-255 bytes must still work)."""
    token = secrets.token_hex(4)
    name = f".{path.stem}.{token}.part{path.suffix}"
    if len(os.fsencode(name)) <= NAME_MAX:
        return name
    suffix = path.suffix if len(os.fsencode(path.suffix)) <= 32 else ""
    return f".atomtomo-{token}.part{suffix}"


def _create_temporary(directory: Path, path: Path) -> Path:
    """Create a new empty file beside ``path`` with the permissions any new file gets (0666
    minus the umask, applied by the OS: reading the umask would mean setting it, which is not
    thread-safe)."""
    while True:
        tmp = directory / _temporary_name(path)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def remove_temporaries() -> None:
    """Remove the temporary files of every :func:`atomic_path` still open (forced exit)."""
    for tmp in list(_LIVE_TEMPORARIES):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _LIVE_TEMPORARIES.discard(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A failure or an interruption (KeyboardInterrupt included) removes the temporary file, so no
    half-written file is ever left under the output name. The temporary name keeps the suffix of
    ``path`` so that writers that dispatch on the extension (ase, imageio, matplotlib) still work.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    check_output_path(path)
    tmp = _create_temporary(directory, path)
    _LIVE_TEMPORARIES.add(tmp)
    try:
        yield tmp
        check_output_path(path)  # it may have become a FIFO or device while we worked
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _LIVE_TEMPORARIES.discard(tmp)


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_output_path(path, flag: str = "output", directory: bool = False) -> Path:
    """Refuse (:class:`~atomtomo.errors.InputError`) an output that cannot be written safely.

    Checked before any work: the directory it goes into exists and is writable, the name fits
    (:data:`NAME_MAX`), and an existing ``path`` is a regular file (``directory=False``) or a
    directory (``directory=True``). A device, FIFO or socket is never replaced by the atomic
    rename: ``-o /dev/null`` would otherwise put a regular file in its place.
    """
    from .errors import InputError

    path = Path(path)
    text = str(path)
    if not text or text.endswith(os.sep) and not directory:
        raise InputError(f"{flag} {text!r} is not a file name")
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise InputError(f"{flag}: file name longer than {NAME_MAX} bytes: {path.name[:40]}...")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # ELOOP, EACCES on a parent, ENAMETOOLONG of the whole path
        raise InputError(f"{flag} {path}: {exc.strerror or exc}") from None
    if st is not None:
        if directory:
            if not stat.S_ISDIR(st.st_mode):
                raise InputError(f"{flag} {path} exists and is not a directory")
        elif stat.S_ISDIR(st.st_mode):
            raise InputError(f"{flag} {path} is a directory; give a file name")
        elif not stat.S_ISREG(st.st_mode):
            raise InputError(f"{flag} {path} exists and is not a regular file (a device, FIFO or "
                             "socket); refusing to replace it")
    parent = _parent(path)
    if not parent.is_dir():
        raise InputError(f"output directory does not exist: {parent}")
    try:  # a real probe: os.access says yes to root and to some network file systems
        os.unlink(_create_temporary(parent, path))
    except OSError as exc:
        raise InputError(f"cannot write in output directory {parent}: "
                         f"{exc.strerror or exc}") from None
    return path


def _same_file(a, b) -> bool:
    """True if ``a`` and ``b`` name one file (any spelling, symbolic or hard link), or, when one
    does not exist yet, the same absolute path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: dict, inputs: dict | None = None, may_replace=()) -> None:
    """Check every output before any work: :func:`check_output_path` for each, no output naming
    an input (``-o in.h5`` would destroy the tilt series it reconstructs), no two outputs naming
    one file.

    ``outputs`` and ``inputs`` map a flag (``-o``, ``--checkpoint``, ``TILT.h5``) to a path or
    None; ``may_replace`` lists output flags that are meant to rewrite an input of the same
    flag (``--checkpoint`` with ``--resume``).
    """
    from .errors import InputError

    outputs = {f: p for f, p in outputs.items() if p is not None}
    inputs = {f: p for f, p in (inputs or {}).items() if p is not None}
    for flag, out in outputs.items():
        check_output_path(out, flag)
        for iflag, inp in inputs.items():
            if iflag == flag and flag in may_replace:
                continue
            if os.path.exists(inp) and os.path.exists(out) and _same_file(out, inp):
                same = "" if str(out) == str(inp) else f" (the same file as {inp})"
                raise InputError(f"{flag} {out} is the input {iflag}{same}: refusing to "
                                 "overwrite an input; choose another output name")
    flags = list(outputs)
    for i, a in enumerate(flags):
        for b in flags[i + 1:]:
            if _same_file(outputs[a], outputs[b]):
                raise InputError(f"{a} and {b} name the same file: {outputs[b]}")


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
