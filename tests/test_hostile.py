"""Hostile input and interrupted runs (issue 36): never destroy a file, never run unbounded,
never answer a meaningless question.

Each test names the item of the issue it covers. Most run in process (click's CliRunner); the
signal tests send real signals to this process or to one ``python -m atomtomo`` child.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo import Configuration, ForwardModel, Geometry, write_xyz
from atomtomo._io import atomic_path
from atomtomo.cli import cli

NAME_MAX = 255  # bytes in a file name (ext4, xfs, btrfs, APFS)


class _Stopping:
    """``atomtomo.stopping``, imported when first used."""

    def __getattr__(self, name):
        import atomtomo.stopping

        return getattr(atomtomo.stopping, name)


stopping = _Stopping()
ATOMS = np.array([[-0.21, -0.1], [0.0, -0.2], [0.15, 0.05], [-0.05, 0.17], [0.2, 0.22]])
DEG = [-60.0, 0.0, 60.0]


def tiltseries(path, deg=DEG, scale=1.0, box=None):
    geo = Geometry.from_angles(2, np.radians(deg), 40, 1 / 32)
    data = ForwardModel(geo, 0.03).project(ATOMS) * scale
    with h5py.File(path, "w") as f:
        f["projections"] = data
        f["angles"] = np.radians(deg)
        f.attrs.update({"atomtomo_format": "tiltseries", "format_version": 1, "ndim": 2,
                        "pixel_size": 1 / 32, "atom_sigma": 0.03, "bond_length": 0.2})
        if box is not None:
            f.attrs["box"] = np.asarray(box, float)
    return path


@pytest.fixture()
def files(tmp_path):
    write_xyz(Configuration(ATOMS), tmp_path / "a.xyz")
    tiltseries(tmp_path / "t.h5")
    return tmp_path


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run(args, cwd):
    """Run the CLI in ``cwd``; return (exit code, stderr lines, stdout)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)
    return result.exit_code, result.stderr.strip("\n").splitlines(), result.output


def refused(args, cwd, *words):
    """The command exits 2 with one line naming ``words``, and leaves no new file."""
    before = sorted(os.listdir(cwd))
    code, lines, _ = run(args, cwd)
    assert code == 2, lines
    assert len(lines) == 1 and "error:" in lines[0], lines
    for w in words:
        assert w in lines[0], lines[0]
    assert sorted(os.listdir(cwd)) == before
    return lines[0]


# -- item 1: an output naming an input -----------------------------------------------------------
@pytest.mark.parametrize("flag", ["-o", "--checkpoint", "--history"])
def test_reconstruct_output_naming_the_input_is_refused(files, flag):
    d = digest(files / "t.h5")
    args = ["reconstruct", "t.h5", "--method", "sirt", "-o", "r.xyz"]
    if flag == "-o":
        args[-1] = "t.h5"
    else:
        args += [flag, "t.h5"]
    if flag == "--checkpoint":
        args[3] = "adcg"
    refused(args, files, "input", flag)
    assert digest(files / "t.h5") == d


def test_output_naming_an_input_by_another_spelling_or_link(files):
    os.symlink("t.h5", files / "sym.h5")
    os.link(files / "t.h5", files / "hard.h5")
    d = digest(files / "t.h5")
    for out in ("./t.h5", f"../{files.name}/t.h5", str(files / "t.h5"), "sym.h5", "hard.h5"):
        refused(["reconstruct", "t.h5", "--method", "sirt", "-o", out], files, "input")
    refused(["project", "a.xyz", "--angles", "0,90", "--detector", "40", "--pixel-size", "0.03",
             "--sigma", "0.03", "-o", "a.xyz"], files, "input")
    (files / "ang.txt").write_text("0\n90\n")
    refused(["simulate", "--phantom", "interstitial", "--angles", "ang.txt", "-o", "ang.txt"],
            files, "input", "--angles")
    assert digest(files / "t.h5") == d


# -- item 2: an output that is not a regular file ------------------------------------------------
def test_fifo_or_device_as_output_is_refused(files):
    os.mkfifo(files / "fifo")
    refused(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-o", "fifo"], files,
            "not a regular file")
    assert not (files / "fifo").is_file()
    refused(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-o", "/dev/null"],
            files, "not a regular file")
    assert not os.path.isfile("/dev/null")


# -- item 7: the output directory is checked before the solve ------------------------------------
def test_unwritable_output_directory_is_refused_before_the_solve(files, monkeypatch):
    calls = []
    import atomtomo.solvers as solvers

    monkeypatch.setattr(solvers, "get_method", lambda m: calls.append(m))
    if os.geteuid() == 0:  # root writes anywhere a mode allows: /sys refuses even root
        ro = "/sys"
    else:
        (files / "ro").mkdir()
        os.chmod(files / "ro", 0o555)
        ro = "ro"
    for flag in ("-o", "--history", "--checkpoint", "--animate"):
        args = ["reconstruct", "t.h5", "-o", "r.xyz"]
        target = f"{ro}/x.gif" if flag == "--animate" else f"{ro}/x.out"
        if flag == "-o":
            args[-1] = target
        else:
            args += [flag, target]
        refused(args, files, "cannot write")
    assert calls == []


# -- item 9: long names --------------------------------------------------------------------------
def test_output_name_of_255_bytes_works(files):
    name = "a" * (NAME_MAX - 3) + ".h5"
    code, lines, _ = run(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-q",
                          "-o", name], files)
    assert code == 0, lines
    assert (files / name).is_file()
    assert not [f for f in os.listdir(files) if ".part" in f]
    refused(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-o", "b" * 256],
            files, "longer than")


def test_atomic_path_refuses_a_fifo_that_appears(tmp_path):
    from atomtomo.errors import InputError

    target = tmp_path / "x.txt"
    with pytest.raises(InputError, match="not a regular file"):
        with atomic_path(target) as tmp:
            tmp.write_text("x")
            os.mkfifo(target)
    assert os.listdir(tmp_path) == ["x.txt"]


# -- item 3: bounded memory ----------------------------------------------------------------------
@pytest.mark.parametrize("extra", [["--sigma", "1e6"], ["--pixel-size", "1e-9"],
                                   ["--detector", "100000000"]])
def test_absurd_sizes_are_refused_before_allocating(files, extra):
    refused(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-o", "s.h5", *extra],
            files, "memory")


def test_memory_limit_is_environment_overridable(files, monkeypatch):
    monkeypatch.setenv("ATOMTOMO_MAX_MEMORY", "1K")
    refused(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-o", "s.h5"], files,
            "ATOMTOMO_MAX_MEMORY")


def test_memory_error_is_one_line(files, monkeypatch):
    import atomtomo.phantoms as phantoms

    def boom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(phantoms, "build_phantom", boom)
    refused(["simulate", "--phantom", "interstitial", "--angles", "0,90", "-o", "s.h5"], files,
            "out of memory")


# -- item 5: data that would never converge, a box outside the field of view ---------------------
def test_overflowing_data_and_far_box_are_refused(files):
    tiltseries(files / "huge.h5", scale=1e300)
    refused(["reconstruct", "huge.h5", "-o", "r.xyz"], files, "too large")
    tiltseries(files / "far.h5", box=[[-1e3, 1e3], [-1e3, 1e3]])
    refused(["reconstruct", "far.h5", "-o", "r.xyz"], files, "field of view")
    refused(["project", "a.xyz", "--angles", "0,90", "--detector", "40", "--pixel-size", "0.03",
             "--sigma", "0.03", "--box", "-1e300,1e300,-1e300,1e300", "-o", "p.h5"], files, "--box")


def test_deadline_ends_the_whole_adcg_run(files):
    from atomtomo.solvers.adcg import reconstruct_adcg
    from atomtomo.solvers.problem import Problem
    from atomtomo.tiltseries import read_tiltseries

    problem = Problem.from_tiltseries(read_tiltseries(files / "t.h5"))
    with stopping.deadline(0.0):
        recon = reconstruct_adcg(problem, hops=100000, restarts=2, jobs=1)
    assert recon.info["stopped_by"] == "time_limit"
    assert recon.info["hops"] == 0
    # the option itself is a deadline for the whole run (every stage sees it)
    seen = []
    recon = reconstruct_adcg(problem, hops=3, time_limit=1e-9,
                             callback=lambda r: seen.append(r["phase"]))
    assert recon.info["stopped_by"] == "time_limit" and seen == []


def test_deadlines_nest_and_lbfgs_stops():
    assert stopping.remaining() == float("inf")
    with stopping.deadline(100):
        with stopping.deadline(0):
            assert stopping.should_stop()
            with pytest.raises(StopIteration):
                stopping.lbfgs_callback(None)
        assert not stopping.should_stop()
        with stopping.deadline(None):
            assert 99 < stopping.remaining() <= 100
    assert stopping.remaining() == float("inf")


# -- item 4: interrupts --------------------------------------------------------------------------
def test_signal_is_deferred_to_the_next_poll():
    with stopping.handle_signals():
        stopping.check()  # a solver has polled: the next signal only sets the flag
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stopping.interrupted()
        with pytest.raises(stopping.Interrupted) as exc:
            stopping.should_stop()
        assert exc.value.signum == signal.SIGTERM
    assert not stopping.interrupted()


def test_second_signal_raises_at_once():
    with stopping.handle_signals():
        stopping.check()
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)


def test_interrupted_reconstruct_says_what_it_kept(files, monkeypatch):
    """Ctrl-C mid-run (here: the signal arrives at the third iteration): exit 130, one line
    naming the checkpoint and the --resume command; no output and no temporary file."""
    def interrupting(record):
        if record["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    import atomtomo.cli as cli_module

    real = cli_module._Progress.__call__

    def call(self, record):
        real(self, record)
        interrupting(record)

    monkeypatch.setattr(cli_module._Progress, "__call__", call)
    d = digest(files / "t.h5")
    code, lines, _ = run(["reconstruct", "t.h5", "-o", "r.xyz", "-q", "--checkpoint", "ck.npz",
                          "--history", "h.jsonl"], files)
    assert code == 130, lines
    assert len(lines) == 1 and "ck.npz" in lines[0] and "--resume" in lines[0], lines
    assert sorted(os.listdir(files)) == ["a.xyz", "ck.npz", "t.h5"]
    assert digest(files / "t.h5") == d
    code, lines, _ = run(["reconstruct", "t.h5", "-o", "r.xyz", "-q"], files)  # no checkpoint
    assert code == 130 and len(lines) == 1 and "nothing was kept" in lines[0], lines


def test_systemerror_from_an_interrupt_in_compiled_code_is_an_interrupt(files, monkeypatch):
    import atomtomo.solvers as solvers

    def method(problem, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("CPUDispatcher(<function f>) returned a result with an exception set")

    monkeypatch.setattr(solvers, "get_method", lambda m: method)
    code, lines, _ = run(["reconstruct", "t.h5", "-o", "r.xyz", "-q"], files)
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0], lines


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_real_signal_mid_run(files, sig):  # pragma: no cover - timing of a real process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "atomtomo", "reconstruct", "t.h5", "-o",
                             "r.xyz", "-q", "--checkpoint", "ck.npz", "--history", "h.jsonl",
                             "--option", "hops=100000"], cwd=files, env=env,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):
        if (files / "ck.npz").exists():
            break
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err
    assert sorted(os.listdir(files)) == ["a.xyz", "ck.npz", "t.h5"]


# -- item 6: meaningless questions ----------------------------------------------------------------
@pytest.mark.parametrize("angles", ["0,0", "0,180", "10,20,-160", "0,1e-6"])
def test_degenerate_angle_sets_are_refused(files, angles):
    refused(["simulate", "--phantom", "interstitial", "--angles", angles, "-o", "s.h5"], files,
            "--angles")


def test_degenerate_angles_in_a_file_are_refused(files):
    tiltseries(files / "dup.h5", deg=[0.0, 180.0, 0.0])
    refused(["reconstruct", "dup.h5", "-o", "r.xyz"], files, "same line")
    tiltseries(files / "one.h5", deg=[30.0])  # simulating one projection is fine, solving not
    refused(["reconstruct", "one.h5", "-o", "r.xyz"], files, "at least 2")


def test_degree_like_angles_in_a_file_are_warned_about(files):
    geo = Geometry.from_angles(2, [-60.0, 0.0, 60.0], 40, 1 / 32)  # "radians" that are degrees
    with h5py.File(files / "t.h5", "r+") as f:
        f["angles"][...] = geo.angles
        f["projections"][...] = ForwardModel(geo, 0.03).project(ATOMS)
    code, lines, _ = run(["reconstruct", "t.h5", "--method", "sirt", "-o", "r.xyz", "-q"], files)
    assert code == 0
    assert len(lines) == 1 and "warning" in lines[0] and "degrees" in lines[0], lines


# -- item 9: messages ----------------------------------------------------------------------------
def test_misleading_messages(files):
    (files / "zero.xyz").write_text("0\n\n")
    refused(["project", "zero.xyz", "--angles", "0,90", "--detector", "40", "--pixel-size",
             "0.03", "--sigma", "0.03", "-o", "p.h5"], files, "no atoms")
    (files / "sp.xyz").write_text("1\n\nQq 0 0 0\n")
    refused(["project", "sp.xyz", "--angles", "0,90", "--detector", "40", "--pixel-size",
             "0.03", "--sigma", "0.03", "-o", "p.h5"], files, "chemical symbol")
    (files / "ck.npz").write_bytes(os.urandom(3000))
    refused(["reconstruct", "t.h5", "-o", "r.xyz", "--checkpoint", "ck.npz", "--resume"], files,
            "not a checkpoint")
    (files / "big.xyz").write_text("1\n\nX 1e300 0 0\n")
    refused(["evaluate", "big.xyz", "--truth", "a.xyz"], files, "out of range")
    refused(["plot", "big.xyz", "-o", "f.png"], files, "out of range")


def test_rgb_tiff_is_named(files):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(files / "rgb.tif", np.zeros((3, 8, 8, 3), np.uint8), photometric="rgb")
    refused(["import-tiff", "rgb.tif", "--angles", "0,60,120", "--pixel-size", "0.1", "-o",
             "r.h5"], files, "colour")


def test_bad_option_with_two_angles_is_one_line(files):
    tiltseries(files / "t2.h5", deg=[0.0, 90.0])
    refused(["reconstruct", "t2.h5", "-o", "r.xyz", "--option", "nonsense=1"], files, "nonsense")


def test_evaluate_json_undefined_values_are_null(files):
    import json

    (files / "none.xyz").write_text("0\n\n")
    code, lines, out = run(["evaluate", "none.xyz", "--truth", "a.xyz", "--json",
                            "--tolerance", "0.05"], files)
    assert code == 0, lines
    m = json.loads(out)
    assert m["precision"] is None and m["recall"] == 0.0 and m["rmsd"] is None


def test_library_warnings_do_not_reach_stderr(files):
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.new(files / "s.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).random((3, 8, 8)).astype(np.float32))
        mrc.voxel_size = 0.1
    raw = bytearray((files / "s.mrc").read_bytes())
    raw[208:212] = b"XXXX"  # a bad map ID: mrcfile reads it (permissive) with a warning
    (files / "s.mrc").write_bytes(bytes(raw))
    code, lines, _ = run(["import-mrc", "s.mrc", "--angles", "0,60,120", "-q", "-o", "m.h5"],
                         files)
    assert code == 0 and lines == [], lines
