"""Bad input on the command line (issue 2, spec section 5), for every command it applies to.

Every case must give exit status 2, exactly ONE line on stderr ("atomtomo CMD: error: ..."), no
traceback, and leave the output directory as it was: no output file, no temporary file. Most
cases run in process through click's CliRunner; a few run ``python -m atomtomo`` for real.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo import Configuration, ForwardModel, Geometry, write_xyz
from atomtomo.cli import cli

ATOMS = np.array([[-0.21, -0.1], [0.0, -0.2], [0.15, 0.05], [-0.05, 0.17], [0.2, 0.22]])
DEG = [-60.0, 0.0, 60.0]


def has(module, name=None):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return False
    return name is None or hasattr(mod, name)


# -- input files ------------------------------------------------------------------------------------
def raw_tiltseries(path, *, data=None, angles=None, drop=(), **attrs):
    """A 2D tilt series written with h5py directly (spec section 3), possibly broken."""
    geo = Geometry.from_angles(2, np.radians(DEG), 40, 1 / 32)
    if data is None:
        data = ForwardModel(geo, 0.03).project(ATOMS)
    base = {"atomtomo_format": "tiltseries", "format_version": 1, "ndim": 2,
            "pixel_size": 1 / 32, "length_unit": "", "atom_sigma": 0.03, "bond_length": 0.2}
    base.update(attrs)
    with h5py.File(path, "w") as f:
        if "projections" not in drop:
            f["projections"] = data
        f["angles"] = np.radians(DEG) if angles is None else angles
        f["ground_truth/positions"] = ATOMS
        f["ground_truth/species"] = np.array(["X"] * len(ATOMS), dtype=object)
        for k, v in base.items():
            if k not in drop:
                f.attrs[k] = v
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    write_xyz(Configuration(ATOMS), d / "good.xyz")
    raw_tiltseries(d / "good.h5")
    geo = Geometry.from_angles(2, np.radians(DEG), 40, 1 / 32)
    data = ForwardModel(geo, 0.03).project(ATOMS)
    data[1, 7] = np.nan
    raw_tiltseries(d / "nan.h5", data=data)
    raw_tiltseries(d / "angle_count.h5", angles=np.radians(DEG[:2]))
    raw_tiltseries(d / "no_projections.h5", drop=("projections",))
    raw_tiltseries(d / "negative_sigma.h5", atom_sigma=-0.03)
    raw_tiltseries(d / "zero_pixel.h5", pixel_size=0.0)
    (d / "not_hdf5.h5").write_text("projections = [[1, 2], [3, 4]]\n")
    (d / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (d / "broken.xyz").write_text("3\ncomment\nPt 0.0 0.1 0.0\nPt 0.2 zero 0.0\n")
    (d / "short.xyz").write_text("5\n\nX 0 0 0\n")
    (d / "nan.xyz").write_text("1\n\nX 0.1 nan 0.0\n")
    (d / "empty.xyz").write_text("")
    return d


def run_cli(args, outdir):
    outdir.mkdir(exist_ok=True)
    before = sorted(os.listdir(outdir))
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result, before


def assert_one_line_error(result, command, outdir, before):
    stderr = result.stderr
    assert result.exit_code == 2, (result.exit_code, stderr, result.output, result.exception)
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"atomtomo {command}: error: "), lines[0]
    assert len(lines[0]) > len(f"atomtomo {command}: error: ") + 5
    assert "Traceback" not in stderr + result.output
    assert sorted(os.listdir(outdir)) == before, "an output or temporary file was left behind"
    return lines[0]


# -- the matrix: (command, arguments) ---------------------------------------------------------------
# {in} is the inputs directory, {out} the output directory (empty before every run).
PROJECT = ["project", "{in}/good.xyz", "--angles", "-60,0,60", "--detector", "40",
           "--pixel-size", "0.03", "--sigma", "0.03", "-o", "{out}/p.h5"]
SIMULATE = ["simulate", "--phantom", "interstitial", "--angles", "-60,0,60", "-o", "{out}/s.h5"]
RECONSTRUCT = ["reconstruct", "{in}/good.h5", "-o", "{out}/r.xyz"]
EVALUATE = ["evaluate", "{in}/good.xyz", "--truth", "{in}/good.h5"]
PLOT = ["plot", "{in}/good.xyz", "-o", "{out}/f.png"]


def replace(base, old, new):
    """``base`` with argument ``old`` replaced by ``new`` (or option ``old``'s value if ``new``
    is a tuple ``(value,)``)."""
    out = list(base)
    i = out.index(old)
    if isinstance(new, tuple):
        out[i + 1] = new[0]
    else:
        out[i] = new
    return out


def with_option(base, *extra):
    """``base`` with options ``extra`` right after the command name."""
    return base[:1] + list(extra) + base[1:]


CASES = {
    # project
    "project/missing-file": replace(PROJECT, "{in}/good.xyz", "{in}/nothing.xyz"),
    "project/broken-xyz": replace(PROJECT, "{in}/good.xyz", "{in}/broken.xyz"),
    "project/short-xyz": replace(PROJECT, "{in}/good.xyz", "{in}/short.xyz"),
    "project/nan-xyz": replace(PROJECT, "{in}/good.xyz", "{in}/nan.xyz"),
    "project/empty-xyz": replace(PROJECT, "{in}/good.xyz", "{in}/empty.xyz"),
    "project/binary-xyz": replace(PROJECT, "{in}/good.xyz", "{in}/garbage.bin"),
    "project/negative-sigma": replace(PROJECT, "--sigma", ("-0.03",)),
    "project/zero-sigma": replace(PROJECT, "--sigma", ("0",)),
    "project/zero-pixel-size": replace(PROJECT, "--pixel-size", ("0",)),
    "project/negative-pixel-size": replace(PROJECT, "--pixel-size", ("-1",)),
    "project/detector-12x": replace(PROJECT, "--detector", ("12x",)),
    "project/detector-text": replace(PROJECT, "--detector", ("big",)),
    "project/detector-zero": replace(PROJECT, "--detector", ("0",)),
    "project/detector-3-axes": replace(PROJECT, "--detector", ("8x9x10",)),
    "project/angles-empty-item": replace(PROJECT, "--angles", ("-60,,60",)),
    "project/angles-text": replace(PROJECT, "--angles", ("minus sixty",)),
    "project/angles-nan": replace(PROJECT, "--angles", ("0,nan",)),
    "project/angles-trailing-comma": replace(PROJECT, "--angles", ("-60,0,",)),
    "project/negative-noise": with_option(PROJECT, "--noise-std", "-0.1"),
    "project/output-dir-missing": replace(PROJECT, "{out}/p.h5", "{out}/no/such/p.h5"),
    "project/output-is-dir": replace(PROJECT, "{out}/p.h5", "{in}"),
    # simulate
    "simulate/unknown-phantom": replace(SIMULATE, "--phantom", ("nonsense",)),
    "simulate/negative-sigma": with_option(SIMULATE, "--sigma", "-0.01"),
    "simulate/zero-pixel-size": with_option(SIMULATE, "--pixel-size", "0"),
    "simulate/malformed-detector": with_option(SIMULATE, "--detector", "64x"),
    "simulate/detector-wrong-dim": with_option(SIMULATE, "--detector", "64x64"),
    "simulate/malformed-angles": replace(SIMULATE, "--angles", ("1;2",)),
    "simulate/bad-param": with_option(SIMULATE, "--param", "novalue"),
    "simulate/unknown-param": with_option(SIMULATE, "--param", "wobble=3"),
    # reconstruct
    "reconstruct/missing-file": replace(RECONSTRUCT, "{in}/good.h5", "{in}/nothing.h5"),
    "reconstruct/not-hdf5": replace(RECONSTRUCT, "{in}/good.h5", "{in}/not_hdf5.h5"),
    "reconstruct/binary": replace(RECONSTRUCT, "{in}/good.h5", "{in}/garbage.bin"),
    "reconstruct/nan": replace(RECONSTRUCT, "{in}/good.h5", "{in}/nan.h5"),
    "reconstruct/angle-count": replace(RECONSTRUCT, "{in}/good.h5", "{in}/angle_count.h5"),
    "reconstruct/no-projections": replace(RECONSTRUCT, "{in}/good.h5", "{in}/no_projections.h5"),
    "reconstruct/negative-sigma-attr": replace(RECONSTRUCT, "{in}/good.h5",
                                               "{in}/negative_sigma.h5"),
    "reconstruct/zero-pixel-attr": replace(RECONSTRUCT, "{in}/good.h5", "{in}/zero_pixel.h5"),
    "reconstruct/negative-sigma": with_option(RECONSTRUCT, "--sigma", "-0.03"),
    "reconstruct/unknown-method": with_option(RECONSTRUCT, "--method", "magic"),
    "reconstruct/negative-alpha": with_option(RECONSTRUCT, "--alpha", "-1"),
    "reconstruct/alpha-text": with_option(RECONSTRUCT, "--alpha", "lots"),
    "reconstruct/unknown-method-with-history": with_option(RECONSTRUCT, "--method", "magic",
                                                           "--history", "{out}/h.jsonl"),
    "reconstruct/nan-with-history": with_option(
        replace(RECONSTRUCT, "{in}/good.h5", "{in}/nan.h5"), "--history", "{out}/h.jsonl"),
    "reconstruct/broken-initial": with_option(RECONSTRUCT, "--initial", "{in}/broken.xyz"),
    "reconstruct/xyz-as-tiltseries": replace(RECONSTRUCT, "{in}/good.h5", "{in}/good.xyz"),
    # evaluate
    "evaluate/missing-file": replace(EVALUATE, "{in}/good.xyz", "{in}/nothing.xyz"),
    "evaluate/broken-recon": replace(EVALUATE, "{in}/good.xyz", "{in}/broken.xyz"),
    "evaluate/missing-truth": replace(EVALUATE, "--truth", ("{in}/nothing.h5",)),
    "evaluate/garbage-truth": replace(EVALUATE, "--truth", ("{in}/garbage.bin",)),
    "evaluate/text-truth": replace(EVALUATE, "--truth", ("{in}/not_hdf5.h5",)),
    "evaluate/nan-truth": replace(EVALUATE, "--truth", ("{in}/nan.h5",)),
    "evaluate/angle-count-truth": replace(EVALUATE, "--truth", ("{in}/angle_count.h5",)),
    "evaluate/no-projections-truth": replace(EVALUATE, "--truth", ("{in}/no_projections.h5",)),
    "evaluate/negative-tolerance": with_option(EVALUATE, "--tolerance", "-0.1"),
    "evaluate/zero-tolerance": with_option(EVALUATE, "--tolerance", "0"),
    # plot
    "plot/missing-file": replace(PLOT, "{in}/good.xyz", "{in}/nothing.xyz"),
    "plot/broken-xyz": replace(PLOT, "{in}/good.xyz", "{in}/broken.xyz"),
    "plot/binary": replace(PLOT, "{in}/good.xyz", "{in}/garbage.bin"),
    "plot/nan": replace(PLOT, "{in}/good.xyz", "{in}/nan.h5"),
    "plot/angle-count": replace(PLOT, "{in}/good.xyz", "{in}/angle_count.h5"),
    "plot/no-projections": replace(PLOT, "{in}/good.xyz", "{in}/no_projections.h5"),
    "plot/zero-pixel": replace(PLOT, "{in}/good.xyz", "{in}/zero_pixel.h5"),
    "plot/missing-truth": with_option(PLOT, "--truth", "{in}/nothing.xyz"),
    "plot/nan-tilt-series": with_option(PLOT, "--tilt-series", "{in}/nan.h5"),
    "plot/negative-tolerance": with_option(PLOT, "--tolerance", "-1"),
    "plot/output-dir-missing": replace(PLOT, "{out}/f.png", "{out}/no/f.png"),
}

# What each message must mention (the failure is the intended one, not another).
FRAGMENTS = {
    "project/missing-file": "not found",
    "project/broken-xyz": "broken.xyz",
    "project/short-xyz": "short.xyz",
    "project/nan-xyz": "NaN",
    "project/empty-xyz": "empty",
    "project/binary-xyz": "garbage.bin",
    "project/negative-sigma": "--sigma",
    "project/zero-sigma": "--sigma",
    "project/zero-pixel-size": "--pixel-size",
    "project/negative-pixel-size": "--pixel-size",
    "project/detector-12x": "--detector",
    "project/detector-text": "--detector",
    "project/detector-zero": "--detector",
    "project/detector-3-axes": "--detector",
    "project/angles-empty-item": "--angles",
    "project/angles-text": "--angles",
    "project/angles-nan": "--angles",
    "project/angles-trailing-comma": "--angles",
    "project/negative-noise": "--noise-std",
    "project/output-dir-missing": "does not exist",
    "project/output-is-dir": "directory",
    "simulate/unknown-phantom": "unknown phantom",
    "simulate/negative-sigma": "--sigma",
    "simulate/zero-pixel-size": "--pixel-size",
    "simulate/malformed-detector": "--detector",
    "simulate/detector-wrong-dim": "--detector",
    "simulate/malformed-angles": "--angles",
    "simulate/bad-param": "--param",
    "simulate/unknown-param": "wobble",
    "reconstruct/missing-file": "not found",
    "reconstruct/not-hdf5": "not an HDF5",
    "reconstruct/binary": "not an HDF5",
    "reconstruct/nan": "NaN",
    "reconstruct/angle-count": "2 angles for 3 projections",
    "reconstruct/no-projections": "projections",
    "reconstruct/negative-sigma-attr": "atom_sigma",
    "reconstruct/zero-pixel-attr": "pixel_size",
    "reconstruct/negative-sigma": "--sigma",
    "reconstruct/unknown-method": "unknown method",
    "reconstruct/negative-alpha": "--alpha",
    "reconstruct/alpha-text": "--alpha",
    "reconstruct/unknown-method-with-history": "unknown method",
    "reconstruct/nan-with-history": "NaN",
    "reconstruct/broken-initial": "broken.xyz",
    "reconstruct/xyz-as-tiltseries": "not an HDF5",
    "evaluate/missing-file": "not found",
    "evaluate/broken-recon": "broken.xyz",
    "evaluate/missing-truth": "not found",
    "evaluate/garbage-truth": "garbage.bin",
    "evaluate/text-truth": "not_hdf5.h5",
    "evaluate/nan-truth": "NaN",
    "evaluate/angle-count-truth": "2 angles for 3 projections",
    "evaluate/no-projections-truth": "projections",
    "evaluate/negative-tolerance": "--tolerance",
    "evaluate/zero-tolerance": "--tolerance",
    "plot/missing-file": "not found",
    "plot/broken-xyz": "broken.xyz",
    "plot/binary": "garbage.bin",
    "plot/nan": "NaN",
    "plot/angle-count": "2 angles for 3 projections",
    "plot/no-projections": "projections",
    "plot/zero-pixel": "pixel_size",
    "plot/missing-truth": "not found",
    "plot/nan-tilt-series": "NaN",
    "plot/negative-tolerance": "--tolerance",
    "plot/output-dir-missing": "does not exist",
}

NEEDS = {
    "reconstruct": ("atomtomo.solvers.adcg", "reconstruct_adcg"),
    "plot": ("atomtomo.plotting", "plot_reconstruction"),
    "simulate": ("atomtomo.phantoms", "build_phantom"),
}


def expand(args, inputs, outdir):
    return [str(a).replace("{in}", str(inputs)).replace("{out}", str(outdir)) for a in args]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2(case, inputs, tmp_path):
    command = case.split("/")[0]
    if command in NEEDS and not has(*NEEDS[command]):
        pytest.skip(f"{NEEDS[command][0]} is not there yet")
    outdir = tmp_path / "out"
    inputs_before = sorted(os.listdir(inputs))
    result, before = run_cli(expand(CASES[case], inputs, outdir), outdir)
    line = assert_one_line_error(result, command, outdir, before)
    assert FRAGMENTS[case] in line, line
    assert sorted(os.listdir(inputs)) == inputs_before


def test_good_inputs_of_the_matrix_work(inputs, tmp_path):
    """The base command lines of the matrix succeed: the failures above are the bad values."""
    outdir = tmp_path / "out"
    for command, base in (("project", PROJECT), ("evaluate", EVALUATE), ("simulate", SIMULATE),
                          ("plot", PLOT)):
        if command in NEEDS and not has(*NEEDS[command]):
            continue
        result, _ = run_cli(expand(base, inputs, outdir), outdir)
        assert result.exit_code == 0, (command, result.stderr, result.exception)


def test_reconstruct_option_errors_are_one_line(inputs, tmp_path):
    """Method options are checked before any progress line is printed (non-tty stderr)."""
    if not has("atomtomo.solvers.adcg", "reconstruct_adcg"):
        pytest.skip("no ADCG yet")
    outdir = tmp_path / "out"
    for extra in (["--option", "nosuch=1"], ["--option", "potential=nope"],
                  ["--option", "lattice_prior=-1"], ["--alpha", "0", "--option", "lattice_prior=3"],
                  ["--option", "hull=-1"], ["--option", "hull=big"], ["--option", "strain=maybe"],
                  ["--option", "strain_refit=maybe"], ["--option", "lattice_refit=maybe"],
                  ["--option", "restarts=0"], ["--option", "jobs=two"],
                  ["--alpha", "0", "--option", "hull=3"], ["--model", "{in}/m.pt"]):
        result, before = run_cli(expand(with_option(RECONSTRUCT, *extra), inputs, outdir), outdir)
        assert_one_line_error(result, "reconstruct", outdir, before)


def test_reconstruct_status_line_comes_with_the_first_iteration(inputs, tmp_path, monkeypatch):
    """The status line ("adcg on FILE ...") is printed lazily; a method that fails before its
    first iteration leaves only the error line, one that succeeds shows the status line."""
    import atomtomo.solvers as solvers
    from atomtomo.errors import InputError
    from atomtomo.solvers.problem import Reconstruction

    def failing(problem, *, alpha=0.0, seed=0, callback=None, **options):
        raise InputError("bad option value for the fake method")

    def working(problem, *, alpha=0.0, seed=0, callback=None, **options):
        callback({"iteration": 1, "phase": "add", "n_atoms": 1, "objective": 1.0,
                  "positions": np.zeros((1, 2))})
        info = {"method": "fake", "alpha": alpha, "objective": 1.0, "data_discrepancy": 1.0,
                "energy": 0.0, "iterations": 1, "runtime_s": 0.0}
        return Reconstruction(Configuration(np.zeros((1, 2))), info, [])

    outdir = tmp_path / "out"
    for fn, ok in ((failing, False), (working, True)):
        monkeypatch.setattr(solvers, "get_method", lambda name, fn=fn: fn)
        result, before = run_cli(expand(RECONSTRUCT, inputs, outdir), outdir)
        if ok:
            assert result.exit_code == 0, (result.stderr, result.exception)
            assert result.stderr.startswith("atomtomo reconstruct: adcg on ")
        else:
            line = assert_one_line_error(result, "reconstruct", outdir, before)
            assert "bad option value" in line


# -- negative angles --------------------------------------------------------------------------------
def test_negative_angles_both_spellings(inputs, tmp_path):
    outdir = tmp_path / "out"
    base = PROJECT[:2] + PROJECT[4:]  # without --angles
    runs = {}
    for name, angle_args in (("separate", ["--angles", "-60,0,60"]),
                             ("equals", ["--angles=-60,0,60"]),
                             ("single", ["--angles", "-45"])):
        args = expand(base, inputs, outdir)
        args[-1] = str(outdir / f"{name}.h5")
        result, _ = run_cli(args[:2] + angle_args + args[2:], outdir)
        assert result.exit_code == 0, (result.stderr, result.exception)
        with h5py.File(outdir / f"{name}.h5", "r") as f:
            runs[name] = (f["angles"][()], f["projections"][()])
    np.testing.assert_allclose(runs["separate"][0], np.radians(DEG))
    np.testing.assert_array_equal(runs["separate"][0], runs["equals"][0])
    np.testing.assert_array_equal(runs["separate"][1], runs["equals"][1])
    np.testing.assert_allclose(runs["single"][0], np.radians([-45.0]))


# -- real processes ------------------------------------------------------------------------------------
def python_m(*args):
    env = dict(os.environ)
    env.pop("ATOMTOMO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "atomtomo", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("case", ["project/missing-file", "project/angles-empty-item",
                                  "reconstruct/nan", "reconstruct/negative-alpha",
                                  "evaluate/garbage-truth"])
def test_subprocess_bad_input(case, inputs, tmp_path):
    command = case.split("/")[0]
    if command in NEEDS and not has(*NEEDS[command]):
        pytest.skip(f"{NEEDS[command][0]} is not there yet")
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = expand(CASES[case], inputs, outdir)
    proc = python_m(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"atomtomo {command}: error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert os.listdir(outdir) == []


def test_subprocess_negative_angles(inputs, tmp_path):
    for i, angle_args in enumerate((["--angles", "-60,0,60"], ["--angles=-60,0,60"])):
        out = tmp_path / f"o{i}.h5"
        args = expand(PROJECT, inputs, tmp_path)
        args = args[:2] + angle_args + args[4:]
        args[-1] = str(out)
        proc = python_m(*args)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out, "r") as f:
            np.testing.assert_allclose(f["angles"][()], np.radians(DEG))
    with h5py.File(tmp_path / "o0.h5", "r") as a, h5py.File(tmp_path / "o1.h5", "r") as b:
        np.testing.assert_array_equal(a["projections"][()], b["projections"][()])


def test_failure_while_writing_leaves_nothing(inputs, tmp_path, monkeypatch):
    """An error in the middle of writing the output (here: h5py refuses a dataset) leaves
    neither the output nor its temporary file."""
    outdir = tmp_path / "out"
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "angles":
            raise OSError("disk full")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    result, before = run_cli(expand(PROJECT, inputs, outdir), outdir)
    assert result.exit_code in (1, 2)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(os.listdir(outdir)) == before == []


def test_cases_cover_the_issue_list():
    """Issue 2's list of bad inputs, each present in the matrix for every command it concerns."""
    assert set(FRAGMENTS) == set(CASES)
    required = {
        "missing-file": ["project", "reconstruct", "evaluate", "plot"],
        "not-hdf5": ["reconstruct"],
        "nan": ["reconstruct", "plot"],
        "angle-count": ["reconstruct", "plot"],
        "no-projections": ["reconstruct", "plot"],
        "negative-sigma": ["project", "simulate", "reconstruct"],
        "zero-pixel-size": ["project", "simulate"],
        "malformed-detector": ["simulate"],
        "detector-12x": ["project"],
        "angles-empty-item": ["project"],
        "malformed-angles": ["simulate"],
        "broken-xyz": ["project", "plot"],
        "broken-recon": ["evaluate"],
        "unknown-method": ["reconstruct"],
        "negative-alpha": ["reconstruct"],
    }
    for kind, commands in required.items():
        for command in commands:
            assert f"{command}/{kind}" in CASES, f"{command}/{kind}"
