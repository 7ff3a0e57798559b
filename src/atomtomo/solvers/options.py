"""Method options (``--option KEY=VALUE``): converters that check values at the boundary.

Every method declares a table of its options, either ``{name: converter}`` or a sequence of
:class:`Option` records (name, converter, default rule, one-line doc) from which the parser
(:func:`converters`), the method's docstring and ``--help`` (:func:`option_lines`) and the docs
table (:func:`markdown_table`) all derive. :func:`parse_options` converts the values given
(strings from the command line, or Python values) and turns any problem into a one-line
:class:`~atomtomo.errors.InputError` naming the option, the method and what is allowed.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError


def boolean(value):
    """``True``/``False`` from a bool or from 1/0, true/false, yes/no, on/off."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def positive_float(value):
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(value)
    return v


def non_negative_float(value):
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(value)
    return v


def _integer(value):
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if isinstance(value, str):
        value = value.strip()
    return int(value)


def positive_int(value):
    v = _integer(value)
    if v < 1:
        raise ValueError(value)
    return v


def non_negative_int(value):
    v = _integer(value)
    if v < 0:
        raise ValueError(value)
    return v


def choice(*allowed):
    """A converter accepting one of ``allowed`` strings (case-insensitive); where "on" and "off"
    are allowed, booleans (as the command line parses on/off/true/false) mean them."""
    def convert(value):
        if isinstance(value, (bool, np.bool_)) and {"on", "off"} <= set(allowed):
            return "on" if value else "off"
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValueError(value)
        return text

    convert.allowed = allowed
    return convert


_DESCRIPTIONS = {
    boolean: "true or false",
    positive_float: "a positive number",
    non_negative_float: "a number >= 0",
    positive_int: "a positive integer",
    non_negative_int: "an integer >= 0",
}


def parse_options(method: str, table: dict, options: dict, checks: dict | None = None) -> dict:
    """Convert ``options`` by ``table``; :class:`InputError` for unknown names or bad values.

    ``table`` is ``{name: converter}`` or a sequence of :class:`Option`; ``checks`` maps a name
    to ``(predicate, wording)`` tested after conversion.
    """
    if not isinstance(table, dict):
        table = converters(table)
    unknown = sorted(set(options) - set(table))
    if unknown:
        raise InputError(f"unknown {method} option(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(table))}")
    out = {}
    for key, value in options.items():
        convert = table[key]
        try:
            out[key] = convert(value)
        except (TypeError, ValueError):
            wanted = _DESCRIPTIONS.get(convert) or (
                "one of " + ", ".join(convert.allowed) if hasattr(convert, "allowed") else None)
            hint = f" (expected {wanted})" if wanted else ""
            raise InputError(f"invalid value {value!r} for {method} option {key}{hint}") from None
        check = (checks or {}).get(key)
        if check is not None and not check[0](out[key]):
            raise InputError(f"{method} option {key} must be {check[1]}, got {out[key]}")
    return out


@dataclass(frozen=True)
class Option:
    """One method option: its ``name``, the ``convert`` function that checks a value, the rule
    that sets it when it is not given (``default``, one line of prose) and what it does
    (``doc``, one line). ``resumable=False`` marks a resource guard that may differ between a
    run and its resumption (left out of the checkpoint's settings)."""

    name: str
    convert: Callable
    default: str
    doc: str
    resumable: bool = True


def converters(table) -> dict:
    """``{name: converter}`` of a table of :class:`Option` records."""
    return {o.name: o.convert for o in table}


def option_lines(table, width: int = 96, indent: str = "  ") -> list[str]:
    """Plain-text lines, one entry per option: ``name  [default]  doc`` (wrapped at ``width``)."""
    pad = max(len(o.name) for o in table) + 2
    lines = []
    for o in table:
        text = f"[default: {o.default}] {o.doc}"
        wrapped = textwrap.wrap(text, width - len(indent) - pad) or [""]
        lines.append(f"{indent}{o.name.ljust(pad)}{wrapped[0]}")
        lines += [f"{indent}{' ' * pad}{w}" for w in wrapped[1:]]
    return lines


def markdown_table(table) -> str:
    """The options as a Markdown table (``docs/solver.md``)."""
    rows = ["| option | default | what it does |", "|---|---|---|"]
    rows += [f"| `{o.name}` | {o.default} | {o.doc} |" for o in table]
    return "\n".join(rows)
