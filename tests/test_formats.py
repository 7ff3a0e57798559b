"""Other tools' formats: EMD tilt series, .mdoc/.rawtlt angle files, MRC densities, extxyz."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo.cli import cli
from atomtomo.configuration import Configuration, read_xyz, write_xyz
from atomtomo.errors import InputError
from atomtomo.formats import (
    gaussian_density,
    read_angle_file,
    read_emd,
    read_tiltseries_any,
    tilt_axis_of_stack,
    write_density_mrc,
    write_emd,
)
from atomtomo.geometry import Geometry
from atomtomo.tiltseries import simulate_tiltseries


def _particle_ts(angles=(-60.0, 0.0, 60.0)):
    rng = np.random.default_rng(0)
    pos = rng.uniform(-2.0, 2.0, size=(6, 3)) * np.array([1.0, 0.5, 1.0])  # not isotropic
    config = Configuration(pos, ["Pt"] * 6)
    geo = Geometry.from_angles(3, np.radians(angles), (16, 20), 0.4)
    return simulate_tiltseries(config, geo, 0.4, length_unit="nm", bond_length=1.0)


def _tomviz_file(path, ts, angle_axis_first=True, units=b"[deg]", name=b"angles"):
    """What tomviz's Python writer puts in an EMD file: (angles, y, x), tilt axis along x."""
    stack = np.transpose(np.asarray(ts.projections), (0, 2, 1))  # rows (tilt axis) -> x = last
    angles = np.degrees(ts.geometry.angles) if units == b"[deg]" else ts.geometry.angles
    with h5py.File(path, "w") as f:
        f.attrs.create("version_major", 0, dtype="uint32")
        g = f.create_group("data/tomography")
        g.attrs.create("emd_group_type", 1, dtype="uint32")
        data = stack if angle_axis_first else np.transpose(stack, (1, 2, 0))
        g.create_dataset("data", data=data)
        dims = [(name, units, angles), (b"y", b"[n_m]", np.arange(stack.shape[1]) * 0.4),
                (b"x", b"[n_m]", np.arange(stack.shape[2]) * 0.4)]
        if not angle_axis_first:
            dims = dims[1:] + dims[:1]
        for k, (n, u, v) in enumerate(dims, start=1):
            d = g.create_dataset(f"dim{k}", data=np.asarray(v, float))
            d.attrs["name"] = [n]  # tomviz's old writer: one-element lists
            d.attrs["units"] = [u]


@pytest.mark.parametrize("first", [True, False])
def test_tomviz_emd_is_read_in_either_axis_order(tmp_path, first):
    ts = _particle_ts()
    path = tmp_path / "tomviz.emd"
    _tomviz_file(path, ts, angle_axis_first=first)
    got = read_emd(path)
    assert got.projections.shape == ts.projections.shape
    np.testing.assert_allclose(got.projections, ts.projections)
    np.testing.assert_allclose(got.geometry.angles, ts.geometry.angles)
    assert got.geometry.pixel_size == pytest.approx(0.4)
    assert got.length_unit == "nm"


def test_emd_angles_in_radians(tmp_path):
    ts = _particle_ts()
    path = tmp_path / "rad.emd"
    _tomviz_file(path, ts, units=b"[rad]", name=b"theta")
    np.testing.assert_allclose(read_emd(path).geometry.angles, ts.geometry.angles)


def test_tilt_axis_found_from_the_data():
    ts = _particle_ts()
    assert tilt_axis_of_stack(ts.projections) == 1
    assert tilt_axis_of_stack(np.transpose(ts.projections, (0, 2, 1))) == 2
    assert tilt_axis_of_stack(ts.projections[:1]) is None


def test_write_emd_round_trip_keeps_atomtomo_fields(tmp_path):
    ts = _particle_ts()
    path = tmp_path / "out.emd"
    write_emd(ts, path)
    with h5py.File(path) as f:
        assert f["data/tomography/dim1"].attrs["units"] == b"[deg]"
        assert f["data/tomography/data"].shape == (3, 20, 16)
    got = read_tiltseries_any(path)
    np.testing.assert_allclose(got.projections, ts.projections)
    assert got.atom_sigma == pytest.approx(ts.atom_sigma)
    assert got.bond_length == pytest.approx(1.0)


def test_emd_volume_is_refused(tmp_path):
    path = tmp_path / "vol.emd"
    with h5py.File(path, "w") as f:
        g = f.create_group("data/tomography")
        g.create_dataset("data", data=np.zeros((4, 4, 4)))
        for k in (1, 2, 3):
            g.create_dataset(f"dim{k}", data=np.arange(4.0)).attrs["units"] = b"[n_m]"
    with pytest.raises(InputError, match="volume, not a tilt series"):
        read_emd(path)


def test_cli_reads_emd_and_writes_emd(tmp_path):
    ts = _particle_ts()
    src = tmp_path / "tomviz.emd"
    _tomviz_file(src, ts)
    runner = CliRunner()
    out = tmp_path / "s.h5"
    r = runner.invoke(cli, ["import-emd", str(src), "--sigma", "0.4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["info", str(src), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_angles"] == 3
    atoms = tmp_path / "a.xyz"
    write_xyz(Configuration(np.zeros((1, 3)) + [0, 0, 1.0], ["Pt"]), atoms)
    emd = tmp_path / "p.emd"
    r = runner.invoke(cli, ["project", str(atoms), "--angles", "0,30", "--detector", "8x8",
                            "--pixel-size", "0.5", "--sigma", "0.5", "-o", str(emd)])
    assert r.exit_code == 0, r.output
    assert read_emd(emd).projections.shape == (2, 8, 8)


def test_mdoc_and_rawtlt(tmp_path):
    mdoc = tmp_path / "stack.mdoc"
    mdoc.write_text("PixelSpacing = 1.2\n[T = SerialEM]\n\n[ZValue = 1]\nTiltAngle = 0.02\n"
                    "StagePosition = 1 2\n\n[ZValue = 0]\nTiltAngle = -59.98\n\n"
                    "[ZValue = 2]\nExposureTime = 1\nTiltAngle = 60.01\n")
    assert read_angle_file(mdoc) == [-59.98, 0.02, 60.01]
    raw = tmp_path / "stack.rawtlt"
    raw.write_text("-60\n\n 0.5\n60\n")
    assert read_angle_file(raw) == [-60.0, 0.5, 60.0]
    bad = tmp_path / "bad.mdoc"
    bad.write_text("[ZValue = 0]\nExposureTime = 1\n")
    with pytest.raises(InputError, match="no TiltAngle"):
        read_angle_file(bad)
    with pytest.raises(InputError, match="not a number"):
        (tmp_path / "x.tlt").write_text("1\nabc\n")
        read_angle_file(tmp_path / "x.tlt")


def test_gaussian_density_mass_and_mrc(tmp_path):
    import mrcfile

    config = Configuration(np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0]]), ["Pt", "Pd"],
                           {"Pt": 1.0, "Pd": 0.5})
    rho, axes = gaussian_density(config, 0.3)
    cell = np.prod([a[1] - a[0] for a in axes])
    assert rho.sum() * cell == pytest.approx(1.5, rel=1e-3)
    path = tmp_path / "d.mrc"
    write_density_mrc(rho, axes, path, length_unit="nm")
    with mrcfile.open(path) as m:
        assert m.data.shape == rho.shape[::-1]
        assert float(m.voxel_size.x) == pytest.approx(10 * (axes[0][1] - axes[0][0]), rel=1e-5)


def test_extxyz_is_read_by_ase_without_surprises(tmp_path):
    from ase.io import read

    config = Configuration(np.array([[0.0, 0.0], [1.0, 0.0]]),
                           arrays={"structure": np.array(["fcc", "other"]),
                                   "coordination": np.array([3, 4])})
    path = tmp_path / "r.xyz"
    name = 'we"ird\nname \\ x.h5'
    write_xyz(config, path, energy=2.5, source=name, method="adcg")
    atoms = read(path)
    assert atoms.calc is None  # energy= would have become a calculator
    assert atoms.info["prior_energy"] == 2.5
    assert atoms.info["source"] == 'we"ird?name \\ x.h5'
    assert list(atoms.arrays["structure"]) == ["fcc", "other"]
    back = read_xyz(path)
    assert back.info["energy"] == 2.5 and back.ndim == 2
    assert list(back.arrays["coordination"]) == [3, 4]


def test_project_species_weights(tmp_path):
    atoms = tmp_path / "a.xyz"
    write_xyz(Configuration(np.array([[0.0, 0.0], [1.0, 0.0]]), ["Pt", "Pd"]), atoms)
    runner = CliRunner()
    out = tmp_path / "p.h5"
    base = ["project", str(atoms), "--angles", "0", "--detector", "16", "--pixel-size", "0.25",
            "--sigma", "0.2", "-o", str(out)]
    r = runner.invoke(cli, base + ["--species-weights", "Pt=1,Pd=0.41"])
    assert r.exit_code == 0, r.output
    with h5py.File(out) as f:
        assert json.loads(f.attrs["species_weights"]) == {"Pt": 1.0, "Pd": 0.41}
    r = runner.invoke(cli, base + ["--species-weights", '{"Pt": 1, "Pd": 0.5}'])
    assert r.exit_code == 0, r.output
    for bad in ("Pt=0", "Pt=x", "Au=1", "{bad"):
        r = runner.invoke(cli, base + ["--species-weights", bad])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, (bad, r.output)


def test_phantom_truth_file_can_be_projected(tmp_path):
    """The box of a phantom's atom file (a JSON list on the comment line) is read back as one."""
    runner = CliRunner()
    truth = tmp_path / "t.xyz"
    r = runner.invoke(cli, ["simulate", "--phantom", "fcc-particle", "--param", "size=2",
                            "--angles", "0", "--detector", "16x16", "--write-truth", str(truth),
                            "-o", str(tmp_path / "t.h5")])
    assert r.exit_code == 0, r.output
    assert np.asarray(read_xyz(truth).info["box"]).shape == (3, 2)
    r = runner.invoke(cli, ["project", str(truth), "--angles", "0,45", "--detector", "8x8",
                            "--pixel-size", "1", "--sigma", "0.5", "-o", str(tmp_path / "p.emd")])
    assert r.exit_code == 0, r.output


def test_info_on_atoms_and_bad_files(tmp_path):
    runner = CliRunner()
    atoms = tmp_path / "a.xyz"
    write_xyz(Configuration(np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), ["Pt", "Pd"]), atoms,
              method="adcg")
    r = runner.invoke(cli, ["info", str(atoms), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["species"] == {"Pd": 1, "Pt": 1} and s["nearest_neighbour"]["median"] == 2.0
    bad = tmp_path / "bad.emd"
    bad.write_text("garbage")
    r = runner.invoke(cli, ["import-emd", str(bad), "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1


def test_ovito_reads_the_atom_file(tmp_path):
    pytest.importorskip("ovito")
    from ovito.io import import_file

    path = tmp_path / "r.xyz"
    config = Configuration(np.array([[0.0, 0.0], [1.0, 0.0]]),  # 2D: the dummy species X
                           arrays={"confidence": np.array([1.0, 0.5])})
    write_xyz(config, path, energy=1.0, source='a "b"\nc.h5')
    data = import_file(str(path)).compute()
    assert data.particles.count == 2
    assert [t.name for t in data.particles.particle_types.types] == ["X"]
    np.testing.assert_allclose(data.particles["confidence"], [1.0, 0.5])
    assert data.attributes["prior_energy"] == 1.0


def test_mrc_stack_with_mdoc_is_read_directly(tmp_path):
    import mrcfile

    ts = _particle_ts()
    stack = tmp_path / "tilt.mrc"
    with mrcfile.new(stack) as m:
        m.set_data(np.asarray(ts.projections, np.float32))
        m.voxel_size = 0.4
    runner = CliRunner()
    r = runner.invoke(cli, ["info", str(stack)])
    assert r.exit_code == 2 and "no angle file beside the stack" in r.output
    sections = "".join(f"[ZValue = {k}]\nTiltAngle = {a}\n\n"
                       for k, a in enumerate(np.degrees(ts.geometry.angles)))
    (tmp_path / "tilt.mrc.mdoc").write_text("PixelSpacing = 0.4\n\n" + sections)
    got = read_tiltseries_any(stack)
    np.testing.assert_allclose(got.geometry.angles, ts.geometry.angles, atol=1e-9)
    np.testing.assert_allclose(got.projections, ts.projections, rtol=1e-6, atol=1e-6)
    r = runner.invoke(cli, ["info", str(stack), "--json"])
    assert r.exit_code == 0 and "tilt.mrc.mdoc" in json.loads(r.output)["format"]


def test_reconstruct_density_and_analyse(tmp_path):
    import mrcfile

    ts = _particle_ts()
    h5 = tmp_path / "p.h5"
    from atomtomo.tiltseries import write_tiltseries

    write_tiltseries(ts, h5)
    runner = CliRunner()
    out, dens = tmp_path / "r.xyz", tmp_path / "d.mrc"
    r = runner.invoke(cli, ["reconstruct", str(h5), "--method", "sirt", "--max-iterations", "5",
                            "--density", str(dens), "--analyse", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with mrcfile.open(dens) as m:
        assert m.data.ndim == 3 and float(m.data.max()) > 0
    assert "coordination" in read_xyz(out).arrays
    r = runner.invoke(cli, ["density", str(out), "--tilt-series", str(h5), "-o", str(dens)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["density", str(out), "--tilt-series", str(h5), "-o", str(h5)])
    assert r.exit_code == 2 and "refusing to overwrite an input" in r.output
