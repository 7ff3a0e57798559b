"""Figures and animations (atomtomo.plotting): valid files, colours that encode distance, bad input.

Everything renders with Agg; the figures are small and written at low dpi to keep this fast.
"""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
iio = pytest.importorskip("imageio.v3")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from atomtomo import Configuration, Geometry  # noqa: E402
from atomtomo.errors import InputError  # noqa: E402
from atomtomo import plotting  # noqa: E402
from atomtomo.plotting import (  # noqa: E402
    animate_run,
    plot_curves,
    plot_distributions,
    plot_panels,
    plot_projections,
    plot_reconstruction,
    save_figure,
)

PNG = b"\x89PNG\r\n\x1a\n"
GIF = (b"GIF89a", b"GIF87a")

BOND = 0.2
BOX2 = np.array([[-0.5, 0.5], [-0.5, 0.5]])
BOX3 = np.array([[-0.5, 0.5], [-0.5, 0.5], [-0.5, 0.5]])


def lattice(ndim=2, n=4):
    g = (np.arange(n) - (n - 1) / 2) * BOND
    grids = np.meshgrid(*([g] * ndim), indexing="ij")
    return np.stack([x.ravel() for x in grids], axis=1)


def with_errors(truth, seed=0):
    """Found atoms: the truth with growing displacements, one atom dropped, one spurious."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=truth.shape)
    shift /= np.linalg.norm(shift, axis=1, keepdims=True)
    found = truth + shift * np.linspace(0, 0.05, len(truth))[:, None]
    extra = np.full((1, truth.shape[1]), 0.45)
    return np.vstack([found[1:], extra])


def is_png(path):
    return path.read_bytes()[:8] == PNG


def colorbars(fig):
    """Colour bars of a figure (top-level axes and axes inset into them)."""
    axes = list(fig.axes) + [c for a in fig.axes for c in a.child_axes]
    return [a for a in axes if getattr(a, "_colorbar", None) is not None]


def collection(ax, gid):
    hits = [c for c in ax.collections if c.get_gid() == gid]
    assert len(hits) == 1, [c.get_gid() for c in ax.collections]
    return hits[0]


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """Nothing in the module may register figures with pyplot (global state)."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


# -- plot_reconstruction ------------------------------------------------------------------------
@pytest.mark.parametrize("as_config", [False, True])
def test_reconstruction_2d_png(tmp_path, as_config):
    truth = lattice(2)
    found = with_errors(truth)
    if as_config:
        truth = Configuration(truth, info={"bond_length": BOND, "length_unit": "angstrom"})
        found = Configuration(found)
    ax = plot_reconstruction(found, truth, box=BOX2, title="test")
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    assert ax.get_aspect() == 1.0
    assert ax.get_xlim()[0] <= -0.5 and ax.get_xlim()[1] >= 0.5
    if as_config:
        assert "Å" in ax.get_xlabel()
    out = save_figure(ax.figure, tmp_path / "r.png", dpi=50)
    assert is_png(out)
    (cbar,) = colorbars(ax.figure)
    assert "distance to truth" in cbar.get_ylabel()


@pytest.mark.parametrize("view", ["xy", "xz", "yz", "3d"])
def test_reconstruction_3d_views(tmp_path, view):
    truth = lattice(3, 3)
    ax = plot_reconstruction(with_errors(truth), truth, box=BOX3, view=view)
    assert (ax.name == "3d") == (view == "3d")
    out = save_figure(ax, tmp_path / f"r_{view}.png", dpi=50)
    assert is_png(out)


def test_reconstruction_into_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_reconstruction(lattice(2), lattice(2), ax=ax, colorbar=False) is ax
    assert fig.axes == [ax]


def test_colours_encode_distance():
    truth = lattice(2)
    found = truth.copy()
    distances = np.linspace(0.0, 0.08, len(truth))  # beyond the cap at 2 x tolerance = 0.04
    found[:, 0] += distances
    ax = plot_reconstruction(found, truth, tolerance=0.02)
    discs = collection(ax, "found-atoms")
    discs.update_scalarmappable()
    colours = discs.get_facecolors()
    cmap = matplotlib.colormaps[plotting.DISTANCE_CMAP]
    top, bottom = cmap(1.0), cmap(0.0)
    assert np.allclose(colours[np.argmax(distances)], top)
    assert np.allclose(colours[np.argmin(distances)], bottom)
    # Colour scale from 0 to 2 x tolerance, farther atoms saturate at the top colour.
    assert discs.norm.vmin == 0 and discs.norm.vmax == pytest.approx(0.04)
    expected = cmap(np.clip(distances / 0.04, 0, 1))
    assert np.allclose(colours, expected, atol=1e-2)


def test_unmatched_atoms_are_ringed():
    truth = lattice(2)
    found = with_errors(truth)
    ax = plot_reconstruction(found, truth, tolerance=0.03)
    from atomtomo.metrics import match_atoms

    n_unmatched = int((~match_atoms(found, truth, 0.03).found_matched).sum())
    assert n_unmatched >= 1
    assert len(collection(ax, "unmatched-rings").get_offsets()) == n_unmatched
    assert len(collection(ax, "true-atoms").get_offsets()) == len(truth)
    legend = ax.get_legend()
    assert legend is not None and "F1" in legend.get_title().get_text()


def test_reconstruction_without_truth(tmp_path):
    ax = plot_reconstruction(lattice(2), box=BOX2)
    assert not colorbars(ax.figure)
    assert not [c for c in ax.collections if c.get_gid() == "true-atoms"]
    assert is_png(save_figure(ax, tmp_path / "plain.png", dpi=50))


@pytest.mark.parametrize("found,truth", [
    (np.zeros((0, 2)), lattice(2)),
    ([], lattice(2)),
    ([], None),
    (lattice(2), np.zeros((0, 2))),
    (np.zeros((0, 3)), lattice(3, 2)),
])
def test_empty_reconstructions(tmp_path, found, truth):
    ax = plot_reconstruction(found, truth, box=None if truth is None or len(truth) == 0 or
                             np.shape(truth)[1] == 2 else BOX3)
    assert is_png(save_figure(ax, tmp_path / "empty.png", dpi=50))


def test_reconstruction_bad_input():
    with pytest.raises(InputError):
        plot_reconstruction(lattice(2), view="side")
    with pytest.raises(InputError):
        plot_reconstruction(lattice(2), view="xz")  # 2D atoms have no z
    with pytest.raises(InputError):
        plot_reconstruction(lattice(2), lattice(3, 2))
    with pytest.raises(InputError):
        plot_reconstruction(np.ones((3, 4)))
    with pytest.raises(InputError):
        plot_reconstruction(lattice(2), box=[[0, 1], [1, 0]])
    fig = Figure()
    with pytest.raises(InputError):
        plot_reconstruction(lattice(3, 2), view="3d", ax=fig.add_subplot())


# -- plot_panels --------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_panels_share_one_colourbar(tmp_path, ndim):
    truth = lattice(ndim, 3)
    box = BOX2 if ndim == 2 else BOX3
    panels = [{"found": with_errors(truth, seed), "truth": truth, "title": f"method {seed}",
               "box": box} for seed in range(5)]
    panels.append({"found": [], "truth": truth, "title": "nothing found", "box": box})
    fig = plot_panels(panels, ncols=3, row_labels=["a", "b"], col_labels=["x", "y", "z"],
                      view="xy" if ndim == 2 else "3d", suptitle="comparison")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6 + 1 and len(colorbars(fig)) == 1  # six panels, one colour bar
    assert is_png(save_figure(fig, tmp_path / "panels.png", dpi=50))


def test_panels_with_gaps_and_bad_input(tmp_path):
    truth = lattice(2)
    fig = plot_panels([{"found": truth, "truth": truth}, None, {"found": truth}], ncols=2)
    assert is_png(save_figure(fig, tmp_path / "gaps.png", dpi=50))
    with pytest.raises(InputError):
        plot_panels([])
    with pytest.raises(InputError):
        plot_panels([{"truth": truth}])


# -- plot_projections ---------------------------------------------------------------------------
def _tiltseries(ndim, angles_deg):
    from atomtomo.tiltseries import simulate_tiltseries

    det = 48 if ndim == 2 else (20, 24)
    geo = Geometry.from_angles(ndim, np.radians(angles_deg), det, 1 / 32)
    return simulate_tiltseries(Configuration(lattice(ndim, 3)), geo, 0.03, noise_std=0.01, seed=0)


@pytest.mark.parametrize("ndim,angles", [(2, [-60, 0, 60]), (2, np.linspace(-70, 70, 12)),
                                         (3, [-45, 0, 45]), (3, np.linspace(-60, 60, 7))])
def test_projections(tmp_path, ndim, angles):
    pytest.importorskip("atomtomo.tiltseries")
    ts = _tiltseries(ndim, angles)
    fig = plot_projections(ts)
    assert isinstance(fig, Figure)
    if ndim == 2:
        ax = fig.axes[0]
        assert len(ax.get_lines()) >= len(angles)
        assert "detector coordinate" in ax.get_xlabel()
    else:
        images = [ax for ax in fig.axes if ax.get_images()]
        assert len(images) == len(angles)
        assert images[0].get_title().endswith("\u00b0")
        assert "\u2212" in images[0].get_title()  # negative angles with a real minus sign
    assert is_png(save_figure(fig, tmp_path / "p.png", dpi=50))


def test_projections_bad_input():
    with pytest.raises(InputError):
        plot_projections(object())


# -- save_figure --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix,magic", [(".png", PNG), (".pdf", b"%PDF"), (".svg", b"<?xml"),
                                          (".PNG", PNG)])
def test_save_formats(tmp_path, suffix, magic):
    ax = plot_reconstruction(lattice(2), lattice(2))
    out = save_figure(ax.figure, tmp_path / f"f{suffix}", dpi=40)
    assert out.read_bytes()[:len(magic)] == magic
    assert not list(tmp_path.glob(".f.*")), "temporary file left behind"


@pytest.mark.parametrize("name", ["f.jpg", "f.gif", "f", "f.png.txt"])
def test_save_bad_suffix(tmp_path, name):
    ax = plot_reconstruction(lattice(2))
    with pytest.raises(InputError):
        save_figure(ax.figure, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


# -- animate_run --------------------------------------------------------------------------------
def _frames(truth, n_frames, seed=0):
    """A fake run: atoms added one per frame, then pulled towards the truth."""
    rng = np.random.default_rng(seed)
    start = truth + rng.normal(0, 0.08, truth.shape)
    frames = []
    for k in range(n_frames):
        n = min(k, len(truth))
        t = k / max(n_frames - 1, 1)
        pos = (1 - t) * start[:n] + t * truth[:n]
        frames.append({"positions": pos, "iteration": k, "objective": 10.0 / (k + 1),
                       "n_atoms": n, "phase": "add" if k < len(truth) else "move"})
    return frames


@pytest.mark.parametrize("ndim", [2, 3])
def test_animation_gif(tmp_path, ndim):
    truth = lattice(ndim, 3)
    frames = _frames(truth, 15)
    out = animate_run(frames, tmp_path / "run.gif", truth=truth,
                      box=BOX2 if ndim == 2 else BOX3, fps=12, size=(3, 2.6), dpi=60)
    assert out.read_bytes()[:6] in GIF
    images = iio.imread(out, index=None)
    assert images.shape[0] == len(frames) and images.shape[-1] == 3
    assert len({im.shape for im in images}) == 1  # a fixed frame size
    meta = iio.immeta(out)
    assert meta.get("loop") == 0  # loops forever
    # The first frame has no atoms, the last has all: the pictures differ.
    assert np.any(images[0] != images[-1])


def test_animation_without_truth_and_box(tmp_path):
    frames = _frames(lattice(2), 6)
    out = animate_run(frames, tmp_path / "plain.gif", size=(3, 3), dpi=50)
    assert iio.imread(out, index=None).shape[0] == 6


def test_animation_minimal_frames(tmp_path):
    out = animate_run([{"positions": []}], tmp_path / "one.gif", truth=lattice(2), dpi=40)
    assert out.read_bytes()[:6] in GIF


def test_animation_bad_input(tmp_path):
    frames = _frames(lattice(2), 3)
    for name in ("run.mp4", "run.png", "run"):
        with pytest.raises(InputError):
            animate_run(frames, tmp_path / name)
    with pytest.raises(InputError):
        animate_run([], tmp_path / "run.gif")
    with pytest.raises(InputError):
        animate_run([{"iteration": 1}], tmp_path / "run.gif")
    with pytest.raises(InputError):
        animate_run(frames, tmp_path / "run.gif", truth=lattice(3, 2))
    assert list(tmp_path.iterdir()) == []


# -- curves and distributions -------------------------------------------------------------------
def test_curves_alpha_sweep(tmp_path):
    alpha = np.concatenate([[0.0], np.logspace(-5, 2, 8)])
    rng = np.random.default_rng(0)
    curves = {"energy": -np.log1p(alpha) + rng.random((3, 9)) * 0.1,
              "data discrepancy": 0.1 + alpha, "atoms": np.r_[40, 40, 39, 38, 37, 37, 37, 36, 35]}
    markers = [{"x": 1e-2, "label": "best \u03b1"}, {"x": 3e-2, "label": "auto \u03b1"}]
    fig = plot_curves(alpha, curves, xlabel="\u03b1", markers=markers,
                      references={"atoms": (37, "true count")})
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        vlines = [ln for ln in ax.get_lines() if ln.get_label().startswith(("best", "auto"))]
        assert len(vlines) == 2
    assert fig.axes[1].get_yscale() == "log"  # spans more than a factor 100
    assert is_png(save_figure(fig, tmp_path / "curves.png", dpi=50))
    fig = plot_curves([2, 3, 5], {"ADCG": [0.8, 0.9, 1.0], "SIRT": [0.2, 0.5, 0.9]},
                      xlabel="angles", ylabels="F1", logx=False, layout="overlay")
    assert len(fig.axes) == 1 and fig.axes[0].get_legend() is not None
    # Per-curve log scale; a marker without a value (e.g. no automatic alpha) is left out.
    fig = plot_curves(alpha, curves, xlabel="\u03b1", logy={"data discrepancy": False},
                      markers=[{"x": None, "label": "auto \u03b1"}])
    assert fig.axes[1].get_yscale() == "linear" and not fig.legends
    fig = plot_curves(alpha, {"all NaN": np.full(9, np.nan)}, xlabel="\u03b1")
    assert is_png(save_figure(fig, tmp_path / "nan.png", dpi=40))
    with pytest.raises(InputError):
        plot_curves([1, 2], {"a": [1, 2, 3]}, xlabel="x")


def test_distributions(tmp_path):
    rng = np.random.default_rng(1)
    fig = plot_distributions({"random": rng.random(10), "shifted lattice": rng.random(12),
                              "empty": []}, ylabel="mean distance", threshold=0.5,
                             threshold_label="tolerance")
    assert is_png(save_figure(fig, tmp_path / "dist.png", dpi=50))
    with pytest.raises(InputError):
        plot_distributions({}, ylabel="x")
