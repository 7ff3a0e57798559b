"""The command line (spec section 5): outputs, exit statuses, one-line errors, atomic files.

Most runs go through click's CliRunner (fast, in process); a few go through
``python -m atomtomo`` in a subprocess to check real exit codes and that no traceback leaks.
Tests that need a module another part of the project provides skip until it is there.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo import Configuration, ForwardModel, Geometry, write_xyz
from atomtomo.cli import cli, default_detector, is_hdf5
from atomtomo.potentials import bond_length_estimate as median_nn_distance


def needs(module, *names):
    """Skip unless ``module`` imports and has ``names`` (other people's modules land over time)."""
    mod = pytest.importorskip(module)
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        pytest.skip(f"{module} has no {', '.join(missing)} yet")
    return mod


def needs_tiltseries():
    return needs("atomtomo.tiltseries", "read_tiltseries", "write_tiltseries", "simulate_tiltseries")


def run(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok and result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.stderr}\n{result.output}"
                             f"\n{result.exception!r}")
    return result


def assert_bad_input(result, command, *outputs):
    """Exit 2, one line on stderr naming the command, no traceback, no output files."""
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"atomtomo {command}: error: "), lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.output
    for out in outputs:
        out = Path(out)
        assert not out.exists(), out
        assert not list(out.parent.glob(f".{out.stem}.*")), "temporary file left behind"
    return lines[0]


# -- fixtures ----------------------------------------------------------------------------------
ATOMS_2D = np.array([[-0.21, -0.1], [0.0, -0.2], [0.15, 0.05], [-0.05, 0.17], [0.2, 0.22]])
ATOMS_3D = np.array([[-0.2, -0.1, 0.05], [0.0, -0.2, -0.1], [0.15, 0.05, 0.12], [-0.05, 0.17, 0.0]])


@pytest.fixture
def xyz2d(tmp_path):
    path = tmp_path / "atoms2d.xyz"
    write_xyz(Configuration(ATOMS_2D), path)
    return path


@pytest.fixture
def xyz3d(tmp_path):
    path = tmp_path / "atoms3d.xyz"
    write_xyz(Configuration(ATOMS_3D), path)
    return path


def write_raw_h5(path, projections, angles, drop=(), **attrs):
    """A tilt-series file written with h5py directly (spec section 3), possibly broken."""
    import h5py

    projections = np.asarray(projections, float)
    base = {"atomtomo_format": "tiltseries", "format_version": 1, "ndim": projections.ndim,
            "pixel_size": 1 / 32, "length_unit": "", "atom_sigma": 0.03}
    base.update(attrs)
    with h5py.File(path, "w") as f:
        if "projections" not in drop:
            f["projections"] = projections
        if "angles" not in drop:
            f["angles"] = np.asarray(angles, float)
        for k, v in base.items():
            if k not in drop:
                f.attrs[k] = v
    return path


def good_data():
    geo = Geometry.from_angles(2, np.radians([-60, 0, 60]), 40, 1 / 32)
    return ForwardModel(geo, 0.03).project(ATOMS_2D), np.radians([-60, 0, 60])


# -- parameter parsing (no other module needed) -----------------------------------------------
def test_version_and_help():
    assert "0.1.0" in run("--version").output
    for cmd in ("project", "simulate", "reconstruct", "evaluate", "plot", "demo", "train-locator",
                "reproduce", "import-mrc", "import-tiff"):
        assert "Usage" in run(cmd, "--help").output


@pytest.mark.parametrize("detector", ["12x", "0", "a", "x12", "12x0", "-3", "1.5", "2x3x4", ""])
def test_malformed_detector(tmp_path, xyz2d, detector):
    out = tmp_path / "o.h5"
    r = run("project", xyz2d, "--angles", "0,90", "--detector", detector, "--pixel-size", 0.1,
            "--sigma", 0.05, "-o", out, ok=False)
    assert "--detector" in assert_bad_input(r, "project", out)


@pytest.mark.parametrize("angles", ["1,,2", "x", ",", "", "0,nan", "inf", "1;2", "--"])
def test_malformed_angles(tmp_path, xyz2d, angles):
    out = tmp_path / "o.h5"
    r = run("project", xyz2d, "--angles", angles, "--detector", 16, "--pixel-size", 0.1,
            "--sigma", 0.05, "-o", out, ok=False)
    assert_bad_input(r, "project", out)


@pytest.mark.parametrize("option,value", [("--sigma", "-1"), ("--sigma", "0"), ("--sigma", "nan"),
                                          ("--pixel-size", "0"), ("--pixel-size", "-0.1"),
                                          ("--pixel-size", "abc"), ("--noise-std", "-1"),
                                          ("--seed", "-1"), ("--ndim", "4"), ("--box", "0,1,2"),
                                          ("--box", "1,0,0,1")])
def test_bad_numbers_project(tmp_path, xyz2d, option, value):
    out = tmp_path / "o.h5"
    args = {"--angles": "0,90", "--detector": "16", "--pixel-size": "0.1", "--sigma": "0.05"}
    args[option] = value
    flat = [x for kv in args.items() for x in kv]
    r = run("project", xyz2d, *flat, "-o", out, ok=False)
    assert option in assert_bad_input(r, "project", out)


def test_missing_option_is_one_line(tmp_path, xyz2d):
    out = tmp_path / "o.h5"
    r = run("project", xyz2d, "--angles", "0", "--detector", 16, "--pixel-size", 0.1, "-o", out,
            ok=False)
    assert "--sigma" in assert_bad_input(r, "project", out)
    r = run("frobnicate", ok=False)
    assert r.exit_code == 2 and r.stderr.strip().startswith("atomtomo: error: ")
    assert len(r.stderr.strip().splitlines()) == 1


def test_default_detector_covers_box():
    box = np.array([[-0.5, 0.5], [-0.5, 0.5]])
    det, px = default_detector(box, (96,))
    assert det == (96,) and np.isclose(px * 96, np.sqrt(2))
    det, px = default_detector(box, None, 0.02)
    assert px == 0.02 and det[0] * 0.02 >= np.sqrt(2)
    det, px = default_detector(box, None, None, bond_length=0.15)
    assert np.isclose(px, 0.015)
    box3 = np.array([[-1, 1], [-2, 2], [-1, 1]], float)
    det, px = default_detector(box3, None, 0.1)
    assert det[0] * 0.1 >= 4 - 1e-9 and det[1] * 0.1 >= 2 * np.sqrt(2) - 1e-9


def test_is_hdf5_by_signature(tmp_path):
    data, angles = good_data()
    h5 = write_raw_h5(tmp_path / "data.dat", data, angles)
    txt = tmp_path / "fake.h5"
    txt.write_text("not hdf5\n")
    assert is_hdf5(h5) and not is_hdf5(txt)


def test_median_nn_distance():
    assert np.isclose(median_nn_distance([[0, 0], [1, 0], [2, 0]]), 1.0)
    assert median_nn_distance([[0, 0]]) is None


# -- project -------------------------------------------------------------------------------------
@pytest.mark.parametrize("angles_form", ["separate", "equals"])
def test_project_2d_matches_forward_model(tmp_path, xyz2d, angles_form):
    ts_mod = needs_tiltseries()
    out = tmp_path / "p2.h5"
    angles = "-60,0,60" if angles_form == "separate" else None
    ang_args = ["--angles", angles] if angles else ["--angles=-60,0,60"]
    run("project", xyz2d, *ang_args, "--detector", 37, "--pixel-size", 0.021, "--sigma", 0.027,
        "-o", out)
    ts = ts_mod.read_tiltseries(out)
    assert np.allclose(ts.geometry.angles, np.radians([-60, 0, 60]))
    geo = Geometry.from_angles(2, np.radians([-60, 0, 60]), 37, 0.021)
    expected = ForwardModel(geo, 0.027).project(ATOMS_2D)
    assert ts.projections.shape == (3, 37)
    assert np.allclose(ts.projections, expected, rtol=1e-6, atol=1e-9)
    assert ts.atom_sigma == pytest.approx(0.027)
    assert np.allclose(ts.ground_truth.positions, ATOMS_2D)


def test_project_3d_odd_angles_and_sizes(tmp_path, xyz3d):
    ts_mod = needs_tiltseries()
    out = tmp_path / "p3.h5"
    angles = [-47.3, 3.1, 71.9]
    run("project", xyz3d, "--angles", ",".join(map(str, angles)), "--detector", "13x17",
        "--pixel-size", 0.043, "--sigma", 0.05, "-o", out)
    ts = ts_mod.read_tiltseries(out)
    geo = Geometry.from_angles(3, np.radians(angles), (13, 17), 0.043)
    assert ts.projections.shape == (3, 13, 17)
    assert np.allclose(ts.projections, ForwardModel(geo, 0.05).project(ATOMS_3D), rtol=1e-6,
                       atol=1e-9)


def test_project_planar_atoms_in_3d_and_noise(tmp_path, xyz2d):
    ts_mod = needs_tiltseries()
    out = tmp_path / "p.h5"
    run("project", xyz2d, "--angles", "-30,30", "--detector", "9x11", "--pixel-size", 0.06,
        "--sigma", 0.04, "--noise-std", 0.01, "--seed", 3, "-o", out)
    ts = ts_mod.read_tiltseries(out)
    assert ts.ndim == 3 and ts.projections.shape == (2, 9, 11)
    geo = Geometry.from_angles(3, np.radians([-30, 30]), (9, 11), 0.06)
    clean = ForwardModel(geo, 0.04).project(np.column_stack([ATOMS_2D, np.zeros(len(ATOMS_2D))]))
    assert 0.005 < np.std(ts.projections - clean) < 0.02


def test_project_dimension_mismatch(tmp_path, xyz3d, xyz2d):
    out = tmp_path / "o.h5"
    r = run("project", xyz3d, "--angles", 0, "--detector", 16, "--pixel-size", 0.1, "--sigma", 0.1,
            "-o", out, ok=False)
    assert_bad_input(r, "project", out)
    r = run("project", xyz2d, "--angles", 0, "--detector", 16, "--ndim", 3, "--pixel-size", 0.1,
            "--sigma", 0.1, "-o", out, ok=False)
    assert_bad_input(r, "project", out)


@pytest.mark.parametrize("content", ["", "abc\n", "3\n\nX 0 0\n", "2\n\nX 0 0 0\nX a b c\n",
                                     "1\n\nX 0 nan 0\n"])
def test_project_broken_xyz(tmp_path, content):
    bad = tmp_path / "bad.xyz"
    bad.write_text(content)
    out = tmp_path / "o.h5"
    r = run("project", bad, "--angles", 0, "--detector", 16, "--pixel-size", 0.1, "--sigma", 0.1,
            "-o", out, ok=False)
    assert_bad_input(r, "project", out)


def test_project_missing_file_and_output_dir(tmp_path, xyz2d):
    out = tmp_path / "o.h5"
    r = run("project", tmp_path / "none.xyz", "--angles", 0, "--detector", 16, "--pixel-size", 0.1,
            "--sigma", 0.1, "-o", out, ok=False)
    assert_bad_input(r, "project", out)
    r = run("project", xyz2d, "--angles", 0, "--detector", 16, "--pixel-size", 0.1,
            "--sigma", 0.1, "-o", tmp_path / "no" / "o.h5", ok=False)
    assert_bad_input(r, "project")


# -- interrupts and internal errors: exit status, no partial output -----------------------------
def _fake_writer(path_seen):
    def write_tiltseries(ts, path):
        Path(path).write_bytes(b"half a file")
        path_seen.append(path)
        raise KeyboardInterrupt

    return write_tiltseries


def test_interrupt_leaves_no_output(tmp_path, xyz2d, monkeypatch):
    import atomtomo.tiltseries as tsm

    seen = []
    monkeypatch.setattr(tsm, "simulate_tiltseries", lambda *a, **k: object(), raising=False)
    monkeypatch.setattr(tsm, "write_tiltseries", _fake_writer(seen), raising=False)
    out = tmp_path / "o.h5"
    r = run("project", xyz2d, "--angles", 0, "--detector", 16, "--pixel-size", 0.1, "--sigma", 0.1,
            "-o", out, ok=False)
    assert r.exit_code == 130
    assert seen and not out.exists() and not list(tmp_path.glob(".o.*"))
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_internal_error_is_one_line_exit_1(tmp_path, xyz2d, monkeypatch):
    import atomtomo.cli as cli_mod

    def boom(*a, **k):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli_mod, "evaluate_files", boom)
    r = run("evaluate", xyz2d, "--truth", xyz2d, ok=False)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atomtomo evaluate: internal error: ")
    assert "ZeroDivisionError" in lines[0] and "Traceback" not in r.stderr
    r = run("--debug", "evaluate", xyz2d, "--truth", xyz2d, ok=False)
    assert r.exit_code == 1 and "Traceback" in r.stderr
    monkeypatch.setenv("ATOMTOMO_DEBUG", "1")
    r = run("evaluate", xyz2d, "--truth", xyz2d, ok=False)
    assert r.exit_code == 1 and "Traceback" in r.stderr


# -- reconstruct: the bad-input matrix ------------------------------------------------------------
def _bad_tiltseries(tmp_path, case):
    data, angles = good_data()
    path = tmp_path / f"{case}.h5"
    if case == "missing-file":
        return tmp_path / "nothing.h5", []
    if case == "not-hdf5":
        path.write_text("projections: 1 2 3\n")
        return path, []
    if case == "nan":
        data = data.copy()
        data[1, 5] = np.nan
        return write_raw_h5(path, data, angles), ["read_tiltseries"]
    if case == "angle-count":
        return write_raw_h5(path, data, angles[:2]), ["read_tiltseries"]
    if case == "no-projections":
        return write_raw_h5(path, data, angles, drop=("projections",)), ["read_tiltseries"]
    if case == "zero-pixel":
        return write_raw_h5(path, data, angles, pixel_size=0.0), ["read_tiltseries"]
    if case == "negative-sigma-attr":
        return write_raw_h5(path, data, angles, atom_sigma=-0.1), ["read_tiltseries"]
    raise ValueError(case)


@pytest.mark.parametrize("case", ["missing-file", "not-hdf5", "nan", "angle-count", "no-projections",
                                  "zero-pixel", "negative-sigma-attr"])
def test_reconstruct_bad_files(tmp_path, case):
    path, needed = _bad_tiltseries(tmp_path, case)
    if needed:
        needs("atomtomo.tiltseries", *needed)
    out = tmp_path / "r.xyz"
    r = run("reconstruct", path, "-o", out, ok=False)
    assert_bad_input(r, "reconstruct", out)


@pytest.mark.parametrize("args", [["--method", "nope"], ["--alpha", "-1"], ["--alpha", "nan"],
                                  ["--alpha", "autox"], ["--sigma", "-0.1"], ["--sigma", "0"],
                                  ["--bond-length", "-1"], ["--resume"], ["--option", "novalue"],
                                  ["--max-iterations", "-3"]])
def test_reconstruct_bad_options(tmp_path, args):
    data, angles = good_data()
    path = write_raw_h5(tmp_path / "ok.h5", data, angles)
    out = tmp_path / "r.xyz"
    r = run("reconstruct", path, *args, "-o", out, ok=False)
    assert_bad_input(r, "reconstruct", out)


def test_reconstruct_unsupported_options(tmp_path):
    needs("atomtomo.solvers.grid_methods", "reconstruct_sirt")
    data, angles = good_data()
    path = write_raw_h5(tmp_path / "ok.h5", data, angles)
    out = tmp_path / "r.xyz"
    r = run("reconstruct", path, "--method", "sirt", "--checkpoint", tmp_path / "c.ckpt", "-o", out,
            ok=False)
    assert "--checkpoint is not supported by method sirt" in assert_bad_input(r, "reconstruct", out)


def _small_tiltseries(tmp_path, xyz2d):
    needs_tiltseries()
    path = tmp_path / "t.h5"
    run("project", xyz2d, "--angles", "-60,0,60", "--detector", 48, "--pixel-size", 1 / 40,
        "--sigma", 0.025, "--bond-length", 0.2, "--noise-std", 1e-3, "-o", path)
    return path


def test_reconstruct_adcg_history_and_xyz(tmp_path, xyz2d):
    needs("atomtomo.solvers.adcg", "reconstruct_adcg")
    ase_io = pytest.importorskip("ase.io")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    out, hist = tmp_path / "r.xyz", tmp_path / "h.jsonl"
    r = run("reconstruct", tilt, "--alpha", "0.01", "--seed", 1, "--history", hist,
            "--option", "hops=3", "--option", "sweeps=0", "-o", out)
    assert "wrote" in r.output
    atoms = ase_io.read(out)
    assert atoms.info["method"] == "adcg"
    assert "objective" in atoms.info and "data_discrepancy" in atoms.info
    records = [json.loads(line) for line in hist.read_text().splitlines()]
    assert records and all("iteration" in rec and "positions" not in rec for rec in records)
    # The reconstruction scores well against the truth.
    m = json.loads(run("evaluate", out, "--truth", tilt, "--json").output)
    assert m["n_true"] == len(ATOMS_2D) and m["f1"] > 0.7


def test_reconstruct_two_angles_alpha0_says_it_is_ambiguous(tmp_path, xyz2d):
    needs("atomtomo.solvers.adcg", "reconstruct_adcg")
    tilt = tmp_path / "t2.h5"
    run("project", xyz2d, "--angles", "0,90", "--detector", 48, "--pixel-size", 1 / 40,
        "--sigma", 0.025, "--bond-length", 0.2, "-o", tilt)
    fast = ["--option", "hops=2", "--option", "sweeps=0", "-o", tmp_path / "r.xyz"]
    assert "re-pairing" in run("reconstruct", tilt, *fast).stderr
    assert "re-pairing" not in run("reconstruct", tilt, "--alpha", "0.01", *fast).stderr
    assert run("reconstruct", tilt, "-q", *fast).stderr == ""


def test_reconstruct_says_when_the_data_are_left_unexplained(tmp_path):
    """The result's misfit against the file's noise level: in the output (data_explained) and,
    when it is above what the noise allows, a note on stderr (not with -q); exit status 0."""
    needs("atomtomo.solvers.adcg", "reconstruct_adcg")
    ase_io = pytest.importorskip("ase.io")
    y, angles = good_data()
    y = y + np.random.default_rng(0).normal(scale=0.01 * y.max(), size=y.shape)
    fast = ["--option", "hops=2", "--option", "sweeps=0"]
    for sigma, explained in ((0.03, True), (0.02, False)):  # the true atom width, a wrong one
        tilt = write_raw_h5(tmp_path / f"s{sigma}.h5", y, angles, atom_sigma=sigma,
                            noise_std=0.01 * y.max())
        out = tmp_path / f"r{sigma}.xyz"
        r = run("reconstruct", tilt, *fast, "-o", out)
        assert ase_io.read(out).info["data_explained"] == explained
        assert ("leaves part of the data unexplained" in r.stderr) == (not explained), r.stderr
    assert run("reconstruct", tilt, *fast, "-q", "-o", out).stderr == ""


def test_reconstruct_animate(tmp_path, xyz2d):
    needs("atomtomo.solvers.adcg", "reconstruct_adcg")
    needs("atomtomo.plotting", "animate_run")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    out, gif = tmp_path / "r.xyz", tmp_path / "run.gif"
    run("reconstruct", tilt, "--option", "hops=2", "--option", "sweeps=0", "--animate", gif,
        "--quiet", "-o", out)
    assert out.is_file() and gif.is_file() and gif.stat().st_size > 0


def test_reconstruct_checkpoint_requires_supported_method(tmp_path, xyz2d):
    needs("atomtomo.solvers.adcg", "reconstruct_adcg")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    out = tmp_path / "r.xyz"
    r = run("reconstruct", tilt, "--model", tmp_path / "m.pt", "-o", out, ok=False)
    assert "--model is not supported by method adcg" in assert_bad_input(r, "reconstruct", out)
    r = run("reconstruct", tilt, "--option", "nosuch=1", "-o", out, ok=False)
    assert_bad_input(r, "reconstruct", out)


def test_reconstruct_resume_under_other_options_is_refused(tmp_path, xyz2d):
    needs("atomtomo.solvers.adcg", "reconstruct_adcg")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    ckpt, first, out = tmp_path / "run.ckpt", tmp_path / "first.xyz", tmp_path / "r.xyz"
    common = ("--checkpoint", ckpt, "--option", "hops=2", "--option", "sweeps=0", "--quiet")
    run("reconstruct", tilt, *common, "-o", first)
    r = run("reconstruct", tilt, *common, "--option", "potential=none", "--resume", "-o", out,
            ok=False)
    line = assert_bad_input(r, "reconstruct", out)
    assert "belongs to another run (potential 'lj' -> 'none')" in line
    run("reconstruct", tilt, *common, "--resume", "-o", out)
    assert out.is_file()


def test_reconstruct_layers_on_2d_data_is_refused(tmp_path, xyz2d):
    needs("atomtomo.solvers.layers", "find_layers")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    out = tmp_path / "r.xyz"
    r = run("reconstruct", tilt, "--option", "layers=on", "-o", out, ok=False)
    assert "layers=on: it needs 3D single-axis data" in assert_bad_input(r, "reconstruct", out)


def test_reconstruct_3d_particle_plane_by_plane(tmp_path):
    needs("atomtomo.solvers.layers", "find_layers")
    ase_io = pytest.importorskip("ase.io")
    tilt, out, gif = tmp_path / "p.h5", tmp_path / "r.xyz", tmp_path / "run.gif"
    run("simulate", "--phantom", "fcc-particle", "--param", "size=1", "--angles", "-45,0,45",
        "--relative-noise", 0.01, "-o", tilt)
    run("reconstruct", tilt, "--option", "hops=5", "--animate", gif, "--quiet", "-o", out)
    atoms = ase_io.read(out)
    assert atoms.info["start"] == "layers" and atoms.info["layers"] == 3
    assert gif.stat().st_size > 0
    m = json.loads(run("evaluate", out, "--truth", tilt, "--json").output)
    assert m["n_true"] == 13 and m["f1"] == 1.0
    r = run("reconstruct", tilt, "--option", "layers=off", "--option", "hops=2", "-o", out)
    assert "start=greedy" in out.read_text().splitlines()[1] and r.exit_code == 0


# -- evaluate ----------------------------------------------------------------------------------------
EVAL_KEYS = {"n_true", "n_found", "n_matched", "precision", "recall", "f1", "mean_distance",
             "max_distance", "rmsd", "tolerance"}


def test_evaluate_json_keys_and_values(tmp_path):
    needs("atomtomo.metrics", "match_atoms")
    truth = tmp_path / "truth.xyz"
    recon = tmp_path / "recon.xyz"
    write_xyz(Configuration(ATOMS_2D), truth)
    found = np.vstack([ATOMS_2D[:4] + 0.003, [[0.4, 0.4]]])  # 4 right, 1 wrong, 1 missed
    write_xyz(Configuration(found), recon)
    r = run("evaluate", recon, "--truth", truth, "--json")
    m = json.loads(r.stdout)
    assert EVAL_KEYS <= set(m)
    assert (m["n_true"], m["n_found"], m["n_matched"]) == (5, 5, 4)
    assert m["precision"] == pytest.approx(0.8) and m["recall"] == pytest.approx(0.8)
    # default tolerance: 0.1 x the truth's median nearest-neighbour distance
    assert m["tolerance"] == pytest.approx(0.1 * median_nn_distance(ATOMS_2D))
    assert m["rmsd"] == pytest.approx(0.003 * np.sqrt(2), rel=1e-6)
    r = run("evaluate", recon, "--truth", truth, "--tolerance", 0.5)
    assert "tolerance used: 0.5" in r.stdout and "f1" in r.stdout


def test_evaluate_truth_from_tiltseries_any_extension(tmp_path, xyz2d):
    needs("atomtomo.metrics", "match_atoms")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    renamed = tmp_path / "truth.data"
    renamed.write_bytes(tilt.read_bytes())
    m = json.loads(run("evaluate", xyz2d, "--truth", renamed, "--json").stdout)
    assert m["f1"] == 1.0 and m["tolerance"] == pytest.approx(0.02)  # 0.1 x bond length 0.2


def test_evaluate_bad_inputs(tmp_path, xyz2d):
    bad = tmp_path / "bad.xyz"
    bad.write_text("garbage\n")
    for args in ([bad, "--truth", xyz2d], [xyz2d, "--truth", bad], [xyz2d, "--truth", tmp_path / "x"],
                 [xyz2d], [xyz2d, "--truth", xyz2d, "--tolerance", "-1"]):
        assert_bad_input(run("evaluate", *args, ok=False), "evaluate")


def test_evaluate_tiltseries_without_truth(tmp_path, xyz2d):
    needs("atomtomo.tiltseries", "read_tiltseries")
    data, angles = good_data()
    path = write_raw_h5(tmp_path / "t.h5", data, angles)
    assert_bad_input(run("evaluate", xyz2d, "--truth", path, ok=False), "evaluate")


# -- simulate --------------------------------------------------------------------------------------
def test_simulate_list_phantoms():
    needs("atomtomo.phantoms", "list_phantoms")
    r = run("simulate", "--list-phantoms")
    assert "interstitial" in r.stdout and "fcc-particle" in r.stdout


def test_simulate_defaults_and_truth(tmp_path):
    ts_mod = needs_tiltseries()
    out, truth = tmp_path / "s.h5", tmp_path / "truth.xyz"
    run("simulate", "--phantom", "interstitial", "--angles", "-60,0,60", "--relative-noise", 0.01,
        "--write-truth", truth, "-o", out)
    ts = ts_mod.read_tiltseries(out)
    bond = 1 / 6
    assert ts.atom_sigma == pytest.approx(bond / 8)
    assert ts.geometry.pixel_size == pytest.approx(bond / 10)
    assert ts.geometry.detector_shape[0] * ts.geometry.pixel_size >= np.sqrt(2)
    assert ts.ground_truth.n_atoms == 37 and truth.is_file()
    assert ts.bond_length == pytest.approx(bond)


def test_simulate_params_zone_axis_and_3d(tmp_path):
    ts_mod = needs_tiltseries()
    out = tmp_path / "s.h5"
    run("simulate", "--phantom", "vacancy", "--param", "spacing=0.12", "--zone-axis", 2,
        "--detector", 64, "-o", out)
    ts = ts_mod.read_tiltseries(out)
    assert np.allclose(np.sort(np.degrees(ts.geometry.angles)), [0, 90])
    assert ts.bond_length == pytest.approx(0.12)
    out3 = tmp_path / "p3.h5"
    run("simulate", "--phantom", "fcc-particle", "--param", "size=2", "--angles", "-30,30",
        "--detector", "24x24", "-o", out3)
    assert ts_mod.read_tiltseries(out3).projections.shape == (2, 24, 24)


@pytest.mark.parametrize("args", [["--phantom", "nope", "--angles", "0"],
                                  ["--phantom", "interstitial", "--param", "bogus=1", "--angles", "0"],
                                  ["--phantom", "interstitial", "--param", "spacing=abc", "--angles", "0"],
                                  ["--phantom", "interstitial", "--angles", "0", "--detector", "8x8"],
                                  ["--phantom", "interstitial"],
                                  ["--angles", "0"],
                                  ["--phantom", "interstitial", "--angles", "0", "--zone-axis", "2"]])
def test_simulate_bad_input(tmp_path, args):
    needs("atomtomo.phantoms", "build_phantom")
    out = tmp_path / "s.h5"
    assert_bad_input(run("simulate", *args, "-o", out, ok=False), "simulate", out)


# -- plot ----------------------------------------------------------------------------------------------
def test_plot_reconstruction_and_projections(tmp_path, xyz2d):
    needs("atomtomo.plotting", "plot_reconstruction", "plot_projections", "save_figure")
    tilt = _small_tiltseries(tmp_path, xyz2d)
    fig1, fig2 = tmp_path / "r.png", tmp_path / "p.png"
    run("plot", xyz2d, "--tilt-series", tilt, "-o", fig1)
    run("plot", tilt, "-o", fig2)
    for f in (fig1, fig2):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_bad_input(run("plot", tmp_path / "none.xyz", "-o", tmp_path / "x.png", ok=False), "plot",
                     tmp_path / "x.png")


# -- import ----------------------------------------------------------------------------------------
def test_import_mrc(tmp_path):
    ts_mod = needs("atomtomo.tiltseries", "import_mrc", "read_tiltseries", "write_tiltseries")
    mrcfile = pytest.importorskip("mrcfile")
    stack = np.random.default_rng(0).random((3, 10, 12)).astype(np.float32)
    mrc = tmp_path / "stack.mrc"
    with mrcfile.new(mrc) as m:
        m.set_data(stack)
    out = tmp_path / "imp.h5"
    run("import-mrc", mrc, "--angles", "-50,0,50", "--pixel-size", 0.5, "--sigma", 0.4, "-o", out)
    ts = ts_mod.read_tiltseries(out)
    assert ts.projections.shape == (3, 10, 12)
    assert np.allclose(ts.geometry.angles, np.radians([-50, 0, 50]))
    out2 = tmp_path / "bad.h5"
    assert_bad_input(run("import-mrc", mrc, "--angles", "0,1", "--pixel-size", 0.5, "-o", out2,
                         ok=False), "import-mrc", out2)


def test_import_tiff_angles_from_file(tmp_path):
    ts_mod = needs("atomtomo.tiltseries", "import_tiff", "read_tiltseries", "write_tiltseries")
    tifffile = pytest.importorskip("tifffile")
    stack = np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, stack)
    tlt = tmp_path / "stack.tlt"
    tlt.write_text("-45.0\n45.0\n")
    out = tmp_path / "imp.h5"
    run("import-tiff", tif, "--angles", tlt, "--pixel-size", 1.0, "-o", out)
    assert np.allclose(ts_mod.read_tiltseries(out).geometry.angles, np.radians([-45, 45]))


# -- train-locator and reproduce: wiring (the heavy work is other modules' tests) ----------------
def test_train_locator_wiring(tmp_path, monkeypatch):
    train = needs("atomtomo.learn.train", "train_locator")
    pytest.importorskip("torch")
    calls = {}

    def fake(angles, steps, out_path, **kw):
        calls.update(angles=np.asarray(angles), steps=steps, out=out_path, **kw)
        if kw.get("progress"):
            kw["progress"](1, 0.5)
        Path(out_path).write_bytes(b"model")
        return {"path": str(out_path), "steps": steps, "validation": {"f1": 0.9}}

    monkeypatch.setattr(train, "train_locator", fake)
    out = tmp_path / "m.pt"
    r = run("train-locator", "--angles", "-60,0,60", "--steps", 5, "--seed", 2, "--noise", 0.02,
            "-o", out)
    assert np.allclose(calls["angles"], np.radians([-60, 0, 60]))
    assert calls["steps"] == 5 and calls["seed"] == 2 and calls["noise"] == 0.02
    assert "F1 0.9" in r.stdout
    assert_bad_input(run("train-locator", "--angles", "0", "--steps", -1, "-o", out, ok=False),
                     "train-locator")


def test_reproduce_wiring(tmp_path, monkeypatch):
    import atomtomo.experiments as exp

    calls = {}

    def run_experiment(name, out_dir, *, quick=False, scheduler=None, workers=None):
        calls.update(name=name, out_dir=Path(out_dir), quick=quick, scheduler=scheduler,
                     workers=workers)
        return {"summary": str(Path(out_dir) / "summary.json")}

    monkeypatch.setattr(exp, "run_experiment", run_experiment, raising=False)
    monkeypatch.setattr(exp, "EXPERIMENTS", {"angles": None}, raising=False)
    run("reproduce", "angles", "--quick", "--workers", 2, "-o", tmp_path / "res")
    assert calls == {"name": "angles", "out_dir": tmp_path / "res", "quick": True, "scheduler": None,
                     "workers": 2}
    assert_bad_input(run("reproduce", "nope", "-o", tmp_path / "res", ok=False), "reproduce")


# -- demo ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_quick(tmp_path):
    for mod, names in (("atomtomo.tiltseries", ("simulate_tiltseries",)),
                       ("atomtomo.metrics", ("match_atoms",)),
                       ("atomtomo.plotting", ("plot_reconstruction", "plot_projections")),
                       ("atomtomo.solvers.adcg", ("reconstruct_adcg",))):
        needs(mod, *names)
    out = tmp_path / "demo"
    r = run("demo", "--quick", "-o", out)
    for name in ("tiltseries.h5", "truth.xyz", "reconstruction.xyz", "metrics.json",
                 "reconstruction.png", "projections.png"):
        assert (out / name).is_file(), name
        assert name in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_true"] == 37 and metrics["f1"] > 0.5


# -- real processes: exit codes and no traceback ---------------------------------------------------------
def _python_m(*args, cwd=None):
    env = dict(os.environ)
    env.pop("ATOMTOMO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "atomtomo", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def test_subprocess_exit_codes(tmp_path, xyz2d):
    p = _python_m("--version")
    assert p.returncode == 0 and "0.1.0" in p.stdout
    out = tmp_path / "o.h5"
    for args in (["project", xyz2d, "--angles", "1,,2", "--detector", 8, "--pixel-size", 0.1,
                  "--sigma", 0.1, "-o", out],
                 ["project", xyz2d, "--angles", "0", "--detector", "12x", "--pixel-size", 0.1,
                  "--sigma", 0.1, "-o", out],
                 ["reconstruct", tmp_path / "none.h5", "-o", tmp_path / "r.xyz"],
                 ["reconstruct", xyz2d, "--method", "nope", "-o", tmp_path / "r.xyz"]):
        p = _python_m(*args)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
        assert p.stderr.startswith(f"atomtomo {args[0]}: error: ")
        assert not out.exists() and not (tmp_path / "r.xyz").exists()


def test_subprocess_negative_angles(tmp_path, xyz2d):
    needs_tiltseries()
    for i, ang in enumerate((["--angles", "-60,0,60"], ["--angles=-60,0,60"], ["--angles", "-45"])):
        out = tmp_path / f"o{i}.h5"
        p = _python_m("project", xyz2d, *ang, "--detector", 16, "--pixel-size", 0.05,
                      "--sigma", 0.03, "-o", out)
        assert p.returncode == 0, p.stderr
        assert is_hdf5(out)


def test_main_module_importable():
    assert importlib.import_module("atomtomo.__main__")
