"""The forward model against spec section 2: an independent reference, derivatives, adjoints,
the mass identity, symmetries, truncation, and a pixel-based projector (astra).

The reference below is written from the spec's text alone (plain loops over angles and atoms,
scipy's normal CDF); it uses no atomtomo code. ``atomtomo project`` is compared with it through
click's CliRunner and once through a real subprocess, and the files it writes are read with h5py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr

import atomtomo.forward as forward_module
from atomtomo import ForwardModel, Geometry
from atomtomo.cli import cli

# -- the spec, independently ---------------------------------------------------------------------
# Pixel j of an n-pixel detector with pixel width D has centre c_j = (j - (n - 1) / 2) D and records
# the pixel average of the projected Gaussian: B(t) = [Phi((t + D/2)/s) - Phi((t - D/2)/s)] / D.
#   2D: s = x cos(th) + y sin(th)             p[a, j]    = sum_i w_i B(c_j - s_i)
#   3D: u = x cos(th) + z sin(th), v = y       p[a, r, c] = sum_i w_i B(c_c - u_i) B(c_r - v_i)
# General geometry: s = x . e (2D), u = x . e_u, v = x . e_v (3D).


def spec_centres(n, delta):
    return np.array([(j - (n - 1) / 2) * delta for j in range(n)])


def spec_B(t, sigma, delta):
    return (ndtr((t + delta / 2) / sigma) - ndtr((t - delta / 2) / sigma)) / delta


def spec_directions_2d(angles):
    return [np.array([math.cos(th), math.sin(th)]) for th in angles]


def spec_frames_3d(angles):
    return [(np.array([math.cos(th), 0.0, math.sin(th)]), np.array([0.0, 1.0, 0.0]))
            for th in angles]


def spec_project_2d(positions, weights, directions, n, delta, sigma):
    c = spec_centres(n, delta)
    p = np.zeros((len(directions), n))
    for a, e in enumerate(directions):
        for x, w in zip(positions, weights):
            s = x[0] * e[0] + x[1] * e[1]
            p[a] += w * spec_B(c - s, sigma, delta)
    return p


def spec_project_3d(positions, weights, frames, shape, delta, sigma):
    n_rows, n_cols = shape
    c_rows, c_cols = spec_centres(n_rows, delta), spec_centres(n_cols, delta)
    p = np.zeros((len(frames), n_rows, n_cols))
    for a, (e_u, e_v) in enumerate(frames):
        for x, w in zip(positions, weights):
            u = float(np.dot(x, e_u))
            v = float(np.dot(x, e_v))
            p[a] += w * np.outer(spec_B(c_rows - v, sigma, delta), spec_B(c_cols - u, sigma, delta))
    return p


def rel_max(a, b) -> float:
    """max |a - b| / max |b|: the relative error of a projection stack."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


ODD_DEG = [-73.3, 11.7, 58.1]

# Atoms chosen so that some land within a sigma of the detector edge, and one partly off it.
ATOMS_2D = np.array([[0.12, -0.31], [-0.27, 0.05], [0.41, 0.22], [0.77, 0.02], [-0.05, 0.79],
                     [-0.6, -0.47], [0.003, 0.0071]])
SPECIES_2D = ["Pt", "Pd", "Pt", "Pt", "Pd", "Pt", "Pd"]
ATOMS_3D = np.array([[0.1, -0.3, 0.2], [-0.25, 0.38, -0.1], [0.33, 0.05, 0.29], [0.68, -0.1, 0.0],
                     [-0.02, 0.41, 0.6], [-0.5, -0.33, -0.4]])
SPECIES_3D = ["Au", "Au", "Ag", "Au", "Ag", "Au"]


def write_xyz_with_ase(path, positions, species, info=None):
    """An atom file written with ase alone (spec section 4: z = 0 for 2D)."""
    from ase import Atoms
    from ase.io import write

    pos3 = np.zeros((len(positions), 3))
    pos3[:, : positions.shape[1]] = positions
    atoms = Atoms(symbols=species, positions=pos3)
    atoms.info.update(info or {})
    write(str(path), atoms, format="extxyz")


def read_xyz_with_ase(path, ndim):
    from ase.io import read

    atoms = read(str(path))
    return atoms.get_positions()[:, :ndim], atoms.get_chemical_symbols()


def project_cli(args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (result.stderr, result.output, result.exception)
    return result


def python_m(*args, cwd=None):
    env = dict(os.environ)
    env.pop("ATOMTOMO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "atomtomo", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def check_spec_attributes(f, ndim, pixel_size, sigma, angles_deg, positions, species,
                          length_unit=""):
    assert f.attrs["atomtomo_format"] == "tiltseries"
    assert int(f.attrs["format_version"]) == 1
    assert int(f.attrs["ndim"]) == ndim
    assert float(f.attrs["pixel_size"]) == pytest.approx(pixel_size, rel=1e-15)
    unit = f.attrs["length_unit"]
    assert (unit.decode() if isinstance(unit, bytes) else unit) == length_unit
    assert float(f.attrs["atom_sigma"]) == pytest.approx(sigma, rel=1e-15)
    assert f["angles"].dtype == np.float64 and f["angles"].shape == (len(angles_deg),)
    np.testing.assert_allclose(f["angles"][()], np.radians(angles_deg), rtol=0, atol=1e-15)
    assert f["projections"].dtype in (np.float32, np.float64)
    gt = f["ground_truth/positions"]
    assert gt.dtype == np.float64 and gt.shape == (len(positions), ndim)
    np.testing.assert_allclose(gt[()], positions, rtol=0, atol=1e-12)
    sp = f["ground_truth/species"]
    assert sp.shape == (len(species),)
    info = h5py.check_string_dtype(sp.dtype)
    assert info is not None and info.encoding == "utf-8"
    assert list(sp.asstr()[()]) == list(species)


# -- atomtomo project against the spec ------------------------------------------------------------
def test_project_cli_matches_spec_2d(tmp_path):
    delta, sigma, n = 0.043, 0.061, 37
    xyz = tmp_path / "atoms.xyz"
    write_xyz_with_ase(xyz, ATOMS_2D, SPECIES_2D)
    positions, species = read_xyz_with_ase(xyz, 2)  # the positions as the file holds them
    # the detector edge is at 37 * 0.043 / 2 = 0.7955: atoms 3 and 4 reach over it at some angles
    out = tmp_path / "p2.h5"
    project_cli(["project", xyz, "--angles", ",".join(map(str, ODD_DEG)), "--detector", n,
                 "--pixel-size", delta, "--sigma", sigma, "-o", out])
    ref = spec_project_2d(positions, np.ones(len(positions)),
                          spec_directions_2d(np.radians(ODD_DEG)), n, delta, sigma)
    with h5py.File(out, "r") as f:
        check_spec_attributes(f, 2, delta, sigma, ODD_DEG, positions, species)
        p = f["projections"][()]
        assert "detector_directions" not in f
    assert p.shape == (3, n)
    assert rel_max(p, ref) < 1e-6
    edge = np.abs(spec_centres(n, delta)) > 0.6  # the outer pixels see the edge atoms
    assert np.max(ref[:, edge]) > 0.1 * np.max(ref)


def test_project_cli_matches_spec_3d(tmp_path):
    delta, sigma, shape = 0.037, 0.05, (23, 41)
    xyz = tmp_path / "atoms.xyz"
    write_xyz_with_ase(xyz, ATOMS_3D, SPECIES_3D)
    positions, species = read_xyz_with_ase(xyz, 3)
    # rows span +-0.4255 (atoms 1 and 4 sit on that edge), columns +-0.7585
    out = tmp_path / "p3.h5"
    project_cli(["project", xyz, "--angles=" + ",".join(map(str, ODD_DEG)), "--detector", "23x41",
                 "--pixel-size", delta, "--sigma", sigma, "--length-unit", "angstrom", "-o", out])
    ref = spec_project_3d(positions, np.ones(len(positions)),
                          spec_frames_3d(np.radians(ODD_DEG)), shape, delta, sigma)
    with h5py.File(out, "r") as f:
        check_spec_attributes(f, 3, delta, sigma, ODD_DEG, positions, species, "angstrom")
        p = f["projections"][()]
    assert p.shape == (3, *shape)
    assert rel_max(p, ref) < 1e-6


def test_project_subprocess_matches_spec(tmp_path):
    """One real run of ``python -m atomtomo project`` (negative first angle, 3D)."""
    delta, sigma, shape = 0.037, 0.05, (23, 41)
    xyz = tmp_path / "atoms.xyz"
    write_xyz_with_ase(xyz, ATOMS_3D, SPECIES_3D)
    positions, _ = read_xyz_with_ase(xyz, 3)
    proc = python_m("project", xyz, "--angles", "-73.3,11.7,58.1", "--detector", "23x41",
                    "--pixel-size", delta, "--sigma", sigma, "-o", tmp_path / "s.h5")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "s.h5", "r") as f:
        p = f["projections"][()]
    ref = spec_project_3d(positions, np.ones(len(positions)),
                          spec_frames_3d(np.radians(ODD_DEG)), shape, delta, sigma)
    assert rel_max(p, ref) < 1e-6


def test_project_cli_species_weights(tmp_path):
    """Species weights given in the atom file scale each atom and are recorded (spec section 3)."""
    delta, sigma, n = 0.043, 0.061, 37
    xyz = tmp_path / "atoms.xyz"
    weights = {"Pt": 1.0, "Pd": 0.6}
    write_xyz_with_ase(xyz, ATOMS_2D, SPECIES_2D, {"species_weights": json.dumps(weights)})
    positions, species = read_xyz_with_ase(xyz, 2)
    out = tmp_path / "w.h5"
    project_cli(["project", xyz, "--angles", "-73.3,11.7,58.1", "--detector", n,
                 "--pixel-size", delta, "--sigma", sigma, "-o", out])
    w = np.array([weights[s] for s in species])
    ref = spec_project_2d(positions, w, spec_directions_2d(np.radians(ODD_DEG)), n, delta, sigma)
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["species_weights"]) == weights
        assert rel_max(f["projections"][()], ref) < 1e-6


def test_general_directions_2d_match_spec():
    rng = np.random.default_rng(3)
    phi = rng.uniform(-np.pi, np.pi, 4)
    dirs = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    geo = Geometry.from_directions(2, dirs, 37, 0.043)
    w = rng.uniform(0.5, 2.0, len(ATOMS_2D))
    p = ForwardModel(geo, 0.061).project(ATOMS_2D, w)
    ref = spec_project_2d(ATOMS_2D, w, list(dirs), 37, 0.043, 0.061)
    assert rel_max(p, ref) < 1e-6
    # A direction given as an angle gives the same projection as the single-axis geometry.
    single = ForwardModel(Geometry.from_angles(2, phi, 37, 0.043), 0.061).project(ATOMS_2D, w)
    assert rel_max(p, single) < 1e-12


def random_frames(rng, n):
    """Orthonormal pairs (e_u, e_v), not about the y axis."""
    q = np.linalg.qr(rng.standard_normal((n, 3, 3)))[0]
    return np.swapaxes(q, 1, 2)[:, :2, :]


def test_general_frames_3d_match_spec():
    rng = np.random.default_rng(4)
    frames = random_frames(rng, 3)
    geo = Geometry.from_directions(3, frames, (23, 41), 0.037)
    assert not geo.single_axis
    w = rng.uniform(0.5, 2.0, len(ATOMS_3D))
    p = ForwardModel(geo, 0.05).project(ATOMS_3D, w)
    ref = spec_project_3d(ATOMS_3D, w, [(f[0], f[1]) for f in frames], (23, 41), 0.037, 0.05)
    assert rel_max(p, ref) < 1e-6


# -- fixtures for the model tests ------------------------------------------------------------------
def model_2d(general=False, sigma=0.061):
    if general:
        phi = np.radians([-73.3, 11.7, 58.1, 133.0])
        geo = Geometry.from_directions(2, np.stack([np.cos(phi), np.sin(phi)], 1), 37, 0.043)
    else:
        geo = Geometry.from_angles(2, np.radians(ODD_DEG), 37, 0.043)
    return ForwardModel(geo, sigma)


def model_3d(general=False, shape=(23, 41)):
    if general:
        geo = Geometry.from_directions(3, random_frames(np.random.default_rng(5), 3), shape, 0.037)
    else:
        geo = Geometry.from_angles(3, np.radians(ODD_DEG), shape, 0.037)
    return ForwardModel(geo, 0.05)


MODELS = {
    "2d": lambda: (model_2d(), ATOMS_2D),
    "2d-directions": lambda: (model_2d(general=True), ATOMS_2D),
    "3d": lambda: (model_3d(), ATOMS_3D),
    "3d-frames": lambda: (model_3d(general=True), ATOMS_3D),
}


@pytest.fixture(params=[True, False], ids=["compiled", "numpy"])
def kernels(request, monkeypatch):
    """Run a test with the numba kernels and again with the numpy reference path."""
    if not request.param:
        monkeypatch.setattr(forward_module, "_window_kernel", None)
        monkeypatch.setattr(forward_module, "_kernels_3d", None)
    elif forward_module._window_kernel is None:
        pytest.skip("numba is not installed")
    return request.param


# -- derivatives -----------------------------------------------------------------------------------
def central_difference(f, x, h):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("case", list(MODELS))
def test_gradient_matches_finite_differences(case, kernels):
    model, pos = MODELS[case]()
    rng = np.random.default_rng(7)
    w = rng.uniform(0.5, 2.0, len(pos))
    r = rng.standard_normal(model.geometry.data_shape)
    gx, gw = model.gradient(pos, w, r)
    h = 1e-5 * model.sigma

    def inner_x(x):
        return float(np.sum(r * model.project(x, w)))

    def inner_w(v):
        return float(np.sum(r * model.project(pos, v)))

    fd_x = central_difference(inner_x, pos, h)
    fd_w = central_difference(inner_w, w, 1e-3)  # linear in w: exact up to rounding
    scale_x = np.max(np.abs(fd_x))
    assert np.max(np.abs(gx - fd_x)) < 1e-6 * scale_x
    np.testing.assert_allclose(gw, fd_w, rtol=1e-8, atol=1e-10 * np.max(np.abs(fd_w)))
    np.testing.assert_allclose(gw, model.correlate(r, pos), rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", list(MODELS))
def test_data_term_value_and_gradient(case, kernels):
    model, pos = MODELS[case]()
    rng = np.random.default_rng(8)
    w = rng.uniform(0.5, 2.0, len(pos))
    data = model.project(pos + rng.normal(0, 0.02, pos.shape), w)
    value, gx, residual = model.data_term(pos, w, data)
    r = model.project(pos, w) - data
    assert value == pytest.approx(0.5 * float(np.sum(r * r)), rel=1e-12)
    np.testing.assert_allclose(residual, r, rtol=0, atol=1e-13 * np.max(np.abs(data)))
    np.testing.assert_allclose(gx, model.gradient(pos, w, r)[0], rtol=1e-10,
                               atol=1e-12 * np.max(np.abs(gx)))

    def f(x):
        d = model.project(x, w) - data
        return 0.5 * float(np.sum(d * d))

    fd = central_difference(f, pos, 1e-5 * model.sigma)
    assert np.max(np.abs(gx - fd)) < 1e-6 * np.max(np.abs(fd))


def test_data_term_in_chunks_matches(monkeypatch):
    """Large problems go through project + gradient in chunks; same numbers."""
    model, pos = MODELS["3d"]()
    w = np.linspace(0.5, 2, len(pos))
    data = np.random.default_rng(9).random(model.geometry.data_shape)
    whole = model.data_term(pos, w, data)
    monkeypatch.setattr(forward_module, "_CHUNK_ENTRIES", 1)
    assert len(model._chunks(len(pos))) == len(pos)
    chunked = model.data_term(pos, w, data)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-12)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(model.project(pos, w), model.project_dense(pos, w), rtol=0,
                               atol=1e-10 * np.max(model.project(pos, w)))


@pytest.mark.parametrize("case", list(MODELS))
def test_compiled_and_numpy_paths_agree(case, monkeypatch):
    if forward_module._window_kernel is None:
        pytest.skip("numba is not installed")
    model, pos = MODELS[case]()
    rng = np.random.default_rng(10)
    w = rng.uniform(0.5, 2.0, len(pos))
    r = rng.standard_normal(model.geometry.data_shape)
    fast = [model.project(pos, w), *model.gradient(pos, w, r), *model.data_term(pos, w, r)[:2],
            model.self_energy(pos)]
    monkeypatch.setattr(forward_module, "_window_kernel", None)
    monkeypatch.setattr(forward_module, "_kernels_3d", None)
    ref = [model.project(pos, w), *model.gradient(pos, w, r), *model.data_term(pos, w, r)[:2],
           model.self_energy(pos)]
    for a, b in zip(fast, ref):
        assert rel_max(a, b) < 1e-12


# -- adjoints --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(MODELS))
def test_adjointness(case, kernels):
    """<A w, r> = <w, A* r> with A* r = correlate(r, positions)."""
    model, pos = MODELS[case]()
    rng = np.random.default_rng(11)
    for _ in range(3):
        w = rng.standard_normal(len(pos))
        r = rng.standard_normal(model.geometry.data_shape)
        lhs = float(np.sum(model.project(pos, w) * r))
        rhs = float(w @ model.correlate(r, pos))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12 * np.sum(np.abs(r)))
    assert np.array_equal(model.backproject(r, pos), model.correlate(r, pos))


def test_self_energy_is_squared_norm_of_one_atom():
    for case in MODELS:
        model, pos = MODELS[case]()
        norms = [float(np.sum(model.project(p[None]) ** 2)) for p in pos]
        np.testing.assert_allclose(model.self_energy(pos), norms, rtol=1e-12)
        assert model.atom_data_energy() == pytest.approx(
            0.5 * float(np.sum(model.project(np.zeros((1, model.geometry.ndim))) ** 2)), rel=1e-12)


@pytest.mark.parametrize("case", list(MODELS))
def test_design_matrix_columns_are_one_atom_projections(case, kernels, monkeypatch):
    model, pos = MODELS[case]()
    monkeypatch.setattr(forward_module, "_CHUNK_ENTRIES", 50)  # several chunks
    A = model.design_matrix(pos, weight=1.7)
    assert A.shape == (int(np.prod(model.geometry.data_shape)), len(pos))
    for k, p in enumerate(pos):
        np.testing.assert_allclose(A[:, k], model.project(p[None], [1.7]).ravel(), atol=1e-13)


GRID_3D = (np.linspace(-0.7, 0.66, 7), np.linspace(-0.45, 0.43, 5), np.linspace(-0.5, 0.61, 6))


def test_correlate_grid_separable_matches_generic():
    model, _ = MODELS["3d"]()
    assert model.geometry.single_axis
    r = np.random.default_rng(12).standard_normal(model.geometry.data_shape)
    mesh = np.meshgrid(*GRID_3D, indexing="ij")
    points = np.stack([m.ravel() for m in mesh], axis=1)
    fast = model.correlate_grid(r, GRID_3D)
    slow = model.correlate(r, points)
    # dense profiles vs 7-sigma windows: equal up to the truncated tails (~1e-11)
    assert rel_max(fast, slow) < 1e-10
    assert rel_max(model.self_energy_grid(GRID_3D), model.self_energy(points)) < 1e-10


@pytest.mark.parametrize("case", ["2d", "2d-directions", "3d-frames"])
def test_correlate_grid_generic_path(case):
    model, _ = MODELS[case]()
    ndim = model.geometry.ndim
    axes = GRID_3D if ndim == 3 else GRID_3D[:2]
    r = np.random.default_rng(13).standard_normal(model.geometry.data_shape)
    mesh = np.meshgrid(*axes, indexing="ij")
    points = np.stack([m.ravel() for m in mesh], axis=1)
    np.testing.assert_array_equal(model.correlate_grid(r, axes), model.correlate(r, points))
    np.testing.assert_array_equal(model.self_energy_grid(axes), model.self_energy(points))


# -- the mass identity -------------------------------------------------------------------------------
def inside_fraction(t, half, sigma):
    """Mass of N(t, sigma^2) inside [-half, half]."""
    return ndtr((half - t) / sigma) - ndtr((-half - t) / sigma)


def test_mass_identity_2d():
    n, delta, sigma = 37, 0.043, 0.061
    half = n * delta / 2
    angles = np.radians(ODD_DEG)
    model = ForwardModel(Geometry.from_angles(2, angles, n, delta), sigma)
    inner = np.array([[0.1, -0.2], [-0.2, 0.15], [0.2, 0.05]])  # > 7 sigma from the edges
    w = np.array([1.0, 0.6, 2.5])
    p = model.project(inner, w)
    np.testing.assert_allclose(p.sum(axis=1) * delta, w.sum(), rtol=1e-10)
    # An atom on the detector edge at angle 0 (half inside), and one far outside at every angle.
    geo0 = Geometry.from_angles(2, [0.0, np.pi / 2], n, delta)
    p = ForwardModel(geo0, sigma).project([[half, 0.0]], [2.0])
    assert p[0].sum() * delta == pytest.approx(1.0, rel=1e-10)  # half of weight 2
    assert p[1].sum() * delta == pytest.approx(2.0, rel=1e-10)
    assert ForwardModel(geo0, sigma).project([[3.0, 3.0]]).sum() == 0.0
    # Partly off the detector at every odd angle: only the inside part counts.
    edge = np.array([[0.72, 0.31]])
    s = np.cos(angles) * edge[0, 0] + np.sin(angles) * edge[0, 1]
    p = model.project(edge, [1.7])
    np.testing.assert_allclose(p.sum(axis=1) * delta, 1.7 * inside_fraction(s, half, sigma),
                               rtol=1e-10)
    assert np.any(inside_fraction(s, half, sigma) < 0.99)


def test_mass_identity_3d():
    shape, delta, sigma = (23, 41), 0.037, 0.05
    half_rows, half_cols = shape[0] * delta / 2, shape[1] * delta / 2
    angles = np.radians(ODD_DEG)
    model = ForwardModel(Geometry.from_angles(3, angles, shape, delta), sigma)
    inner = np.array([[0.1, -0.02, 0.3], [-0.3, 0.05, 0.0]])  # > 7 sigma from the edges
    w = np.array([1.0, 0.4])
    p = model.project(inner, w)
    np.testing.assert_allclose(p.sum(axis=(1, 2)) * delta**2, w.sum(), rtol=1e-10)
    edge = np.array([[0.7, 0.41, -0.2]])  # near the row edge (y) and the column edge (u)
    u = np.cos(angles) * edge[0, 0] + np.sin(angles) * edge[0, 2]
    frac = inside_fraction(u, half_cols, sigma) * inside_fraction(edge[0, 1], half_rows, sigma)
    p = model.project(edge, [0.9])
    np.testing.assert_allclose(p.sum(axis=(1, 2)) * delta**2, 0.9 * frac, rtol=1e-10)
    assert np.all(frac < 0.9)


# -- symmetries (hypothesis) ---------------------------------------------------------------------------
coords = st.floats(-0.6, 0.6, allow_nan=False)
atoms_2d = st.lists(st.tuples(coords, coords), min_size=1, max_size=4).map(np.array)
atoms_3d = st.lists(st.tuples(coords, coords, coords), min_size=1, max_size=4).map(np.array)
angles_deg = st.lists(st.floats(-180, 180, allow_nan=False), min_size=1, max_size=3)
sigma_px = st.floats(0.4, 3.0)  # sigma in pixels


def shifted_equal(new, old, k, axis, atol):
    """new[..., j] == old[..., j - k] along ``axis`` wherever both exist."""
    n = new.shape[axis]
    if k >= 0:
        a = np.take(new, range(k, n), axis=axis)
        b = np.take(old, range(0, n - k), axis=axis)
    else:
        a = np.take(new, range(0, n + k), axis=axis)
        b = np.take(old, range(-k, n), axis=axis)
    np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@settings(max_examples=40, deadline=None)
@given(atoms_2d, angles_deg, sigma_px, st.integers(-6, 6), st.data())
def test_translation_along_direction_shifts_pixels_2d(pos, angles, spx, k, data):
    delta = 0.04
    geo = Geometry.from_angles(2, np.radians(angles), 41, delta)
    model = ForwardModel(geo, spx * delta)
    a = data.draw(st.integers(0, len(angles) - 1))
    p = model.project(pos)
    q = model.project(pos + k * delta * geo.directions[a])
    shifted_equal(q[a], p[a], k, 0, atol=1e-10 * np.max(p))


@settings(max_examples=40, deadline=None)
@given(atoms_2d, angles_deg, sigma_px, st.floats(-np.pi, np.pi))
def test_rotating_atoms_and_angles_leaves_projections_unchanged(pos, angles, spx, phi):
    delta = 0.04
    theta = np.radians(angles)
    rot = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    p = ForwardModel(Geometry.from_angles(2, theta, 41, delta), spx * delta).project(pos)
    q = ForwardModel(Geometry.from_angles(2, theta + phi, 41, delta),
                     spx * delta).project(pos @ rot.T)
    np.testing.assert_allclose(q, p, rtol=0, atol=1e-10 * np.max(p))


@settings(max_examples=30, deadline=None)
@given(atoms_3d, angles_deg, sigma_px, st.integers(-5, 5), st.integers(-5, 5), st.data())
def test_translation_3d_shifts_rows_and_columns(pos, angles, spx, k, m, data):
    delta = 0.04
    geo = Geometry.from_angles(3, np.radians(angles), (21, 33), delta)
    model = ForwardModel(geo, spx * delta)
    p = model.project(pos)
    atol = 1e-10 * np.max(p)
    # along y: every projection moves by k rows
    q = model.project(pos + [0.0, k * delta, 0.0])
    shifted_equal(q, p, k, 1, atol)
    # along e_u of one angle: that projection moves by m columns
    a = data.draw(st.integers(0, len(angles) - 1))
    q = model.project(pos + m * delta * geo.directions[a, 0])
    shifted_equal(q[a], p[a], m, 1, atol)


@settings(max_examples=40, deadline=None)
@given(st.one_of(atoms_2d, atoms_3d), angles_deg, sigma_px,
       st.lists(st.floats(0.1, 3.0), min_size=4, max_size=4))
def test_truncated_projection_equals_dense(pos, angles, spx, weights):
    ndim = pos.shape[1]
    delta = 0.04
    shape = 41 if ndim == 2 else (19, 27)
    geo = Geometry.from_angles(ndim, np.radians(angles), shape, delta)
    w = np.array(weights[: len(pos)])
    # Default truncation (7 sigma): each atom's dropped tail is below 2.3e-11 of its peak.
    model = ForwardModel(geo, spx * delta)
    dense = model.project_dense(pos, w)
    peak = np.max(model.project_dense(np.zeros((1, ndim)), [w.max()]))  # atoms may be off the detector
    assert np.max(np.abs(model.project(pos, w) - dense)) < 2.5e-11 * len(pos) * peak
    # With a 9-sigma support the dropped tails are below 1e-17: agreement to rounding.
    model9 = ForwardModel(geo, spx * delta, truncation=9.0)
    assert np.max(np.abs(model9.project(pos, w) - dense)) < 1e-12 * peak


# -- a pixel-based projector: astra's 2D CPU strip projector ---------------------------------------
def rasterise(positions, weights, sigma, n_pix, length):
    """Pixel-AVERAGED density of the Gaussian atoms on an n_pix x n_pix grid over
    [-length/2, length/2]^2, exactly (the Gaussian is separable, so each pixel's mean is a
    product of two CDF differences). Row r is at y_r = -length/2 + (r + 1/2) h, increasing."""
    h = length / n_pix
    edges = -length / 2 + h * np.arange(n_pix + 1)
    img = np.zeros((n_pix, n_pix))
    for (x, y), w in zip(positions, weights):
        fx = np.diff(ndtr((edges - x) / sigma))
        fy = np.diff(ndtr((edges - y) / sigma))
        img += w * np.outer(fy, fx) / h**2
    return img


def test_agrees_with_astra_strip_projector():
    """ASTRA's conventions (2D 'parallel' geometry, CPU 'strip' projector), checked here:

    * ray direction (sin t, -cos t), detector axis (cos t, sin t): astra's detector coordinate is
      x cos t + y sin t, the spec's s, with detector pixel j centred at (j - (n - 1)/2) * spacing;
    * but astra stores the image with row 0 at the TOP (y = max_y, rows along -y). An image
      rasterised with rows along +y (as here) must be flipped upside down, or equivalently
      projected at the NEGATED angles: spec angle theta = astra angle -theta for an unflipped
      image;
    * 'strip' weights are the areas of intersection of each detector strip with each image pixel
      divided by the strip width, so a projection is the pixel-averaged line integral of the
      piecewise-constant image (sum of a projection x spacing = image mass), like spec section 2.
    """
    astra = pytest.importorskip("astra")
    n_det, delta, sigma, fine = 64, 1.0 / 64, 1.5 / 64, 6
    length = n_det * delta
    angles = np.radians([-73.3, 11.7, 58.1])
    rng = np.random.default_rng(14)
    r = rng.uniform(0, length / 2 - 6 * sigma, 12)
    phi = rng.uniform(0, 2 * np.pi, 12)
    pos = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    w = rng.uniform(0.5, 1.5, len(pos))
    img = rasterise(pos, w, sigma, n_det * fine, length)
    ours = ForwardModel(Geometry.from_angles(2, angles, n_det, delta), sigma).project(pos, w)

    vol = astra.create_vol_geom(n_det * fine, n_det * fine, -length / 2, length / 2,
                                -length / 2, length / 2)

    def astra_project(image, astra_angles):
        proj = astra.create_proj_geom("parallel", delta, n_det, astra_angles)
        pid = astra.create_projector("strip", proj, vol)
        try:
            sid, sino = astra.create_sino(image.astype(np.float32), pid)
            astra.data2d.delete(sid)
        finally:
            astra.projector.delete(pid)
        return np.asarray(sino, dtype=float)

    flipped = astra_project(img[::-1], angles)
    negated = astra_project(img, -angles)
    for theirs in (flipped, negated):
        assert np.linalg.norm(theirs - ours) / np.linalg.norm(ours) < 0.01
        assert rel_max(theirs, ours) < 0.01
        np.testing.assert_allclose(theirs.sum(axis=1) * delta, w.sum(), rtol=1e-3)
    # Without the mapping the projections at oblique angles disagree badly.
    wrong = astra_project(img, angles)
    assert np.linalg.norm(wrong - ours) / np.linalg.norm(ours) > 0.1


@pytest.mark.parametrize("case", list(MODELS))
def test_no_atoms(case, kernels):
    model, _ = MODELS[case]()
    ndim, shape = model.geometry.ndim, model.geometry.data_shape
    empty = np.zeros((0, ndim))
    r = np.ones(shape)
    assert np.array_equal(model.project(empty), np.zeros(shape))
    gx, gw = model.gradient(empty, [], r)
    assert gx.shape == (0, ndim) and gw.shape == (0,)
    value, gx, residual = model.data_term(empty, [], r)
    assert value == pytest.approx(0.5 * r.size) and gx.shape == (0, ndim)
    np.testing.assert_array_equal(residual, -r)
    assert model.correlate(r, empty).shape == (0,) and model.self_energy(empty).shape == (0,)


def test_bad_arguments():
    from atomtomo.errors import InputError

    model, pos = MODELS["3d"]()
    with pytest.raises(InputError, match="do not match"):
        model.project(pos[:, :2])
    with pytest.raises(InputError, match="data of shape"):
        model.gradient(pos, None, np.zeros((3, 5)))
    with pytest.raises(InputError, match="data of shape"):
        model.data_term(pos, None, np.zeros((2, 23, 41)))
    for sigma in (0.0, -1.0, float("nan"), "wide"):
        with pytest.raises(InputError, match="sigma"):
            ForwardModel(model.geometry, sigma)


def test_geometry_beams_run_along_the_spec_beam():
    """At theta = 0 the beam runs along y in 2D (s = x) and along z in 3D (spec section 2);
    every beam is a unit vector perpendicular to its detector."""
    g2 = Geometry.from_angles(2, np.radians([0.0, 30.0]), 16, 0.1)
    np.testing.assert_allclose(g2.beams[0], [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(np.einsum("ad,ad->a", g2.beams, g2.directions), 0.0, atol=1e-15)
    g3 = Geometry.from_angles(3, np.radians([0.0, 45.0]), (8, 8), 0.1)
    np.testing.assert_allclose(g3.beams[0], [0.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(g3.beams, axis=1), 1.0)
