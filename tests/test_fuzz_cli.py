"""Property-based fuzzing of the command line (issue 36): random corruptions of valid
tilt-series, XYZ, MRC and checkpoint files, and random option values.

The invariant, whatever the input: exit status 0 or 2; on 2 exactly one stderr line
``atomtomo CMD: error: ...``; never a traceback; the input files byte-identical afterwards; no
partial output (an output exists only after exit 0, and no temporary ``.part`` file is left);
bounded memory (the process' peak stays far below the machine's) and time (each example runs a
fast method on a tiny problem).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomtomo import Configuration, Geometry, write_xyz
from atomtomo.cli import cli
from atomtomo.tiltseries import simulate_tiltseries, write_tiltseries

ATOMS = np.array([[-0.21, -0.1], [0.0, -0.2], [0.15, 0.05], [-0.05, 0.17], [0.2, 0.22]])

#: Peak resident memory (kB) the test process may reach: far above a tiny run, far below a
#: runaway allocation.
PEAK_KB = 3 * 2**20

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """One valid file of each kind."""
    d = tmp_path_factory.mktemp("valid")
    config = Configuration(ATOMS, info={"bond_length": 0.2})
    write_xyz(config, d / "atoms.xyz")
    geo = Geometry.from_angles(2, np.radians([-60.0, 0.0, 60.0]), 40, 1 / 32)
    write_tiltseries(simulate_tiltseries(config, geo, 0.03, relative_noise=0.01, seed=1,
                                         bond_length=0.2), d / "tilt.h5")
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.new(d / "stack.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).random((3, 12, 16)).astype(np.float32))
        mrc.voxel_size = 0.1
    result = CliRunner().invoke(cli, ["reconstruct", str(d / "tilt.h5"), "-o", str(d / "r.xyz"),
                                      "-q", "--checkpoint", str(d / "run.ckpt"), "--option",
                                      "hops=1", "--option", "restarts=1", "--option",
                                      "lattice_start=false"])
    assert result.exit_code == 0, result.stderr
    return d


def corrupt(data: bytes, kind: str, where: float, length: int, junk: bytes) -> bytes:
    """``data`` with one corruption: bytes overwritten, the file cut, bytes inserted, or a
    text line replaced."""
    if not data:
        return junk
    if kind == "none":
        return data
    if kind == "payload":  # the last fifth, where the arrays are: a readable file, odd values
        i = len(data) - 1 - int(where * len(data) / 5)
        return data[:i] + junk[:length][: len(data) - i] + data[i + len(junk[:length]):]
    i = int(where * len(data)) % len(data)
    if kind == "overwrite":
        return data[:i] + junk[:length] + data[i + length:]
    if kind == "truncate":
        return data[:i]
    if kind == "insert":
        return data[:i] + junk[:length] + data[i:]
    lines = data.split(b"\n")
    k = i % len(lines)
    lines[k] = junk
    return b"\n".join(lines)


corruptions = st.tuples(st.sampled_from(["overwrite", "truncate", "insert", "line", "payload",
                                         "payload", "none"]),
                        st.floats(0, 1), st.integers(1, 64), st.binary(min_size=1, max_size=64))
texts = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "1e308", "1e-308", "abc", "",
                                   "3", "0.5", "true", "1,2", "99999999999"]),
                  st.text(max_size=12))


def check_invariant(tmp, args, inputs, outputs):
    """Run ``args`` in ``tmp``; assert the invariant (module docstring)."""
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs}
    result = CliRunner().invoke(cli, args)
    stderr = result.stderr
    assert result.exit_code in (0, 2), (args, result.exit_code, stderr, result.exception)
    assert "Traceback" not in stderr + result.output, stderr
    if result.exit_code == 2:
        lines = stderr.strip("\n").splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"atomtomo {args[0]}: error: "), stderr
        assert not any(p.exists() for p in outputs), "an output was left after an error"
    for p, h in before.items():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == h, f"{p.name} was changed"
    assert not [f for f in os.listdir(tmp) if ".part" in f], os.listdir(tmp)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < PEAK_KB


def fresh(tmp_path, name):
    d = tmp_path / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    return d


@FUZZ
@given(c=corruptions, iterations=st.integers(0, 30),
       opt=st.one_of(st.sampled_from(["1", "0.5", "1.5"]), texts))
def test_fuzz_tiltseries(valid, tmp_path, c, iterations, opt):
    d = fresh(tmp_path, "ts")
    src = d / "in.h5"
    src.write_bytes(corrupt((valid / "tilt.h5").read_bytes(), *c))
    out = d / "r.xyz"
    check_invariant(d, ["reconstruct", str(src), "--method", "sirt", "-q", "-o", str(out),
                        "--max-iterations", str(iterations), "--option", f"relaxation={opt}"],
                    [src], [out])


@FUZZ
@given(c=corruptions, sigma=st.one_of(st.sampled_from(["0.03", "0.05"]), texts), angles=st.sampled_from(["0,90", "-60,0,60", "0", "0,180",
                                                          "1e9,2", "10,10"]))
def test_fuzz_xyz(valid, tmp_path, c, sigma, angles):
    d = fresh(tmp_path, "xyz")
    src = d / "in.xyz"
    src.write_bytes(corrupt((valid / "atoms.xyz").read_bytes(), *c))
    out = d / "p.h5"
    check_invariant(d, ["project", str(src), "--angles", angles, "--detector", "40",
                        "--pixel-size", "0.03", "--sigma", sigma, "-q", "-o", str(out)],
                    [src], [out])
    check_invariant(d, ["evaluate", str(src), "--truth", str(valid / "atoms.xyz"), "--json"],
                    [src], [])


@FUZZ
@given(c=corruptions, pixel=st.one_of(st.sampled_from(["0.1", "1"]), texts), ndim=st.sampled_from(["2", "3"]))
def test_fuzz_mrc(valid, tmp_path, c, pixel, ndim):
    d = fresh(tmp_path, "mrc")
    src = d / "in.mrc"
    src.write_bytes(corrupt((valid / "stack.mrc").read_bytes(), *c))
    out = d / "m.h5"
    check_invariant(d, ["import-mrc", str(src), "--angles", "0,60,120", "--pixel-size", pixel,
                        "--ndim", ndim, "-q", "-o", str(out)], [src], [out])


@settings(FUZZ, max_examples=12)
@given(c=corruptions)
def test_fuzz_checkpoint(valid, tmp_path, c):
    d = fresh(tmp_path, "ck")
    ck = d / "run.ckpt"
    ck.write_bytes(corrupt((valid / "run.ckpt").read_bytes(), *c))
    out = d / "r.xyz"
    # the checkpoint is an output too (rewritten by the resumed run): only the tilt series
    # must stay as it was
    check_invariant(d, ["reconstruct", str(valid / "tilt.h5"), "-q", "-o", str(out),
                        "--checkpoint", str(ck), "--resume", "--option", "hops=1",
                        "--option", "restarts=1", "--option", "lattice_start=false",
                        "--option", "time_limit=5"], [valid / "tilt.h5"], [out])
