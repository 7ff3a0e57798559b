"""Structure analysis (OVITO) of phantoms with known defects; 2D says what it analyses."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo.cli import cli
from atomtomo.configuration import Configuration, read_xyz, write_xyz
from atomtomo.phantoms import build_phantom
from atomtomo.structure import analyse, have_ovito

needs_ovito = pytest.mark.skipif(not have_ovito(), reason="OVITO is not installed")


@needs_ovito
def test_twin_and_stacking_fault_are_told_apart():
    twin = analyse(build_phantom("twin-particle", {}, seed=0)).summary
    assert twin["twin_planes"] == 1 and twin["stacking_faults"] == 0 and twin["hcp"] > 0
    sf = analyse(build_phantom("stacking-fault-particle", {}, seed=0)).summary
    assert sf["stacking_faults"] == 1 and sf["twin_planes"] == 0


@needs_ovito
def test_vacancies_and_interstitials_against_the_fitted_lattice():
    cfg = build_phantom("fcc-particle", {"size": 5, "n_vacancies": 3}, seed=2)
    s = analyse(cfg, cfg.info["bond_length"]).summary
    assert s["vacancies"] == 3 and s["interstitials"] == 0
    cfg = build_phantom("fcc-particle", {"size": 5, "n_interstitials": 2}, seed=2)
    s = analyse(cfg, cfg.info["bond_length"]).summary
    assert s["interstitials"] == 2 and s["vacancies"] == 0


@needs_ovito
def test_perfect_particle_columns():
    cfg = build_phantom("fcc-particle", {"size": 3}, seed=0)
    result = analyse(cfg)
    st = result.columns["structure"]
    assert set(st) <= {"fcc", "other"} and np.sum(st == "fcc") == 55
    assert result.summary["vacancies"] == 0 and result.summary["surface_atoms"] == 92
    assert result.columns["coordination"].max() == 12


def test_2d_is_coordination_only():
    x, y = np.meshgrid(np.arange(5.0), np.arange(5.0))
    cfg = Configuration(np.column_stack([x.ravel(), y.ravel()]))
    result = analyse(cfg)
    assert "2D" in result.summary["analysed"]
    assert result.summary["surface_atoms"] == 16
    assert result.columns["coordination"].max() == 4


def test_cli_analyse_writes_columns(tmp_path):
    x, y = np.meshgrid(np.arange(3.0), np.arange(3.0))
    src = tmp_path / "a.xyz"
    write_xyz(Configuration(np.column_stack([x.ravel(), y.ravel()])), src)
    out = tmp_path / "b.xyz"
    r = CliRunner().invoke(cli, ["analyse", str(src), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    back = read_xyz(out)
    assert list(back.arrays["coordination"])[4] == 4


@needs_ovito
def test_decahedron_has_five_twin_planes():
    """A multiply twinned particle the phantoms do not build (ASE's Marks decahedron)."""
    from ase.cluster import Decahedron

    atoms = Decahedron("Pt", 5, 2, 0)
    cfg = Configuration(atoms.get_positions(), atoms.get_chemical_symbols())
    s = analyse(cfg).summary
    assert s["twin_planes"] == 5 and s["stacking_faults"] == 0
    assert [layer["layers"] for layer in s["hcp_layers"]] == [1] * 5
