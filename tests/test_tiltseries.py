"""Tilt-series files (spec section 3): round trips, validation of every field, MRC/TIFF import."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from atomtomo import Configuration, ForwardModel, Geometry
from atomtomo.errors import InputError
from atomtomo.tiltseries import (
    TiltSeries,
    import_mrc,
    import_tiff,
    read_tiltseries,
    simulate_tiltseries,
    write_tiltseries,
)

ANGLES = np.radians([-61.0, 3.5, 47.0])
POS_2D = np.array([[0.1, -0.2], [-0.15, 0.05], [0.2, 0.2]])
POS_3D = np.array([[0.1, -0.2, 0.05], [-0.15, 0.05, 0.1], [0.2, 0.1, -0.1]])


def assert_one_line(exc, *fragments):
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def nothing_left(directory, keep=()):
    """No file (temporary or final) other than ``keep`` in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name not in keep) == []


# -- round trips -------------------------------------------------------------------------------------
def full_tiltseries(ndim, general=False, float32=False):
    if ndim == 2:
        if general:
            phi = ANGLES + 0.01
            geo = Geometry.from_directions(2, np.stack([np.cos(phi), np.sin(phi)], 1), 29, 0.03)
        else:
            geo = Geometry.from_angles(2, ANGLES, 29, 0.03)
        pos = POS_2D
    else:
        if general:
            q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3, 3)))[0]
            geo = Geometry.from_directions(3, np.swapaxes(q, 1, 2)[:, :2], (11, 17), 0.04)
        else:
            geo = Geometry.from_angles(3, ANGLES, (11, 17), 0.04)
        pos = POS_3D
    truth = Configuration(pos, ["Pt", "Pd", "Pt"], {"Pt": 1.0, "Pd": 0.55})
    proj = ForwardModel(geo, 0.05).project(truth.positions, truth.weights)
    if float32:
        proj = proj.astype(np.float32)
    box = [[-0.4, 0.4]] * ndim
    return TiltSeries(projections=proj, geometry=geo, atom_sigma=0.05,
                      species_weights={"Pt": 1.0, "Pd": 0.55}, box=np.array(box), bond_length=0.28,
                      length_unit="angstrom", noise_model="gaussian", noise_std=0.001,
                      ground_truth=truth, attrs={"instrument": "Titan", "dose_total": 1e5},
                      extra={"calibration/dark": np.arange(4.0)})


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("general", [False, True], ids=["angles", "general"])
@pytest.mark.parametrize("float32", [False, True], ids=["f64", "f32"])
def test_round_trip(tmp_path, ndim, general, float32):
    ts = full_tiltseries(ndim, general, float32)
    path = tmp_path / "t.h5"
    write_tiltseries(ts, path)
    back = read_tiltseries(path)
    assert back.projections.dtype == (np.float32 if float32 else np.float64)
    np.testing.assert_array_equal(back.projections, ts.projections)
    np.testing.assert_array_equal(back.geometry.directions, ts.geometry.directions)
    assert back.geometry.detector_shape == ts.geometry.detector_shape
    assert back.geometry.pixel_size == ts.geometry.pixel_size
    np.testing.assert_allclose(back.angles, ts.angles, atol=1e-15)
    assert (back.atom_sigma, back.bond_length, back.length_unit) == (0.05, 0.28, "angstrom")
    assert (back.noise_model, back.noise_std) == ("gaussian", 0.001)
    assert back.species_weights == {"Pt": 1.0, "Pd": 0.55}
    np.testing.assert_array_equal(back.box, ts.box)
    np.testing.assert_array_equal(back.ground_truth.positions, ts.ground_truth.positions)
    assert list(back.ground_truth.species) == ["Pt", "Pd", "Pt"]
    np.testing.assert_array_equal(back.ground_truth.weights, [1.0, 0.55, 1.0])
    assert back.attrs["instrument"] == "Titan" and back.attrs["dose_total"] == 1e5
    np.testing.assert_array_equal(back.extra["calibration/dark"], np.arange(4.0))
    with h5py.File(path, "r") as f:
        name = "detector_directions" if ndim == 2 else "detector_frames"
        assert (name in f) == general
        other = "detector_frames" if ndim == 2 else "detector_directions"
        assert other not in f
        assert json.loads(f.attrs["species_weights"]) == {"Pt": 1.0, "Pd": 0.55}
    # A second round trip changes nothing.
    write_tiltseries(back, tmp_path / "t2.h5")
    again = read_tiltseries(tmp_path / "t2.h5")
    np.testing.assert_array_equal(again.projections, back.projections)
    assert again.attrs == back.attrs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.h5", "t2.h5"]


def test_minimal_file_defaults(tmp_path):
    path = write_raw(tmp_path / "m.h5", drop=("length_unit", "atom_sigma"))
    ts = read_tiltseries(path)
    assert ts.atom_sigma is None and ts.species_weights is None and ts.box is None
    assert ts.length_unit == "" and ts.ground_truth is None
    np.testing.assert_allclose(ts.domain, ts.geometry.default_box())
    np.testing.assert_allclose(ts.domain, [[-0.48, 0.48]] * 2)  # 32 pixels of 0.03


def test_unknown_fields_are_ignored(tmp_path):
    path = write_raw(tmp_path / "u.h5", attrs={"microscope": "ARM200F"})
    with h5py.File(path, "a") as f:
        f.create_group("notes").create_dataset("log", data=np.arange(3))
        f["notes"].attrs["who"] = "me"
    ts = read_tiltseries(path)
    assert ts.attrs["microscope"] == "ARM200F"
    np.testing.assert_array_equal(ts.extra["notes/log"], np.arange(3))


# -- every validation error --------------------------------------------------------------------------
def good_projections(n_angles=3, n_det=32):
    geo = Geometry.from_angles(2, ANGLES[:n_angles], n_det, 0.03)
    return ForwardModel(geo, 0.04).project(POS_2D)


def write_raw(path, *, data=None, angles=None, drop=(), attrs=None, datasets=None):
    """A 2D tilt-series file written with h5py alone; ``attrs``/``datasets`` override/add."""
    base = {"atomtomo_format": "tiltseries", "format_version": 1, "ndim": 2,
            "pixel_size": 0.03, "length_unit": "nm", "atom_sigma": 0.04}
    base.update(attrs or {})
    sets = {"projections": good_projections() if data is None else data,
            "angles": ANGLES if angles is None else angles}
    sets.update(datasets or {})
    with h5py.File(path, "w") as f:
        for name, value in sets.items():
            if name not in drop:
                f.create_dataset(name, data=value)
        for key, value in base.items():
            if key not in drop:
                f.attrs[key] = value
    return path


NAN_DATA = good_projections().copy()
NAN_DATA[1, 4] = np.nan
INF_DATA = good_projections().copy()
INF_DATA[0, 0] = np.inf
STR = h5py.string_dtype()

BAD_FILES = {
    # name: (write_raw keyword arguments, fragment of the message)
    "no-format": ({"drop": ("atomtomo_format",)}, "atomtomo_format"),
    "other-format": ({"attrs": {"atomtomo_format": "sinogram"}}, "atomtomo_format"),
    "no-version": ({"drop": ("format_version",)}, "format_version"),
    "version-2": ({"attrs": {"format_version": 2}}, "format_version"),
    "version-text": ({"attrs": {"format_version": "one"}}, "format_version"),
    "no-ndim": ({"drop": ("ndim",)}, "ndim"),
    "ndim-4": ({"attrs": {"ndim": 4}}, "ndim"),
    "ndim-3-for-2d-data": ({"attrs": {"ndim": 3}}, "shape"),
    "no-projections": ({"drop": ("projections",)}, "projections"),
    "projections-1d": ({"data": np.ones(32)}, "shape"),
    "projections-empty": ({"data": np.ones((3, 0))}, "empty"),
    "projections-nan": ({"data": NAN_DATA}, "NaN"),
    "projections-inf": ({"data": INF_DATA}, "NaN or infinite"),
    "projections-text": ({"data": np.array([["a", "b"]] * 3, dtype=object)}, "projections"),
    "projections-complex": ({"data": good_projections() * (1 + 1j)}, "real"),
    "no-angles": ({"drop": ("angles",)}, "angles"),
    "angle-count": ({"angles": ANGLES[:2]}, "2 angles for 3 projections"),
    "angles-nan": ({"angles": np.array([0.1, np.nan, 0.3])}, "angles"),
    "angles-2d": ({"angles": np.zeros((3, 2))}, "angles"),
    "angles-text": ({"angles": np.array(["a", "b", "c"], dtype=object)}, "angles"),
    "no-pixel-size": ({"drop": ("pixel_size",)}, "pixel_size"),
    "zero-pixel-size": ({"attrs": {"pixel_size": 0.0}}, "pixel_size"),
    "negative-pixel-size": ({"attrs": {"pixel_size": -0.03}}, "pixel_size"),
    "nan-pixel-size": ({"attrs": {"pixel_size": np.nan}}, "pixel_size"),
    "text-pixel-size": ({"attrs": {"pixel_size": "0.03nm"}}, "pixel_size"),
    "length-unit-number": ({"attrs": {"length_unit": 3.0}}, "length_unit"),
    "negative-sigma": ({"attrs": {"atom_sigma": -0.04}}, "atom_sigma"),
    "zero-sigma": ({"attrs": {"atom_sigma": 0.0}}, "atom_sigma"),
    "nan-sigma": ({"attrs": {"atom_sigma": np.nan}}, "atom_sigma"),
    "negative-bond": ({"attrs": {"bond_length": -1.0}}, "bond_length"),
    "negative-noise": ({"attrs": {"noise_std": -0.1}}, "noise_std"),
    "noise-model-number": ({"attrs": {"noise_model": 1.0}}, "noise_model"),
    "weights-not-json": ({"attrs": {"species_weights": "{Pt: 1"}}, "species_weights"),
    "weights-not-object": ({"attrs": {"species_weights": "[1, 2]"}}, "species_weights"),
    "weights-negative": ({"attrs": {"species_weights": '{"Pt": -1}'}}, "Pt"),
    "weights-text": ({"attrs": {"species_weights": '{"Pt": "heavy"}'}}, "Pt"),
    "box-shape": ({"attrs": {"box": np.zeros(4)}}, "box"),
    "box-order": ({"attrs": {"box": np.array([[0.5, -0.5], [-0.5, 0.5]])}}, "box"),
    "box-nan": ({"attrs": {"box": np.array([[np.nan, 0.5], [-0.5, 0.5]])}}, "box"),
    "directions-shape": ({"datasets": {"detector_directions": np.ones((3, 3))}},
                         "detector directions"),
    "directions-count": ({"datasets": {"detector_directions": np.eye(2)}}, "entries for 3"),
    "directions-not-unit": ({"datasets": {"detector_directions": np.ones((3, 2))}}, "unit"),
    "directions-nan": ({"datasets": {"detector_directions": np.full((3, 2), np.nan)}}, "NaN"),
    "frames-in-2d": ({"datasets": {"detector_frames": np.zeros((3, 2, 3))}}, "detector_frames"),
    "truth-shape": ({"datasets": {"ground_truth/positions": np.zeros((3, 3))}},
                    "ground_truth/positions"),
    "truth-nan": ({"datasets": {"ground_truth/positions": np.full((3, 2), np.nan)}}, "NaN"),
    "truth-species-count": ({"datasets": {"ground_truth/positions": POS_2D,
                                          "ground_truth/species": np.array(["Pt"], dtype=object)}},
                            "ground_truth/species"),
    "species-without-positions": ({"datasets": {
        "ground_truth/species": np.array(["Pt", "Pt", "Pt"], dtype=object)}}, "ground_truth"),
    "truth-not-group": ({"datasets": {"ground_truth": np.zeros(3)}}, "ground_truth"),
    "projections-group": ({"drop": ("projections",),
                           "datasets": {"projections/inner": np.zeros((3, 32))}}, "projections"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_every_bad_field_is_one_line_input_error(tmp_path, case):
    kwargs, fragment = BAD_FILES[case]
    path = write_raw(tmp_path / f"{case}.h5", **kwargs)
    with pytest.raises(InputError) as exc:
        read_tiltseries(path)
    msg = assert_one_line(exc, fragment)
    assert str(path) in msg  # names the file


def test_bad_3d_frames(tmp_path):
    geo = Geometry.from_angles(3, ANGLES, (5, 7), 0.05)
    data = ForwardModel(geo, 0.05).project(POS_3D)
    cases = {
        "frames-not-orthonormal": ({"detector_frames": np.ones((3, 2, 3))}, "orthonormal"),
        "directions-in-3d": ({"detector_directions": np.ones((3, 2))}, "detector_directions"),
        "frames-shape": ({"detector_frames": np.ones((3, 3, 3))}, "detector directions"),
    }
    for name, (datasets, fragment) in cases.items():
        path = write_raw(tmp_path / f"{name}.h5", data=data, attrs={"ndim": 3}, datasets=datasets)
        with pytest.raises(InputError) as exc:
            read_tiltseries(path)
        assert_one_line(exc, fragment)


def test_missing_directory_and_non_hdf5(tmp_path):
    with pytest.raises(InputError) as exc:
        read_tiltseries(tmp_path / "nothing.h5")
    assert_one_line(exc, "not found")
    with pytest.raises(InputError) as exc:
        read_tiltseries(tmp_path)
    assert_one_line(exc, "not a file")
    text = tmp_path / "text.h5"
    text.write_text("projections = [1, 2, 3]\n")
    with pytest.raises(InputError) as exc:
        read_tiltseries(text)
    assert_one_line(exc, "not an HDF5 file")
    truncated = tmp_path / "truncated.h5"
    write_raw(tmp_path / "whole.h5")
    truncated.write_bytes((tmp_path / "whole.h5").read_bytes()[:1000])
    with pytest.raises(InputError) as exc:
        read_tiltseries(truncated)
    assert_one_line(exc, str(truncated))


# -- the writer ------------------------------------------------------------------------------------
def test_writer_refuses_inconsistent_series_and_leaves_nothing(tmp_path):
    ts = full_tiltseries(2)
    bad = [
        ("projections", np.zeros((2, 29)), "shape"),
        ("projections", np.full((3, 29), np.nan), "NaN"),
        ("atom_sigma", -1.0, "atom_sigma"),
        ("box", np.array([[0.0, -1.0], [0.0, 1.0]]), "box"),
        ("species_weights", {"Pt": 0.0}, "Pt"),
        ("noise_std", -1.0, "noise_std"),
        ("ground_truth", Configuration(POS_3D), "3D"),
    ]
    for field_name, value, fragment in bad:
        broken = TiltSeries(**{**ts.__dict__, field_name: value})
        with pytest.raises(InputError) as exc:
            write_tiltseries(broken, tmp_path / "w.h5")
        assert_one_line(exc, fragment)
        assert nothing_left(tmp_path)
    with pytest.raises(InputError) as exc:
        write_tiltseries(ts, tmp_path / "no" / "such" / "dir.h5")
    assert_one_line(exc, "does not exist")


def test_writer_interrupted_leaves_no_file(tmp_path, monkeypatch):
    ts = full_tiltseries(2)
    real = h5py.Group.create_dataset
    calls = []

    def failing(self, name, *args, **kwargs):
        calls.append(name)
        if name == "angles":
            raise KeyboardInterrupt
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        write_tiltseries(ts, tmp_path / "i.h5")
    assert calls and nothing_left(tmp_path)


# -- simulation ----------------------------------------------------------------------------------------
def test_simulate_records_noise_and_truth():
    truth = Configuration(POS_2D, ["Pt", "Pd", "Pt"], {"Pd": 0.5},
                          info={"box": [[-0.5, 0.5]] * 2, "bond_length": 0.3})
    geo = Geometry.from_angles(2, ANGLES, 40, 0.025)
    clean = ForwardModel(geo, 0.03).project(truth.positions, truth.weights)
    ts = simulate_tiltseries(truth, geo, 0.03)
    np.testing.assert_array_equal(ts.projections, clean)
    assert (ts.noise_model, ts.noise_std) == ("none", 0.0)
    assert ts.species_weights == {"Pt": 1.0, "Pd": 0.5} and ts.bond_length == 0.3
    np.testing.assert_array_equal(ts.box, [[-0.5, 0.5]] * 2)
    assert ts.ground_truth is not truth and np.array_equal(ts.ground_truth.positions, POS_2D)
    g = simulate_tiltseries(truth, geo, 0.03, noise_std=0.01, seed=3)
    assert g.noise_model == "gaussian" and g.noise_std == 0.01
    np.testing.assert_array_equal(g.projections,
                                  simulate_tiltseries(truth, geo, 0.03, noise_std=0.01,
                                                      seed=3).projections)
    rel = simulate_tiltseries(truth, geo, 0.03, relative_noise=0.02, seed=3)
    assert rel.noise_std == pytest.approx(0.02 * clean.max())
    both = simulate_tiltseries(truth, geo, 0.03, dose=1e4, noise_std=0.01, seed=3)
    assert both.noise_model == "poisson+gaussian" and both.noise_std > 0.01
    with pytest.raises(InputError):
        simulate_tiltseries(truth, geo, 0.03, noise_std=0.01, relative_noise=0.01)
    with pytest.raises(InputError):
        simulate_tiltseries(Configuration(POS_3D), geo, 0.03)


# -- MRC and TIFF import -------------------------------------------------------------------------------
def stack_3d():
    geo = Geometry.from_angles(3, ANGLES, (9, 13), 0.5)
    return ForwardModel(geo, 0.6).project(POS_3D * 8).astype(np.float32)


def test_import_mrc_3d(tmp_path):
    mrcfile = pytest.importorskip("mrcfile")
    data = stack_3d()
    path = tmp_path / "stack.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 0.5
    ts = import_mrc(path, ANGLES)  # pixel size from the header (angstrom)
    np.testing.assert_array_equal(ts.projections, data)
    assert ts.geometry.detector_shape == (9, 13) and ts.geometry.pixel_size == 0.5
    assert ts.length_unit == "angstrom"
    np.testing.assert_allclose(ts.angles, ANGLES)
    ts = import_mrc(path, ANGLES, 0.05, length_unit="nm", atom_sigma=0.06, bond_length=0.28)
    assert (ts.geometry.pixel_size, ts.length_unit, ts.atom_sigma, ts.bond_length) == (
        0.05, "nm", 0.06, 0.28)
    write_tiltseries(ts, tmp_path / "s.h5")
    np.testing.assert_array_equal(read_tiltseries(tmp_path / "s.h5").projections, data)


@pytest.mark.filterwarnings("ignore:Data array contains NaN:RuntimeWarning")
def test_import_mrc_2d_sinogram_and_errors(tmp_path):
    mrcfile = pytest.importorskip("mrcfile")
    sino = good_projections().astype(np.float32)
    path = tmp_path / "sino.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(sino)
    ts = import_mrc(path, ANGLES, 0.03, ndim=2)
    assert ts.ndim == 2 and ts.geometry.detector_shape == (32,)
    np.testing.assert_array_equal(ts.projections, sino)
    with pytest.raises(InputError) as exc:
        import_mrc(path, ANGLES[:2], 0.03, ndim=2)
    assert_one_line(exc, "2 angles for 3 images")
    with pytest.raises(InputError) as exc:
        import_mrc(path, ANGLES, 0.03, ndim=3)
    assert_one_line(exc, "stack")
    with pytest.raises(InputError) as exc:
        import_mrc(path, ANGLES, ndim=2)  # header voxel size 0: no pixel size
    assert_one_line(exc, "pixel size")
    with pytest.raises(InputError) as exc:
        import_mrc(path, ANGLES, -1.0, ndim=2)
    assert_one_line(exc, "pixel size")
    with pytest.raises(InputError) as exc:
        import_mrc(path, [0.1, np.nan, 0.2], 0.03, ndim=2)
    assert_one_line(exc, "NaN")
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"\x00\x01" * 10)
    with pytest.raises(InputError) as exc:
        import_mrc(junk, ANGLES, 0.03)
    assert_one_line(exc, "MRC")
    with pytest.raises(InputError) as exc:
        import_mrc(tmp_path / "missing.mrc", ANGLES, 0.03)
    assert_one_line(exc, "not found")
    nan_stack = tmp_path / "nan.mrc"
    bad = stack_3d()
    bad[0, 0, 0] = np.nan
    with mrcfile.new(nan_stack) as mrc:
        mrc.set_data(bad)
    with pytest.raises(InputError) as exc:
        import_mrc(nan_stack, ANGLES, 0.5)
    assert_one_line(exc, "NaN")


def test_import_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    data = stack_3d()
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, data, photometric="minisblack")  # 3 pages
    pages = tmp_path / "pages.tif"
    with tifffile.TiffWriter(pages) as tif:  # one page written at a time, as acquired
        for image in data:
            tif.write(image, photometric="minisblack")
    np.testing.assert_array_equal(import_tiff(pages, ANGLES, 0.5).projections, data)
    ts = import_tiff(plain, ANGLES, 0.5, length_unit="nm")
    np.testing.assert_array_equal(ts.projections, data)
    assert ts.geometry.detector_shape == (9, 13) and ts.length_unit == "nm"
    with pytest.raises(InputError) as exc:
        import_tiff(plain, ANGLES)  # no pixel size in a plain TIFF
    assert_one_line(exc, "pixel size")
    # An ImageJ stack with a calibrated pixel size (0.25 nm = 4 pixels per nm).
    imagej = tmp_path / "imagej.tif"
    tifffile.imwrite(imagej, data, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "nm"})
    ts = import_tiff(imagej, ANGLES)
    assert ts.geometry.pixel_size == pytest.approx(0.25) and ts.length_unit == "nm"
    np.testing.assert_array_equal(ts.projections, data)
    with pytest.raises(InputError) as exc:
        import_tiff(plain, ANGLES[:2], 0.5)
    assert_one_line(exc, "2 angles for 3 images")
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(InputError) as exc:
        import_tiff(junk, ANGLES, 0.5)
    assert_one_line(exc, "TIFF")
    with pytest.raises(InputError) as exc:
        import_tiff(tmp_path / "none.tif", ANGLES, 0.5)
    assert_one_line(exc, "not found")
    mixed = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(mixed) as tif:  # pages of different sizes are not a tilt stack
        tif.write(data[0], photometric="minisblack")
        tif.write(data[1, :5], photometric="minisblack")
    with pytest.raises(InputError) as exc:
        import_tiff(mixed, ANGLES[:2], 0.5)
    assert_one_line(exc, "mixed.tif")
    # One image for one angle; a 2D sinogram.
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, data[0], photometric="minisblack")
    assert import_tiff(single, ANGLES[:1], 0.5).projections.shape == (1, 9, 13)
    sino = tmp_path / "sino.tif"
    tifffile.imwrite(sino, good_projections().astype(np.float32), photometric="minisblack")
    assert import_tiff(sino, ANGLES, 0.03, ndim=2).geometry.detector_shape == (32,)


# -- measured AET data (MATLAB layout) -------------------------------------------------------
AET_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aet" / "ta_film_area1_measured_raw.h5"


@pytest.mark.skipif(not AET_FILE.is_file(), reason="../shared/data/aet is not available")
def test_import_aet_measured_ta_film(tmp_path):
    from atomtomo.tiltseries import import_aet

    ts = import_aet(AET_FILE, atom_sigma=0.5, bond_length=2.86)
    assert ts.geometry.data_shape == (46, 61, 131)
    assert np.degrees(ts.angles).min() == pytest.approx(-63.0, abs=0.01)
    assert ts.length_unit == "angstrom" and ts.geometry.pixel_size == pytest.approx(0.3216)
    # Single-axis tilt about y: each image's row profile (sum over u) is the same at every angle.
    rows = ts.projections.sum(axis=2)
    rows = rows / rows.sum(axis=1, keepdims=True)
    assert np.mean(np.std(rows, axis=0) / np.mean(rows, axis=0)) < 0.1
    write_tiltseries(ts, tmp_path / "ta.h5")
    assert read_tiltseries(tmp_path / "ta.h5").geometry.data_shape == (46, 61, 131)


def test_import_aet_rejects_other_files(tmp_path):
    import h5py

    from atomtomo.tiltseries import import_aet

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["projections_rows_cols_angles"] = np.zeros((4, 5, 3), np.float32)
    with pytest.raises(InputError, match="euler_angles_deg_phi_theta_psi"):
        import_aet(path)
    with pytest.raises(InputError, match="not found"):
        import_aet(tmp_path / "none.h5")
