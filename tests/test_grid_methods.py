"""Grid baselines: the grid operator Psi, SIRT (against astra's), FISTA, simulated annealing,
atom picking, and the three methods through the registry and the command line."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from atomtomo import Configuration, ForwardModel, Geometry
from atomtomo.errors import InputError
from atomtomo.metrics import match_atoms
from atomtomo.solvers import reconstruct
from atomtomo.solvers.grid import (PixelGrid, estimated_atom_count, fista, grid_objective,
                                   grid_operator, sirt)
from atomtomo.solvers.picking import pick_atoms
from atomtomo.solvers.problem import Problem

BOX2 = np.array([[-0.5, 0.5], [-0.5, 0.5]])
INFO_KEYS = {"method", "alpha", "objective", "data_discrepancy", "energy", "iterations",
             "runtime_s", "grid_shape"}


def random_operator_case(rng, ndim, single_axis=True):
    if ndim == 2:
        geo = Geometry.from_angles(2, np.radians([0, 50, 110]), 40, 1 / 32)
        model = ForwardModel(geo, 0.03)
        grid = PixelGrid(BOX2, (20, 23))
    else:
        if single_axis:
            geo = Geometry.from_angles(3, np.radians([-40, 10, 55]), (18, 22), 1 / 16)
        else:
            frames = []
            for a, b in [(0.3, 0.1), (-0.5, 0.4), (1.1, -0.2)]:
                rot = _rotation(a, b)
                frames.append(rot[:2])
            geo = Geometry.from_directions(3, np.array(frames), (18, 22), 1 / 16)
        model = ForwardModel(geo, 0.06)
        grid = PixelGrid([[-0.6, 0.6], [-0.5, 0.5], [-0.6, 0.6]], (9, 8, 10))
    return model, grid


def _rotation(a, b):
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    ry = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
    rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    return rx @ ry


# -- the grid and its operator ----------------------------------------------------------------
def test_pixel_grid_is_cell_centred_row_major_x_first():
    grid = PixelGrid(BOX2, (4, 2))
    pts = grid.points
    assert pts.shape == (8, 2)
    np.testing.assert_allclose(grid.axes[0], [-0.375, -0.125, 0.125, 0.375])
    np.testing.assert_allclose(pts[1], [-0.375, 0.25])  # axis 1 (y) varies fastest
    assert grid.nearest(pts[5] + 0.01) == 5
    with pytest.raises(InputError):
        PixelGrid(BOX2, (4, 0))


@pytest.mark.parametrize("ndim, single_axis", [(2, True), (3, True), (3, False)])
def test_psi_columns_are_atom_projections_and_adjoint(ndim, single_axis):
    rng = np.random.default_rng(1)
    model, grid = random_operator_case(rng, ndim, single_axis)
    psi = grid_operator(model, grid)
    assert (psi.matrix is not None) == (ndim == 2)
    w = rng.random(grid.size)
    # Psi w = the atoms' projection, exactly: a grid image of blobs projects like the atoms.
    expected = model.project(grid.points, w).ravel()
    np.testing.assert_allclose(psi @ w, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    k = int(rng.integers(grid.size))
    np.testing.assert_allclose(psi @ np.eye(grid.size)[k], model.project(grid.points[[k]]).ravel(),
                               atol=1e-12)
    r = rng.standard_normal(psi.shape[0])
    lhs, rhs = float((psi @ w) @ r), float(w @ psi.rmatvec(r))
    assert abs(lhs - rhs) <= 1e-11 * max(abs(lhs), 1.0)
    back = model.correlate_grid(r.reshape(model.geometry.data_shape), grid.axes)
    np.testing.assert_allclose(psi.rmatvec(r), back, atol=1e-10 * np.abs(back).max())


def test_mass_identity_gives_the_atom_count():
    geo = Geometry.from_angles(2, np.radians([0, 60, 120]), 64, 1 / 32)
    model = ForwardModel(geo, 0.02)
    pts = np.random.default_rng(0).uniform(-0.4, 0.4, (7, 2))
    problem = Problem(model, model.project(pts), BOX2)
    assert estimated_atom_count(problem) == pytest.approx(7.0, abs=1e-6)


# -- SIRT -------------------------------------------------------------------------------------
def small_sirt_case(seed=0):
    rng = np.random.default_rng(seed)
    # The detector is no wider than the box, so every detector pixel sees the grid well
    # (astra zeroes ray weights below 1e-6, we only exact zeros).
    geo = Geometry.from_angles(2, np.radians([0, 60, 120]), 30, 1 / 32)
    model = ForwardModel(geo, 0.03)
    grid = PixelGrid(BOX2, (20, 24))
    pts = rng.uniform(-0.4, 0.4, (5, 2))
    data = model.project(pts) + 0.01 * rng.standard_normal(geo.data_shape)
    return model, grid, data


def reference_sirt(A, y, iterations, relaxation=1.0):
    """The textbook iteration on an explicit sparse matrix."""
    A = A.tocsr()
    rows, cols = np.asarray(A.sum(axis=1)).ravel(), np.asarray(A.sum(axis=0)).ravel()
    inv_r = np.where(rows > 0, 1 / np.where(rows > 0, rows, 1), 0)
    inv_c = np.where(cols > 0, 1 / np.where(cols > 0, cols, 1), 0)
    x = np.zeros(A.shape[1])
    for _ in range(iterations):
        x += relaxation * inv_c * (A.T @ (inv_r * (y - A @ x)))
    return x


def test_sirt_is_linear_and_equals_the_reference_iteration():
    model, grid, y1 = small_sirt_case(0)
    _, _, y2 = small_sirt_case(1)
    psi = grid_operator(model, grid)

    def run(y):
        return sirt(Problem(model, y, BOX2), grid, iterations=30, relaxation=1.0, operator=psi)

    x1, x2 = run(y1), run(y2)
    assert x1.shape == grid.shape
    np.testing.assert_allclose(run(2.0 * y1 - 0.5 * y2), 2.0 * x1 - 0.5 * x2,
                               atol=1e-10 * np.abs(x1).max())
    np.testing.assert_allclose(x1.ravel(), reference_sirt(psi.matrix, y1.ravel(), 30),
                               atol=1e-12 * np.abs(x1).max())
    from atomtomo.learn import data as learn_data

    if hasattr(learn_data, "sirt_iterative"):
        ref = learn_data.sirt_iterative(psi.matrix, y1.ravel(), 30)[0]
        np.testing.assert_allclose(x1.ravel(), ref, atol=1e-12 * np.abs(x1).max())
    if hasattr(learn_data, "SirtMap"):  # the learned locator's closed form of the same map
        ref = learn_data.SirtMap(psi.matrix, grid.shape, 30)(y1)
        np.testing.assert_allclose(x1, ref, atol=1e-5 * np.abs(x1).max())


@pytest.mark.parametrize("nonnegative", [False, True])
def test_sirt_agrees_with_astra_sirt(nonnegative):
    astra = pytest.importorskip("astra")
    model, grid, y = small_sirt_case(2)
    psi = grid_operator(model, grid)
    ours = sirt(Problem(model, y, BOX2), grid, iterations=40, relaxation=0.9,
                nonnegative=nonnegative, operator=psi)
    # astra's own 2D CPU SIRT on the same system matrix, through its 'sparse_matrix' projector.
    geo = model.geometry
    mid = astra.matrix.create(psi.matrix.astype(np.float32))
    pg = astra.create_proj_geom("sparse_matrix", 1.0, geo.detector_shape[0], geo.angles, mid)
    vg = astra.create_vol_geom(*grid.shape)
    pid = astra.create_projector("sparse_matrix", pg, vg)
    sid = astra.data2d.create("-sino", pg, y.astype(np.float32))
    rid = astra.data2d.create("-vol", vg, 0.0)
    try:
        cfg = astra.astra_dict("SIRT")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
        cfg["option"] = {"Relaxation": 0.9}
        if nonnegative:
            cfg["option"]["MinConstraint"] = 0.0
        aid = astra.algorithm.create(cfg)
        astra.algorithm.run(aid, 40)
        theirs = astra.data2d.get(rid)
        astra.algorithm.delete(aid)
    finally:
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)
        astra.matrix.delete(mid)
    np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(ours).max())  # astra: float32


def test_psi_agrees_with_astra_strip_projector_on_a_smooth_image():
    """In the limit of small blobs on a fine grid, Psi of a mass image is astra's 'strip'
    projection of the density (astra images: rows = y from the top, columns = x)."""
    astra = pytest.importorskip("astra")
    angles = np.radians([0, 30, 75, 120])
    geo = Geometry.from_angles(2, angles, 48, 1 / 32)
    n = 96
    grid = PixelGrid(BOX2, (n, n))
    h = 1.0 / n
    psi = grid_operator(ForwardModel(geo, h / 4), grid)
    c, s0 = np.array([0.12, -0.07]), 0.08
    density = np.exp(-0.5 * np.sum((grid.points - c) ** 2, axis=1) / s0**2) / (2 * np.pi * s0**2)
    ours = psi @ (density * h * h)
    pid = astra.create_projector("strip", astra.create_proj_geom("parallel", geo.pixel_size, 48,
                                                                 angles),
                                 astra.create_vol_geom(n, n, -0.5, 0.5, -0.5, 0.5))
    try:
        W = astra.OpTomo(pid)  # astra's 2D CPU projector as a scipy LinearOperator
        theirs = W @ density.reshape(n, n).T[::-1].ravel()
    finally:
        astra.projector.delete(pid)
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * ours.max())


# -- FISTA ------------------------------------------------------------------------------------
def test_fista_decreases_its_objective_and_stays_nonnegative():
    model, grid, y = small_sirt_case(3)
    psi = grid_operator(model, grid)
    lam = 0.01 * float(psi.rmatvec(y.ravel()).max())
    values = []
    w, info = fista(psi, y, lam, max_iterations=300, tol=1e-7,
                    callback=lambda it, w, _: values.append(grid_objective(psi, w, y, lam)))
    assert np.all(w >= 0)
    start = grid_objective(psi, np.zeros(grid.size), y, lam)
    assert values[-1] < 0.05 * start
    assert info["objective"] == pytest.approx(values[-1])
    # With adaptive restart the values are monotone up to small ripples, and the end is best.
    assert values[-1] <= min(values) * (1 + 1e-6)
    assert np.all(np.diff(values) <= 1e-3 * start)
    with pytest.raises(InputError):
        fista(psi, y, -1.0)


# -- picking ----------------------------------------------------------------------------------
def test_picking_finds_blobs_with_subpixel_positions_and_species():
    grid = PixelGrid(BOX2, (50, 50))
    h = grid.spacing[0]
    rng = np.random.default_rng(4)
    centres = np.array([[-0.3, -0.3], [-0.3, 0.2], [0.1, -0.25], [0.25, 0.3], [0.05, 0.05]])
    centres = centres + rng.uniform(-0.5, 0.5, centres.shape) * h
    masses = np.array([1.0, 2.0, 1.0, 2.0, 1.0])
    d2 = np.sum((grid.points[:, None, :] - centres[None]) ** 2, axis=2)
    s = 0.8 * h  # a blob of ~one cell, its 3x3 mass ~0.9 of the total
    image = (np.exp(-0.5 * d2 / s**2) * masses / (2 * np.pi * s * s / h**2)).sum(axis=1)
    image += 0.002 * rng.standard_normal(image.shape)  # weak noise: spurious weak maxima
    config = pick_atoms(image.reshape(grid.shape), grid, {"A": 1.0, "B": 2.0}, n_atoms=5,
                        min_separation=0.1)
    assert config.n_atoms == 5
    match = match_atoms(config.positions, centres, 0.1 * h)
    assert match.n_matched == 5
    order = np.argmin(np.sum((config.positions[:, None] - centres[None]) ** 2, axis=2), axis=1)
    assert list(config.species) == ["B" if masses[k] == 2 else "A" for k in order]
    # Without a count, min_mass keeps the 5 blobs and drops the noise maxima.
    free = pick_atoms(image.reshape(grid.shape), grid, {"A": 1.0, "B": 2.0}, min_mass=0.5)
    assert free.n_atoms == 5


# -- the methods ------------------------------------------------------------------------------
def five_atom_problem(noise=0.0, seed=0):
    """5 separated atoms on the points of a 32 x 32 grid, 5 angles: sigma = Delta = 1/32, so
    the default grids of all three methods are this grid."""
    geo = Geometry.from_angles(2, np.radians(np.arange(5) * 36.0 + 7.0), 48, 1 / 32)
    model = ForwardModel(geo, 1 / 32)
    grid = PixelGrid(BOX2, (32, 32))
    idx = np.array([[6, 7], [8, 24], [16, 15], [25, 9], [23, 26]])
    truth = grid.points[np.ravel_multi_index(tuple(idx.T), grid.shape)]
    data = model.project(truth)
    if noise:
        data = data + noise * data.max() * np.random.default_rng(seed).standard_normal(data.shape)
    return Problem(model, data, BOX2, bond_length=0.3), truth, grid


@pytest.mark.parametrize("method", ["sirt", "fista", "annealing"])
def test_methods_recover_five_separated_atoms(method):
    problem, truth, grid = five_atom_problem()
    records = []
    result = reconstruct(problem, method, callback=records.append, seed=3)
    match = match_atoms(result.configuration, truth, 0.5 * grid.spacing[0])
    assert match.f1 == 1.0, (method, result.configuration.positions)
    info = result.info
    assert INFO_KEYS <= set(info)
    assert info["method"] == method and info["energy"] == 0.0 and info["alpha"] == 0.0
    assert info["grid_shape"] == "32x32"
    assert info["objective"] == pytest.approx(problem.data_energy(result.configuration))
    assert info["data_discrepancy"] == pytest.approx(np.sqrt(2 * info["objective"]))
    assert records
    assert {"iteration", "phase", "n_atoms", "objective", "positions"} <= set(records[-1])
    assert records[-1]["positions"].shape == (records[-1]["n_atoms"], 2)


def test_methods_reject_unknown_options_and_bad_values():
    problem, _, _ = five_atom_problem()
    for method in ("sirt", "fista", "annealing"):
        with pytest.raises(InputError, match="valid:.*grid_spacing"):
            reconstruct(problem, method, bogus=1)
    with pytest.raises(InputError, match="relaxation"):
        reconstruct(problem, "sirt", relaxation=2.5)
    with pytest.raises(InputError, match="count"):
        reconstruct(problem, "annealing", count="some")


def test_annealing_is_seeded_and_reproducible():
    problem, _, _ = five_atom_problem(noise=0.05, seed=1)
    opts = {"levels": 20, "moves": 50, "count": "free"}
    a = reconstruct(problem, "annealing", seed=7, **opts)
    b = reconstruct(problem, "annealing", seed=7, **opts)
    np.testing.assert_array_equal(a.configuration.positions, b.configuration.positions)
    assert a.info["objective"] == b.info["objective"]


def test_annealing_on_a_fitted_lattice_finds_the_vacancy():
    geo = Geometry.from_angles(2, np.radians([0, 90, 45]), 80, 1 / 64)
    model = ForwardModel(geo, 0.02)
    ij = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3), indexing="ij"), -1).reshape(-1, 2)
    lattice = 0.15 * ij[np.any(ij != 0, axis=1)] + 0.01  # 5x5 square lattice, centre vacant
    problem = Problem(model, model.project(lattice), BOX2, bond_length=0.15)
    result = reconstruct(problem, "annealing", lattice=True, levels=40)
    assert result.info["lattice"] == "square"
    assert match_atoms(result.configuration, lattice, 0.015).f1 == 1.0
    with pytest.raises(InputError, match="bond length"):
        reconstruct(Problem(model, problem.data, BOX2), "annealing", lattice=True)


def test_methods_run_in_3d():
    geo = Geometry.from_angles(3, np.radians([-50, 0, 50]), (24, 24), 1 / 16)
    model = ForwardModel(geo, 0.07)
    truth = np.array([[-0.4, -0.3, 0.2], [0.35, 0.3, -0.3], [0.0, 0.05, 0.45], [-0.3, 0.4, -0.35]])
    box = np.array([[-0.7, 0.7]] * 3)
    problem = Problem(model, model.project(truth), box, bond_length=0.5)
    for method, opts in [("sirt", {"iterations": 50}), ("fista", {"iterations": 200}),
                         ("annealing", {"levels": 30})]:
        result = reconstruct(problem, method, grid_spacing=0.1, **opts)
        config = result.configuration
        assert config.positions.shape[1] == 3 and config.n_atoms == 4, method
        assert result.info["grid_shape"] == "14x14x14"
        if method == "fista":  # sharp image, 3 angles, 4 atoms: found to a grid cell
            assert match_atoms(config, truth, 0.1).f1 == 1.0


# -- the command line -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sirt", "fista", "annealing"])
def test_cli_reconstruct_writes_a_valid_atom_file(tmp_path, method):
    from atomtomo.cli import cli
    from atomtomo.configuration import read_xyz, write_xyz

    problem, truth, _ = five_atom_problem()
    atoms = tmp_path / "atoms.xyz"
    write_xyz(Configuration(truth), atoms)
    h5, out = tmp_path / "case.h5", tmp_path / "out.xyz"
    runner = CliRunner()
    angles = ",".join(f"{a:g}" for a in np.degrees(problem.geometry.angles))
    res = runner.invoke(cli, ["project", str(atoms), "--angles", angles, "--detector", "48",
                              "--pixel-size", str(1 / 32), "--sigma", str(1 / 32), "--ndim", "2",
                              "-o", str(h5), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["reconstruct", str(h5), "--method", method, "-o", str(out), "-q"])
    assert res.exit_code == 0, (res.output, res.exception)
    config = read_xyz(out, ndim=2)
    assert config.n_atoms == 5
    assert config.info["method"] == method
    import ase.io

    assert len(ase.io.read(str(out))) == 5
    bad = runner.invoke(cli, ["reconstruct", str(h5), "--method", method, "--option", "nope=1",
                              "-o", str(tmp_path / "bad.xyz"), "-q"])
    assert bad.exit_code == 2
    assert "valid:" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.xyz").exists()


@pytest.mark.parametrize("ndim, single_axis", [(2, True), (3, True), (3, False)])
def test_annealing_columns_are_the_operator_columns(ndim, single_axis):
    """The incremental updates of the annealer use exactly the columns of Psi."""
    from atomtomo.solvers import grid_annealing as ga

    rng = np.random.default_rng(5)
    model, grid = random_operator_case(rng, ndim, single_axis)
    cols = ga.SiteColumns.build(model, grid.points)
    psi = grid_operator(model, grid)
    y = rng.standard_normal(psi.shape[0])
    for k in rng.integers(grid.size, size=4):
        r = np.zeros(psi.shape[0])
        ga._axpy(int(k), 2.0, r, cols.iu, cols.bu, cols.iv, cols.bv, cols.n_rows, cols.n_cols)
        column = psi @ np.eye(grid.size)[k]
        np.testing.assert_allclose(r, 2.0 * column, atol=1e-12 * column.max())
        dot = ga._dot(int(k), y, cols.iu, cols.bu, cols.iv, cols.bv, cols.n_rows, cols.n_cols)
        assert dot == pytest.approx(float(column @ y), rel=1e-10, abs=1e-10)
        assert cols.energy[k] == pytest.approx(float(column @ column), rel=1e-12)
