"""3D atoms: orthogonal views coloured by depth, per-plane panels."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from atomtomo.cli import cli
from atomtomo.configuration import Configuration, write_xyz
from atomtomo.plotting import atom_planes, plot_orthogonal, plot_planes


def _cube():
    g = np.arange(3.0) * 2.0
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    return Configuration(np.column_stack([x.ravel(), y.ravel(), z.ravel()]), ["Pt"] * 27)


def test_orthogonal_views_colour_by_depth():
    fig = plot_orthogonal(_cube())
    axes = [a for a in fig.axes if a.get_title()]
    assert [a.get_title()[:3] for a in axes] == ["x-y", "x-z", "y-z"]
    discs = [c for a in axes for c in a.collections if c.get_gid() == "found-atoms"]
    assert len(discs) == 3 and all(np.ptp(d.get_array()) == 4.0 for d in discs)  # depth 0..4


def test_orthogonal_views_against_truth():
    truth = _cube()
    found = truth.subset(np.arange(1, 27))
    fig = plot_orthogonal(found, truth=truth)
    assert any("F1" in (t.get_text() or "") for leg in fig.legends for t in [leg.get_title()])


def test_planes():
    cube = _cube()
    assert [len(p) for p in atom_planes(cube.positions)] == [9, 9, 9]
    fig = plot_planes(cube, truth=cube)
    assert sum(1 for a in fig.axes if a.get_title().startswith("y =")) == 3


def test_cli_plot_views(tmp_path):
    atoms = tmp_path / "a.xyz"
    write_xyz(_cube(), atoms)
    runner = CliRunner()
    for view in ("auto", "planes", "xz", "3d"):
        r = runner.invoke(cli, ["plot", str(atoms), "--view", view, "-o",
                                str(tmp_path / f"{view}.png")])
        assert r.exit_code == 0, r.output
    flat = tmp_path / "flat.xyz"
    write_xyz(Configuration(np.zeros((2, 2)) + [[0, 0], [1, 0]]), flat)
    r = runner.invoke(cli, ["plot", str(flat), "--view", "planes", "-o", str(tmp_path / "f.png")])
    assert r.exit_code == 2
