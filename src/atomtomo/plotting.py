"""Figures: reconstructions against the truth, projections, comparison grids, curves, animations.

The poster's figure (:func:`plot_reconstruction`) draws the reconstructed atoms as filled discs
coloured by their distance to the truth (:func:`atomtomo.metrics.match_atoms`, one-to-one
matching within the tolerance) and the true atoms as red crosses. The colour scale is in the
data's length unit and capped at :data:`CAP_TOLERANCES` x the tolerance (farther atoms get the
top colour; the colour bar's arrow says so); the tolerance is marked on the colour bar, so a disc
coloured below the mark is a match. Found atoms without a partner are ringed.

Every function builds its figures with :class:`matplotlib.figure.Figure` on an Agg canvas, never
through :mod:`matplotlib.pyplot`, so nothing is left in pyplot's global figure list and the
module works without a display. Styling goes through a local ``rc_context``; global rcParams are
untouched.

Functions
---------
plot_reconstruction   one reconstruction (2D, a 3D projection onto a plane, or a 3D scatter)
plot_orthogonal       3D atoms in three orthogonal views, coloured by depth or distance to truth
plot_planes           3D atoms plane by plane across the tilt axis
plot_panels           a grid of reconstructions with one shared colour bar (method x defect)
plot_projections      the projections of a tilt series (curves in 2D, images in 3D)
plot_curves           metric-vs-parameter curves with vertical marker lines (alpha sweep)
plot_distributions    values per group as box plots with the points (error distributions)
animate_run           a GIF of a reconstruction run (frames from a solver's callback)
save_figure           write a figure as PNG, PDF or SVG (atomically)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._checks import box_array, positive_number as _positive
from ._io import atomic_path
from .potentials import bond_length_estimate
from .errors import InputError

#: Perceptual colour map of the distance to the truth (dark = close, yellow = far).
DISTANCE_CMAP = "viridis"
#: The distance colour scale ends at this many tolerances ...
CAP_TOLERANCES = 2.0
#: ... or, without a tolerance, at this fraction of the bond length.
CAP_BONDS = 0.5
#: Disc diameter as a fraction of the bond length.
DISC_BONDS = 0.42
#: Colour map of the depth (the coordinate along the viewing direction) of 3D atoms.
DEPTH_CMAP = "plasma"
#: Colour of atoms when there is no truth to compare with.
PLAIN_COLOUR = "#3b75af"
TRUTH_COLOUR = "#d62728"
RING_COLOUR = "#e8368f"
#: Figure formats :func:`save_figure` writes, by suffix.
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
#: Views of a 3D configuration: the two coordinates shown.
VIEWS = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}
#: 2D projections: up to this many angles are overlaid, more are drawn as a waterfall.
OVERLAY_MAX = 6

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "legend.title_fontsize": 8.5,
    "legend.frameon": False,
    "axes.spines.top": True,
    "axes.spines.right": True,
    "figure.dpi": 100,
    "savefig.dpi": 150,
}
_UNITS = {"angstrom": "Å", "ångström": "Å", "a": "Å", "å": "Å", "nanometer": "nm",
          "nanometre": "nm", "um": "µm", "micrometer": "µm", "micrometre": "µm"}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _style():
    import matplotlib

    return matplotlib.rc_context(_STYLE)


def _new_figure(figsize, layout="constrained", **kwargs):
    """A Figure on an Agg canvas, not registered with pyplot (so nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _figure_of(obj):
    from matplotlib.figure import Figure

    if isinstance(obj, Figure):
        return obj
    fig = getattr(obj, "figure", None)
    if isinstance(fig, Figure):
        return fig.get_figure(root=True) if hasattr(fig, "get_figure") else fig
    raise InputError(f"expected a matplotlib Figure or Axes, got {type(obj).__name__}")


def _unit_label(unit) -> str:
    unit = (unit or "").strip()
    return _UNITS.get(unit.lower(), unit)


def _with_unit(text, unit) -> str:
    unit = _unit_label(unit)
    return f"{text} ({unit})" if unit else text


def _info(config, key):
    info = getattr(config, "info", None)
    return info.get(key) if isinstance(info, Mapping) else None


def _positions(atoms, name, ndim=None) -> np.ndarray:
    """(n, d) float positions of a Configuration or array; empty input gets ``ndim`` columns."""
    pos = getattr(atoms, "positions", atoms)
    try:
        pos = np.asarray(pos, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a Configuration or an (n, d) array of numbers") from None
    if pos.size == 0:
        return np.zeros((0, pos.shape[1] if pos.ndim == 2 and pos.shape[1] in (2, 3) else
                         (ndim or 2)))
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise InputError(f"{name} positions must have shape (n, 2) or (n, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise InputError(f"{name} positions contain NaN or infinite values")
    return pos


def _bond_length(found_pos, truth, truth_pos, box):
    """The length scale of the picture: bond length of the truth, else a nearest-neighbour
    distance, else a fraction of the box."""
    bond = _info(truth, "bond_length")
    try:
        bond = float(bond) if bond is not None else None
    except (TypeError, ValueError):
        bond = None
    if bond is None or not np.isfinite(bond) or bond <= 0:
        bond = bond_length_estimate(truth_pos) if truth_pos is not None else None
    if bond is None:
        bond = bond_length_estimate(found_pos)
    if bond is None:
        extent = np.ptp(box, axis=1).max() if box is not None else 1.0
        bond = extent / 10
    return bond


def _check_view(view, ndim):
    if view not in (*VIEWS, "3d"):
        raise InputError(f"view must be one of {', '.join([*VIEWS, '3d'])}, got {view!r}")
    if ndim == 2 and view != "xy":
        raise InputError(f"view {view!r} needs 3D atoms; 2D atoms are drawn in the xy plane")


def _colour_norm(vmax):
    from matplotlib.colors import Normalize

    return Normalize(vmin=0.0, vmax=float(vmax))


def _cmap():
    import matplotlib

    return matplotlib.colormaps[DISTANCE_CMAP]


def _distance_cap(tolerance, bond):
    return CAP_TOLERANCES * tolerance if tolerance else CAP_BONDS * bond


def _limits(box2, points, pad):
    """Axis limits: the box (or the atoms' extent) plus a margin, widened to show every atom."""
    pts = [p for p in points if len(p)]
    allp = np.vstack(pts) if pts else np.zeros((0, 2))
    if box2 is not None:
        lo, hi = box2[:, 0].copy(), box2[:, 1].copy()
    elif len(allp):
        lo, hi = allp.min(axis=0), allp.max(axis=0)
    else:
        lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    if len(allp):
        lo, hi = np.minimum(lo, allp.min(axis=0)), np.maximum(hi, allp.max(axis=0))
    span = max(float(np.max(hi - lo)), 1e-12)
    margin = max(pad, 0.03 * span)
    return (lo[0] - margin, hi[0] + margin), (lo[1] - margin, hi[1] + margin)


def _format_angle(deg) -> str:
    text = f"{deg:.4g}"
    if text in ("-0", "0"):
        text = "0"
    return text.replace("-", "\u2212") + "\u00b0"


def _stats_text(match, short=False) -> str:
    if short:
        return f"F1 {match.f1:.2f} \u00b7 {match.n_found}/{match.n_true} atoms"
    return (f"{match.n_found} found / {match.n_true} true \u00b7 F1 {match.f1:.3f} "
            f"({match.n_matched} within {match.tolerance:.3g})")


# ---------------------------------------------------------------------------------------------
# Reconstructions
# ---------------------------------------------------------------------------------------------
class _Drawn:
    """What :func:`_draw_atoms` drew (for legends, colour bars and tests)."""

    def __init__(self, match, norm, cmap, n_unmatched, has_truth, length_unit, bond, tolerance):
        self.match = match
        self.norm = norm
        self.cmap = cmap
        self.n_unmatched = n_unmatched
        self.has_truth = has_truth
        self.length_unit = length_unit
        self.bond = bond
        self.tolerance = tolerance
        self.depth_norm = None


def _prepare(found, truth, box, tolerance, view):
    """Positions, box, bond length, tolerance and matching of one reconstruction."""
    from .metrics import TOLERANCE_BONDS, match_atoms

    t_pos = None if truth is None else _positions(truth, "truth")
    f_pos = _positions(found, "found", ndim=None if t_pos is None else t_pos.shape[1])
    if t_pos is not None and len(t_pos) == 0 and len(f_pos):
        t_pos = np.zeros((0, f_pos.shape[1]))
    ndim = f_pos.shape[1] if len(f_pos) or t_pos is None else t_pos.shape[1]
    if t_pos is not None and t_pos.shape[1] != f_pos.shape[1]:
        if len(f_pos) == 0:
            f_pos = np.zeros((0, t_pos.shape[1]))
            ndim = t_pos.shape[1]
        else:
            raise InputError(f"cannot compare {f_pos.shape[1]}D atoms with "
                             f"{t_pos.shape[1]}D true atoms")
    _check_view(view, ndim)
    box = box_array(box, ndim)
    bond = _bond_length(f_pos, truth, t_pos, box)
    match = None
    if t_pos is not None:
        if tolerance is None:
            tolerance = TOLERANCE_BONDS * bond
        tolerance = _positive(tolerance, "tolerance")
        match = match_atoms(f_pos, t_pos, tolerance)
    return f_pos, t_pos, ndim, box, bond, tolerance, match


def _draw_atoms(ax, found, truth=None, box=None, tolerance=None, view="xy", norm=None,
                radius=None, length_unit=None, axis_labels=True, depth=False):
    """Draw one reconstruction into ``ax``; return a :class:`_Drawn`.

    ``depth``: without a truth, colour a 3D projection's discs by the coordinate along the
    viewing direction (``drawn.depth_norm`` is then the colour scale)."""
    from matplotlib.collections import EllipseCollection
    from matplotlib.patches import Rectangle

    f_pos, t_pos, ndim, box, bond, tolerance, match = _prepare(found, truth, box, tolerance, view)
    if length_unit is None:
        length_unit = _info(found, "length_unit") or _info(truth, "length_unit") or ""
    cmap = _cmap()
    if match is not None and norm is None:
        norm = _colour_norm(_distance_cap(tolerance, bond))
    diameter = 2 * radius if radius is not None else DISC_BONDS * bond
    unmatched = (~match.found_matched if match is not None
                 else np.zeros(len(f_pos), bool))
    drawn = _Drawn(match, norm, cmap, int(unmatched.sum()), t_pos is not None, length_unit, bond,
                   tolerance)

    if view == "3d":
        _draw_atoms_3d(ax, f_pos, t_pos, box, match, norm, cmap, unmatched, diameter, length_unit,
                       axis_labels)
        return drawn

    i, j = VIEWS[view]
    f2, t2 = f_pos[:, [i, j]], None if t_pos is None else t_pos[:, [i, j]]
    order = np.argsort(f_pos[:, 3 - i - j], kind="stable") if ndim == 3 else np.arange(len(f_pos))
    f2, unmatched_o = f2[order], unmatched[order]
    box2 = None if box is None else box[[i, j]]

    if box2 is not None:
        ax.add_patch(Rectangle(box2[:, 0], *(box2[:, 1] - box2[:, 0]), fill=False, lw=0.8,
                               ec="0.55", ls=(0, (4, 3)), zorder=0.5))
    sizes = np.full(len(f2), diameter)
    discs = EllipseCollection(sizes, sizes, np.zeros(len(f2)), units="xy", offsets=f2,
                              offset_transform=ax.transData, edgecolors="0.15", linewidths=0.5,
                              zorder=2, gid="found-atoms")
    drawn.depth_norm = None
    if match is not None:
        discs.set_cmap(cmap)
        discs.set_norm(norm)
        discs.set_array(match.found_distance[order])
    elif depth and ndim == 3 and len(f_pos):
        from matplotlib.colors import Normalize

        k = 3 - i - j
        lo, hi = (box[k] if box is not None else (f_pos[:, k].min(), f_pos[:, k].max() + 1e-9))
        drawn.depth_norm = Normalize(float(lo), float(hi))
        discs.set_cmap(DEPTH_CMAP)
        discs.set_norm(drawn.depth_norm)
        discs.set_array(f_pos[order, k])
    else:
        discs.set_facecolor(PLAIN_COLOUR)
    ax.add_collection(discs, autolim=False)
    if unmatched_o.any():
        ring = np.full(int(unmatched_o.sum()), 1.55 * diameter)
        rings = EllipseCollection(ring, ring, np.zeros(len(ring)), units="xy",
                                  offsets=f2[unmatched_o], offset_transform=ax.transData,
                                  facecolors="none", edgecolors=RING_COLOUR, linewidths=1.3,
                                  zorder=2.5, gid="unmatched-rings")
        ax.add_collection(rings, autolim=False)
    if t2 is not None and len(t2):
        ax.scatter(t2[:, 0], t2[:, 1], marker="x", s=22, c=TRUTH_COLOUR, linewidths=1.2,
                   zorder=3, gid="true-atoms")
    xlim, ylim = _limits(box2, [f2, t2 if t2 is not None else np.zeros((0, 2))], diameter)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    if axis_labels:
        names = "xyz"
        ax.set_xlabel(_with_unit(names[i], length_unit))
        ax.set_ylabel(_with_unit(names[j], length_unit))
    return drawn


def _draw_atoms_3d(ax, f_pos, t_pos, box, match, norm, cmap, unmatched, diameter, length_unit,
                   axis_labels):
    if getattr(ax, "name", "") != "3d":
        raise InputError("view='3d' needs a 3D axes (add_subplot(projection='3d')) or ax=None")
    pts = [p for p in (f_pos, t_pos) if p is not None and len(p)]
    if box is not None:
        lo, hi = box[:, 0], box[:, 1]
    elif pts:
        allp = np.vstack(pts)
        lo, hi = allp.min(axis=0) - diameter, allp.max(axis=0) + diameter
    else:
        lo, hi = -np.ones(3) / 2, np.ones(3) / 2
    # Marker area (points^2): the disc diameter at the scale of a 3D axes about 250 pt wide,
    # halved, so that the atoms behind stay visible.
    size = float(np.clip((0.5 * diameter / max(np.max(hi - lo), 1e-12) * 250) ** 2, 4, 150))
    ax.computed_zorder = False  # the crosses stay on top of the discs
    kw = {"depthshade": False, "s": size, "edgecolors": "0.15", "linewidths": 0.4, "zorder": 1}
    if match is not None:
        ax.scatter(*f_pos.T, c=match.found_distance, cmap=cmap, norm=norm, gid="found-atoms", **kw)
    else:
        ax.scatter(*f_pos.T, c=PLAIN_COLOUR, gid="found-atoms", **kw)
    if unmatched.any():
        ax.scatter(*f_pos[unmatched].T, s=size * 2.6, facecolors="none", edgecolors=RING_COLOUR,
                   linewidths=1.1, depthshade=False, gid="unmatched-rings", zorder=2)
    if t_pos is not None and len(t_pos):
        ax.scatter(*t_pos.T, marker="x", s=max(size * 0.45, 10), c=TRUTH_COLOUR,
                   linewidths=1.0, depthshade=False, gid="true-atoms", zorder=3)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(tuple(np.maximum(hi - lo, 1e-12)))
    if axis_labels:
        ax.set_xlabel(_with_unit("x", length_unit), labelpad=4)
        ax.set_ylabel(_with_unit("y", length_unit), labelpad=4)
        ax.set_zlabel(_with_unit("z", length_unit), labelpad=4)


def _legend_handles(drawn):
    from matplotlib.lines import Line2D

    face = PLAIN_COLOUR if not drawn.has_truth else drawn.cmap(0.35)
    handles = [Line2D([], [], ls="", marker="o", ms=7, mfc=face, mec="0.15", mew=0.5,
                      label="reconstructed")]
    if drawn.has_truth:
        handles.append(Line2D([], [], ls="", marker="x", ms=6, mew=1.2, color=TRUTH_COLOUR,
                              label="true"))
        handles.append(Line2D([], [], ls="", marker="o", ms=10, mfc="none", mec=RING_COLOUR,
                              mew=1.3, label="unmatched"))
    return handles


def _distance_colorbar(fig, norm, cmap, tolerance, length_unit, ax, **kwargs):
    """The distance colour bar, with the match tolerance marked."""
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=norm, cmap=cmap)
    cbar = fig.colorbar(sm, ax=ax, extend="max", **kwargs)
    cbar.set_label(_with_unit("distance to truth", length_unit))
    if tolerance and tolerance <= norm.vmax:
        cbar.ax.axhline(tolerance, color="white", lw=1.2)
        cbar.ax.axhline(tolerance, color="black", lw=0.6, ls=(0, (2, 2)))
        # Labelled on the left: the right side carries the tick labels.
        cbar.ax.text(-0.12, tolerance, "tol.", transform=cbar.ax.get_yaxis_transform(),
                     va="center", ha="right", fontsize=7, color="0.25", clip_on=False)
    return cbar


def plot_reconstruction(found, truth=None, ax=None, box=None, tolerance=None, title=None,
                        colorbar=True, view="xy", *, legend=True, vmax=None, radius=None,
                        length_unit=None):
    """The poster's figure: reconstructed atoms coloured by their distance to the truth.

    Parameters
    ----------
    found : Configuration or (n, d) array_like
        Reconstructed atoms (d = 2 or 3; may be empty).
    truth : Configuration or (m, d) array_like, optional
        True atoms, drawn as red crosses. Without a truth the atoms are drawn in one colour.
    ax : matplotlib Axes, optional
        Where to draw (a 3D axes for ``view="3d"``). Default: a new 5 x 4.6 inch figure.
    box : (d, 2) array_like, optional
        The reconstruction box, drawn dashed; the axis limits show it with a small margin.
    tolerance : float, optional
        Match distance (default 0.1 x the bond length: ``truth.info["bond_length"]`` or the
        truth's median nearest-neighbour distance).
    title : str, optional
    colorbar : bool
        Add the distance colour bar (only with a truth).
    view : {"xy", "xz", "yz", "3d"}
        3D atoms: the plane to project onto (atoms drawn back to front), or a 3D scatter.
    legend : bool
        A legend below the axes with the counts and F1 (only with a truth).
    vmax : float, optional
        Top of the colour scale (default ``2 x tolerance``; farther atoms get the top colour).
    radius : float, optional
        Disc radius in data units (default ``0.21 x`` bond length).
    length_unit : str, optional
        For axis labels (default: ``info["length_unit"]`` of the atoms).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into (``ax.figure`` is the figure to save).

    Notes
    -----
    Each found atom's distance is to its matched true atom, or to the nearest true atom when it
    is unmatched (:attr:`atomtomo.metrics.MatchResult.found_distance`); unmatched found atoms are
    ringed in magenta. In 3D projections the distance is the 3D distance.
    """
    with _style():
        if ax is None:
            fig = _new_figure((5.2, 5.0) if view != "3d" else (5.6, 5.0))
            ax = fig.add_subplot(projection="3d" if view == "3d" else None)
        fig = ax.figure
        norm = None if vmax is None else _colour_norm(_positive(vmax, "vmax"))
        drawn = _draw_atoms(ax, found, truth, box, tolerance, view, norm=norm, radius=radius,
                            length_unit=length_unit)
        if title:
            ax.set_title(title)
        if drawn.match is not None and colorbar:
            if view == "3d":
                _distance_colorbar(fig, drawn.norm, drawn.cmap, drawn.tolerance,
                                   drawn.length_unit, ax, shrink=0.6, pad=0.1)
            else:  # exactly as tall as the (equal-aspect) plot
                cax = ax.inset_axes((1.09, 0.0, 0.045, 1.0))
                _distance_colorbar(fig, drawn.norm, drawn.cmap, drawn.tolerance,
                                   drawn.length_unit, None, cax=cax)
        if legend and drawn.match is not None:
            ax.legend(handles=_legend_handles(drawn), loc="upper center",
                      bbox_to_anchor=(0.5, -0.13 if view != "3d" else -0.07), ncol=3,
                      title=_stats_text(drawn.match), handletextpad=0.3, columnspacing=1.2,
                      borderaxespad=0.0)
        elif legend and view != "3d":
            n = len(_positions(found, "found"))
            ax.legend(handles=_legend_handles(drawn), labels=[f"{n} reconstructed atoms"],
                      loc="upper center", bbox_to_anchor=(0.5, -0.13), borderaxespad=0.0)
    return ax


def plot_orthogonal(found, truth=None, box=None, tolerance=None, title=None, *,
                    length_unit=None, radius=None):
    """Three orthogonal views (x-y, x-z, y-z) of 3D atoms, drawn back to front.

    With a truth the discs are coloured by the distance to it (as :func:`plot_reconstruction`);
    without one, by depth: the coordinate along each view's line of sight, so that atoms in
    front and behind, which overlap in one view, are told apart.

    Parameters
    ----------
    found, truth, box, tolerance, length_unit, radius
        As in :func:`plot_reconstruction` (3D atoms).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    with _style():
        fig = _new_figure((13.2, 5.0))
        axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
        drawn = None
        names = "xyz"
        for ax, view in zip(axes, ("xy", "xz", "yz")):
            drawn = _draw_atoms(ax, found, truth, box, tolerance, view, radius=radius,
                                length_unit=length_unit, depth=True)
            i, j = VIEWS[view]
            ax.set_title(f"{names[i]}-{names[j]} (seen along {names[3 - i - j]})")
            if drawn.depth_norm is not None:
                from matplotlib.cm import ScalarMappable

                bar = fig.colorbar(ScalarMappable(drawn.depth_norm, DEPTH_CMAP), ax=ax,
                                   shrink=0.7, pad=0.02, location="bottom")
                bar.set_label(_with_unit(f"depth {names[3 - i - j]}", drawn.length_unit))
        if drawn is not None and drawn.match is not None:
            _distance_colorbar(fig, drawn.norm, drawn.cmap, drawn.tolerance, drawn.length_unit,
                               axes, shrink=0.8, pad=0.02)
            fig.legend(handles=_legend_handles(drawn), loc="outside lower center", ncol=3,
                       title=_stats_text(drawn.match))
        if title:
            fig.suptitle(title, fontsize=11)
    return fig


def atom_planes(positions, axis=1, bond_length=None):
    """Group 3D atoms into planes across ``axis`` (default y, the tilt axis).

    Sorted coordinates along ``axis`` are split where consecutive values are more than a third
    of a bond length apart. Returns a list of index arrays, one per plane, in order.
    """
    pos = np.asarray(positions, float)
    if len(pos) == 0:
        return []
    bond = bond_length or bond_length_estimate(pos) or 1.0
    order = np.argsort(pos[:, axis], kind="stable")
    gaps = np.diff(pos[order, axis]) > bond / 3
    return np.split(order, np.flatnonzero(gaps) + 1)


def plot_planes(found, truth=None, box=None, tolerance=None, *, axis=1, max_planes=16,
                length_unit=None, title=None):
    """One panel per atomic plane across ``axis`` (default y, the tilt axis), each seen along it.

    The planes are those of the truth when given (else of the found atoms,
    :func:`atom_planes`); every found atom is drawn in the plane nearest to it. With a truth the
    discs are coloured by the distance to it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if length_unit is None:
        length_unit = _info(found, "length_unit") or _info(truth, "length_unit") or None
    f_pos = _positions(found, "found", ndim=3)
    t_pos = None if truth is None else _positions(truth, "truth", ndim=3)
    ref = t_pos if t_pos is not None and len(t_pos) else f_pos
    if tolerance is None and t_pos is not None and len(t_pos) > 1:
        from .metrics import TOLERANCE_BONDS

        tolerance = TOLERANCE_BONDS * (bond_length_estimate(t_pos) or 1.0)
    planes = atom_planes(ref, axis)
    if not planes:
        raise InputError("no atoms to draw")
    if len(planes) > max_planes:
        raise InputError(f"{len(planes)} planes: more than max_planes={max_planes}")
    centres = np.array([ref[p, axis].mean() for p in planes])
    f_plane = np.argmin(np.abs(f_pos[:, [axis]] - centres[None, :]), axis=1) if len(f_pos) else []
    view = {0: "yz", 1: "xz", 2: "xy"}[axis]
    panels = []
    for k, c in enumerate(centres):
        panel = {"found": f_pos[np.asarray(f_plane) == k], "box": box,
                 "title": f"{'xyz'[axis]} = {c:.3g}", "tolerance": tolerance}
        if t_pos is not None:
            panel["truth"] = t_pos[planes[k]]
        panels.append(panel)
    return plot_panels(panels, ncols=min(len(panels), 4), view=view, length_unit=length_unit,
                       suptitle=title, stats=t_pos is not None)


def plot_panels(panels, ncols=None, *, vmax=None, view="xy", panel_size=2.7, suptitle=None,
                row_labels=None, col_labels=None, length_unit=None, stats=True):
    """A grid of reconstructions with one shared distance colour bar (the comparison figure).

    Parameters
    ----------
    panels : sequence of dict
        One dict per panel, row by row: ``found`` (required), ``truth``, ``title``, ``box``,
        ``tolerance``, ``radius``. ``None`` leaves a panel empty.
    ncols : int, optional
        Panels per row (default: all in one row up to 5).
    vmax : float, optional
        Top of the shared colour scale (default: 2 x the largest tolerance).
    view : {"xy", "xz", "yz", "3d"}
        As in :func:`plot_reconstruction`.
    panel_size : float
        Width of one panel in inches.
    suptitle : str, optional
    row_labels, col_labels : sequence of str, optional
        Labels at the left of each row and above each column (e.g. defects and methods).
    length_unit : str, optional
    stats : bool
        Add "F1 ... · found/true atoms" under each panel's title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    panels = list(panels)
    if not panels:
        raise InputError("plot_panels needs at least one panel")
    for k, p in enumerate(panels):
        if p is not None and (not isinstance(p, Mapping) or "found" not in p):
            raise InputError(f"panel {k} must be a dict with at least 'found'")
    n = len(panels)
    ncols = min(n, 5) if ncols is None else int(ncols)
    if ncols < 1:
        raise InputError(f"ncols must be positive, got {ncols}")
    nrows = math.ceil(n / ncols)
    # The shared colour scale: tolerances and bond lengths of all panels.
    prepared = [None if p is None else _prepare(p["found"], p.get("truth"), p.get("box"),
                                                 p.get("tolerance"), view) for p in panels]
    tols = [q[5] for q in prepared if q is not None and q[5] is not None]
    bonds = [q[4] for q in prepared if q is not None]
    if vmax is None:
        vmax = CAP_TOLERANCES * max(tols) if tols else CAP_BONDS * max(bonds or [1.0])
    norm = _colour_norm(_positive(vmax, "vmax"))
    boxes = [q[3] for q in prepared if q is not None]
    # One frame for all panels when they share a box (or none has one): common limits, tick
    # labels on the outer panels only.
    shared = view != "3d" and (all(b is None for b in boxes) or (
        all(b is not None for b in boxes) and all(np.array_equal(b, boxes[0]) for b in boxes)))
    extra_h = 0.45 if stats else 0.2
    with _style():
        fig = _new_figure((panel_size * ncols + 1.0, (0.93 * panel_size + extra_h) * nrows + 0.6))
        kw = {"projection": "3d"} if view == "3d" else {}
        # Axes only where there are panels: empty cells would upset the constrained layout.
        axes = np.full((nrows, ncols), None, dtype=object)
        for k, p in enumerate(panels):
            if p is not None:
                axes.flat[k] = fig.add_subplot(nrows, ncols, k + 1, **kw)
        drawn_any = None
        used = []
        title_lines = 0
        for k, ax in enumerate(axes.ravel()):
            if ax is None:
                continue
            p = panels[k]
            r, c = divmod(k, ncols)
            drawn = _draw_atoms(ax, p["found"], p.get("truth"), p.get("box"), p.get("tolerance"),
                                view, norm=norm, radius=p.get("radius"), length_unit=length_unit)
            used.append((ax, r, c, k))
            if view == "3d" and c != ncols - 1 and k != n - 1:
                ax.set_zlabel("")  # it would run into the next panel
            lines = [p.get("title")] if p.get("title") else []
            if stats and drawn.match is not None:
                lines.append(_stats_text(drawn.match, short=True))
            if lines:
                ax.set_title("\n".join(lines), fontsize=9)
            if r == 0:
                title_lines = max(title_lines, len(lines))
            drawn_any = drawn_any or (drawn if drawn.match is not None else None)
        if shared and used:
            xlo = min(a.get_xlim()[0] for a, *_ in used)
            xhi = max(a.get_xlim()[1] for a, *_ in used)
            ylo = min(a.get_ylim()[0] for a, *_ in used)
            yhi = max(a.get_ylim()[1] for a, *_ in used)
            for ax, r, c, k in used:
                ax.set_xlim(xlo, xhi)
                ax.set_ylim(ylo, yhi)
                if k + ncols < n and panels[k + ncols] is not None:  # a panel below
                    ax.set_xlabel("")
                    ax.tick_params(labelbottom=False)
                if c != 0 and panels[k - 1] is not None:  # a panel to the left
                    ax.set_ylabel("")
                    ax.tick_params(labelleft=False)
        if col_labels is not None:
            for c, label in enumerate(list(col_labels)[:ncols]):
                top = next((a for a in axes[:, c] if a is not None), None)
                if top is not None:
                    top.annotate(label, (0.5, 1.0), xycoords="axes fraction",
                                 xytext=(0, 6 + 12 * title_lines), textcoords="offset points",
                                 ha="center", va="bottom", fontsize=10, fontweight="bold")
        if row_labels is not None:
            for r, label in enumerate(list(row_labels)[:nrows]):
                first = next((a for a in axes[r] if a is not None), None)
                if first is None:
                    continue
                # Left of the y label (placed at draw time, whatever the tick labels' width).
                anchor = first.yaxis.label if first.get_ylabel() else first
                first.annotate(label, (0.0, 0.5), xycoords=anchor, xytext=(-6, 0),
                               textcoords="offset points", ha="right", va="center",
                               rotation=90, fontsize=10, fontweight="bold")
        if drawn_any is not None:
            _distance_colorbar(fig, norm, drawn_any.cmap, min(tols) if len(set(tols)) == 1
                               else None, drawn_any.length_unit, [a for a, *_ in used],
                               shrink=0.8 if nrows == 1 else 0.6, pad=0.03, aspect=25)
            fig.legend(handles=_legend_handles(drawn_any), loc="outside lower center", ncol=3,
                       handletextpad=0.3, columnspacing=1.5)
        if suptitle:
            fig.suptitle(suptitle, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# Projections
# ---------------------------------------------------------------------------------------------
def plot_projections(ts, *, max_cols=5, title=None):
    """The projections of a tilt series.

    Parameters
    ----------
    ts : TiltSeries
    max_cols : int
        3D: at most this many image panels per row.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        2D: one curve per tilt angle against the detector coordinate ``s``. 3D: one image per
        angle (``u`` across, ``v`` up, in the length unit) on a shared grey scale, with the angle
        in each title.
    """
    geometry = getattr(ts, "geometry", None)
    proj = np.asarray(getattr(ts, "projections", None), dtype=float)
    if geometry is None or proj.shape != tuple(geometry.data_shape):
        raise InputError("plot_projections needs a TiltSeries whose projections match its geometry")
    angles_deg = np.degrees(ts.angles)
    approx = geometry.angles is None  # general directions: equivalent single-axis angles
    unit = getattr(ts, "length_unit", "")
    with _style():
        if geometry.ndim == 2:
            fig = _plot_profiles(proj, geometry, angles_deg, approx, unit)
        else:
            fig = _plot_images(proj, geometry, angles_deg, approx, unit, max_cols)
        if title:
            fig.suptitle(title, fontsize=11)
    return fig


def _plot_profiles(proj, geometry, angles_deg, approx, unit):
    """2D data: one curve per angle; beyond :data:`OVERLAY_MAX` angles a waterfall (each curve
    shifted up by a fixed step and labelled with its angle at the right)."""
    import matplotlib

    s = geometry.pixel_centres()
    n = len(proj)
    prefix = "\u03b8 \u2248 " if approx else "\u03b8 = "
    labels = [prefix + _format_angle(a) for a in angles_deg]
    xlim = (s[0] - geometry.pixel_size / 2, s[-1] + geometry.pixel_size / 2)
    if n <= OVERLAY_MAX:
        fig = _new_figure((6.0, 3.4))
        ax = fig.add_subplot()
        colours = matplotlib.colormaps["tab10"]
        for k in range(n):
            ax.plot(s, proj[k], lw=1.2, color=colours(k % 10), label=labels[k])
        ax.axhline(0, color="0.7", lw=0.6, zorder=0)
        ax.set_ylabel("projection")
        ax.legend(loc="best", ncol=1 if n <= 4 else 2, frameon=True, framealpha=0.85,
                  edgecolor="none")
    else:
        fig = _new_figure((6.0, min(2.0 + 0.32 * n, 9.0)))
        ax = fig.add_subplot()
        order = np.argsort(angles_deg, kind="stable")
        step = 0.75 * max(float(np.ptp(proj)), 1e-12)
        colours = _cmap()(np.linspace(0.0, 0.85, n))
        for rank, k in enumerate(order):
            base = rank * step
            ax.axhline(base, color="0.85", lw=0.5, zorder=0)
            ax.plot(s, proj[k] + base, lw=1.0, color=colours[rank])
            ax.annotate(labels[k], (1.0, base), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", ha="left",
                        fontsize=8, color=colours[rank])
        ax.set_ylabel(f"projection (curves shifted by {step:.3g})")
        ax.set_yticks([])
    ax.set_xlim(*xlim)
    ax.set_xlabel(_with_unit("detector coordinate s", unit))
    ax.grid(alpha=0.25, lw=0.5)
    return fig


def _plot_images(proj, geometry, angles_deg, approx, unit, max_cols):
    n = len(proj)
    ncols = max(1, min(n, int(max_cols)))
    nrows = math.ceil(n / ncols)
    rows, cols = geometry.detector_shape
    px = geometry.pixel_size
    extent = (-cols * px / 2, cols * px / 2, -rows * px / 2, rows * px / 2)
    aspect = rows / cols
    w = 2.4
    fig = _new_figure((w * ncols + 0.9, (w * aspect + 0.55) * nrows + 0.3))
    vmin, vmax = float(proj.min()), float(proj.max())
    if vmax <= vmin:
        vmax = vmin + 1.0
    prefix = "\u03b8 \u2248 " if approx else "\u03b8 = "
    axes = []
    im = None
    for k in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        axes.append(ax)
        if k >= n:
            ax.set_axis_off()
            continue
        r, c = divmod(k, ncols)
        im = ax.imshow(proj[k], origin="lower", extent=extent, cmap="gray", vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        ax.set_title(prefix + _format_angle(angles_deg[k]))
        if r == nrows - 1 or k + ncols >= n:
            ax.set_xlabel(_with_unit("u", unit))
        else:
            ax.tick_params(labelbottom=False)
        if c == 0:
            ax.set_ylabel(_with_unit("v", unit))
        else:
            ax.tick_params(labelleft=False)
    fig.colorbar(im, ax=axes, shrink=0.9 if nrows > 1 else 0.8, pad=0.02, label="projection")
    return fig


# ---------------------------------------------------------------------------------------------
# Curves and distributions (experiments)
# ---------------------------------------------------------------------------------------------
_MARKER_STYLES = [{"color": "0.45", "ls": "-", "lw": 1.6},
                  {"color": "#d95f02", "ls": "--", "lw": 1.4},
                  {"color": "#7570b3", "ls": ":", "lw": 1.4}]


def _curve_values(y, n, name):
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[None]
    if y.ndim != 2 or y.shape[1] != n:
        raise InputError(f"curve {name!r} must have {n} values (or shape (repeats, {n})), "
                         f"got shape {np.shape(y)}")
    return y


def plot_curves(x, curves, *, xlabel, ylabels=None, markers=None, references=None, logx=True,
                logy="auto", layout="stacked", title=None, width=5.0, panel_height=1.6):
    """Metric-against-parameter curves, with vertical lines at chosen parameter values.

    Parameters
    ----------
    x : (n,) array_like
        The parameter (e.g. alpha). On a log axis, values <= 0 are left out.
    curves : mapping of str to array_like
        Name -> values, shape ``(n,)`` or ``(repeats, n)``; repeats (seeds) are drawn as the mean
        with a shaded min-max band. NaN values are gaps.
    xlabel : str
    ylabels : mapping of str to str, or str, optional
        ``stacked``: the y label of each curve's panel (default: its name). ``overlay``: the one
        y label.
    markers : mapping of str to float, or sequence of dict, optional
        Vertical lines: label -> x, or dicts with ``x``, ``label`` and optionally ``color``,
        ``ls``, ``lw``. Default styles: first grey solid (e.g. the best alpha), second orange
        dashed (e.g. the automatically chosen alpha). The value is appended to the label.
    references : mapping of str to float or (float, str), optional
        Horizontal dotted lines: curve name -> y (with a label), e.g. ``{"atoms": (37, "true")}``
        or the noise level on the discrepancy panel.
    logx : bool
    logy : bool, "auto", or mapping of str to bool or "auto"
        "auto": log scale for positive curves spanning more than a factor 100. A mapping sets
        it per curve (stacked layout), e.g. ``{"data discrepancy": True}``.
    layout : {"stacked", "overlay"}
        One panel per curve sharing the x axis, or all curves in one panel.
    title : str, optional
    width, panel_height : float
        Figure width and the height of one panel, in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise InputError(f"x must be a non-empty 1D array, got shape {x.shape}")
    if not isinstance(curves, Mapping) or not curves:
        raise InputError("curves must be a non-empty mapping of name -> values")
    if layout not in ("stacked", "overlay"):
        raise InputError(f"layout must be 'stacked' or 'overlay', got {layout!r}")
    values = {str(k): _curve_values(v, len(x), k) for k, v in curves.items()}
    keep = np.isfinite(x) & ((x > 0) if logx else True)
    order = np.argsort(x[keep], kind="stable")
    xs = x[keep][order]
    marks = _markers(markers)
    n_panels = len(values) if layout == "stacked" else 1
    with _style():
        import matplotlib

        fig = _new_figure((width, panel_height * n_panels + 0.5 + 0.25 * bool(marks)))
        axes = [fig.add_subplot(n_panels, 1, 1)]
        for k in range(1, n_panels):
            axes.append(fig.add_subplot(n_panels, 1, k + 1, sharex=axes[0]))
        colours = matplotlib.colormaps["tab10"]
        for k, (name, y) in enumerate(values.items()):
            ax = axes[k if layout == "stacked" else 0]
            y = y[:, keep][:, order]
            colour = "#1f4e79" if layout == "stacked" else colours(k)
            with np.errstate(all="ignore"):
                finite = np.isfinite(y)
                counts = finite.sum(axis=0)
                mean = np.where(counts > 0, np.nansum(np.where(finite, y, 0), axis=0)
                                / np.maximum(counts, 1), np.nan)
            ax.plot(xs, mean, "-o", color=colour, ms=3.5, lw=1.4, label=name)
            if y.shape[0] > 1 and np.any(counts > 1):
                lo = np.where(counts > 0, np.nanmin(np.where(finite, y, np.inf), axis=0), np.nan)
                hi = np.where(counts > 0, np.nanmax(np.where(finite, y, -np.inf), axis=0), np.nan)
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, lw=0)
            if layout == "stacked":
                label = ylabels.get(name, name) if isinstance(ylabels, Mapping) else name
                ax.set_ylabel(label)
            ref = (references or {}).get(name)
            if ref is not None:
                ref_y, ref_label = ref if isinstance(ref, (tuple, list)) else (ref, None)
                ax.axhline(float(ref_y), color="0.35", ls=":", lw=1.1, zorder=1)
                if ref_label:
                    ax.annotate(str(ref_label), (1.0, float(ref_y)),
                                xycoords=ax.get_yaxis_transform(), xytext=(-3, 2),
                                textcoords="offset points", ha="right", va="bottom",
                                fontsize=7.5, color="0.3")
            _set_logy(ax, y, logy.get(name, "auto") if isinstance(logy, Mapping) else logy)
        if layout == "overlay":
            if isinstance(ylabels, str):
                axes[0].set_ylabel(ylabels)
            _set_logy(axes[0], np.concatenate([v[:, keep] for v in values.values()], axis=1),
                      "auto" if isinstance(logy, Mapping) else logy)
        for ax in axes:
            if logx:
                ax.set_xscale("log")
            ax.grid(alpha=0.25, lw=0.5, which="major")
            for m in marks:
                if np.isfinite(m["x"]) and (m["x"] > 0 or not logx):
                    ax.axvline(m["x"], color=m["color"], ls=m["ls"], lw=m["lw"], zorder=1,
                               label=m["label"])
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
        axes[-1].set_xlabel(xlabel)
        fig.align_ylabels(axes)
        pairs = []
        if layout == "overlay":
            handles = axes[0].get_legend_handles_labels()
            axes[0].legend(*handles, loc="best", frameon=True, framealpha=0.85, edgecolor="none")
        elif marks:
            h, lab = axes[0].get_legend_handles_labels()
            pairs = [(hh, ll) for hh, ll in zip(h, lab) if ll in {m["label"] for m in marks}]
        if layout == "stacked" and pairs:
            fig.legend([p[0] for p in pairs], [p[1] for p in pairs], loc="outside lower center",
                       ncol=min(len(pairs), 2))
        if not logx and len(xs) <= 12 and np.allclose(xs, np.round(xs)):
            axes[-1].set_xticks(xs)  # a few integer settings (e.g. angle counts): tick each
        if title:
            fig.suptitle(title, fontsize=11)
    return fig


def _markers(markers):
    if markers is None:
        return []
    if isinstance(markers, Mapping):
        markers = [{"x": v, "label": str(k)} for k, v in markers.items()]
    out = []
    for k, m in enumerate(markers):
        if not isinstance(m, Mapping) or "x" not in m:
            raise InputError(f"marker {k} must be a dict with 'x' (and 'label')")
        style = dict(_MARKER_STYLES[k % len(_MARKER_STYLES)])
        style.update({key: m[key] for key in ("color", "ls", "lw") if key in m})
        x = m["x"]
        style["x"] = float("nan") if x is None else float(x)
        label = str(m.get("label", f"marker {k}"))
        if "label" in m and m.get("show_value", True) and np.isfinite(style["x"]):
            label = f"{label} = {style['x']:.3g}"
        style["label"] = label
        out.append(style)
    return out


def _set_logy(ax, y, logy):
    finite = y[np.isfinite(y)]
    if logy == "auto":
        logy = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100
    if logy:
        ax.set_yscale("log")


def plot_distributions(groups, *, ylabel, title=None, threshold=None, threshold_label=None,
                       logy=False, width=None):
    """Values per group as box plots with every value shown (e.g. errors per initialisation).

    Parameters
    ----------
    groups : mapping of str to array_like
        Group name -> values (NaN values are left out; an empty group leaves an empty slot).
    ylabel : str
    title : str, optional
    threshold : float, optional
        A horizontal line (e.g. the success threshold), labelled ``threshold_label``.
    logy : bool
    width : float, optional
        Figure width in inches (default: from the number of groups).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(groups, Mapping) or not groups:
        raise InputError("groups must be a non-empty mapping of name -> values")
    names = [str(k) for k in groups]
    data = [np.asarray(v, dtype=float).ravel() for v in groups.values()]
    data = [v[np.isfinite(v)] for v in data]
    rng = np.random.default_rng(0)  # jitter of the points only
    with _style():
        fig = _new_figure((width or max(3.5, 0.9 * len(names) + 1.5), 3.4))
        ax = fig.add_subplot()
        pos = np.arange(1, len(names) + 1)
        nonempty = [k for k, v in enumerate(data) if len(v)]
        if nonempty:
            ax.boxplot([data[k] for k in nonempty], positions=pos[nonempty], widths=0.55,
                       showfliers=False, medianprops={"color": "#d95f02", "lw": 1.5},
                       boxprops={"color": "0.3"}, whiskerprops={"color": "0.3"},
                       capprops={"color": "0.3"})
        for k in nonempty:
            jitter = rng.uniform(-0.16, 0.16, len(data[k]))
            ax.scatter(pos[k] + jitter, data[k], s=10, color="#1f4e79", alpha=0.6, lw=0, zorder=3)
        if threshold is not None:
            ax.axhline(threshold, color="0.45", ls="--", lw=1.0,
                       label=threshold_label or f"{threshold:g}")
            ax.legend(loc="best")
        ticks = [f"{name}\n(n = {len(v)})" if len(v) else f"{name}\n(no data)"
                 for name, v in zip(names, data)]
        long = max(map(len, names)) > 12
        ax.set_xticks(pos, ticks, rotation=20 if long else 0, ha="right" if long else "center")
        ax.set_xlim(0.4, len(names) + 0.6)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.25, lw=0.5)
        if title:
            ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------
def save_figure(fig, path, dpi=150):
    """Write a figure; the format comes from the suffix (.png, .pdf or .svg).

    Parameters
    ----------
    fig : matplotlib Figure or Axes
    path : path
        The output file; written atomically (complete or absent).
    dpi : float
        Resolution of PNG output (and of images embedded in PDF/SVG).

    Raises
    ------
    InputError
        For another suffix.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        what = f"{path.suffix!r} files" if path.suffix else "a file without a suffix"
        raise InputError(f"cannot write a figure as {what}; use .png, .pdf or .svg")
    fig = _figure_of(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.04,
                    facecolor="white", metadata=_metadata(fmt))
    return path


def _metadata(fmt):
    # Reproducible files: no creation date in PDF/SVG, no software version in PNG.
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "atomtomo"}
    if fmt == "svg":
        return {"Date": None, "Creator": "atomtomo"}
    return {"Software": "atomtomo"}


# ---------------------------------------------------------------------------------------------
# Animation
# ---------------------------------------------------------------------------------------------
def _frame_positions(frame, k, ndim):
    if not isinstance(frame, Mapping) or "positions" not in frame:
        raise InputError(f"frame {k} must be a dict with 'positions'")
    return _positions(frame["positions"], f"frame {k}", ndim=ndim)


def _frame_title(frame, k, match):
    it = frame.get("iteration", k)
    parts = [f"iteration {it}"]
    if frame.get("phase"):
        parts.append(str(frame["phase"]))
    n = frame.get("n_atoms")
    parts.append(f"{n if n is not None else '?'} atoms")
    obj = frame.get("objective")
    line = " \u00b7 ".join(parts)
    second = []
    if obj is not None and np.isfinite(float(obj)):
        second.append(f"objective {float(obj):.4g}")
    if match is not None:
        second.append(f"F1 {match.f1:.2f}")
    return line + ("\n" + " \u00b7 ".join(second) if second else "")


class RunFrames:
    """A solver callback's records kept as frames for :func:`animate_run`: at most ``limit``,
    thinned evenly as the run goes on (every other frame is dropped and the stride doubles).

    Call it with each record (``positions``, ``iteration``, ``objective``, ``n_atoms``,
    ``phase``); :meth:`with_final` adds the final configuration.
    """

    def __init__(self, limit: int = 200):
        self.limit, self.stride, self.count, self.frames = limit, 1, 0, []

    def __call__(self, record) -> None:
        self.count += 1
        positions = record.get("positions")
        if positions is None or (self.count - 1) % self.stride:
            return
        frame = {"positions": np.array(positions, dtype=float, copy=True),
                 "iteration": record.get("iteration", self.count),
                 "objective": record.get("objective"),
                 "n_atoms": record.get("n_atoms", len(positions))}
        if record.get("phase") is not None:
            frame["phase"] = record["phase"]
        self.frames.append(frame)
        if len(self.frames) > self.limit:
            self.frames, self.stride = self.frames[::2], self.stride * 2

    def with_final(self, configuration, info, *, always: bool = True) -> list:
        """The frames and a last one of ``configuration`` (``info``: the run's record, for
        ``iterations`` and ``objective``); with ``always=False`` only when it differs from the
        last frame."""
        frames = list(self.frames)
        last = frames[-1] if frames else None
        if always or last is None or last.get("n_atoms") != configuration.n_atoms or \
                not np.array_equal(last["positions"], configuration.positions):
            frames.append({"positions": np.array(configuration.positions), "phase": "final",
                           "iteration": info.get("iterations", self.count),
                           "objective": info.get("objective"),
                           "n_atoms": configuration.n_atoms})
        return frames


def animate_run(frames, path, truth=None, box=None, fps=10, *, tolerance=None, view="xy",
                size=None, dpi=100, hold=2.0, title=None):
    """The poster's animated reconstruction run, as a looping GIF.

    Parameters
    ----------
    frames : sequence of dict
        One per shown iteration: ``positions`` ((n, d); may be empty), and optionally
        ``iteration``, ``objective``, ``n_atoms``, ``phase`` (as a solver's callback reports).
    path : path
        The output; must end in ``.gif`` (MP4 would need imageio-ffmpeg, which is not a
        dependency). Written atomically.
    truth : Configuration or (m, d) array_like, optional
        Drawn as red crosses; the atoms are then coloured by their distance to it.
    box : (d, 2) array_like, optional
        The axis limits (default: the extent of all frames and the truth).
    fps : float
        Frames per second.
    tolerance : float, optional
        Match distance (default 0.1 x bond length of the truth).
    view : {"xy", "xz", "yz"}
        Plane to project 3D atoms onto.
    size : (float, float), optional
        Figure size in inches; with ``dpi`` it fixes the pixel size of every frame. Default:
        room for a 3.4-inch plot (about 550 x 450 pixels at ``dpi=100``).
    dpi : float
    hold : float
        Seconds the last frame stays before the loop restarts.
    title : str, optional
        A fixed first title line (e.g. the data set).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    One figure is drawn once; per frame only the atoms and the title are redrawn over a cached
    background (Agg blitting). All frames share one 256-colour palette (median cut of the
    background and a few frames), so colours do not flicker from frame to frame, and each frame
    is mapped onto it by a nearest-colour lookup. The GIF is written by Pillow, the library
    behind imageio's GIF plugin, directly: imageio can hand Pillow a fixed palette only through
    a slow pure-Python path (about 40 ms per frame) or re-quantise every frame (about 25 ms per
    frame, with flicker). 200 frames take a few seconds. Read the result with
    ``imageio.v3.imread(path, index=None)``.
    """
    from .metrics import TOLERANCE_BONDS, match_atoms

    path = Path(path)
    if path.suffix.lower() != ".gif":
        what = f"{path.suffix!r} files" if path.suffix else "a file without a suffix"
        raise InputError(f"cannot write an animation as {what}; use .gif (MP4 would need "
                         f"imageio-ffmpeg, which atomtomo does not install)")
    frames = list(frames)
    if not frames:
        raise InputError("animate_run needs at least one frame")
    fps = _positive(fps, "fps")
    if view not in VIEWS:
        raise InputError(f"view must be one of {', '.join(VIEWS)} for animations, got {view!r}")
    t_pos = None if truth is None else _positions(truth, "truth")
    ndim = t_pos.shape[1] if t_pos is not None and len(t_pos) else None
    all_pos = [_frame_positions(f, k, ndim) for k, f in enumerate(frames)]
    ndim = ndim or next((p.shape[1] for p in all_pos if len(p)), 2)
    all_pos = [p if len(p) else np.zeros((0, ndim)) for p in all_pos]
    if any(p.shape[1] != ndim for p in all_pos):
        raise InputError("all frames (and the truth) must have the same dimension")
    if t_pos is not None and len(t_pos) == 0:
        t_pos = np.zeros((0, ndim))
    _check_view(view, ndim)
    box = box_array(box, ndim)
    last = all_pos[-1]
    bond = _bond_length(last, truth, t_pos, box)
    if t_pos is not None:
        tolerance = (TOLERANCE_BONDS * bond if tolerance is None
                     else _positive(tolerance, "tolerance"))
    i, j = VIEWS[view]
    diameter = DISC_BONDS * bond
    box2 = None if box is None else box[[i, j]]
    shown = [p[:, [i, j]] for p in all_pos]
    t2 = None if t_pos is None else t_pos[:, [i, j]]
    xlim, ylim = _limits(box2, ([] if box2 is not None else shown) +
                         [t2 if t2 is not None else np.zeros((0, 2))], diameter)
    length_unit = _info(truth, "length_unit") or ""

    with _style():
        fig, ax, artists = _animation_figure(size, dpi, box2, xlim, ylim, t2, tolerance, bond,
                                             length_unit, "xyz"[i], "xyz"[j])
        discs, rings, crosses, head = artists
        canvas = fig.canvas
        canvas.draw()
        background = canvas.copy_from_bbox(fig.bbox)

        def render(k):
            """Frame ``k`` as an (H, W, 3) uint8 array: only the moving artists are redrawn."""
            pos, p2 = all_pos[k], shown[k]
            order = np.argsort(pos[:, 3 - i - j], kind="stable") if ndim == 3 else slice(None)
            p2 = p2[order]
            match = None
            miss = np.zeros((0, 2))
            if t_pos is not None:
                match = match_atoms(pos, t_pos, tolerance)
                discs.set_array(match.found_distance[order])
                miss = p2[~match.found_matched[order]]
            _set_discs(discs, p2, diameter)
            _set_discs(rings, miss, 1.55 * diameter)
            frame = dict(frames[k])
            frame.setdefault("n_atoms", len(pos))
            text = _frame_title(frame, k, match)
            head.set_text(f"{title}\n{text}" if title else text)
            canvas.restore_region(background)
            for artist in (discs, rings, crosses):
                if artist is not None:
                    ax.draw_artist(artist)
            fig.draw_artist(head)
            return np.asarray(canvas.buffer_rgba())[..., :3].copy()

        # One palette for the whole run (no colour flicker between frames), from the background
        # and a few frames; each frame is then mapped onto it (a fast nearest-colour lookup).
        n = len(frames)
        blank = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # a copy: the buffer is live
        sampled = {k: render(k) for k in sorted({0, n // 3, (2 * n) // 3, n - 1})}
        palette = _gif_palette([blank, *sampled.values()])
        durations = [round(1000.0 / fps)] * n
        durations[-1] = max(durations[-1], round(1000.0 * float(hold)))
        images = [_to_palette(sampled[k] if k in sampled else render(k), palette)
                  for k in range(n)]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=durations, loop=0, optimize=False)
    return path


def _set_discs(collection, offsets, diameter):
    d = np.full(len(offsets), diameter)
    collection.set_offsets(offsets)
    collection.set_widths(d)
    collection.set_heights(d)
    collection.set_angles(np.zeros(len(offsets)))


def _animation_figure(size, dpi, box2, xlim, ylim, t2, tolerance, bond, length_unit, xname,
                      yname):
    """The fixed part of an animation and its moving artists (discs, rings, crosses, title)."""
    from matplotlib.collections import EllipseCollection
    from matplotlib.patches import Rectangle

    data_aspect = (ylim[1] - ylim[0]) / (xlim[1] - xlim[0])
    # Margins in inches: labels left and below, the title above, the colour bar right.
    left, bottom, right, top = 0.72, 0.5, (1.4 if t2 is not None else 0.25), 0.62
    if size is None:  # a 3.4-inch axes of the data's aspect
        side = 3.4 / max(1.0, data_aspect)
        size = (left + side + right, bottom + side * data_aspect + top)
    w, h = (float(v) for v in size)
    fig = _new_figure((w, h), layout=None, dpi=dpi)
    # Equal aspect: the axes rectangle itself has the data's aspect (no letterboxing), centred.
    aw = max(min(w - left - right, (h - bottom - top) / data_aspect), 0.5)
    ah = aw * data_aspect
    left += max(0.0, (w - left - right - aw) / 2)
    bottom += max(0.0, (h - bottom - top - ah) / 2)
    left, bottom, aw, ah = left / w, bottom / h, aw / w, ah / h
    ax = fig.add_axes((left, bottom, aw, ah))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(_with_unit(xname, length_unit))
    ax.set_ylabel(_with_unit(yname, length_unit))
    if box2 is not None:
        ax.add_patch(Rectangle(box2[:, 0], *(box2[:, 1] - box2[:, 0]), fill=False, lw=0.8,
                               ec="0.55", ls=(0, (4, 3)), zorder=0.5))
    empty = np.zeros(0)
    discs = EllipseCollection(empty, empty, empty, units="xy", offsets=np.zeros((0, 2)),
                              offset_transform=ax.transData, edgecolors="0.15", linewidths=0.5,
                              zorder=2, animated=True)
    rings = EllipseCollection(empty, empty, empty, units="xy", offsets=np.zeros((0, 2)),
                              offset_transform=ax.transData, facecolors="none",
                              edgecolors=RING_COLOUR, linewidths=1.3, zorder=2.5, animated=True)
    crosses = None
    if t2 is not None:
        norm, cmap = _colour_norm(_distance_cap(tolerance, bond)), _cmap()
        discs.set_cmap(cmap)
        discs.set_norm(norm)
        if len(t2):  # redrawn over the atoms in every frame
            crosses = ax.scatter(t2[:, 0], t2[:, 1], marker="x", s=22, c=TRUTH_COLOUR,
                                 linewidths=1.2, zorder=3, animated=True)
        cax = fig.add_axes((left + aw + 0.3 / w, bottom + 0.1 * ah, 0.14 / w, 0.8 * ah))
        _distance_colorbar(fig, norm, cmap, tolerance, length_unit, None, cax=cax)
    else:
        discs.set_facecolor(PLAIN_COLOUR)
    ax.add_collection(discs, autolim=False)
    ax.add_collection(rings, autolim=False)
    head = fig.text(left + aw / 2, bottom + ah + 0.1 / h, "", ha="center", va="bottom",
                    fontsize=9.5, animated=True)
    return fig, ax, (discs, rings, crosses, head)


def _gif_palette(samples):
    """A 256-colour palette image for a run: median cut of sample frames plus the blends of the
    marker colours with white (antialiased edges), so rare but important colours survive."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    ramp = np.linspace(0, 1, 24)[:, None]
    blends = [np.round(255 * ((1 - ramp) * np.ones(3) + ramp * np.array(to_rgb(c)))) for c in
              (RING_COLOUR, TRUTH_COLOUR, PLAIN_COLOUR, "black")]
    strip = np.concatenate(blends).astype(np.uint8)  # (96, 3)
    width = samples[0].shape[1]
    # Repeat the strip so each blend weighs like a small feature, not a single pixel.
    strip_img = np.repeat(strip[:, None, :], width, axis=1)
    stacked = np.concatenate([*samples, strip_img], axis=0)
    return Image.fromarray(stacked).quantize(256, method=Image.Quantize.MEDIANCUT,
                                             dither=Image.Dither.NONE)


def _to_palette(rgb, palette):
    from PIL import Image

    return Image.fromarray(rgb).quantize(palette=palette, dither=Image.Dither.NONE)
