"""Image formation of measured data: spec section 3 attributes, estimates, refinement, AET frames."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from atomtomo import imaging
from atomtomo.configuration import Configuration
from atomtomo.errors import InputError
from atomtomo.forward import ForwardModel
from atomtomo.geometry import Geometry
from atomtomo.solvers.imaging_fit import (initial_imaging, needs_fit, reconstruct_imaging,
                                          refine_imaging)
from atomtomo.solvers.problem import Reconstruction
from atomtomo.tiltseries import (aet_frames, aet_rotation, aet_to_spec, import_aet,
                                 read_tiltseries, simulate_tiltseries, write_tiltseries)

SIGMA, SCALE = 0.12, 500.0


def cluster_2d(seed=0):
    """Nine atoms on a jittered square lattice of spacing 1."""
    rng = np.random.default_rng(seed)
    pos = np.array([[i, j] for i in range(-1, 2) for j in range(-1, 2)], float)
    return Configuration(pos + rng.normal(0, 0.03, pos.shape), ["X"] * 9, {})


def cluster_3d():
    pos = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    return Configuration(pos + np.array([0.05, -0.03, 0.02]), ["X"] * 8, {})


def series_2d(noise=0.01, unknown=("all",), seed=1):
    geo = Geometry.from_angles(2, np.radians([0, 40, 100]), 60, 0.1)
    return simulate_tiltseries(cluster_2d(), geo, SIGMA, relative_noise=noise, seed=seed,
                               intensity_scale=SCALE, background="auto", unknown=unknown,
                               box=[[-2.5, 2.5], [-2.5, 2.5]], bond_length=1.0)


def series_3d(noise=0.01):
    geo = Geometry.from_angles(3, np.radians([-50, 10, 60]), (24, 24), 0.125)
    return simulate_tiltseries(cluster_3d(), geo, SIGMA, relative_noise=noise, seed=2,
                               intensity_scale=SCALE, background="auto", unknown=("all",),
                               box=[[-1.5, 1.5]] * 3, bond_length=1.0)


# --------------------------------------------------------------------------------------------
# the attributes of spec section 3
# --------------------------------------------------------------------------------------------
def test_auto_attributes_round_trip(tmp_path):
    ts = series_2d()
    assert (ts.atom_sigma, ts.intensity_scale, ts.background) == ("auto", "auto", "auto")
    assert ts.imaging_unknowns == ["atom_sigma", "intensity_scale", "background"]
    write_tiltseries(ts, tmp_path / "a.h5")
    back = read_tiltseries(tmp_path / "a.h5")
    assert (back.atom_sigma, back.intensity_scale, back.background) == ("auto", "auto", "auto")
    assert back.attrs["true_atom_sigma"] == SIGMA and back.attrs["true_intensity_scale"] == SCALE
    bg = back.extra["ground_truth/background"]
    assert bg.shape == back.projections.shape and bg.min() >= 0
    assert needs_fit(back)


def test_known_values_round_trip(tmp_path):
    ts = series_2d(unknown=())
    assert ts.atom_sigma == SIGMA and ts.intensity_scale == SCALE and ts.background == "auto"
    write_tiltseries(ts, tmp_path / "k.h5")
    back = read_tiltseries(tmp_path / "k.h5")
    assert back.intensity_scale == SCALE and back.atom_sigma == SIGMA


@pytest.mark.parametrize("attrs, match", [
    ({"intensity_scale": "sometimes"}, "intensity_scale"),
    ({"intensity_scale": -2.0}, "intensity_scale"),
    ({"atom_sigma": "AUTOMATIC"}, "atom_sigma"),
    ({"background": "yes"}, "background"),
    ({"background": 1.0}, "background"),
])
def test_bad_attributes_are_one_line_errors(tmp_path, attrs, match):
    path = tmp_path / "b.h5"
    write_tiltseries(series_2d(unknown=()), path)
    with h5py.File(path, "a") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
    with pytest.raises(InputError, match=match) as err:
        read_tiltseries(path)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# the model layer
# --------------------------------------------------------------------------------------------
def test_background_basis_is_non_negative_partition():
    for shape in [(7,), (5, 6)]:
        b = imaging.background_basis(shape, 2)
        assert b.min() >= 0 and np.allclose(b.sum(axis=1), 1)


@pytest.mark.parametrize("make", [series_2d, series_3d])
def test_fit_scale_background_exact_without_noise(make):
    ts = make(noise=0.0)
    truth = ts.ground_truth
    sigma = ts.attrs["true_atom_sigma"]
    parts = ForwardModel(ts.geometry, sigma).project(truth.positions, truth.weights)[None]
    s, bg = imaging.fit_scale_background(ts.projections, parts)
    assert s[0] == pytest.approx(SCALE, rel=1e-3)
    true_bg = ts.extra["ground_truth/background"]
    assert np.max(np.abs(bg - true_bg)) < 1e-3 * true_bg.max()


def test_fit_sigma_recovers_width():
    ts = series_2d(noise=0.01)
    truth = ts.ground_truth

    def parts(sig):
        return ForwardModel(ts.geometry, sig).project(truth.positions, truth.weights)[None]

    sig, s, _ = imaging.fit_sigma(ts.projections, parts, 0.09)
    assert sig == pytest.approx(SIGMA, rel=0.02) and s[0] == pytest.approx(SCALE, rel=0.02)


def test_estimates_from_the_data_alone():
    ts = series_2d(noise=0.01)
    bg = imaging.baseline(ts.projections, degree=1, margin=2.5 * ts.noise_std)
    assert bg.min() >= 0 and np.all(bg <= ts.projections + 2.5 * ts.noise_std + 1e-9)
    signal = ts.projections - bg
    sig = imaging.estimate_sigma(signal, 0.1)
    assert sig == pytest.approx(SIGMA, rel=0.1)
    area = imaging.support_measure(signal, ts.geometry, 1.0)
    assert 9 * 0.6 < area * imaging.PACKING[2] < 9 * 1.6  # about nine atoms' cells
    scale = imaging.estimate_scale(signal, 0.1, sig, expected_count=area * imaging.PACKING[2])
    assert scale == pytest.approx(SCALE, rel=0.2)
    assert imaging.estimate_noise_std(np.random.default_rng(0).normal(0, 2, (4, 500))) == \
        pytest.approx(2, rel=0.1)


def _regular_polygon(n_directions, radius=1.0):
    """Half-spaces of the 2 n-gon circumscribing a circle of ``radius``: ``A x <= b``."""
    t = np.pi * np.arange(n_directions) / n_directions
    e = np.c_[np.cos(t), np.sin(t)]
    return np.r_[e, -e], np.full(2 * n_directions, radius)


def test_inscribed_ellipsoid_of_a_square_a_rectangle_and_a_box():
    A, b = _regular_polygon(2, 1.0)  # the square [-1, 1]^2
    assert imaging.inscribed_ellipsoid_measure(A, b) == pytest.approx(np.pi, rel=1e-3)
    b_rect = np.array([2.0, 0.5, 2.0, 0.5])  # [-2, 2] x [-0.5, 0.5]: the ellipse 2 x 0.5
    assert imaging.inscribed_ellipsoid_measure(A, b_rect) == pytest.approx(np.pi, rel=1e-3)
    A3 = np.r_[np.eye(3), -np.eye(3)]
    assert imaging.inscribed_ellipsoid_measure(A3, np.ones(6)) == pytest.approx(4 * np.pi / 3,
                                                                                 rel=1e-3)
    # more directions: the polygon approaches its inscribed disk
    assert imaging.inscribed_ellipsoid_measure(*_regular_polygon(3)) == pytest.approx(np.pi,
                                                                                       rel=1e-3)
    assert np.isnan(imaging.inscribed_ellipsoid_measure(A, -np.ones(4)))  # empty


def test_support_measure_kinds_bracket_the_sample():
    ts = series_2d(noise=0.0)
    signal = np.asarray(ts.projections, float)
    inner = imaging.support_measure(signal, ts.geometry, 1.0)
    outer = imaging.support_measure(signal, ts.geometry, 1.0, kind="hull")
    assert 0 < inner <= outer
    with pytest.raises(InputError):
        imaging.support_measure(signal, ts.geometry, 1.0, kind="box")


def test_estimate_scale_with_a_count_range_picks_the_quantum_inside():
    rng = np.random.default_rng(1)
    # columns of 1-4 atoms of intensity 2 on a 1D detector, well apart
    ncol = rng.integers(1, 5, 12)
    x = np.arange(600) * 0.1
    sig = 0.3
    signal = sum(2.0 * n * np.exp(-(x - 2 - 4.5 * i) ** 2 / (2 * sig ** 2))
                 / (sig * np.sqrt(2 * np.pi)) for i, n in enumerate(ncol))[None]
    total = ncol.sum()
    assert imaging.estimate_scale(signal, 0.1, sig, expected_count=(0.8 * total, 1.3 * total)) \
        == pytest.approx(2.0, rel=0.05)
    # the half quantum fits the comb as well; a range around twice the count selects it
    assert imaging.estimate_scale(signal, 0.1, sig, expected_count=(1.8 * total, 2.4 * total)) \
        == pytest.approx(1.0, rel=0.05)


# --------------------------------------------------------------------------------------------
# the alternation, with a stand-in solver that returns the true atoms
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [series_2d, series_3d])
def test_alternation_recovers_parameters(make):
    ts = make()
    calls = []

    def solve(problem, previous):
        calls.append(previous is None)
        return Reconstruction(ts.ground_truth.copy(), {"method": "truth"})

    recon, problem = reconstruct_imaging(ts, solve)
    info = recon.info
    assert calls[0] and not any(calls[1:])  # a full solve, then polishes from the last atoms
    assert info["atom_sigma"] == pytest.approx(SIGMA, rel=0.03)
    assert info["intensity_scale"] == pytest.approx(SCALE, rel=0.03)
    true_bg = ts.extra["ground_truth/background"]
    assert info["background_mean"] == pytest.approx(true_bg.mean(), rel=0.05)
    assert problem.sigma == pytest.approx(SIGMA, rel=0.03)
    # the corrected data are in model units: one atom integrates to one
    d = ts.ndim
    mass = problem.data.reshape(len(problem.data), -1).sum(axis=1) * 0.1 ** 0
    assert np.median(mass * ts.geometry.pixel_size ** (d - 1)) == pytest.approx(
        ts.ground_truth.n_atoms, rel=0.05)


def test_scale_trials_leave_a_wrong_quantum_that_does_not_explain_the_data(monkeypatch):
    """A stand-in solver that, below 0.9 of the true scale, returns the truth plus four atoms
    around it at the bond length (too many for the quantum) and whose polish keeps its atoms:
    the residual exposes it, and a fresh trial at a larger scale, where it finds the truth,
    is kept."""
    import atomtomo.solvers.imaging_fit as fit

    ts = series_2d()
    extra = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, -2.0], [0.0, 2.0]])  # not crowded
    wrong = Configuration(np.r_[ts.ground_truth.positions, extra], ["X"] * 13, {})
    start = initial_imaging(ts)
    low = start.intensity_scale * 0.75
    monkeypatch.setattr(fit, "initial_imaging", lambda *a, **k: fit.Imaging(
        start.sigma, low, dict(start.species_weights), start.background, dict(start.sources)))
    scales = []

    def solve(problem, previous):
        scale = float(ts.noise_std / problem.noise_std)  # the problem is in units of 1 / s
        scales.append(scale)
        atoms = ts.ground_truth if scale > 0.9 * SCALE else wrong
        # a polish keeps its atoms: the wrong count stays (the self-consistent fixed point)
        return Reconstruction((atoms if previous is None else previous).copy(),
                              {"method": "stand-in"})

    recon, _ = reconstruct_imaging(ts, solve, rounds=2)
    assert recon.configuration.n_atoms == 9, recon.info["imaging_history"]
    assert recon.info["intensity_scale"] == pytest.approx(SCALE, rel=0.05)
    assert any(h["stage"].startswith("scale trial") for h in recon.info["imaging_history"])


def test_scale_trials_not_run_when_the_atoms_explain_the_data():
    ts = series_2d()
    calls = []

    def solve(problem, previous):
        calls.append(previous)
        return Reconstruction(ts.ground_truth.copy(), {"method": "truth"})

    recon, _ = reconstruct_imaging(ts, solve, rounds=2)
    assert len(calls) <= 2
    assert not any(h["stage"].startswith("scale trial") for h in recon.info["imaging_history"])


def test_refine_keeps_known_parameters_fixed():
    ts = series_2d(unknown=("background",))
    params = initial_imaging(ts)
    assert params.sigma == SIGMA and params.intensity_scale == SCALE
    new = refine_imaging(ts, ts.ground_truth, params, {"background"})
    assert new.sigma == SIGMA and new.intensity_scale == SCALE
    assert new.background is not None


def test_per_species_intensities():
    pos = np.array([[x, y] for x in (-1.0, 0.0, 1.0) for y in (-1.0, 0.0, 1.0)])
    config = Configuration(pos, ["A"] * 5 + ["B"] * 4, {"A": 1.0, "B": 0.5})
    geo = Geometry.from_angles(2, np.radians([10, 50, 100]), 60, 0.1)
    # the data say B is 0.7 of A, the file says 0.5
    true = Configuration(pos, ["A"] * 5 + ["B"] * 4, {"A": 1.0, "B": 0.7})
    ts = simulate_tiltseries(true, geo, SIGMA, intensity_scale=SCALE, unknown=("intensity_scale",))
    ts.species_weights = {"A": 1.0, "B": 0.5}
    params = initial_imaging(ts)
    new = refine_imaging(ts, config, params, {"intensity_scale"})
    assert new.species_weights["B"] / new.species_weights["A"] == pytest.approx(0.7, rel=1e-3)


# --------------------------------------------------------------------------------------------
# AET Euler angles -> detector_frames
# --------------------------------------------------------------------------------------------
def test_aet_frames_theta_only_is_single_axis():
    theta = np.array([-60.0, -5.0, 0.0, 33.0])
    euler = np.column_stack([np.zeros(4), theta, np.zeros(4)])
    ref = Geometry.from_angles(3, np.radians(theta), (4, 4), 1.0).directions
    np.testing.assert_allclose(aet_frames(euler), ref, atol=1e-12)
    r = aet_rotation(3.0, 20.0, -7.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


def _write_aet(path, euler, model, shape=(40, 30), pixel=0.5, sigma=0.6):
    """A synthetic AET file made the AET code's way: rotate the model by R^T, sum along z."""
    stack = []
    det = Geometry.from_directions(3, [[[1, 0, 0], [0, 1, 0]]], (shape[1], shape[0]), pixel)
    model_fm = ForwardModel(det, sigma)
    for phi, theta, psi in euler:
        rotated = model @ aet_rotation(phi, theta, psi)  # rows: (R^T X)^T
        img = model_fm.project(rotated, np.ones(len(model)))[0]  # (dim2 = Y, dim1 = X)
        stack.append(img.T)  # MATLAB (rows = X, cols = Y)
    with h5py.File(path, "w") as f:
        f.create_dataset("projections_rows_cols_angles", data=np.stack(stack, axis=2))
        f.create_dataset("euler_angles_deg_phi_theta_psi", data=np.asarray(euler, float))
        f.attrs["pixel_size_angstrom"] = pixel


def test_import_aet_keeps_phi_and_psi(tmp_path):
    rng = np.random.default_rng(3)
    model = rng.uniform(-5, 5, size=(12, 3))
    euler = np.column_stack([rng.uniform(-2, 2, 5), np.linspace(-60, 60, 5), rng.uniform(-2, 2, 5)])
    _write_aet(tmp_path / "aet.h5", euler, model)
    ts = import_aet(tmp_path / "aet.h5")
    assert ts.atom_sigma == "auto" and ts.intensity_scale == "auto" and ts.background == "auto"
    assert not ts.geometry.single_axis
    ours = aet_to_spec(model)
    with_frames = ForwardModel(ts.geometry, 0.6).project(ours, np.ones(12))
    theta_only = import_aet(tmp_path / "aet.h5", euler_frames=False)
    assert "ignored_euler_deg" in theta_only.attrs
    without = ForwardModel(theta_only.geometry, 0.6).project(ours, np.ones(12))
    err_frames = np.linalg.norm(with_frames - ts.projections)
    err_theta = np.linalg.norm(without - ts.projections)
    assert err_frames < 1e-6 * np.linalg.norm(ts.projections) < err_theta
    # round trip through the file format keeps the frames
    write_tiltseries(ts, tmp_path / "t.h5")
    np.testing.assert_allclose(read_tiltseries(tmp_path / "t.h5").geometry.directions,
                               ts.geometry.directions)


def test_import_aet_theta_only_equals_single_axis(tmp_path):
    model = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, -1.0]])
    euler = np.column_stack([np.zeros(3), [-40.0, 0.0, 40.0], np.zeros(3)])
    _write_aet(tmp_path / "aet.h5", euler, model)
    ts = import_aet(tmp_path / "aet.h5", atom_sigma=0.6)
    assert ts.geometry.single_axis and ts.atom_sigma == 0.6
    fit = ForwardModel(ts.geometry, 0.6).project(aet_to_spec(model), np.ones(2))
    np.testing.assert_allclose(fit, ts.projections, atol=1e-9 * ts.projections.max())


def test_crowding_flags_too_many_atoms():
    from atomtomo.solvers.imaging_fit import CROWDED, crowding

    grid = np.array([[i, j] for i in range(5) for j in range(5)], float)
    assert crowding(Configuration(grid, ["X"] * 25, {}), 1.0) == pytest.approx(1.0)
    dense = np.array([[i, j] for i in np.arange(0, 5, 0.7) for j in np.arange(0, 5, 0.7)])
    assert crowding(Configuration(dense, ["X"] * len(dense), {}), 1.0) < CROWDED
    assert crowding(Configuration(grid, ["X"] * 25, {}), None) is None


def test_peak_widths_of_close_columns_are_not_narrowed_by_their_neighbours():
    # columns 4 sigma apart (a hexagonal lattice seen across a lattice vector): each fitting
    # window holds the shoulders of the neighbours
    sig, delta = 1.0, 0.8
    x = np.arange(120) * delta
    centres = 20 + 4 * sig * np.arange(12)
    signal = sum(np.exp(-(x - c) ** 2 / (2 * sig ** 2)) for c in centres)[None]
    widths, _ = imaging.peak_widths(signal, delta, sigma_guess=sig)
    assert len(widths) >= 8
    assert np.median(widths) == pytest.approx(sig, rel=0.05)
