"""The command line on measured-style data: "auto" image formation, half sets, many angles."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo import Configuration, write_xyz
from atomtomo.cli import cli
from atomtomo.configuration import read_xyz
from atomtomo.geometry import Geometry
from atomtomo.solvers.many_angles import MANY_ANGLES, distinct_directions, many_angle_options
from atomtomo.tiltseries import read_tiltseries


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def atoms(tmp_path):
    pos = np.array([[-0.5, -0.5], [0.5, -0.45], [-0.45, 0.5], [0.5, 0.55]])
    path = tmp_path / "four.xyz"
    write_xyz(Configuration(pos, ["X"] * 4, {}), path, bond_length=1.0)
    return path


def simulate(tmp_path, atoms, angles="0,40,100", unknown="all"):
    out = tmp_path / "s.h5"
    run("project", atoms, "--angles", angles, "--detector", 40, "--pixel-size", 0.1, "--sigma",
        0.12, "--relative-noise", 0.01, "--intensity-scale", 300, "--background", "auto",
        "--unknown", unknown, "--box=-2,2,-2,2", "-o", out, "-q")
    return out


def test_project_writes_auto_attributes(tmp_path, atoms):
    ts = read_tiltseries(simulate(tmp_path, atoms))
    assert (ts.atom_sigma, ts.intensity_scale, ts.background) == ("auto", "auto", "auto")
    assert ts.attrs["true_intensity_scale"] == 300


@pytest.mark.slow
def test_reconstruct_with_unknown_imaging(tmp_path, atoms):
    series = simulate(tmp_path, atoms)
    out = tmp_path / "r.xyz"
    run("reconstruct", series, "--option", "hops=0", "-o", out, "-q")
    found = read_xyz(out)
    assert found.n_atoms == 4
    assert float(found.info["atom_sigma"]) == pytest.approx(0.12, rel=0.05)
    assert float(found.info["intensity_scale"]) == pytest.approx(300, rel=0.05)
    # the command line overrides the file: a known width stays as given
    run("reconstruct", series, "--sigma", 0.12, "--option", "hops=0", "-o", out, "-q")
    assert float(read_xyz(out).info["atom_sigma"]) == 0.12


@pytest.mark.slow
def test_half_sets_and_plot(tmp_path, atoms):
    series = simulate(tmp_path, atoms, angles="0,30,60,90,120,150")
    out, fig = tmp_path / "r.xyz", tmp_path / "halves.png"
    res = run("reconstruct", series, "--option", "hops=0", "--half-sets", "--half-sets-plot", fig,
              "-o", out)
    info = read_xyz(out).info
    assert float(info["half_sets_fraction"]) == 1.0 and float(info["half_sets_rms"]) < 0.05
    assert fig.stat().st_size > 0 and "half sets: 4 of 4" in res.output


@pytest.mark.parametrize("args, message", [
    (["--sigma", "wide"], "wide"),
    (["--background", "maybe"], "maybe"),
    (["--half-sets-plot", "x.png"], "--half-sets"),
])
def test_bad_options_exit_2(tmp_path, atoms, args, message):
    series = simulate(tmp_path, atoms)
    res = run("reconstruct", series, *args, "-o", tmp_path / "r.xyz", code=2)
    assert message in res.output
    assert not (tmp_path / "r.xyz").exists()


def test_imaging_rounds_needs_unknowns(tmp_path, atoms):
    series = simulate(tmp_path, atoms, unknown="background")
    run("reconstruct", series, "--sigma", 0.12, "--intensity-scale", 300, "--background", "none",
        "--imaging-rounds", 2, "-o", tmp_path / "r.xyz", code=2)


def test_many_angle_budget():
    few = Geometry.from_angles(2, np.radians([0, 60, 120]), 8, 1.0)
    many = Geometry.from_angles(2, np.radians(np.linspace(-60, 60, 12)), 8, 1.0)
    dup = Geometry.from_angles(2, np.radians([0, 180] * MANY_ANGLES), 8, 1.0)
    assert distinct_directions(dup) == 1 and distinct_directions(many) == 12

    class P:
        geometry = many

    opts, note = many_angle_options(P, {"alpha": 0})
    assert opts["hops"] == 0 and note
    opts, note = many_angle_options(P, {"hops": 7})
    assert opts["hops"] == 7
    P.geometry = few
    assert many_angle_options(P, {})[1] is None
