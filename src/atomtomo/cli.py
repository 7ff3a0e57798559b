"""The ``atomtomo`` command line (spec section 5), built on click and rich.

Commands: ``project``, ``simulate``, ``reconstruct``, ``evaluate``, ``plot``, ``demo``,
``train-locator``, ``reproduce``, ``import-mrc``, ``import-tiff``, ``import-aet``, ``import-emd``,
``info``, ``analyse``, ``confidence``, ``report``, ``density``. See ``docs/cli.md``.

Exit status: 0 on success; 2 for bad input or usage, with ONE line on stderr,
``atomtomo <command>: error: <what is wrong>``, and no traceback; 1 for an internal error (one
line; the traceback only with ``--debug`` or ``ATOMTOMO_DEBUG=1``); 130 when interrupted. Every
output file is written atomically (:func:`atomtomo._io.atomic_path`): complete or absent.

Values are typed as users type them: angles in degrees (``--angles -60,0,60`` and
``--angles=-60,0,60`` both work), detectors as ``N`` (2D) or ``NxM`` (3D: N rows, M columns).
Heavy modules (solvers, plotting, torch, dask) are imported inside the commands that use them,
so ``atomtomo --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path

import click
import numpy as np

from . import __version__
from ._io import atomic_path, check_output_path, check_outputs, jsonable
from ._checks import check_beams, check_box_in_view, looks_like_degrees
from .errors import InputError

#: The 8-byte signature every HDF5 file starts with (at offset 0 for files written by h5py).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: simulate's default atom width and pixel size, as fractions of the phantom's bond length.
SIGMA_FRACTION = 1 / 8
PIXEL_FRACTION = 1 / 10

#: Seconds of a reconstruct time limit kept for writing the outputs after the solver stops.
WRITE_MARGIN = 0.2

#: At most this many frames are kept for ``--animate`` (older frames are thinned evenly).
MAX_FRAMES = 200

#: What an interruption leaves behind, for commands whose outputs are not all-or-nothing.
_INTERRUPTED = {
    "reproduce": "interrupted; the finished tasks are kept, run the same command to resume",
    "train-locator": "interrupted; the last checkpoint is kept (--resume continues from it)",
}

# Which command is running, its arguments, whether tracebacks are wanted and what an interrupt
# keeps (a callable giving the line to print, set by reconstruct); set per invocation by main().
_STATE = {"command": None, "debug": False, "args": [], "interrupted": None}


# ---------------------------------------------------------------------------------------------
# Error handling: one line on stderr, the right exit status.
# ---------------------------------------------------------------------------------------------
def _one_line(text) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _prefix(command=None) -> str:
    command = command or _STATE["command"]
    return f"atomtomo {command}" if command else "atomtomo"


def _debug_wanted() -> bool:
    return _STATE["debug"] or os.environ.get("ATOMTOMO_DEBUG", "").strip() not in ("", "0")


def _fail(message, code, command=None, show_traceback=False) -> int:
    if show_traceback and _debug_wanted():
        traceback.print_exc()
    click.echo(f"{_prefix(command)}: {message}", err=True)
    return code


#: Parameters that name a file (or, typed ``file_okay=False``, a directory) a command writes.
#: Every command is checked by :class:`AtomtomoCommand` before it runs: see :func:`_guard_files`.
OUTPUT_PARAMS = ("output", "write_truth", "history", "animate", "checkpoint", "density_out",
                 "half_sets_plot")


def _flag_of(param) -> str:
    if isinstance(param, click.Argument):
        return param.metavar or param.name.upper()
    # "-o" for the output (as users type it), the long name for the rest
    return "-o" if "-o" in param.opts else max(param.opts, key=len)


def _guard_files(command, ctx) -> None:
    """Before a command does anything: every output can be written safely and none names an
    input (:func:`atomtomo._io.check_outputs`). Inputs are every other parameter that names an
    existing file, plus the angle files read while parsing."""
    outputs, inputs, dirs = {}, {}, []
    for param in command.params:
        value = ctx.params.get(param.name)
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            continue
        flag = _flag_of(param)
        if param.name in OUTPUT_PARAMS:
            if isinstance(param.type, click.Path) and not param.type.file_okay:
                dirs.append((flag, value))
            else:
                outputs[flag] = value
        elif os.path.isfile(value):
            inputs[flag] = value
    for path in ctx.meta.get("atomtomo.angle_files", ()):
        inputs.setdefault("--angles", path)
    for flag, value in dirs:
        check_output_path(value, flag, directory=True)
    check_outputs(outputs, inputs)


class AtomtomoCommand(click.Command):
    """A command whose outputs are checked before it runs (:func:`_guard_files`)."""

    def invoke(self, ctx):
        _guard_files(self, ctx)
        return super().invoke(ctx)


class AtomtomoGroup(click.Group):
    """The top-level group: turns every failure into one line and an exit status."""

    command_class = AtomtomoCommand

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            _STATE["command"] = cmd.name
        return name, cmd, rest

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _STATE["command"] = None
        _STATE["debug"] = False
        _STATE["interrupted"] = None
        _STATE["t0"] = time.monotonic()
        if args is None:
            args = sys.argv[1:]
        args = list(args)
        _STATE["args"] = list(args)
        prog_name = prog_name or "atomtomo"
        if hasattr(self, "_main_shell_completion"):  # click's shell completion (_ATOMTOMO_COMPLETE)
            self._main_shell_completion(extra, prog_name, complete_var)
        code = self._run(args, prog_name, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args, prog_name, extra) -> int:
        from . import stopping

        try:
            with stopping.handle_signals(), warnings.catch_warnings():
                warnings.showwarning = _show_warning
                with self.make_context(prog_name, args, **extra) as ctx:
                    self.invoke(ctx)
            return 0
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.UsageError as exc:
            command = None
            if exc.ctx is not None and exc.ctx.parent is not None:
                command = exc.ctx.command.name
            hint = f" (see '{_prefix(command)} --help')" if command or exc.ctx is not None else ""
            return _fail(f"error: {_one_line(exc.format_message())}{hint}", 2, command)
        except click.ClickException as exc:  # e.g. click.FileError
            return _fail(f"error: {_one_line(exc.format_message())}", 2)
        except InputError as exc:
            return _fail(f"error: {_one_line(exc)}", 2, show_traceback=True)
        except (KeyboardInterrupt, click.Abort) as exc:
            return _interrupted(getattr(exc, "signum", 2))
        except SystemError as exc:
            # an interrupt raised inside a compiled (numba) kernel surfaces as SystemError
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                return _interrupted(getattr(exc.__cause__ or exc.__context__, "signum", 2))
            return _fail(f"internal error: SystemError: {_one_line(exc)}", 1, show_traceback=True)
        except (MemoryError, ValueError) as exc:
            if isinstance(exc, ValueError) and not _too_big(exc):
                return self._internal(exc)
            return _fail("error: out of memory: the problem is too large for this machine "
                         "(fewer angles or detector pixels, a larger pixel size, or a smaller "
                         "phantom)", 2, show_traceback=True)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            # Unreadable inputs / unwritable outputs that a reader did not already report.
            return _fail(f"error: {_one_line(exc)}", 2, show_traceback=True)
        except BrokenPipeError:
            return 1
        except Exception as exc:  # noqa: BLE001 -- everything else is our bug
            return self._internal(exc)

    @staticmethod
    def _internal(exc) -> int:
        msg = f"{type(exc).__name__}: {_one_line(exc)}"
        tail = "" if _debug_wanted() else " (rerun with --debug or ATOMTOMO_DEBUG=1 for the traceback)"
        return _fail(f"internal error: {msg}{tail}", 1, show_traceback=True)


def _too_big(exc) -> bool:
    """True for numpy's refusals of arrays larger than the address space (out of memory too)."""
    text = str(exc)
    return "array is too big" in text or "Maximum allowed size exceeded" in text \
        or "maximum supported dimension" in text


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our own warnings as one line on stderr; a library's (mrcfile, tifffile, h5py, numpy,
    matplotlib) are dropped: the readers turn the ones that matter into errors of their own."""
    package = os.path.dirname(os.path.abspath(__file__))
    if os.path.abspath(str(filename)).startswith(package + os.sep):
        click.echo(f"{_prefix()}: warning: {_one_line(message)}", err=True)


def _interrupted(signum) -> int:
    """The one line of an interrupted command (what it kept) and its exit status 128 + signal."""
    what = None
    if _STATE["interrupted"] is not None:
        with contextlib.suppress(Exception):
            what = _STATE["interrupted"]()
    what = (what or _INTERRUPTED.get(_STATE["command"])
            or "interrupted; no partial output was written")
    return _fail(what, 128 + int(signum))


def _set_debug(ctx, param, value):
    if value:
        _STATE["debug"] = True
    return value


_debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug, hidden=True,
    help="Show the traceback of internal errors."
)
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")


def _output_option(help_text, required=True, default=None):
    return click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
                        required=required, default=default, help=help_text)


# ---------------------------------------------------------------------------------------------
# Parameter types: values as users type them. Each failure is a click.BadParameter (exit 2).
# ---------------------------------------------------------------------------------------------
def _parse_numbers(text: str, what: str):
    """Comma-separated finite floats; raise ValueError saying what is wrong."""
    items = str(text).split(",")
    if not str(text).strip():
        raise ValueError(f"expected {what}, got an empty value")
    values = []
    for item in items:
        if not item.strip():
            raise ValueError(f"{text!r} has an empty item; expected {what}")
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not a number; expected {what}") from None
        if not math.isfinite(v):
            raise ValueError(f"{item.strip()!r} is not a finite number")
        values.append(v)
    return values


class AnglesType(click.ParamType):
    """Tilt angles in degrees: ``-60,0,60``, or an angle file: one angle per line (IMOD .tlt,
    .rawtlt) or a SerialEM .mdoc (the TiltAngle of each [ZValue = k] section)."""

    name = "DEG[,DEG...]"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple, np.ndarray)):
            return [float(v) for v in value]
        what = "comma-separated angles in degrees, e.g. -60,0,60"
        try:
            return _parse_numbers(value, what)
        except ValueError as exc:
            if os.path.isfile(str(value)):
                return self._from_file(str(value), param, ctx)
            self.fail(str(exc), param, ctx)

    def _from_file(self, path, param, ctx):
        if ctx is not None:  # an input: no output may overwrite it (_guard_files)
            ctx.meta.setdefault("atomtomo.angle_files", []).append(path)
        from .formats import read_angle_file  # .tlt/.rawtlt (one per line), SerialEM .mdoc

        try:
            return read_angle_file(path)
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class DetectorType(click.ParamType):
    """``N`` (2D: N pixels) or ``NxM`` (3D: N rows, M columns); positive integers."""

    name = "N[xM]"
    _pattern = re.compile(r"^\s*(\d+)\s*(?:[x\u00d7]\s*(\d+)\s*)?$", re.IGNORECASE)

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = self._pattern.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a detector size: use N (2D) or NxM (3D), e.g. 128 or 64x96",
                      param, ctx)
        shape = tuple(int(g) for g in m.groups() if g is not None)
        if any(n < 1 for n in shape):
            self.fail(f"{value!r}: detector sizes must be positive", param, ctx)
        return shape


class NumberType(click.ParamType):
    """A finite float, ``> minimum`` (``open``) or ``>= minimum``."""

    def __init__(self, minimum=None, open=False):
        self.minimum, self.open = minimum, open
        self.name = "FLOAT"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
        else:
            try:
                v = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None:
            if self.open and v <= self.minimum:
                self.fail(f"must be > {self.minimum:g}, got {value}", param, ctx)
            if not self.open and v < self.minimum:
                self.fail(f"must be >= {self.minimum:g}, got {value}", param, ctx)
        return v


POSITIVE = NumberType(0.0, open=True)
NON_NEGATIVE = NumberType(0.0)


class OrAutoType(click.ParamType):
    """A number checked by ``number`` (a :class:`NumberType`), or ``auto``: chosen, or
    estimated from the data, by the program."""

    def __init__(self, number, name):
        self.number, self.name = number, name

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return self.number.convert(value, param, ctx)


#: The energy weight (``--alpha``): a number >= 0, or auto.
ALPHA = OrAutoType(NON_NEGATIVE, "A|auto")
#: An image-formation parameter (``--sigma``, ``--intensity-scale``): a number > 0, or auto.
POSITIVE_OR_AUTO = OrAutoType(POSITIVE, "X|auto")
UNKNOWN_NAMES = {"sigma": "atom_sigma", "atom_sigma": "atom_sigma", "scale": "intensity_scale",
                 "intensity_scale": "intensity_scale", "intensity-scale": "intensity_scale",
                 "background": "background", "all": "all"}


class UnknownType(click.ParamType):
    """Comma-separated image-formation parameters: sigma, intensity-scale, background, all."""

    name = "NAME[,NAME...]"

    def convert(self, value, param, ctx):
        if isinstance(value, (set, frozenset)):
            return value
        names = [t.strip().lower() for t in str(value).split(",") if t.strip()]
        bad = [n for n in names if n not in UNKNOWN_NAMES]
        if bad or not names:
            self.fail(f"{value!r}: choose from sigma, intensity-scale, background, all", param, ctx)
        return frozenset(UNKNOWN_NAMES[n] for n in names)


class KeyValueType(click.ParamType):
    """``KEY=VALUE`` (the value stays a string; the receiver parses it)."""

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), val.strip()


class BoxType(click.ParamType):
    """``lo,hi[,lo,hi...]``: one (lo, hi) pair per axis."""

    name = "LO,HI[,LO,HI...]"

    def convert(self, value, param, ctx):
        if isinstance(value, np.ndarray):
            return value
        try:
            v = _parse_numbers(value, "lo,hi pairs, one per axis, e.g. -0.5,0.5,-0.5,0.5")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if len(v) % 2 or len(v) not in (4, 6):
            self.fail(f"{value!r}: give one lo,hi pair per axis (4 numbers in 2D, 6 in 3D)", param, ctx)
        box = np.array(v).reshape(-1, 2)
        if np.any(box[:, 1] <= box[:, 0]):
            self.fail(f"{value!r}: each lo must be smaller than its hi", param, ctx)
        return box


class SpeciesWeightsType(click.ParamType):
    """Weights per species: ``Pt=1,Pd=0.41`` or JSON ``{"Pt": 1, "Pd": 0.41}``; each > 0."""

    name = "SPECIES=W[,...]"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        text = str(value).strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                self.fail(f"{text[:40]!r} is not valid JSON ({exc.msg})", param, ctx)
            if not isinstance(raw, dict):
                self.fail("give a JSON object, e.g. {\"Pt\": 1, \"Pd\": 0.41}", param, ctx)
            items = list(raw.items())
        else:
            items = []
            for part in text.split(","):
                key, sep, val = part.partition("=")
                if not sep or not key.strip():
                    self.fail(f"{part.strip()!r} is not SPECIES=WEIGHT (e.g. Pt=1,Pd=0.41)",
                              param, ctx)
                items.append((key.strip(), val.strip()))
        weights = {}
        for key, val in items:
            if isinstance(val, bool):
                self.fail(f"weight of {key!r} must be a number", param, ctx)
            try:
                w = float(val)
            except (TypeError, ValueError):
                self.fail(f"weight of {key!r} is not a number: {str(val)[:20]!r}", param, ctx)
            if not (math.isfinite(w) and w > 0):
                self.fail(f"weight of {key!r} must be a positive number, got {val}", param, ctx)
            if str(key) in weights:
                self.fail(f"species {key!r} is given twice", param, ctx)
            weights[str(key)] = w
        if not weights:
            self.fail("no species given", param, ctx)
        return weights


ANGLES = AnglesType()
DETECTOR = DetectorType()
TILT_FORMAT = click.Choice(["h5", "emd"])
SEED = click.IntRange(min=0)
NDIM = click.Choice(["2", "3"])


def _noise_options(f):
    f = click.option("--dose", type=POSITIVE, default=None,
                     help="Poisson noise: electrons per unit area (in the data's length unit).")(f)
    f = click.option("--relative-noise", type=NON_NEGATIVE, default=None,
                     help="Gaussian noise std as a fraction of the largest projection value.")(f)
    f = click.option("--noise-std", type=NON_NEGATIVE, default=None,
                     help="Gaussian noise standard deviation (absolute).")(f)
    return f


def _imaging_options(f):
    """--intensity-scale, --background, --unknown of project and simulate (spec section 3)."""
    f = click.option("--unknown", type=UnknownType(), default=None,
                     help="Write these as 'auto' (unknown to the reconstruction), keeping the "
                          "true values in the file: sigma, intensity-scale, background, all.")(f)
    f = click.option("--background", default=None, metavar="auto|LEVEL",
                     help="Add a smooth non-negative background to every projection: 'auto' "
                          "(level 0.2 x the largest noiseless value) or its level.")(f)
    f = click.option("--intensity-scale", type=POSITIVE, default=None,
                     help="Data units per unit atom (multiplies the projections and noise).")(f)
    return f


# ---------------------------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------------------------
def _stdout_console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _say(quiet, message):
    """A human-readable result line on stdout (suppressed by ``--quiet``)."""
    if not quiet:
        click.echo(message)


def _check_output(path, flag="-o") -> Path:
    """Fail early (before any work) if an output cannot be written under ``path``."""
    return check_output_path(path, flag)


def _check_distinct(**paths):
    """Two outputs under one name would overwrite each other."""
    seen = {}
    for flag, p in paths.items():
        if p is None:
            continue
        key = os.path.abspath(str(p))
        if key in seen:
            raise InputError(f"{seen[key]} and {flag} name the same file: {p}")
        seen[key] = flag


def is_hdf5(path) -> bool:
    """True if ``path`` is a file starting with the HDF5 signature (the extension is ignored)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == HDF5_SIGNATURE
    except IsADirectoryError:
        return False
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None


def _read_tiltseries(path):
    """Read a tilt series and check what every command relies on."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"tilt-series file not found: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    from .formats import MRC_STACK_SUFFIXES, read_tiltseries_any  # also EMD, MRC + .mdoc

    if not is_hdf5(path) and path.suffix.lower() not in MRC_STACK_SUFFIXES:
        raise InputError(f"{path} is not an HDF5 tilt-series file")

    ts = read_tiltseries_any(path)
    proj = np.asarray(ts.projections)
    if proj.shape != tuple(ts.geometry.data_shape):
        raise InputError(
            f"{path}: projections have shape {proj.shape} but the geometry expects "
            f"{tuple(ts.geometry.data_shape)}"
        )
    if not np.all(np.isfinite(proj)):
        raise InputError(f"{path}: projections contain NaN or infinite values")
    _check_question(ts.geometry, ts.box, path)
    if looks_like_degrees(ts.angles):
        warnings.warn(f"{path}: angles up to {np.max(np.abs(ts.angles)):.4g} look like degrees; "
                      "tilt-series files store radians (spec section 3)", stacklevel=2)
    return ts


def _check_question(geometry, box, where, box_where=None, reconstruct=False) -> None:
    """Refuse projections that cannot determine the atoms (repeated or opposite angles; with
    ``reconstruct`` also one 2D angle) and a box far outside the detectors' field of view."""
    check_beams(geometry.beams, geometry.ndim, str(where), reconstruct)
    if box is not None:
        check_box_in_view(box, geometry.detector_shape, geometry.pixel_size,
                          str(box_where or where))


#: Coordinates beyond this magnitude are refused: distances between them overflow float64.
MAX_COORDINATE = 1e100


def _read_atoms(path, ndim=None):
    """An atom file (:func:`atomtomo.configuration.read_xyz`) with coordinates and box in a
    range where distances can be computed."""
    from .configuration import read_xyz

    config = read_xyz(path, ndim=ndim)
    peak = float(np.max(np.abs(config.positions))) if config.n_atoms else 0.0
    box = _box_or_none(config.info.get("box"))
    if box is not None and box.size:
        peak = max(peak, float(np.max(np.abs(box))))
    if not peak <= MAX_COORDINATE:
        raise InputError(f"{path}: coordinates up to {peak:.3g} are out of range (at most "
                         f"{MAX_COORDINATE:g} in magnitude)")
    return config


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return "nan" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def _ndim_of_detector(shape) -> int:
    return len(shape) + 1


def _with_ndim(config, ndim, source):
    """``config`` in ``ndim`` dimensions: a planar (z = 0) configuration may be lifted to 3D."""
    from .configuration import Configuration

    if config.ndim == ndim:
        return config
    if config.ndim == 2 and ndim == 3:
        pos = np.column_stack([config.positions, np.zeros(config.n_atoms)])
        return Configuration(pos, config.species, config.species_weights, dict(config.info))
    raise InputError(f"{source} is 3D (some z != 0) but the projection is 2D")


# ---------------------------------------------------------------------------------------------
# The group.
# ---------------------------------------------------------------------------------------------
@click.group(cls=AtomtomoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="atomtomo")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show tracebacks of internal errors (also ATOMTOMO_DEBUG=1).")
def cli():
    """Grid-free atomic electron tomography: atom positions from a few projections.

    Angles on the command line are in degrees; lengths are in the data's unit. Exit status: 0
    success, 2 bad input (one line on stderr), 1 internal error, 130 interrupted.
    """


# ---------------------------------------------------------------------------------------------
# project
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("atoms", metavar="ATOMS.xyz")
@click.option("--angles", type=ANGLES, required=True, help="Tilt angles in degrees, e.g. -60,0,60.")
@click.option("--detector", type=DETECTOR, required=True,
              help="N pixels (2D) or NxM (3D: N rows, M columns).")
@click.option("--pixel-size", type=POSITIVE, required=True, help="Pixel width, in the data's unit.")
@click.option("--sigma", type=POSITIVE, required=True, help="Standard deviation of every atom.")
@click.option("--ndim", type=NDIM, default=None,
              help="2 or 3 (default: the detector's; it must agree with the atoms and detector).")
@_noise_options
@_imaging_options
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the noise.")
@click.option("--box", type=BoxType(), default=None,
              help="Reconstruction domain lo,hi per axis (default: the atom file's box, else the "
                   "detector's span).")
@click.option("--bond-length", type=POSITIVE, default=None,
              help="Nearest-neighbour distance to record (default: the atom file's bond_length).")
@click.option("--length-unit", default=None, help="Length unit to record, e.g. angstrom.")
@click.option("--species-weights", type=SpeciesWeightsType(), default=None,
              help="Integrated intensity per species, e.g. Pt=1,Pd=0.41 or '{\"Pt\":1,\"Pd\":0.41}' "
                   "(default: the atom file's species_weights, else 1 for every species).")
@click.option("--format", "fmt", type=TILT_FORMAT, default=None,
              help="h5 (atomtomo's tilt series, spec section 3) or emd (tomviz-style EMD); "
                   "default: from the extension of -o (.emd), else h5.")
@_output_option("The tilt series to write (HDF5, or EMD with --format emd).")
@_quiet_option
@_debug_option
def project(atoms, angles, detector, pixel_size, sigma, ndim, noise_std, relative_noise, dose,
            intensity_scale, background, unknown, seed, box, bond_length, length_unit,
            species_weights, fmt, output, quiet):
    """Project the atoms in ATOMS.xyz (spec section 2) and write a tilt series with them as
    ground truth (spec section 3)."""
    from .geometry import Geometry

    out = _check_output(output)
    config = _read_atoms(atoms)
    if config.n_atoms == 0:
        raise InputError(f"{atoms} holds no atoms: there is nothing to project")
    ndim = _resolve_ndim(ndim, detector, config, atoms)
    config = _with_ndim(config, ndim, atoms)
    if species_weights is not None:
        unknown = [name for name in species_weights if name not in set(config.species)]
        if unknown:
            raise InputError(f"--species-weights names {unknown[0]!r}, which is not a species of "
                             f"{atoms} (species: {', '.join(config.species_names)})")
        config.species_weights = {**config.species_weights, **species_weights}
    geometry = Geometry.from_angles(ndim, np.radians(angles), detector, pixel_size)
    if box is None and config.info.get("box") is not None:
        box = config.info["box"]
    if bond_length is None:
        bond_length = _positive_or_none(config.info.get("bond_length"))
    if length_unit is None:
        length_unit = str(config.info.get("length_unit", ""))
    _check_question(geometry, _box_or_none(box), "--angles", "--box")
    ts = _simulate(config, geometry, sigma, noise_std, relative_noise, dose, seed, box, bond_length,
                   length_unit, imaging=(intensity_scale, background, unknown))
    _write_tiltseries(ts, out, fmt)
    _say(quiet, _summary_tiltseries(out, ts, config))


def _box_or_none(box):
    """A box given on the command line or in an atom file's comment (JSON text or array)."""
    if box is None:
        return None
    try:
        return np.asarray(json.loads(box) if isinstance(box, str) else box, dtype=float)
    except (ValueError, TypeError):
        return None  # _simulate's own check says what is wrong


def _resolve_ndim(ndim, detector, config, source) -> int:
    """The projection's dimension: the detector's, checked against --ndim and the atom file."""
    det_ndim = _ndim_of_detector(detector)
    det_text = "x".join(map(str, detector))
    if ndim is not None and int(ndim) != det_ndim:
        kind = "N (2D)" if int(ndim) == 2 else "NxM (3D)"
        raise InputError(f"--ndim {ndim} does not match --detector {det_text}: a {ndim}D projection "
                         f"needs a detector of the form {kind}")
    if config.ndim == 3 and det_ndim == 2:
        raise InputError(f"{source} is 3D (some z != 0) but --detector {det_text} is a 2D detector; "
                         "use NxM")
    return det_ndim


def _positive_or_none(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _background_arg(value):
    if value is None or str(value).strip().lower() in ("none", "auto"):
        return None if value is None else str(value).strip().lower()
    try:
        level = float(value)
    except ValueError:
        raise InputError(f"--background must be auto, none or a level >= 0, got {value!r}") from None
    if not (math.isfinite(level) and level >= 0):
        raise InputError(f"--background must be auto, none or a level >= 0, got {value!r}")
    return level


def _simulate(config, geometry, sigma, noise_std, relative_noise, dose, seed, box, bond_length,
              length_unit, imaging=(None, None, None)):
    from .tiltseries import simulate_tiltseries

    if noise_std is not None and relative_noise is not None:
        raise InputError("give at most one of --noise-std and --relative-noise")
    if box is not None:
        box = np.asarray(box, dtype=float)
        if box.shape != (geometry.ndim, 2):
            raise InputError(f"--box needs {geometry.ndim} lo,hi pairs for a {geometry.ndim}D "
                             f"projection, got {len(box)}")
    scale, background, unknown = imaging
    return simulate_tiltseries(config, geometry, sigma, noise_std=noise_std,
                               relative_noise=relative_noise, dose=dose, seed=seed, box=box,
                               bond_length=bond_length, length_unit=length_unit or "",
                               intensity_scale=scale, background=_background_arg(background),
                               unknown=unknown or ())


def _tilt_format(out, fmt) -> str:
    """The format of a tilt-series output: ``fmt``, else ``emd`` for a ``.emd`` name, else h5."""
    return fmt or ("emd" if Path(out).suffix.lower() == ".emd" else "h5")


def _write_tiltseries(ts, out, fmt=None):
    from .tiltseries import write_tiltseries

    if _tilt_format(out, fmt) == "emd":
        from .formats import write_emd

        write_emd(ts, out)  # atomic
        return
    # atomic here whatever the writer does (the tests put a non-atomic writer in its place)
    with atomic_path(out) as tmp:
        write_tiltseries(ts, tmp)


def _summary_tiltseries(out, ts, config) -> str:
    geo = ts.geometry
    noise = ""
    if ts.noise_std:
        noise = f", noise std {ts.noise_std:.4g}" + (f" ({ts.noise_model})" if ts.noise_model else "")
    sigma = ts.attrs.get("true_atom_sigma", ts.atom_sigma)
    unknown = ", ".join(ts.imaging_unknowns)
    return (f"wrote {out}: {geo.ndim}D, {geo.n_angles} angle(s), detector "
            f"{'x'.join(map(str, geo.detector_shape))}, pixel size {geo.pixel_size:.4g}, sigma "
            f"{sigma:.4g}, {config.n_atoms} atoms{noise}"
            + (f"; written as unknown ('auto'): {unknown}" if unknown else ""))


# ---------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------
def _list_phantoms_callback(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    from rich.table import Table

    from .phantoms import list_phantoms

    table = Table("name", "dim", "parameters (defaults)", "description", title="phantoms")
    for p in list_phantoms():
        params = ", ".join(
            f"{k}={'REQUIRED' if k in p.get('required', []) else _fmt_param(v)}"
            for k, v in p["params"].items())
        table.add_row(p["name"], f"{p['ndim']}D", params, p["description"])
    _stdout_console().print(table)
    ctx.exit(0)


def _fmt_param(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt_param(v) for v in value)
    return str(value)


@cli.command()
@click.option("--phantom", default=None, help="Phantom name (see --list-phantoms).")
@click.option("--param", "params", type=KeyValueType(), multiple=True,
              help="Phantom parameter KEY=VALUE (repeatable), e.g. --param spacing=0.15.")
@click.option("--list-phantoms", is_flag=True, expose_value=False, is_eager=True,
              callback=_list_phantoms_callback, help="List the phantoms and their parameters.")
@click.option("--angles", type=ANGLES, default=None, help="Tilt angles in degrees.")
@click.option("--zone-axis", type=click.IntRange(1, 3), default=None,
              help="Instead of --angles: the first 1-3 zone axes of a 2D lattice phantom.")
@click.option("--detector", type=DETECTOR, default=None,
              help="N (2D) or NxM (3D); default: enough pixels of --pixel-size to cover the box.")
@click.option("--pixel-size", type=POSITIVE, default=None,
              help="Default: the detector covers the box at every angle (or bond length / 10).")
@click.option("--sigma", type=POSITIVE, default=None, help="Atom width; default bond length / 8.")
@_noise_options
@_imaging_options
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seeds the phantom (where random) and the noise.")
@click.option("--write-truth", type=click.Path(dir_okay=False), default=None,
              help="Also write the phantom as an atom file.")
@click.option("--format", "fmt", type=TILT_FORMAT, default=None,
              help="h5 (atomtomo's tilt series) or emd (tomviz-style EMD, without the ground "
                   "truth: use --write-truth); default: from the extension of -o.")
@_output_option("The tilt series to write (HDF5, or EMD with --format emd).")
@_quiet_option
@_debug_option
def simulate(phantom, params, angles, zone_axis, detector, pixel_size, sigma, noise_std,
             relative_noise, dose, intensity_scale, background, unknown, seed, write_truth, fmt,
             output, quiet):
    """Build a test configuration (lattices with defects, nanoparticles) and project it.

    Defaults: sigma = bond length / 8; the detector is centred on the axis and covers the
    phantom's box at every angle (2D: its circumscribed circle; 3D: the x-z circle across the
    columns, the y extent along the rows); with neither --detector nor --pixel-size, the pixel
    size is bond length / 10.
    """
    from .geometry import Geometry
    from .phantoms import build_phantom

    if phantom is None:
        raise InputError("missing option --phantom (see --list-phantoms)")
    out = _check_output(output)
    if write_truth is not None:
        _check_output(write_truth, "--write-truth")
    _check_distinct(**{"-o": output, "--write-truth": write_truth})
    config = build_phantom(phantom, dict(params), seed=seed)
    ndim = config.ndim
    info = config.info
    bond = _positive_or_none(info.get("bond_length"))
    if angles is not None and zone_axis is not None:
        raise InputError("give either --angles or --zone-axis, not both")
    if zone_axis is not None:
        angles = _zone_axis_degrees(config, zone_axis)
    if angles is None:
        raise InputError("missing option --angles (or --zone-axis)")
    if detector is not None and _ndim_of_detector(detector) != ndim:
        det_text = "x".join(map(str, detector))
        need = "N" if ndim == 2 else "NxM"
        raise InputError(f"phantom {config.info.get('phantom', phantom)!r} is {ndim}D but --detector "
                         f"{det_text} is {_ndim_of_detector(detector)}D; use {need}")
    box = np.asarray(info["box"], float) if info.get("box") is not None else None
    if box is None:
        lo, hi = config.positions.min(axis=0), config.positions.max(axis=0)
        pad = bond or 0.1 * max(float(np.max(hi - lo)), 1.0)
        box = np.column_stack([lo - pad, hi + pad])
    if sigma is None:
        if bond is None:
            raise InputError(f"phantom {phantom!r} has no bond length: pass --sigma")
        sigma = SIGMA_FRACTION * bond
    detector, pixel_size = default_detector(box, detector, pixel_size, bond)
    geometry = Geometry.from_angles(ndim, np.radians(angles), detector, pixel_size)
    _check_question(geometry, box, "--angles")
    ts = _simulate(config, geometry, sigma, noise_std, relative_noise, dose, seed, box, bond,
                   str(info.get("length_unit", "")), imaging=(intensity_scale, background, unknown))
    if write_truth is not None:
        from .configuration import write_xyz

        write_xyz(config, write_truth)
    _write_tiltseries(ts, out, fmt)
    _say(quiet, _summary_tiltseries(out, ts, config) + f" (phantom {info.get('phantom', phantom)})")
    if write_truth is not None:
        _say(quiet, f"wrote {write_truth}: the phantom's atoms")


def _zone_axis_degrees(config, n):
    from .phantoms import zone_axis_angles

    lattice = config.info.get("lattice")
    if config.ndim != 2 or lattice is None:
        raise InputError(f"--zone-axis needs a 2D lattice phantom; {config.info.get('phantom')!r} "
                         "has no lattice type: use --angles")
    rotation = float(config.info.get("rotation", 0.0) or 0.0)
    return [float(a) for a in np.degrees(zone_axis_angles(lattice, rotation, n))]


def default_detector(box, detector=None, pixel_size=None, bond_length=None):
    """Detector shape and pixel size that cover ``box`` at every tilt angle.

    The detector is centred on the axis, so its half-width must reach the farthest box corner:
    in 2D the corner's distance from the origin; in 3D (tilt axis y) the corner's distance in the
    x-z plane across the columns and ``|y|`` along the rows. Missing values are filled in: a
    given detector gets the pixel size that makes it cover the box, a given pixel size gets
    enough pixels, and with neither the pixel size is ``bond_length / 10``.
    """
    box = np.asarray(box, dtype=float)
    ndim = len(box)
    corners = np.array(np.meshgrid(*box, indexing="ij")).reshape(ndim, -1).T
    if ndim == 2:
        half = np.array([np.max(np.linalg.norm(corners, axis=1))])
    else:
        half = np.array([np.max(np.abs(corners[:, 1])), np.max(np.hypot(corners[:, 0], corners[:, 2]))])
    span = 2 * half
    if detector is None:
        if pixel_size is None:
            if bond_length is None:
                raise InputError("give --detector or --pixel-size (the phantom has no bond length)")
            pixel_size = PIXEL_FRACTION * bond_length
        detector = tuple(int(max(1, math.ceil(s / pixel_size - 1e-9))) for s in span)
    elif pixel_size is None:
        pixel_size = float(np.max(span / np.asarray(detector, float)))
    return tuple(detector), float(pixel_size)


# ---------------------------------------------------------------------------------------------
# reconstruct
# ---------------------------------------------------------------------------------------------
def _accepts(fn, name) -> bool:
    """True if ``fn`` names parameter ``name`` explicitly (not merely through ``**kwargs``)."""
    try:
        p = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return p is not None and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)


def _parse_option_value(text: str):
    """An ``--option`` value: int, float or bool when it reads as one, else the string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


class _Progress:
    """Drives the live display from solver callbacks; collects history lines and frames."""

    def __init__(self, live: bool, status: bool, history_file=None, keep_frames=False,
                 interval=5.0, header=None, notes=()):
        self.live, self.status = live, status
        self.notes = list(notes)  # printed at the first callback, as the header
        # Printed (status mode) at the first callback, i.e. once the method has accepted its
        # options: a bad option must still give exactly one line on stderr.
        self.header = header
        self.history_file = history_file
        if keep_frames:
            from .plotting import RunFrames

            self.frames = RunFrames(MAX_FRAMES)
        else:
            self.frames = None
        self.count = 0
        self.interval, self.last_status = interval, time.monotonic()
        self.progress = self.task = None
        self.t0 = time.monotonic()

    def __enter__(self):
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                     TimeElapsedColumn(), console=_stderr_console(), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False

    @staticmethod
    def describe(record) -> str:
        parts = [f"iteration {record.get('iteration', '?')}"]
        if record.get("restart") is not None:  # one of several independent searches
            parts.insert(0, f"search {record['restart'] + 1}")
        if record.get("phase"):
            parts.append(str(record["phase"]))
        if "n_atoms" in record:
            parts.append(f"{record['n_atoms']} atoms")
        if record.get("objective") is not None:
            parts.append(f"objective {_fmt(record['objective'])}")
        if record.get("best_objective") is not None:
            parts.append(f"best {_fmt(record['best_objective'])}")
        return ", ".join(parts)

    def __call__(self, record):
        record = dict(record)
        self.count += 1
        for note in self.notes:
            (self.progress.console.print if self.progress is not None else
             lambda text: click.echo(text, err=True))(note)
        self.notes = []
        if self.history_file is not None:
            light = {k: v for k, v in record.items()
                     if k not in ("positions", "species", "weights")
                     and not (isinstance(v, np.ndarray) and v.size > 16)}
            self.history_file.write(json.dumps(jsonable(light)) + "\n")
        if self.frames is not None:
            self.frames(record)
        if self.progress is not None:
            self.progress.update(self.task, description=self.describe(record))
        elif self.status and self.header is not None:
            click.echo(self.header, err=True)
            self.header, self.last_status = None, time.monotonic()
        elif self.status and (record.get("milestone")
                              or time.monotonic() - self.last_status >= self.interval):
            self.last_status = time.monotonic()
            click.echo(f"{_prefix()}: {self.describe(record)}", err=True)


def _adcg_options_help() -> str:
    """The epilog of ``reconstruct --help``: every ``--option`` key of adcg with its default,
    from the method's option table (a light module: no solver is loaded)."""
    from .solvers.adcg_options import options_help

    return "\b\n" + options_help()


@cli.command(epilog=_adcg_options_help())
@click.argument("tiltseries", metavar="TILT.h5")
@click.option("--method", default="adcg", show_default=True,
              help="Reconstruction method: adcg, sirt, fista, annealing, learned.")
@click.option("--alpha", type=ALPHA, default=0.0, show_default=True,
              help="Weight of the potential-energy term (>= 0), or 'auto'.")
@click.option("--bond-length", type=POSITIVE, default=None,
              help="Minimum of the pair potential (default: the file's bond_length).")
@click.option("--sigma", type=POSITIVE_OR_AUTO, default=None,
              help="Override the file's atom_sigma; 'auto' estimates it from the data.")
@click.option("--intensity-scale", type=POSITIVE_OR_AUTO, default=None,
              help="Override the file's intensity_scale (data units per unit atom); 'auto' "
                   "estimates it.")
@click.option("--background", type=click.Choice(["none", "auto"]), default=None,
              help="Override the file's background: 'auto' fits a smooth non-negative "
                   "background per projection with the atoms.")
@click.option("--imaging-rounds", type=click.IntRange(min=1), default=None,
              help="With unknown sigma/scale/background: reconstructions at most in the "
                   "reconstruct-refit alternation [default: 3].")
@click.option("--half-sets", is_flag=True,
              help="Also reconstruct the even and the odd projections separately and match "
                   "them: the fraction found in both within 0.5 A (0.2 bond lengths without a "
                   "unit) and their RMS distance go into the output (precision from the data).")
@click.option("--half-sets-plot", type=click.Path(dir_okay=False), default=None,
              help="With --half-sets: write the figure of the two halves here (.png).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the method.")
@click.option("--initial", type=click.Path(dir_okay=False), default=None,
              help="Start from this atom file (methods that support it).")
@click.option("--max-iterations", type=click.IntRange(min=0), default=None,
              help="Bound on the main loop of the method: adcg, its add-move-prune iterations "
                   "only (default 4 x expected atoms + 50; the global search that follows has its "
                   "own budget, e.g. --option hops=N); sirt/fista, the iterations (the option "
                   "iterations); annealing, the temperature levels (the option levels).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Save the search state here after every iteration (methods that support it).")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint if it exists.")
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              help="Write one JSON line per iteration here.")
@click.option("--animate", type=click.Path(dir_okay=False), default=None,
              help="Write an animation of the run (.gif).")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Trained locator model (method learned).")
@click.option("--option", "options", type=KeyValueType(), multiple=True,
              help="Method option KEY=VALUE (repeatable), e.g. --option hops=50; the keys of "
                   "adcg and their defaults are listed below.")
@click.option("--density", "density_out", type=click.Path(dir_okay=False), default=None,
              help="Also write a density as MRC: the grid image of sirt/fista, else the Gaussian "
                   "density of the atoms on voxels of sigma / 2 over the box.")
@click.option("--confidence", "confidence_runs", type=click.IntRange(min=2), default=None,
              help="Run the method K times (seeds --seed, --seed + 1, ...), keep the run with "
                   "the lowest objective and add a per-atom column confidence: the fraction of "
                   "the other runs that find the atom (atomtomo confidence). K times the time.")
@click.option("--analyse", "analyse_atoms", is_flag=True,
              help="Add per-atom columns structure, coordination, surface and interstitial to "
                   "the output (atomtomo analyse).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Solve the planes of a plane-by-plane 3D run on the Dask cluster of this "
                   "scheduler (e.g. tcp://host:8786; needs atomtomo[dist]).")
@_output_option("The reconstructed atoms (extended XYZ).")
@_quiet_option
@_debug_option
def reconstruct(tiltseries, method, alpha, bond_length, sigma, intensity_scale, background,
                imaging_rounds, half_sets, half_sets_plot, seed, initial, max_iterations,
                checkpoint, resume, history, animate, model, options, scheduler, density_out,
                confidence_runs, analyse_atoms, output, quiet):
    """Reconstruct atom positions from the tilt series TILT.h5 and write them to OUT.xyz.

    Progress (iteration, atoms, objective) goes to stderr; the comment line of the output holds
    the method's record (method, alpha, objective, data_discrepancy, energy, ...).
    """
    from .solvers import get_method
    from .solvers.problem import Problem

    out = _check_output(output)
    side_outputs = {"--history": history, "--animate": animate, "--checkpoint": checkpoint,
                    "--density": density_out, "--half-sets-plot": half_sets_plot}
    for flag, path in side_outputs.items():
        if path is not None:
            _check_output(path, flag)
    _check_distinct(**{"-o": output, **side_outputs})
    if half_sets_plot is not None and not half_sets:
        raise InputError("--half-sets-plot needs --half-sets")
    if animate is not None and Path(animate).suffix.lower() != ".gif":  # fail before the run
        raise InputError(f"--animate {animate}: animations are written as .gif")
    fn = get_method(method)
    kwargs = {"alpha": alpha, "seed": seed}
    if resume and checkpoint is None:
        raise InputError("--resume needs --checkpoint FILE")
    if confidence_runs is not None and checkpoint is not None:
        raise InputError("--confidence runs the method several times; it cannot share one "
                         "--checkpoint (run the seeds separately and use atomtomo confidence)")
    if scheduler is not None:
        if method != "adcg":
            raise InputError(f"--scheduler is not supported by method {method}")
        if not scheduler.strip():
            raise InputError("--scheduler needs an address, e.g. tcp://host:8786")
        kwargs["scheduler"] = scheduler.strip()
    wanted = {"initial": initial, "max_iterations": max_iterations, "checkpoint": checkpoint,
              "resume": resume or None, "model": model}
    for name, value in wanted.items():
        if value is None:
            continue
        if not _accepts(fn, name):
            raise InputError(f"--{name.replace('_', '-')} is not supported by method {method}")
        kwargs[name] = value
    for key, value in options:
        key = key.replace("-", "_")
        if key in kwargs or key in ("callback", "problem"):
            raise InputError(f"--option {key}=... clashes with a command-line option; use that")
        kwargs[key] = _parse_option_value(value)

    _STATE["interrupted"] = lambda: _reconstruct_kept(checkpoint, resume)
    ts = _read_tiltseries(tiltseries)
    _check_question(ts.geometry, None, tiltseries, reconstruct=True)
    from .solvers.imaging_fit import needs_fit, resolve

    fit_imaging = needs_fit(ts, sigma, intensity_scale, background)
    if fit_imaging:
        # a provisional problem (for the checks below); the corrected data come from the fit
        from .configuration import DEFAULT_SPECIES
        from .solvers.imaging_fit import Imaging, problem_for

        sig, _, _ = resolve(ts, sigma, intensity_scale, background)
        problem = problem_for(ts, Imaging(1.0 if sig == "auto" else float(sig), 1.0,
                                          dict(ts.species_weights or {DEFAULT_SPECIES: 1.0})),
                              bond_length=bond_length)
    else:
        if imaging_rounds is not None:
            raise InputError("--imaging-rounds needs an unknown ('auto') sigma, intensity "
                             "scale or background")
        sig, scale, bg_mode = resolve(ts, sigma, intensity_scale, background)
        ts.intensity_scale = scale
        if scale != 1.0:  # a known scale: the data in model units
            ts.projections = np.asarray(ts.projections, float) / scale
            ts.noise_std = None if ts.noise_std is None else ts.noise_std / scale
        problem = Problem.from_tiltseries(ts, sigma=sig, bond_length=bond_length)
    if "initial" in kwargs:
        init = _read_atoms(initial, ndim=problem.ndim)
        if not init.species_weights:
            init.species_weights = dict(problem.species_weights)
        kwargs["initial"] = init
    if "checkpoint" in kwargs:
        kwargs["checkpoint"] = str(kwargs["checkpoint"])

    notes = []
    if method == "adcg":
        from .solvers.many_angles import many_angle_options

        kwargs, note = many_angle_options(problem, kwargs)
        if note and not quiet:
            notes.append(f"{_prefix()}: note: {note}")
    if not quiet and method == "adcg" and alpha == 0 and problem.geometry.n_angles == 2:
        # The measured ambiguity (docs/solver.md): say it before the user trusts the result,
        # once the method has accepted its options (a bad option gives one line, the error).
        notes.append(f"{_prefix()}: note: with 2 angles and --alpha 0 every re-pairing of the "
                     "projected coordinates fits the data equally well; --alpha auto lets the "
                     "energy term choose")
    live = not quiet and sys.stderr.isatty()
    header = (f"{_prefix()}: {method} on {tiltseries} ({problem.ndim}D, "
              f"{problem.geometry.n_angles} angles, alpha={alpha})")
    with contextlib.ExitStack() as stack:
        hist = None
        if history is not None:
            hist_tmp = stack.enter_context(atomic_path(history))
            hist = stack.enter_context(open(hist_tmp, "w"))
        tracker = stack.enter_context(
            _Progress(live=live, status=not quiet, history_file=hist, keep_frames=animate is not None,
                      header=header, notes=notes)
        )
        with _whole_run_deadline(kwargs.get("time_limit")):
            if fit_imaging:
                recon, problem = _reconstruct_imaging(ts, fn, method, kwargs, tracker, quiet,
                                                      sigma=sigma, intensity_scale=intensity_scale,
                                                      background=background,
                                                      bond_length=bond_length,
                                                      rounds=imaging_rounds)
            else:
                recon = fn(problem, callback=tracker, **kwargs)
        confidence_info = None
        if confidence_runs is not None:
            recon, confidence_info = _confidence_runs(fn, problem, kwargs, recon, confidence_runs,
                                                      quiet)
        halves = None
        if half_sets:
            halves = _half_sets(problem, fn, kwargs, quiet)
            recon.info.update(_half_sets_summary(halves))
        info = jsonable(dict(recon.info))
        if confidence_info is not None:
            info.update(confidence_info)
        info.setdefault("method", method)
        info["source"] = Path(tiltseries).name
        if problem.length_unit:
            info.setdefault("length_unit", problem.length_unit)
        from .configuration import write_xyz

        if animate is not None:
            _animate(tracker, recon, problem, animate)
        if half_sets_plot is not None:
            from .precision_plot import plot_half_sets

            plot_half_sets(halves, half_sets_plot, length_unit=problem.length_unit,
                           title=f"half sets of {Path(tiltseries).name}")
        if density_out is not None:
            _write_run_density(recon, problem, density_out)
        atoms = recon.configuration
        if analyse_atoms:
            from .structure import analyse as run_analysis

            analysis = run_analysis(atoms, problem.bond_length)
            atoms = analysis.annotate(atoms)
            info["structure"] = {k: v for k, v in jsonable(analysis.summary).items()
                                 if k in ("fcc", "hcp", "bcc", "ico", "other", "surface_atoms",
                                          "vacancies", "interstitials", "twin_planes",
                                          "stacking_faults")}
        write_xyz(atoms, out, **{k: v for k, v in info.items() if v is not None})
    if not quiet:
        _say(quiet, f"wrote {out}: {recon.configuration.n_atoms} atoms; " + ", ".join(
            f"{k} {_fmt(info.get(k))}" for k in ("objective", "data_discrepancy", "energy",
                                                   "alpha", "iterations", "runtime_s")
            if k in info))
        if confidence_runs is not None:
            _say(quiet, f"confidence: {info['certain_fraction']:.1%} of the atoms found by all "
                        f"{confidence_runs} runs (seeds {info['confidence_seeds']}; kept seed "
                        f"{info.get('seed', '?')}, the lowest objective)")
        if half_sets:
            _say(quiet, f"half sets: {info['half_sets_n_matched']} of {info['half_sets_n_even']} "
                        f"(even) / {info['half_sets_n_odd']} (odd) atoms within "
                        f"{info['half_sets_tolerance']:.3g} ({info['half_sets_tolerance_rule']}): "
                        f"fraction {info['half_sets_fraction']:.3f}, rms "
                        f"{info['half_sets_rms']:.3g}")
        for flag, path in (("history", history), ("animation", animate), ("density", density_out),
                           ("half-set figure", half_sets_plot)):
            if path is not None:
                _say(quiet, f"wrote {path}: {flag}")
        if info.get("data_explained") is False:
            _warn_unexplained(problem, info)
    if info.get("stopped_by") == "time_limit" and not quiet:
        click.echo(f"{_prefix()}: note: the time limit ended the run; the result is the best "
                   "found until then", err=True)


def _process_age() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since :func:`main` began)."""
    try:
        start = float(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _STATE.get("t0", time.monotonic())


def _whole_run_deadline(time_limit):
    """``time_limit`` counted from the start of the command (imports, reading, compiling
    included), minus a margin for writing the outputs: the limit is a wall-clock promise."""
    from .stopping import deadline, limit_seconds

    seconds = limit_seconds(time_limit)
    if seconds is None:
        return contextlib.nullcontext()  # the method refuses it with its own message
    return deadline(max(seconds - _process_age() - WRITE_MARGIN, 0.0))


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped."""
    import glob

    return glob.escape(name)


def _reconstruct_kept(checkpoint, resume) -> str:
    """What an interrupted reconstruct keeps: the checkpoint of the last complete iteration and
    the command that continues from it, or nothing (outputs are written only at the end)."""
    import shlex

    path = None if checkpoint is None else Path(checkpoint)
    # a plane-by-plane run keeps the plane in progress in FILE.layerK, restarts in FILE.restartK
    parts = [] if path is None else [p for p in path.parent.glob(glob_escape(path.name) + ".*")
                                     if p.is_file() and ".part" not in p.name]
    if path is not None and (path.is_file() or parts):
        args = list(_STATE["args"]) + ([] if resume else ["--resume"])
        kept = ([str(checkpoint)] if path.is_file() else []) + sorted(
            str(path.parent / p.name) if str(path.parent) != "." else p.name for p in parts)
        return (f"interrupted; kept the checkpoint {', '.join(kept)} (the last complete "
                f"iteration); continue with: atomtomo {shlex.join(args)}")
    hint = "" if checkpoint is not None else " (--checkpoint FILE makes a run resumable)"
    return f"interrupted; nothing was kept, no output was written{hint}"


def _confidence_runs(fn, problem, kwargs, first, k, quiet):
    """Run ``fn`` with k - 1 more seeds; return the lowest-objective run with a per-atom
    ``confidence`` column, and the confidence summary for its comment line."""
    from .confidence import atom_confidence

    recons = [first]
    for extra in range(1, k):
        seed = int(kwargs.get("seed", 0)) + extra
        if not quiet:
            click.echo(f"{_prefix()}: confidence run {extra + 1} of {k} (seed {seed})", err=True)
        recons.append(fn(problem, **{**kwargs, "seed": seed}))
    configs = []
    for r in recons:
        cfg = r.configuration.copy()
        cfg.info["objective"] = r.info.get("objective")
        configs.append(cfg)
    annotated = atom_confidence(configs, bond_length=problem.bond_length)
    best = recons[annotated.info["confidence_reference"]]
    best.configuration = best.configuration.copy()
    best.configuration.arrays["confidence"] = annotated.arrays["confidence"]
    summary = {key: annotated.info[key] for key in ("confidence_runs", "certain_fraction",
                                                    "confidence_tolerance")}
    summary["confidence_seeds"] = [int(kwargs.get("seed", 0)) + j for j in range(k)]
    summary["missed_sites"] = annotated.info["missed_sites"]
    return best, summary


def _write_run_density(recon, problem, path):
    """The grid image of a grid method, else the atoms' Gaussian density, as MRC."""
    from .formats import gaussian_density, write_density_mrc

    if getattr(recon, "density", None) is not None:
        rho, axes = recon.density
    else:
        rho, axes = gaussian_density(recon.configuration, float(problem.sigma), box=problem.box)
    write_density_mrc(rho, axes, path, length_unit=problem.length_unit)


#: Options of the refinement rounds of ``--sigma auto`` & co. with ADCG: a local polish from the
#: previous round's atoms (the parameters change by a few per cent there), not a new search.
POLISH_OPTIONS = {"hops": 0, "sweeps": 0, "restarts": 1, "layers": "off", "reseed": False}


def _reconstruct_imaging(ts, fn, method, kwargs, tracker, quiet, **settings):
    """Reconstruct with unknown sigma / intensity scale / background (solvers.imaging_fit)."""
    from .solvers.imaging_fit import DEFAULT_ROUNDS, reconstruct_imaging

    def solve(problem, previous):
        run = dict(kwargs)
        if previous is not None and _accepts(fn, "initial") and "initial" not in kwargs:
            run["initial"] = previous
            if method == "adcg":
                for key, value in POLISH_OPTIONS.items():
                    run.setdefault(key, value)
        return fn(problem, callback=tracker, **run)

    def progress(message):
        if not quiet:
            click.echo(f"{_prefix()}: {message}", err=True)

    rounds = settings.pop("rounds") or DEFAULT_ROUNDS
    return reconstruct_imaging(ts, solve, rounds=rounds, progress=progress, **settings)


def _half_sets(problem, fn, kwargs, quiet):
    """Reconstruct the even and the odd projections (atomtomo.half_sets) with the same method."""
    from .half_sets import half_set_precision

    run = {k: v for k, v in kwargs.items() if k not in ("checkpoint", "resume", "initial")}

    def solve(sub):
        if not quiet:
            click.echo(f"{_prefix()}: half set of {sub.geometry.n_angles} projections", err=True)
        return fn(sub, **run)

    return half_set_precision(problem, solve)


def _half_sets_summary(result):
    from .half_sets import summary

    return summary(result)


def _warn_unexplained(problem, info):
    """Say so when the result misses the discrepancy target of the file's noise level."""
    from .solvers.alpha import discrepancy_target

    target = discrepancy_target(problem.data.size, float(problem.noise_std) ** 2,
                                float(info["atom_data_energy"]))
    misfit = float(info["data_discrepancy"]) ** 2
    click.echo(f"{_prefix()}: note: the result leaves part of the data unexplained (misfit "
               f"||r||^2 {misfit:.4g} > {target:.4g}, what the file's noise_std allows; "
               f"{(misfit - target) / float(info['atom_data_energy']):.2f} atom data energies "
               "over): the search may have failed (try another --seed or --option hops=N), "
               "or atom_sigma or noise_std may not fit the data", err=True)


def _animate(tracker, recon, problem, path):
    from .plotting import animate_run

    frames = tracker.frames.with_final(recon.configuration, recon.info, always=False)
    animate_run(frames, path, truth=problem.ground_truth, box=problem.box)  # atomic


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
def load_truth(path, ndim=None):
    """Ground truth from an atom file or a tilt-series file (told apart by the HDF5 signature).

    Returns ``(configuration, bond_length or None, description)``; ``ndim`` is the dimension to
    read an atom file in (None: from the file).
    """
    if not Path(path).exists():
        raise InputError(f"truth file not found: {path}")
    if is_hdf5(path):
        from .formats import read_tiltseries_any

        ts = read_tiltseries_any(path)
        if ts.ground_truth is None:
            raise InputError(f"{path} is a tilt series without ground_truth")
        if ts.length_unit and not ts.ground_truth.info.get("length_unit"):
            ts.ground_truth.info["length_unit"] = ts.length_unit
        return ts.ground_truth, _positive_or_none(ts.bond_length), "the tilt series' bond_length"
    config = _read_atoms(path, ndim=ndim)
    return config, _positive_or_none(config.info.get("bond_length")), "the truth file's bond_length"


def evaluate_files(recon_path, truth_path, tolerance=None) -> dict:
    """The metrics of ``atomtomo evaluate`` as a dict (see :func:`atomtomo.metrics.match_atoms`).

    Adds ``tolerance``, ``tolerance_source`` and ``bond_length``.
    """
    from .metrics import TOLERANCE_BONDS, match_atoms
    from .potentials import bond_length_estimate

    truth, bond, source = load_truth(truth_path)
    found = _read_atoms(recon_path, ndim=truth.ndim)
    if tolerance is None:
        if bond is None:
            bond = bond_length_estimate(truth.positions)
            source = "the truth's median nearest-neighbour distance"
        if bond is None:
            raise InputError("cannot derive a tolerance (no bond length, fewer than 2 true atoms): "
                             "pass --tolerance")
        tolerance = TOLERANCE_BONDS * bond
        tolerance_source = f"{TOLERANCE_BONDS:g} x bond length {bond:.6g} from {source}"
    else:
        tolerance_source = "--tolerance"

    result = match_atoms(found, truth, tolerance)
    metrics = jsonable(result.as_dict())
    # undefined ratios are null (docs/cli.md): precision of nothing found, recall of no truth
    if metrics.get("n_found") == 0:
        metrics["precision"] = None
    if metrics.get("n_true") == 0:
        metrics["recall"] = None
    if metrics.get("n_found") == 0 and metrics.get("n_true") == 0:
        metrics["f1"] = None
    metrics["tolerance"] = float(tolerance)
    metrics["tolerance_source"] = tolerance_source
    metrics["bond_length"] = None if bond is None else float(bond)
    # distances are in the positions' unit: say which (the truth's, else the reconstruction's)
    metrics["length_unit"] = (truth.info.get("length_unit") or found.info.get("length_unit")
                              or None)
    return metrics


def _structure_comparison(recon, truth, bond_length) -> dict:
    """Structure summaries of the reconstruction and the truth (for evaluate --structure)."""
    from .configuration import read_xyz
    from .structure import analyse as run_analysis

    truth_cfg, _, _ = load_truth(truth)
    found = read_xyz(recon, ndim=truth_cfg.ndim)
    drop = ("vacancy_sites", "hcp_layers")
    return {name: {k: v for k, v in jsonable(run_analysis(cfg, bond_length).summary).items()
                   if k not in drop}
            for name, cfg in (("found", found), ("truth", truth_cfg))}


@cli.command()
@click.argument("recon", metavar="RECON.xyz")
@click.option("--truth", required=True, help="Atom file, or tilt-series .h5 with ground_truth.")
@click.option("--tolerance", type=POSITIVE, default=None,
              help="Match distance (default: 0.1 x bond length).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--structure", is_flag=True,
              help="Also compare the structure analysis (atomtomo analyse) of the result with "
                   "the truth's: structure counts, surface, vacancies, twins (key 'structure').")
@_debug_option
def evaluate(recon, truth, tolerance, as_json, structure):
    """Match the atoms of RECON.xyz one to one with the truth and report precision, recall, F1
    and distances."""
    metrics = evaluate_files(recon, truth, tolerance)
    if structure:
        metrics["structure"] = _structure_comparison(recon, truth, metrics.get("bond_length"))
    if as_json:
        click.echo(json.dumps(metrics))
        return
    from rich.table import Table

    table = Table("metric", "value", title=f"{recon} vs {truth}")
    for key, value in metrics.items():
        if key not in ("tolerance_source", "structure"):
            table.add_row(key, _fmt(value))
    console = _stdout_console()
    console.print(table)
    if structure:
        s = metrics["structure"]
        table = Table("", "found", "truth", title=f"structure ({s['found'].get('analysed')})")
        for key, value in _structure_summary_lines(s["found"]):
            table.add_row(key, _fmt(value), _fmt(s["truth"].get(key)))
        console.print(table)
    console.print(f"tolerance used: {metrics['tolerance']:.6g} ({metrics['tolerance_source']})")


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("source", metavar="RECON.xyz|TILT.h5")
@click.option("--truth", default=None, help="Atom file or tilt series with ground truth to overlay.")
@click.option("--tilt-series", "tilt", default=None,
              help="The tilt series reconstructed (for its box, ground truth and bond length).")
@click.option("--tolerance", type=POSITIVE, default=None, help="Match distance for colouring.")
@click.option("--title", default=None, help="Figure title.")
@click.option("--view", type=click.Choice(["auto", "ortho", "planes", "xy", "xz", "yz", "3d"]),
              default="auto", show_default=True,
              help="3D atoms: ortho = x-y, x-z and y-z views coloured by depth (or by distance to "
                   "the truth), planes = one panel per atomic plane across the tilt axis y, "
                   "xy/xz/yz = one projection, 3d = a 3D scatter; auto = ortho (2D atoms: xy).")
@_output_option("The figure (.png, .pdf, .svg).")
@_quiet_option
@_debug_option
def plot(source, truth, tilt, tolerance, title, view, output, quiet):
    """Plot a reconstruction (with its truth), or the projections of a tilt series."""
    from .plotting import plot_projections, plot_reconstruction, save_figure  # Agg, no pyplot

    out = _check_output(output)
    if not Path(source).exists():
        raise InputError(f"file not found: {source}")
    if is_hdf5(source):
        if truth is not None or tilt is not None:
            raise InputError("--truth and --tilt-series apply to reconstructions, not to a tilt series")
        ts = _read_tiltseries(source)
        save_figure(plot_projections(ts), out)  # atomic
        _say(quiet, f"wrote {out}: projections of {source}")
        return
    box = bond = truth_cfg = None
    ndim = None
    if tilt is not None:
        ts = _read_tiltseries(tilt)
        box, ndim, truth_cfg, bond = ts.domain, ts.ndim, ts.ground_truth, _positive_or_none(ts.bond_length)
    if truth is not None:
        truth_cfg, tbond, _ = load_truth(truth, ndim=ndim)
        bond = bond or tbond
        ndim = truth_cfg.ndim
    found = _read_atoms(source, ndim=ndim)
    if truth_cfg is not None and tolerance is None:
        from .metrics import TOLERANCE_BONDS
        from .potentials import bond_length_estimate

        bond = bond or bond_length_estimate(truth_cfg.positions)
        tolerance = None if bond is None else TOLERANCE_BONDS * bond
    if box is None and found.info.get("box") is not None:
        box = np.asarray(found.info["box"], float) if not isinstance(found.info["box"], str) else \
            np.asarray(json.loads(found.info["box"]), float)
    if found.ndim == 2 and view not in ("auto", "xy"):
        raise InputError(f"--view {view} needs 3D atoms; {source} is 2D")
    if view == "auto":
        view = "ortho" if found.ndim == 3 else "xy"
    title = title or Path(source).name
    if view == "ortho":
        from .plotting import plot_orthogonal

        fig = plot_orthogonal(found, truth=truth_cfg, box=box, tolerance=tolerance, title=title)
    elif view == "planes":
        from .plotting import plot_planes

        fig = plot_planes(found, truth=truth_cfg, box=box, tolerance=tolerance, title=title)
    else:
        fig = plot_reconstruction(found, truth=truth_cfg, box=box, tolerance=tolerance,
                                  title=title, view=view)
    save_figure(fig, out)  # atomic
    _say(quiet, f"wrote {out}: {found.n_atoms} atoms" +
         ("" if truth_cfg is None else f" against {truth_cfg.n_atoms} true atoms"))


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.option("-o", "--output", type=click.Path(file_okay=False), default="atomtomo-demo",
              show_default=True, help="Directory for the demo's files (created if needed).")
@click.option("--quick", is_flag=True, help="A smaller search budget (about a minute or less).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@_quiet_option
@_debug_option
def demo(output, quick, seed, quiet):
    """Simulate the poster's interstitial lattice, project it at 3 angles with 1% noise,
    reconstruct it with ADCG, evaluate and plot; print where everything went."""
    from .demo import run_demo

    live = not quiet and sys.stderr.isatty()
    log = None if quiet else (lambda msg: click.echo(f"{_prefix()}: {msg}", err=True))
    with _Progress(live=live, status=False) as tracker:
        result = run_demo(output, quick=quick, seed=seed, callback=tracker, log=log)
    if quiet:
        return
    from rich.table import Table

    # File names relative to the directory (printed once): full paths get truncated by rich.
    table = Table("output", "file", title=f"atomtomo demo: files in {output}")
    for key, path in result["files"].items():
        table.add_row(key, Path(path).name)
    console = _stdout_console()
    console.print(table)
    m = result["metrics"]
    console.print(
        f"method {result['method']}: {m['n_found']} atoms found of {m['n_true']}, "
        f"F1 {_fmt(m['f1'])}, precision {_fmt(m['precision'])}, recall {_fmt(m['recall'])}, "
        f"rmsd {_fmt(m['rmsd'])} (tolerance {_fmt(m['tolerance'])}), {result['runtime_s']:.1f} s"
    )


# ---------------------------------------------------------------------------------------------
# train-locator
# ---------------------------------------------------------------------------------------------
@cli.command("train-locator")
@click.option("--angles", type=ANGLES, required=True, help="Tilt angles in degrees.")
@click.option("--steps", type=click.IntRange(min=0), required=True, help="Optimisation steps.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--noise", type=NON_NEGATIVE, default=0.01, show_default=True,
              help="Gaussian noise as a fraction of the largest projection value.")
@click.option("--resume", is_flag=True, help="Continue from OUT.pt.ckpt if it exists.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=200, show_default=True,
              help="Steps between checkpoints OUT.pt.ckpt (0: none).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU threads for torch.")
@click.option("--time-limit", type=POSITIVE, default=None, help="Stop training after this many seconds.")
@_output_option("The model file (.pt); its provenance record is written beside it (.json).")
@_quiet_option
@_debug_option
def train_locator_command(angles, steps, seed, noise, resume, checkpoint_every, threads,
                          time_limit, output, quiet):
    """Train the learned atom locator for one set of tilt angles."""
    import shlex

    out = _check_output(output)
    if out.suffix == ".json":
        raise InputError("-o must not end in .json: the provenance record is written there")
    from .learn import require_torch

    require_torch()
    from .learn.train import train_locator

    live = not quiet and sys.stderr.isatty()
    console = _stderr_console()
    log = None if quiet else (lambda msg: console.print(f"{_prefix()}: {msg}"))
    meta = out.with_suffix(".json")
    kwargs = {"seed": seed, "noise": noise, "checkpoint_every": checkpoint_every,
              "threads": threads, "command": "atomtomo " + shlex.join(sys.argv[1:]),
              "provenance_path": meta}
    if resume:
        kwargs["resume"] = True
    if time_limit is not None:
        kwargs["time_limit"] = time_limit
    if live:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task("train", total=max(steps, 1), loss="-")

            def progress(step, loss):
                bar.update(task, completed=step, loss=f"{loss:.4f}")

            summary = train_locator(np.radians(angles), steps, out, progress=progress, log=log,
                                    **kwargs)
    else:
        summary = train_locator(np.radians(angles), steps, out, log=log, **kwargs)
    v = summary.get("validation", {})
    _say(quiet, f"wrote {out} and {meta}: {summary.get('steps')} steps in "
                f"{summary.get('training_time_s', 0):.0f} s, validation F1 {_fmt(v.get('f1'))} "
                f"(precision {_fmt(v.get('precision'))}, recall {_fmt(v.get('recall'))})")


# ---------------------------------------------------------------------------------------------
# reproduce
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("experiment")
@click.option("--quick", is_flag=True, help="A reduced version (minutes, not hours).")
@click.option("--scheduler", default=None, help="Address of a dask scheduler (default: local).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Local dask workers.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), required=True,
              help="Directory for the results (an existing one is resumed).")
@_quiet_option
@_debug_option
def reproduce(experiment, quick, scheduler, workers, output, quiet):
    """Run one of the project's experiments (see atomtomo.experiments.EXPERIMENTS)."""
    from . import experiments

    run_experiment = getattr(experiments, "run_experiment", None)
    registry = getattr(experiments, "EXPERIMENTS", None)
    if run_experiment is None:
        raise InputError("this installation has no experiments (atomtomo.experiments.run_experiment)")
    if registry is not None and experiment not in registry:
        raise InputError(f"unknown experiment {experiment!r}; choose one of: {', '.join(registry)}")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out} exists and is not a directory")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"output directory does not exist: {out.parent}")
    params = inspect.signature(run_experiment).parameters
    kwargs = {}
    for name, value in (("quick", quick), ("scheduler", scheduler), ("workers", workers)):
        if value is None or value is False:
            continue
        if name not in params:
            raise InputError(f"--{name} is not supported by atomtomo.experiments.run_experiment")
        kwargs[name] = value
    for name in ("progress", "log"):
        if name in params and not quiet:
            kwargs[name] = lambda msg, *a: click.echo(f"{_prefix()}: {msg}", err=True)
            break
    dir_name = next((n for n in ("out_dir", "output_dir", "outdir", "output", "directory", "path")
                     if n in params), None)
    if dir_name is not None:
        kwargs[dir_name] = out
        result = run_experiment(experiment, **kwargs)
    else:
        result = run_experiment(experiment, out, **kwargs)
    _say(quiet, f"experiment {experiment}: results in {out}")
    if isinstance(result, dict) and not quiet:
        for key, value in result.items():
            if isinstance(value, (str, int, float, Path)) and not isinstance(value, bool):
                click.echo(f"  {key}: {value}")


# ---------------------------------------------------------------------------------------------
# import-mrc / import-tiff
# ---------------------------------------------------------------------------------------------
def _import_options(f):
    f = click.option("--length-unit", default=None, help="Length unit, e.g. angstrom.")(f)
    f = click.option("--bond-length", type=POSITIVE, default=None,
                     help="Nearest-neighbour distance of the material.")(f)
    f = click.option("--sigma", type=POSITIVE_OR_AUTO, default=None,
                     help="Atom width (atom_sigma); default 'auto' (estimated when "
                          "reconstructing).")(f)
    f = click.option("--ndim", type=NDIM, default="3", show_default=True,
                     help="3: a stack of 2D images; 2: a stack of 1D profiles.")(f)
    f = click.option("--pixel-size", type=POSITIVE, default=None,
                     help="Pixel width (default: from the file's header, if it has one).")(f)
    f = click.option("--angles", type=ANGLES, required=True,
                     help="Tilt angles in degrees (comma-separated), or a file with one per line.")(f)
    return f


def _run_import(importer, stack, angles, pixel_size, ndim, sigma, bond_length, length_unit, output,
                quiet):
    out = _check_output(output)
    if not Path(stack).is_file():
        raise InputError(f"file not found: {stack}")
    kwargs = {"ndim": int(ndim)}
    optional = {"atom_sigma": sigma, "bond_length": bond_length, "length_unit": length_unit}
    for name, value in optional.items():
        if value is None:
            continue
        if not _accepts(importer, name):
            raise InputError(f"--{name.replace('atom_', '').replace('_', '-')} is not supported by "
                             f"{importer.__name__}")
        kwargs[name] = value
    ts = importer(stack, np.radians(angles), pixel_size, **kwargs)
    _check_question(ts.geometry, ts.box, "--angles")
    if bond_length is not None and ts.bond_length is None:
        ts.bond_length = bond_length
    _write_tiltseries(ts, out)
    geo = ts.geometry
    _say(quiet, f"wrote {out}: {geo.ndim}D, {geo.n_angles} angles, detector "
                f"{'x'.join(map(str, geo.detector_shape))}, pixel size {geo.pixel_size:.4g}")


@cli.command("import-aet")
@click.argument("source", metavar="AET.h5")
@click.option("--sigma", type=POSITIVE_OR_AUTO, default=None,
              help="Atom width (atom_sigma), angstrom; default 'auto' (estimated when "
                   "reconstructing).")
@click.option("--bond-length", type=POSITIVE, default=None,
              help="Nearest-neighbour distance of the material, angstrom.")
@_output_option("The tilt series to write (HDF5).")
@_quiet_option
@_debug_option
def import_aet_command(source, sigma, bond_length, output, quiet):
    """Convert a measured AET tilt series (MATLAB layout of the published data sets, e.g. the
    amorphous Ta film) into a tilt-series file."""
    from .tiltseries import import_aet

    out = _check_output(output)
    ts = import_aet(source, atom_sigma=sigma, bond_length=bond_length)
    _write_tiltseries(ts, out)
    geo = ts.geometry
    _say(quiet, f"wrote {out}: 3D, {geo.n_angles} angles from {np.degrees(ts.angles.min()):.1f} "
                f"to {np.degrees(ts.angles.max()):.1f} deg, detector "
                f"{'x'.join(map(str, geo.detector_shape))}, pixel size {geo.pixel_size:.4g} "
                f"angstrom")


@cli.command("import-mrc")
@click.argument("stack", metavar="STACK.mrc")
@_import_options
@_output_option("The tilt series to write (HDF5).")
@_quiet_option
@_debug_option
def import_mrc_command(stack, angles, pixel_size, ndim, sigma, bond_length, length_unit, output, quiet):
    """Convert an MRC tilt stack (one image per angle) into a tilt-series file."""
    from .tiltseries import import_mrc

    _run_import(import_mrc, stack, angles, pixel_size, ndim, sigma, bond_length, length_unit,
                output, quiet)


@cli.command("import-tiff")
@click.argument("stack", metavar="STACK.tif")
@_import_options
@_output_option("The tilt series to write (HDF5).")
@_quiet_option
@_debug_option
def import_tiff_command(stack, angles, pixel_size, ndim, sigma, bond_length, length_unit, output,
                        quiet):
    """Convert a TIFF tilt stack (one page per angle) into a tilt-series file."""
    from .tiltseries import import_tiff

    _run_import(import_tiff, stack, angles, pixel_size, ndim, sigma, bond_length, length_unit,
                output, quiet)


@cli.command("import-emd")
@click.argument("source", metavar="TILT.emd")
@click.option("--pixel-size", type=POSITIVE, default=None,
              help="Pixel width (default: the spacing of the EMD's image dimension vectors).")
@click.option("--tilt-axis", type=click.Choice(["auto", "rows", "cols"]), default="auto",
              show_default=True,
              help="Which image axis of the stored (angles, a, b) runs along the tilt axis: a "
                   "(rows), b (cols), or auto: the axis whose profile stays the same at every "
                   "angle (tomviz's b = x when the data cannot tell).")
@click.option("--sigma", type=POSITIVE, default=None, help="Atom width (atom_sigma).")
@click.option("--bond-length", type=POSITIVE, default=None,
              help="Nearest-neighbour distance of the material.")
@click.option("--length-unit", default=None, help="Unit of --pixel-size, e.g. angstrom.")
@_output_option("The tilt series to write (HDF5).")
@_quiet_option
@_debug_option
def import_emd_command(source, pixel_size, tilt_axis, sigma, bond_length, length_unit, output,
                       quiet):
    """Convert a tilt series in EMD (the HDF5 layout of tomviz and ncempy: /data/tomography/data
    with an angle dimension vector in degrees) into a tilt-series file. reconstruct and info
    also read EMD files directly."""
    from .formats import read_emd

    out = _check_output(output)
    if not Path(source).is_file():
        raise InputError(f"file not found: {source}")
    ts = read_emd(source, pixel_size=pixel_size, tilt_axis=tilt_axis, atom_sigma=sigma,
                  bond_length=bond_length, length_unit=length_unit)
    _write_tiltseries(ts, out)
    geo = ts.geometry
    _say(quiet, f"wrote {out}: {geo.ndim}D, {geo.n_angles} angles from "
                f"{np.degrees(ts.angles.min()):.1f} to {np.degrees(ts.angles.max()):.1f} deg, "
                f"detector {'x'.join(map(str, geo.detector_shape))}, pixel size "
                f"{geo.pixel_size:.4g} {ts.length_unit}".rstrip())


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------
def tiltseries_summary(ts, path) -> dict:
    """What ``atomtomo info`` says about a tilt series, as plain JSON values."""
    geo = ts.geometry
    angles = np.degrees(np.asarray(ts.angles, float))
    out = {"file": str(path), "kind": "tilt series",
           "format": ("emd" if ts.attrs.get("source_format") == "emd" else
                      f"mrc stack, angles from {ts.attrs['angles_file']}"
                      if "angles_file" in ts.attrs else "atomtomo"),
           "ndim": geo.ndim, "n_angles": geo.n_angles,
           "angles_deg": [round(float(a), 4) for a in angles],
           "single_axis": geo.angles is not None,
           "detector": "x".join(map(str, geo.detector_shape)),
           "pixel_size": float(geo.pixel_size), "length_unit": ts.length_unit or "",
           "field_of_view": [float(n * geo.pixel_size) for n in geo.detector_shape]}
    for key in ("atom_sigma", "intensity_scale", "background"):
        value = getattr(ts, key, None)
        if value is None:
            value = ts.attrs.get(key)
        out[key] = value if value is None or isinstance(value, str) else float(value)
    out["species_weights"] = ts.species_weights
    out["box"] = None if ts.box is None else np.asarray(ts.box, float).tolist()
    out["domain"] = np.asarray(ts.domain, float).tolist()
    out["bond_length"] = ts.bond_length
    out["noise_model"], out["noise_std"] = ts.noise_model, ts.noise_std
    proj = np.asarray(ts.projections, float)
    out["data_range"] = [float(proj.min()), float(proj.max())]
    gt = ts.ground_truth
    out["ground_truth_atoms"] = None if gt is None else gt.n_atoms
    if gt is not None:
        out["ground_truth_species"] = _species_counts(gt)
    return jsonable(out)


def _species_counts(config) -> dict:
    names, counts = np.unique(np.asarray(config.species, dtype=str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _rounded(value, digits=6):
    """``value`` with every float to ``digits`` significant digits (for tables)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def atoms_summary(config, path) -> dict:
    """What ``atomtomo info`` says about an atom file, as plain JSON values."""
    from scipy.spatial import cKDTree

    pos = config.positions
    out = {"file": str(path), "kind": "atoms", "ndim": config.ndim, "n_atoms": config.n_atoms,
           "species": _species_counts(config), "species_weights": config.species_weights or None}
    if config.n_atoms:
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        out["extent"] = np.column_stack([lo, hi]).tolist()
        out["size"] = (hi - lo).tolist()
    if config.n_atoms >= 2:
        d, _ = cKDTree(pos).query(pos, k=2)
        nn = d[:, 1]
        out["nearest_neighbour"] = {"min": float(nn.min()), "median": float(np.median(nn)),
                                    "max": float(nn.max())}
    out["columns"] = sorted(config.arrays)
    out["comment"] = {k: v for k, v in config.info.items()}
    return jsonable(out)


@cli.command()
@click.argument("path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@_debug_option
def info(path, as_json):
    """Summarise a tilt series (atomtomo .h5 or EMD: geometry, angles, detector, sigma, weights,
    box, noise, ground truth) or an atom file (atoms per species, extent, nearest-neighbour
    distances, the comment line's record)."""
    from .formats import MRC_STACK_SUFFIXES

    if not Path(path).exists():
        raise InputError(f"file not found: {path}")
    if is_hdf5(path) or Path(path).suffix.lower() in MRC_STACK_SUFFIXES:
        summary = tiltseries_summary(_read_tiltseries(path), path)
    else:
        from .configuration import read_xyz

        summary = atoms_summary(read_xyz(path), path)
    if as_json:
        click.echo(json.dumps(summary))
        return
    from rich.table import Table

    table = Table("field", "value", title=f"{path}: {summary['kind']}")
    for key, value in summary.items():
        if key in ("file", "kind") or value is None:
            continue
        if isinstance(value, dict) and key == "comment":
            for k, v in value.items():
                table.add_row(f"  {k}", _fmt(v))
            continue
        if isinstance(value, (list, dict)):
            value = json.dumps(_rounded(value))
            value = value if len(value) <= 200 else value[:197] + "..."
        table.add_row(key, _fmt(value))
    _stdout_console().print(table)


# ---------------------------------------------------------------------------------------------
# analyse
# ---------------------------------------------------------------------------------------------
def _structure_summary_lines(summary) -> list:
    keys = ("fcc", "hcp", "bcc", "ico", "other", "surface_atoms", "mean_coordination",
            "vacancies", "interstitials", "twin_planes", "stacking_faults", "dislocations")
    return [(k, summary[k]) for k in keys if k in summary]


@cli.command()
@click.argument("recon", metavar="ATOMS.xyz")
@click.option("--bond-length", type=POSITIVE, default=None,
              help="Nearest-neighbour distance (default: the --tilt-series' or the file's "
                   "bond_length, else the median nearest-neighbour distance).")
@click.option("--tilt-series", "tilt", default=None, help="The tilt series (its bond_length).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the atoms with per-atom columns structure, coordination, surface and "
                   "interstitial (extended XYZ).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@_quiet_option
@_debug_option
def analyse(recon, bond_length, tilt, output, as_json, quiet):
    """What the atoms are: structure type per atom (fcc, hcp, bcc, ico, other; OVITO's polyhedral
    template matching), coordination, surface atoms, vacancies and interstitials against the
    fitted lattice, twin planes and stacking faults, dislocations. 2D files: coordination and
    edge atoms only."""
    from .configuration import read_xyz, write_xyz
    from .structure import analyse as run_analysis

    out = None if output is None else _check_output(output)
    ndim = None
    if tilt is not None:
        ts = _read_tiltseries(tilt)
        ndim = ts.ndim
        bond_length = bond_length or _positive_or_none(ts.bond_length)
    config = read_xyz(recon, ndim=ndim)
    bond_length = bond_length or _positive_or_none(config.info.get("bond_length"))
    result = run_analysis(config, bond_length)
    if out is not None:
        write_xyz(result.annotate(config), out)
    if as_json:
        click.echo(json.dumps(jsonable(result.summary)))
    elif not quiet:
        from rich.table import Table

        table = Table("", "atoms", title=f"{recon}: {result.summary.get('analysed')}")
        for key, value in _structure_summary_lines(result.summary):
            table.add_row(key, _fmt(value))
        _stdout_console().print(table)
    if out is not None:
        _say(quiet or as_json, f"wrote {out}: {config.n_atoms} atoms with columns "
                               f"{', '.join(result.columns)}")


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("recon", metavar="RECON.xyz")
@click.option("--truth", default=None, help="Atom file or tilt series with ground truth.")
@click.option("--tilt-series", "tilt", default=None,
              help="The tilt series reconstructed: measured vs re-projected images, its ground "
                   "truth, bond length and species weights.")
@click.option("--history", default=None, help="The run's --history JSONL (convergence).")
@click.option("--tolerance", type=POSITIVE, default=None,
              help="Match distance (default: 0.1 x bond length).")
@click.option("--title", default=None, help="Page title (default: the file name).")
@click.option("--no-structure", is_flag=True, help="Skip the structure analysis.")
@_output_option("The report (.html): one self-contained file, viewable without network.")
@_quiet_option
@_debug_option
def report(recon, truth, tilt, history, tolerance, title, no_structure, output, quiet):
    """One self-contained HTML page about a reconstruction: an interactive 3D view coloured by
    species, distance to the truth, structure type or confidence; per-plane panels; measured vs
    re-projected projections; the run's convergence; the structure summary."""
    from .configuration import read_xyz
    from .report import read_history, write_report

    out = _check_output(output)
    ts = truth_cfg = bond = None
    ndim = None
    if tilt is not None:
        ts = _read_tiltseries(tilt)
        ndim, truth_cfg, bond = ts.ndim, ts.ground_truth, _positive_or_none(ts.bond_length)
    if truth is not None:
        truth_cfg, tbond, _ = load_truth(truth, ndim=ndim)
        bond = bond or tbond
        ndim = truth_cfg.ndim
    found = read_xyz(recon, ndim=ndim)
    if ts is not None and ts.species_weights and not found.species_weights:
        found.species_weights = dict(ts.species_weights)
    records = read_history(history) if history is not None else None
    write_report(out, found, truth=truth_cfg, tiltseries=ts, history=records,
                 tolerance=tolerance, bond_length=bond, title=title or Path(recon).name,
                 structure=not no_structure)
    _say(quiet, f"wrote {out}: report on {found.n_atoms} atoms"
                + ("" if truth_cfg is None else f" against {truth_cfg.n_atoms} true atoms"))


# ---------------------------------------------------------------------------------------------
# confidence
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN.xyz RUN.xyz [...]")
@click.option("--reference", type=click.IntRange(min=1), default=None,
              help="Which run to annotate (1 = the first file; default: the lowest objective).")
@click.option("--tolerance", type=POSITIVE, default=None,
              help="Match distance (default: 0.1 x bond length).")
@click.option("--tilt-series", "tilt", default=None, help="The tilt series (its bond_length).")
@click.option("--truth", default=None,
              help="Also score 'uncertain' (confidence < 1) against 'wrong' (unmatched to this "
                   "truth): precision and recall.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@_output_option("The reference run with a per-atom confidence column (extended XYZ).")
@_quiet_option
@_debug_option
def confidence(runs, reference, tolerance, tilt, truth, as_json, output, quiet):
    """Per-atom confidence: in how many of the other runs (independent seeds, half sets) each
    atom of the reference run is found within the tolerance. Writes the reference run with a
    'confidence' column and prints the fraction of certain atoms (found in every run)."""
    from .configuration import read_xyz, write_xyz
    from .confidence import atom_confidence, uncertainty_scores

    out = _check_output(output)
    if len(runs) < 2:
        raise InputError("give at least two reconstructions of the same data")
    ndim = bond = None
    if tilt is not None:
        ts = _read_tiltseries(tilt)
        ndim, bond = ts.ndim, _positive_or_none(ts.bond_length)
    configs = [read_xyz(path, ndim=ndim) for path in runs]
    if reference is not None and reference > len(runs):
        raise InputError(f"--reference {reference}: there are only {len(runs)} runs")
    annotated = atom_confidence(configs, tolerance=tolerance,
                                reference=None if reference is None else reference - 1,
                                bond_length=bond)
    summary = {k: annotated.info[k] for k in ("confidence_runs", "certain_fraction",
                                              "confidence_tolerance")}
    summary["reference"] = runs[annotated.info["confidence_reference"]]
    summary["missed_sites"] = len(annotated.info["missed_sites"])
    if truth is not None:
        truth_cfg, tbond, _ = load_truth(truth, ndim=annotated.ndim)
        summary["uncertain_vs_wrong"] = uncertainty_scores(
            annotated, truth_cfg, annotated.info["confidence_tolerance"])
    write_xyz(annotated, out)
    if as_json:
        click.echo(json.dumps(jsonable(summary)))
    else:
        _say(quiet, f"wrote {out}: {annotated.n_atoms} atoms of {summary['reference']}, "
                    f"{summary['certain_fraction']:.1%} certain (found in all {len(runs)} runs); "
                    f"{summary['missed_sites']} site(s) most other runs fill but this one lacks")
        if truth is not None:
            u = summary["uncertain_vs_wrong"]
            _say(quiet, f"against the truth: {u['uncertain']} uncertain, {u['wrong']} wrong, "
                        f"{u['uncertain_and_wrong']} both (precision {_fmt(u['precision'])}, "
                        f"recall {_fmt(u['recall'])})")


# ---------------------------------------------------------------------------------------------
# density
# ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("recon", metavar="RECON.xyz")
@click.option("--sigma", type=POSITIVE, default=None,
              help="Atom width (default: the --tilt-series' atom_sigma).")
@click.option("--tilt-series", "tilt", default=None,
              help="The tilt series reconstructed: its atom_sigma, box and length unit.")
@click.option("--voxel-size", type=POSITIVE, default=None,
              help="Voxel edge (default sigma / 2: the Gaussians resolved).")
@_output_option("The density (.mrc).")
@_quiet_option
@_debug_option
def density(recon, sigma, tilt, voxel_size, output, quiet):
    """Write the Gaussian density of a reconstruction (sum_i w_i N(x_i, sigma^2 I)) on a voxel
    grid as MRC, for tomviz, ChimeraX, napari or IMOD."""
    from .configuration import read_xyz
    from .formats import gaussian_density, write_density_mrc

    out = _check_output(output)
    box, unit, weights = None, "", None
    if tilt is not None:
        ts = _read_tiltseries(tilt)
        box, unit, weights = ts.domain, ts.length_unit, ts.species_weights
        if sigma is None and ts.atom_sigma is not None and not isinstance(ts.atom_sigma, str):
            sigma = float(ts.atom_sigma)
    config = read_xyz(recon, ndim=None if tilt is None else ts.ndim)
    if weights and not config.species_weights:
        config.species_weights = dict(weights)
    unit = unit or str(config.info.get("length_unit", "") or "")
    if sigma is None:
        raise InputError("give --sigma (or --tilt-series with atom_sigma)")
    rho, axes = gaussian_density(config, sigma, box=box, voxel_size=voxel_size)
    write_density_mrc(rho, axes, out, length_unit=unit)
    _say(quiet, f"wrote {out}: {'x'.join(str(len(a)) for a in axes)} voxels of "
                f"{axes[0][1] - axes[0][0] if len(axes[0]) > 1 else 0:.4g} {unit}".rstrip()
                + f", {config.n_atoms} atoms, sigma {sigma:.4g}")


def main(argv=None):
    """Console-script entry point: ``atomtomo ...``."""
    try:
        return cli.main(args=argv, prog_name="atomtomo")
    finally:
        # Exit without collecting the run's objects one by one: after a solve that took about
        # a second, most of what a time limit overran by (measured 5.9 -> 5.1 s at limit 5).
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
