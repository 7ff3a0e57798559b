"""Summary tables: results grouped over seeds, as mean ± std, in Markdown."""

from __future__ import annotations

import math

import numpy as np


def numbers(rows, key) -> np.ndarray:
    """The values of ``key`` in ``rows`` as floats (missing or text values are NaN)."""
    out = []
    for row in rows:
        v = row.get(key)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan)
    return np.asarray(out, dtype=float)


def group(rows, by):
    """``{key tuple: [rows]}`` in the order keys first appear."""
    out = {}
    for row in rows:
        out.setdefault(tuple(row.get(k) for k in by), []).append(row)
    return out


def matrix(rows, row_of, row_keys, x_key, xs, key) -> np.ndarray:
    """``(len(row_keys), len(xs))`` array of ``key`` for plotting curves: row
    ``row_keys.index(row_of(r))``, column ``xs.index(r[x_key])``; NaN where no row gives a
    number."""
    out = np.full((len(row_keys), len(xs)), np.nan)
    for r in rows:
        value = r.get(key)
        if isinstance(value, (int, float)):
            out[row_keys.index(row_of(r)), xs.index(r[x_key])] = value
    return out


def mean_std(values) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def fmt_number(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    ax = abs(x)
    if ax == 0:
        return "0"
    if (ax < 1e-3 or ax >= 1e4):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if ax >= 1 else f"{x:.{digits}f}"


def fmt_mean_std(values, digits=3) -> str:
    """``mean ± std`` of the finite values (std over seeds, ddof 1), ``–`` when there are none."""
    m, s, n = mean_std(values)
    if n == 0:
        return "–"
    if n == 1:
        return fmt_number(m, digits)
    return f"{fmt_number(m, digits)} ± {fmt_number(s, digits)}"


def markdown_table(header, rows) -> str:
    """A GitHub-flavoured Markdown table (cells are converted with ``str``)."""
    header = [str(h) for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def aggregate_table(rows, by, metrics, labels=None) -> str:
    """One table row per group of ``by`` values; each metric as mean ± std over the group,
    plus the number of rows (``n``)."""
    labels = labels or {}
    out = []
    for key, members in group(rows, by).items():
        out.append([*(fmt_cell(k) for k in key), len(members),
                    *(fmt_mean_std(numbers(members, m)) for m in metrics)])
    return markdown_table([*by, "n", *(labels.get(m, m) for m in metrics)], out)


def fmt_cell(value) -> str:
    if isinstance(value, float):
        return fmt_number(value)
    return "–" if value is None else str(value)


def failures_note(failures) -> str:
    """A Markdown paragraph listing failed tasks (empty when there are none)."""
    if not failures:
        return ""
    lines = [f"\n**{len(failures)} task(s) failed** (see failures.csv); first errors:\n"]
    seen = []
    for row in failures:
        if row["error"] not in seen:
            seen.append(row["error"])
    for err in seen[:5]:
        lines.append(f"- `{err}`")
    return "\n".join(lines) + "\n"


def runtime_note(rows) -> str:
    """Total and mean task wall and CPU time (what the full-run estimates are made from)."""
    wall = numbers(rows, "wall_s")
    wall = wall[np.isfinite(wall)]
    if wall.size == 0:
        return ""
    cpu = numbers(rows, "cpu_s")
    cpu = cpu[np.isfinite(cpu)]
    text = (f"\nTask time: wall {wall.sum():.0f} s in total over {wall.size} tasks "
            f"(mean {wall.mean():.1f} s, max {wall.max():.1f} s)")
    if cpu.size:
        text += f"; CPU {cpu.sum():.0f} s (mean {cpu.mean():.1f} s, max {cpu.max():.1f} s)"
    return text + ".\n"
