"""One self-contained HTML page about a reconstruction (``atomtomo report``).

The page needs no network when viewed: plotly.js is inlined once (``pip install
'atomtomo[report]'``). It holds

* a summary: atoms per species, the method's record from the comment line, the match against
  the truth (precision, recall, F1, distances), the structure analysis
  (:mod:`atomtomo.structure`) and, when the atoms carry a ``confidence`` column
  (:mod:`atomtomo.confidence`), the fraction of certain atoms;
* an interactive 3D view (2D: a plane view) of the atoms, coloured at a click by species, by
  distance to the truth, by structure type or by confidence; the true atoms as crosses;
* per-plane panels (3D: the atomic planes across the tilt axis y, each seen along y);
* the measured projections next to the projections of the reconstruction and their difference
  (with a tilt series);
* the run's convergence (objective and atom count per iteration, from ``--history`` JSONL).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ._io import jsonable, write_text
from .configuration import Configuration
from .errors import InputError

#: Colours of the structure types (OVITO's conventions: fcc green, hcp red, bcc blue).
STRUCTURE_COLOURS = {"fcc": "#66cc44", "hcp": "#ff4d4d", "bcc": "#6688ff", "ico": "#f2c200",
                     "other": "#d0d0d0"}
#: Colours of species, in order of appearance.
SPECIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
#: At most this many planes get a panel.
MAX_PLANES = 24
#: At most this many projections are shown (evenly chosen).
MAX_PROJECTIONS = 6


def _require_plotly():
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise InputError("the HTML report needs plotly: pip install 'atomtomo[report]'") from None


def read_history(path) -> list:
    """The records of a ``--history`` JSONL file (one JSON object per line)."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read history {path}: {exc}") from None
    for k, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"history {path}, line {k}: not a JSON object") from None
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _pos3(config: Configuration) -> np.ndarray:
    pos = np.zeros((config.n_atoms, 3))
    pos[:, : config.ndim] = config.positions
    return pos


def _scatter_sets(found: Configuration, match, structure, truth):
    """(label, per-atom colours or values, colour scale spec) for each colouring."""
    sets = []
    species = np.asarray(found.species, dtype=str)
    names = list(dict.fromkeys(species.tolist()))
    sets.append(("species", [SPECIES_COLOURS[names.index(s) % len(SPECIES_COLOURS)]
                             for s in species], None,
                 [f"species {s}" for s in species]))
    if match is not None:
        d = np.asarray(match.found_distance, float)
        sets.append(("distance to truth", d, "Viridis",
                     [f"distance {v:.3g}" + ("" if m else " (unmatched)")
                      for v, m in zip(d, match.found_matched)]))
    if structure is not None and "structure" in structure.columns:
        st = np.asarray(structure.columns["structure"], dtype=str)
        sets.append(("structure", [STRUCTURE_COLOURS.get(s, "#d0d0d0") for s in st], None,
                     [f"{s}, coordination {c}" for s, c in
                      zip(st, structure.columns.get("coordination", [""] * len(st)))]))
    elif structure is not None and "coordination" in structure.columns:
        c = np.asarray(structure.columns["coordination"], float)
        sets.append(("coordination", c, "Cividis", [f"coordination {int(v)}" for v in c]))
    if "confidence" in found.arrays:
        conf = np.asarray(found.arrays["confidence"], float)
        sets.append(("confidence", conf, "RdYlGn", [f"found in {v:.0%} of the runs" for v in conf]))
    return sets


def _atoms_figure(found, truth, match, structure, bond, title):
    import plotly.graph_objects as go

    pos = _pos3(found)
    three_d = found.ndim == 3
    sets = _scatter_sets(found, match, structure, truth)
    fig = go.Figure()
    size = 9 if found.n_atoms < 500 else 5
    for k, (label, colour, scale, text) in enumerate(sets):
        marker = {"size": size, "line": {"width": 0.5, "color": "#333"}, "opacity": 0.95}
        if scale is None:
            marker["color"] = list(colour)
        else:
            marker.update(color=np.asarray(colour, float).tolist(), colorscale=scale,
                          showscale=True, colorbar={"title": {"text": label}, "len": 0.7})
            if label == "confidence":
                marker.update(cmin=0.0, cmax=1.0)
        hover = [f"atom {i}: {t}<br>({p[0]:.3g}, {p[1]:.3g}, {p[2]:.3g})"
                 for i, (t, p) in enumerate(zip(text, pos))]
        common = dict(mode="markers", marker=marker, name=f"atoms ({label})", text=hover,
                      hoverinfo="text", visible=(k == 0))
        if three_d:
            fig.add_trace(go.Scatter3d(x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=pos[:, 0], y=pos[:, 1], **common))
    n_sets = len(sets)
    if truth is not None:
        tpos = _pos3(truth)
        common = dict(mode="markers", name="true atoms", hoverinfo="skip",
                      marker={"symbol": "x" if three_d else "x-thin", "size": 4 if three_d else 8,
                              "color": "#d62728", "line": {"width": 2, "color": "#d62728"}})
        if three_d:
            fig.add_trace(go.Scatter3d(x=tpos[:, 0], y=tpos[:, 1], z=tpos[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=tpos[:, 0], y=tpos[:, 1], **common))
    buttons = []
    for k, (label, *_rest) in enumerate(sets):
        visible = [j == k for j in range(n_sets)] + ([True] if truth is not None else [])
        buttons.append({"label": f"colour: {label}", "method": "update",
                        "args": [{"visible": visible}]})
    fig.update_layout(
        title={"text": title, "y": 0.98, "yanchor": "top"}, height=680,
        margin={"l": 10, "r": 10, "t": 100, "b": 10},
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "y": 1.0,
                      "xanchor": "left", "yanchor": "bottom", "showactive": True,
                      "pad": {"b": 8}}],
        legend={"x": 0.75, "y": 1.0})
    if three_d:
        fig.update_layout(scene={"aspectmode": "data", "xaxis_title": "x", "yaxis_title": "y",
                                 "zaxis_title": "z"})
    else:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def _planes_figure(found, truth, match, bond):
    """3D: one panel per atomic plane across y (seen along y), atoms coloured by distance."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .plotting import atom_planes

    ref = truth if truth is not None else found
    planes = atom_planes(ref.positions, 1, bond)
    if not planes or len(planes) > MAX_PLANES:
        return None
    centres = np.array([ref.positions[p, 1].mean() for p in planes])
    fpos = found.positions
    f_plane = np.argmin(np.abs(fpos[:, [1]] - centres[None, :]), axis=1) if len(fpos) else []
    ncols = min(4, len(planes))
    nrows = math.ceil(len(planes) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[f"y = {c:.3g}" for c in centres],
                        horizontal_spacing=0.04, vertical_spacing=0.08)
    dist = None if match is None else np.asarray(match.found_distance, float)
    vmax = None if match is None else 2 * float(match.tolerance)
    for k in range(len(planes)):
        r, c = divmod(k, ncols)
        sel = np.flatnonzero(np.asarray(f_plane) == k)
        if truth is not None:  # under the atoms: a cross shows where an atom is missing
            tp = truth.positions[planes[k]]
            fig.add_trace(go.Scatter(x=tp[:, 0], y=tp[:, 2], mode="markers", showlegend=False,
                                     marker={"symbol": "x-thin", "size": 14,
                                             "line": {"width": 1.5, "color": "#d62728"}},
                                     hoverinfo="skip"), row=r + 1, col=c + 1)
        marker = {"size": 9, "line": {"width": 0.5, "color": "#333"}, "opacity": 0.85}
        if dist is not None:
            marker.update(color=dist[sel].tolist(), colorscale="Viridis", cmin=0, cmax=vmax,
                          showscale=(k == 0), colorbar={"title": {"text": "distance"}})
        else:
            marker["color"] = "#3b75af"
        fig.add_trace(go.Scatter(x=fpos[sel, 0], y=fpos[sel, 2], mode="markers", marker=marker,
                                 showlegend=False, hovertemplate="x %{x:.3g}, z %{y:.3g}"),
                      row=r + 1, col=c + 1)
    fig.update_layout(height=300 * nrows + 60, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      title="atomic planes across the tilt axis y (x horizontal, z vertical)")
    for k in range(len(planes)):
        r, c = divmod(k, ncols)
        fig.update_yaxes(scaleanchor=f"x{k + 1 if k else ''}", row=r + 1, col=c + 1)
    return fig


def _projections_figure(ts, found, sigma):
    """Measured vs re-projected projections and their difference."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .forward import ForwardModel

    weights = ts.species_weights or {}
    cfg = found.copy()
    cfg.species_weights = {**weights, **cfg.species_weights}
    model = ForwardModel(ts.geometry, sigma)
    measured = np.asarray(ts.projections, float)
    if cfg.ndim != ts.ndim:
        return None
    modelled = np.asarray(model.project(cfg.positions, cfg.weights), float)
    scale = getattr(ts, "intensity_scale", None)
    if isinstance(scale, (int, float)):
        modelled = modelled * float(scale)
    n = measured.shape[0]
    pick = np.unique(np.linspace(0, n - 1, min(n, MAX_PROJECTIONS)).round().astype(int))
    angles = np.degrees(ts.angles)
    if ts.ndim == 2:
        fig = make_subplots(rows=len(pick), cols=1, shared_xaxes=True,
                            subplot_titles=[f"{angles[a]:.1f} deg" for a in pick])
        u = (np.arange(measured.shape[1]) - (measured.shape[1] - 1) / 2) * ts.geometry.pixel_size
        for r, a in enumerate(pick, start=1):
            for y, name, colour in ((measured[a], "measured", "#333"),
                                    (modelled[a], "re-projected", "#d62728"),
                                    (measured[a] - modelled[a], "difference", "#1f77b4")):
                fig.add_trace(go.Scatter(x=u, y=y, name=name, line={"color": colour, "width": 1},
                                         showlegend=(r == 1), legendgroup=name), row=r, col=1)
        fig.update_layout(height=220 * len(pick) + 80, title="projections: measured, "
                          "re-projected from the atoms, difference")
        return fig
    titles = []
    for a in pick:
        titles += [f"measured {angles[a]:.1f} deg", "re-projected", "difference"]
    fig = make_subplots(rows=len(pick), cols=3, subplot_titles=titles,
                        horizontal_spacing=0.03, vertical_spacing=0.05)
    lo, hi = float(measured.min()), float(measured.max())
    for r, a in enumerate(pick, start=1):
        diff = measured[a] - modelled[a]
        lim = float(np.max(np.abs(diff))) or 1.0
        for c, (img, kw) in enumerate(((measured[a], {"zmin": lo, "zmax": hi,
                                                       "colorscale": "Gray"}),
                                       (modelled[a], {"zmin": lo, "zmax": hi,
                                                      "colorscale": "Gray"}),
                                       (diff, {"zmin": -lim, "zmax": lim,
                                               "colorscale": "RdBu"})), start=1):
            fig.add_trace(go.Heatmap(z=img, showscale=False, **kw), row=r, col=c)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    for k in range(3 * len(pick)):  # square pixels
        suffix = str(k + 1) if k else ""
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
        fig.layout[f"yaxis{suffix}"].constrain = "domain"
        fig.layout[f"xaxis{suffix}"].constrain = "domain"
    fig.update_layout(height=260 * len(pick) + 80,
                      title="projections: measured, re-projected from the atoms, difference "
                            "(rows along the tilt axis)")
    return fig


def _history_figure(records):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [r for r in records if r.get("objective") is not None]
    if not rows:
        return None
    x = np.arange(1, len(rows) + 1)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True,
                        subplot_titles=["objective", "atoms"])
    obj = [float(r["objective"]) for r in rows]
    fig.add_trace(go.Scatter(x=x, y=obj, mode="lines", name="objective",
                             text=[str(r.get("phase", "")) for r in rows]), row=1, col=1)
    if any("best_objective" in r for r in rows):
        fig.add_trace(go.Scatter(x=x, y=[r.get("best_objective") for r in rows], mode="lines",
                                 name="best so far"), row=1, col=1)
    if any("n_atoms" in r for r in rows):
        fig.add_trace(go.Scatter(x=x, y=[r.get("n_atoms") for r in rows], mode="lines",
                                 name="atoms"), row=2, col=1)
    if min(obj) > 0:
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="record (iteration or search step)", row=2, col=1)
    fig.update_layout(height=520, title="convergence of the run")
    return fig


def _table(rows) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        text = json.dumps(jsonable(value))
        return text if len(text) < 160 else text[:157] + "..."
    return "-" if value is None else str(value)


def build_report(found: Configuration, *, truth=None, tiltseries=None, history=None,
                 tolerance=None, bond_length=None, title=None, structure=True) -> str:
    """The report page as one HTML string (see the module docstring).

    Parameters
    ----------
    found : Configuration
        The reconstruction (per-atom columns such as ``confidence`` are shown).
    truth : Configuration, optional
    tiltseries : TiltSeries, optional
        For the measured vs re-projected projections (needs its ``atom_sigma``).
    history : list of dict, optional
        Records of the run (:func:`read_history`).
    tolerance : float, optional
        Match distance (default 0.1 bond length).
    bond_length : float, optional
    title : str, optional
    structure : bool
        Run the structure analysis (:func:`atomtomo.structure.analyse`).

    Returns
    -------
    str
    """
    _require_plotly()
    from .metrics import TOLERANCE_BONDS, match_atoms
    from .potentials import bond_length_estimate

    title = title or "atomtomo reconstruction"
    if truth is not None and truth.ndim != found.ndim:
        raise InputError(f"the truth is {truth.ndim}D but the reconstruction is {found.ndim}D")
    bond = bond_length or (None if truth is None else truth.info.get("bond_length")) \
        or found.info.get("bond_length") or bond_length_estimate(
            (truth if truth is not None else found).positions)
    bond = None if bond is None else float(bond)
    match = None
    if truth is not None:
        if tolerance is None:
            if bond is None:
                raise InputError("cannot derive a tolerance: give --tolerance")
            tolerance = TOLERANCE_BONDS * bond
        match = match_atoms(found, truth, tolerance)
    analysis = None
    if structure and found.n_atoms:
        from .structure import analyse

        analysis = analyse(found, bond)

    sections = []
    summary = [("atoms", found.n_atoms), ("dimension", f"{found.ndim}D")]
    names, counts = np.unique(np.asarray(found.species, dtype=str), return_counts=True)
    summary.append(("species", ", ".join(f"{n}: {c}" for n, c in zip(names, counts))))
    if match is not None:
        m = match.as_dict()
        summary += [(k, m.get(k)) for k in ("n_true", "n_matched", "precision", "recall", "f1",
                                            "mean_distance", "rmsd")]
        summary.append(("tolerance", float(tolerance)))
    if "confidence" in found.arrays:
        conf = np.asarray(found.arrays["confidence"], float)
        threshold = float(found.info.get("confidence_threshold", 0.99))
        summary.append(("certain atoms (confidence >= "
                        f"{threshold:g})", f"{np.mean(conf >= threshold):.1%}"))
        if "confidence_runs" in found.info:
            summary.append(("runs compared", found.info["confidence_runs"]))
    sections.append(("Summary", _table(summary)))
    if analysis is not None:
        keys = ("analysed", "fcc", "hcp", "bcc", "ico", "other", "surface_atoms",
                "mean_coordination", "vacancies", "interstitials", "twin_planes",
                "stacking_faults", "dislocations")
        sections.append(("Structure", _table([(k, analysis.summary[k]) for k in keys
                                              if k in analysis.summary])))
    record = [(k, v) for k, v in found.info.items() if k not in ("box",)]
    if record:
        sections.append(("The run (comment line of the atom file)", _table(record)))

    figures = [_atoms_figure(found, truth, match, analysis, bond,
                             "atoms (menu: colour by species, distance to the truth, structure, "
                             "confidence; drag to turn)")]
    if found.ndim == 3 and found.n_atoms:
        planes = _planes_figure(found, truth, match, bond)
        if planes is not None:
            figures.append(planes)
    if tiltseries is not None:
        sigma = tiltseries.atom_sigma
        if isinstance(sigma, (int, float)):
            proj = _projections_figure(tiltseries, found, float(sigma))
            if proj is not None:
                figures.append(proj)
    if history:
        hist = _history_figure(history)
        if hist is not None:
            figures.append(hist)

    parts = []
    for k, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(k == 0),
                                 include_mathjax=False, div_id=f"figure-{k}",
                                 config={"displaylogo": False, "responsive": True}))
    text_sections = "".join(f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections)
    return _PAGE.format(title=html.escape(title), sections=text_sections,
                        figures="".join(f'<div class="figure">{p}</div>' for p in parts))


def write_report(path, found, **kwargs) -> Path:
    """Write :func:`build_report` to ``path`` atomically; return the path."""
    return write_text(path, build_report(found, **kwargs))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.4em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }}
th {{ font-weight: 600; color: #444; }}
.figure {{ margin: 1.2em 0; }}
</style></head>
<body>
<h1>{title}</h1>
{sections}
{figures}
<p style="color:#888;font-size:0.8em">atomtomo report: one file, no network needed to view it.</p>
</body></html>
"""
