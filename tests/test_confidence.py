"""Per-atom confidence from several reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo.cli import cli
from atomtomo.configuration import Configuration, read_xyz, write_xyz
from atomtomo.confidence import atom_confidence, confidence_from_runs, uncertainty_scores
from atomtomo.errors import InputError
from atomtomo.solvers.problem import Reconstruction


def _grid():
    x, y = np.meshgrid(np.arange(4.0), np.arange(4.0))
    return np.column_stack([x.ravel(), y.ravel()])


def test_confidence_counts_agreeing_runs():
    base = _grid()
    a = Configuration(base, info={"objective": 1.0})
    b = Configuration(base[1:] + 0.02, info={"objective": 2.0})  # lacks atom 0
    c = Configuration(np.vstack([base[2:], [[1.5, 1.5]]]), info={"objective": 3.0})
    out = atom_confidence([b, a, c], bond_length=1.0)
    assert out.info["confidence_reference"] == 1  # the lowest objective
    conf = out.arrays["confidence"]
    assert conf[0] == 0.0 and conf[1] == 0.5 and np.all(conf[2:] == 1.0)
    assert out.info["certain_fraction"] == pytest.approx(14 / 16)
    assert out.info["missed_sites"] == []  # (1.5, 1.5) is in one of two other runs only


def test_missed_sites_and_scores():
    base = _grid()
    ref = Configuration(base[1:], info={"objective": 0.0})
    others = [Configuration(base) for _ in range(2)]
    out = atom_confidence([ref, *others], bond_length=1.0)
    np.testing.assert_allclose(out.info["missed_sites"], [base[0]])
    truth = Configuration(base[:-1])
    s = uncertainty_scores(out, truth, 0.1)
    assert s["wrong"] == 1 and s["uncertain"] == 0 and s["recall"] == 0.0


def test_confidence_needs_two_runs():
    with pytest.raises(InputError, match="at least 2"):
        atom_confidence([Configuration(_grid())])


def test_confidence_from_a_solve_function():
    base = _grid()

    class P:
        bond_length = 1.0

    def solve(problem, seed, **kw):
        pos = base if seed else base[:-1]
        return Reconstruction(Configuration(pos), {"objective": float(seed)})

    out, runs = confidence_from_runs(P(), solve, seeds=[0, 1, 2])
    assert len(runs) == 3 and out.n_atoms == 15 and np.all(out.arrays["confidence"] == 1)


def test_cli_confidence(tmp_path):
    base = _grid()
    paths = []
    for k, pos in enumerate([base, base[1:], base]):
        p = tmp_path / f"r{k}.xyz"
        write_xyz(Configuration(pos), p, objective=float(k))
        paths.append(str(p))
    out = tmp_path / "c.xyz"
    r = CliRunner().invoke(cli, ["confidence", *paths, "--tolerance", "0.1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "93.8% certain" in r.output
    assert read_xyz(out).arrays["confidence"][0] == 0.5
    r = CliRunner().invoke(cli, ["confidence", paths[0], "-o", str(out)])
    assert r.exit_code == 2


def test_reconstruct_confidence_option(tmp_path):
    from atomtomo.geometry import Geometry
    from atomtomo.tiltseries import simulate_tiltseries, write_tiltseries

    truth = Configuration(_grid() * 0.2 - 0.3)
    geo = Geometry.from_angles(2, np.radians([0.0, 60.0, 120.0]), 64, 0.02)
    h5 = tmp_path / "t.h5"
    write_tiltseries(simulate_tiltseries(truth, geo, 0.03, bond_length=0.2), h5)
    out = tmp_path / "r.xyz"
    r = CliRunner().invoke(cli, ["reconstruct", str(h5), "--method", "sirt", "--confidence", "2",
                                 "--max-iterations", "10", "-o", str(out)])
    assert r.exit_code == 0, r.output
    back = read_xyz(out)
    assert "confidence" in back.arrays and back.info["confidence_runs"] == 2
    r = CliRunner().invoke(cli, ["reconstruct", str(h5), "--confidence", "2", "--checkpoint",
                                 str(tmp_path / "c.ckpt"), "-o", str(out)])
    assert r.exit_code == 2
