"""The phantom registry behind ``atomtomo simulate --phantom NAME --param key=value ...``.

Every builder is a plain function with typed keyword parameters; :func:`build_phantom` parses
string values (from the command line) by those types: ``int``, ``float`` (angles may be written
in degrees with a ``deg`` suffix, e.g. ``theta=30deg``), ``bool`` (true/false/yes/no/1/0),
``str``, and comma-separated lists (``species=Pt,Pd``); ``none`` for optional values.
Every phantom also takes ``jitter`` (standard deviation of Gaussian thermal displacements, in the
phantom's length unit, seeded by ``seed``), applied after the builder where it has none of its own.
"""

from __future__ import annotations

import inspect
import types
import typing

import numpy as np

from .._io import jsonable
from ..configuration import Configuration
from ..errors import InputError
from .defects import (
    DEFECT_KINDS,
    divacancy_lattice,
    edge_dislocation_lattice,
    grain_boundary,
    poster_dislocation,
    poster_interstitial,
    poster_vacancy,
    random_defect_lattice,
    substitution_lattice,
)
from .lattices2d import DEFAULT_MARGIN, LATTICES, hexagonal_lattice, jitter, square_lattice
from .measured import load_measured
from .particles3d import crystal_particle, decahedron, icosahedron, turn_and_crop
from .nanoparticles import (
    alloy_particle,
    bcc_particle,
    core_shell_particle,
    fcc_particle,
    twin_particle,
)

#: Float parameters that are angles: their string values may end in "deg".
ANGLE_PARAMS = {"rotation", "theta", "normal_angle", "misalign"}


def random_lattice(
    seed: int = 0,
    lattices: tuple[str, ...] = LATTICES,
    spacing_range: tuple[float, ...] = (0.12, 0.2),
    defects: tuple[str, ...] = DEFECT_KINDS,
    n_defects: tuple[int, ...] = (1, 2),
    jitter_range: tuple[float, ...] = (0.0, 0.03),
    margin: float = DEFAULT_MARGIN,
) -> Configuration:
    """A random 2D lattice with random defects (the learned locator's training distribution).

    See :func:`~atomtomo.phantoms.defects.random_defect_lattice`; ``seed`` seeds it.
    """
    return random_defect_lattice(
        np.random.default_rng(seed), lattices=lattices, spacing_range=spacing_range,
        defects=defects, n_defects=n_defects, jitter_range=jitter_range, margin=margin,
    )


def stacking_fault_particle(
    size: int = 4,
    lattice_constant: float = 3.92,
    species: str = "Pt",
    offset: int = 0,
    shape: str = "cuboctahedron",
    jitter: float = 0.0,
    seed: int = 0,
) -> Configuration:
    """An fcc particle with an intrinsic stacking fault on a (111) plane (see twin_particle)."""
    cfg = twin_particle(size, lattice_constant, species, "stacking-fault", offset,
                        shape=shape, jitter=jitter, seed=seed)
    cfg.info["phantom"] = "stacking-fault-particle"
    return cfg


def measured(path: str, exponent: float = 1.7, axis: str = "none", radius: float | None = None,
             misalign: float = 0.0, seed: int = 0) -> Configuration:
    """A measured AET atom model from an extended XYZ file (angstrom), centred.

    ``axis`` ("x", "y", "z" or "none"): the file's axis turned onto the tilt axis ``y`` (the
    Pd@Pt decahedron's five-fold axis is its ``z``); ``radius``: keep the atoms within this
    distance (angstrom) of the centroid; ``misalign``: a further rotation (radians, ``0.5deg``)
    about a random axis drawn from ``seed``.
    """
    config = load_measured(path, exponent)
    key = str(axis).strip().lower()
    if key not in ("x", "y", "z", "none"):
        raise InputError(f"axis must be x, y, z or none, got {axis!r}")
    if key == "none" and radius is None and not misalign:
        return config
    vector = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1), "none": (0, 1, 0)}[key]
    return turn_and_crop(config, vector, radius, misalign, seed)


#: name -> (builder, ndim)
_ENTRIES = {
    "interstitial": (poster_interstitial, 2),
    "vacancy": (poster_vacancy, 2),
    "dislocation": (poster_dislocation, 2),
    "divacancy": (divacancy_lattice, 2),
    "substitution": (substitution_lattice, 2),
    "edge-dislocation": (edge_dislocation_lattice, 2),
    "grain-boundary": (grain_boundary, 2),
    "square": (square_lattice, 2),
    "hexagonal": (hexagonal_lattice, 2),
    "random-lattice": (random_lattice, 2),
    "fcc-particle": (fcc_particle, 3),
    "bcc-particle": (bcc_particle, 3),
    "core-shell": (core_shell_particle, 3),
    "alloy-particle": (alloy_particle, 3),
    "twin-particle": (twin_particle, 3),
    "stacking-fault-particle": (stacking_fault_particle, 3),
    "measured": (measured, 3),
    "decahedron": (decahedron, 3),
    "icosahedron": (icosahedron, 3),
    "crystal-particle": (crystal_particle, 3),
}

#: Phantom name -> builder function.
PHANTOMS = {name: fn for name, (fn, _) in _ENTRIES.items()}


# -- parsing -----------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _type_name(hint) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _parse_scalar(text: str, kind, key: str):
    text = text.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if kind is int:
        value = float(text)
        if value != int(value):
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if kind is float:
        if key in ANGLE_PARAMS and text.lower().endswith("deg"):
            return float(np.deg2rad(float(text[:-3])))
        return float(text)
    if kind in (str, inspect.Parameter.empty, typing.Any):
        return text
    raise ValueError(f"cannot parse a {_type_name(kind)} from text")


def _parse(value, hint, key: str):
    """Parse ``value`` (a string from the command line, or a Python value) by type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and value.strip().lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(value, arg, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if not isinstance(value, str):
        return value  # Python callers: the builder validates
    if origin in (tuple, list) or hint in (tuple, list):
        item = args[0] if args else str
        parsed = [_parse_scalar(v, item, key) for v in value.split(",") if v.strip()]
        return tuple(parsed) if (origin or hint) is tuple else parsed
    return _parse_scalar(value, hint, key)


def _signature(fn):
    hints = typing.get_type_hints(fn)
    sig = inspect.signature(fn)
    params = {}
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(name)
        if hint is None:
            hint = type(p.default) if p.default not in (p.empty, None) else str
        params[name] = (hint, p.default)
    return params


def _signature_with_jitter(fn):
    """The builder's parameters plus the registry's own ``jitter`` where the builder has none."""
    sig = _signature(fn)
    sig.setdefault("jitter", (float, 0.0))
    return sig


def _get(name):
    key = str(name).strip().lower().replace("_", "-")
    if key not in PHANTOMS:
        raise InputError(f"unknown phantom {name!r}; choose one of {', '.join(PHANTOMS)}")
    return key, PHANTOMS[key]


def parse_params(name: str, params: dict | None = None) -> dict:
    """Validated keyword arguments of phantom ``name`` from ``params`` (strings are parsed)."""
    key, fn = _get(name)
    sig = _signature_with_jitter(fn)
    out = {}
    for k, v in dict(params or {}).items():
        k = str(k).strip().replace("-", "_")
        if k not in sig:
            valid = ", ".join(sig) or "none"
            raise InputError(f"unknown parameter {k!r} for phantom {key!r}; valid: {valid}")
        try:
            out[k] = _parse(v, sig[k][0], k)
        except (ValueError, TypeError) as exc:
            raise InputError(f"bad value {v!r} for parameter {k!r} of phantom {key!r}: {exc}") from None
    return out


def build_phantom(name: str, params: dict | None = None, seed: int = 0) -> Configuration:
    """Build phantom ``name`` with ``params`` (a dict of values or strings from the CLI).

    ``seed`` is passed to builders that take one (unless ``params`` sets it). Raises
    :class:`InputError` for an unknown phantom, an unknown parameter, a value that does not parse,
    or a missing required parameter.
    """
    key, fn = _get(name)
    kwargs = parse_params(key, params)
    sig = _signature(fn)
    if "seed" in sig and "seed" not in kwargs:
        kwargs["seed"] = int(seed)
    missing = [k for k, (_, default) in sig.items() if default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise InputError(f"phantom {key!r} needs parameter {missing[0]!r} (--param {missing[0]}=...)")
    extra_jitter = kwargs.pop("jitter", 0.0) if "jitter" not in sig else 0.0
    config = fn(**kwargs)
    if extra_jitter:
        # Seeded apart from the builder's own draws, so jitter does not change its choices.
        config = jitter(config, extra_jitter, np.random.default_rng([int(seed), 1]))
    config.info["phantom"] = key
    return config


def list_phantoms() -> list[dict]:
    """One dict per phantom: ``name``, ``ndim``, ``description`` (first docstring line),
    ``params`` ({parameter: default}, None when required), ``types`` ({parameter: type}) and
    ``required`` (parameters without a default)."""
    out = []
    for name, (fn, ndim) in _ENTRIES.items():
        sig = _signature_with_jitter(fn)
        doc = inspect.getdoc(fn) or ""
        out.append(
            {
                "name": name,
                "ndim": ndim,
                "description": doc.split("\n\n")[0].replace("\n", " ").strip(),
                "params": {
                    k: (None if d is inspect.Parameter.empty else jsonable(d)) for k, (_, d) in sig.items()
                },
                "types": {k: _type_name(h) for k, (h, _) in sig.items()},
                "required": [k for k, (_, d) in sig.items() if d is inspect.Parameter.empty],
            }
        )
    return out
