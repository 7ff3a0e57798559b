"""Plane-by-plane reconstruction of 3D single-axis tilt series (solvers/layers.py)."""

import numpy as np
import pytest

from atomtomo import ForwardModel, Geometry, InputError
from atomtomo.configuration import Configuration
from atomtomo.metrics import match_atoms
from atomtomo.phantoms.registry import build_phantom
from atomtomo.solvers import reconstruct
from atomtomo.solvers.layers import find_layers, plane_problems
from atomtomo.solvers.problem import Problem
from atomtomo.tiltseries import simulate_tiltseries


def particle_problem(truth, angles_deg, *, noise=None, seed=0):
    """A spec-conform simulated tilt series of a 3D particle (sigma = bond / 8, pixel bond / 10)."""
    bond = truth.info["bond_length"]
    box = np.array(truth.info["box"])
    pixel = bond / 10
    n = int(np.ceil((box[0, 1] - box[0, 0]) * np.sqrt(2) / pixel)) + 4
    geo = Geometry.from_angles(3, np.radians(angles_deg), (n, n), pixel)
    ts = simulate_tiltseries(truth, geo, sigma=bond / 8, relative_noise=noise, seed=seed, box=box,
                             bond_length=bond)
    return Problem.from_tiltseries(ts)


@pytest.fixture(scope="module")
def fcc55():
    return build_phantom("fcc-particle", {"size": 2})


def test_planes_of_an_fcc_particle_are_found(fcc55):
    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01)
    layers = find_layers(problem)
    heights = np.unique(np.round(fcc55.positions[:, 1], 6))
    assert layers is not None and len(layers) == len(heights)
    assert np.allclose([l.y for l in layers], heights, atol=0.02 * fcc55.info["bond_length"])
    counts = [np.sum(np.isclose(fcc55.positions[:, 1], h)) for h in heights]
    assert np.allclose([l.atoms for l in layers], counts, atol=0.5)


def test_planes_of_a_large_particle_are_found_above_the_noise_of_its_empty_rows():
    """The 2057-atom particle of the scaling benchmark: its wide detector makes the rows'
    profile noisy (0.16 atoms), and a noise maximum in the empty last row once got a component
    that ran off the rows, which failed the whole detection."""
    truth = build_phantom("fcc-particle", {"size": 8, "shape": "cuboctahedron"})
    box = np.array(truth.info["box"])
    n = int(np.ceil((box[0, 1] - box[0, 0]) / 0.4)) + 4
    geo = Geometry.from_angles(3, np.radians([-60.0, 0.0, 60.0]), (n, n), 0.4)
    ts = simulate_tiltseries(truth, geo, sigma=0.5, relative_noise=0.01, seed=0)
    layers = find_layers(Problem.from_tiltseries(ts))
    heights = np.unique(np.round(truth.positions[:, 1], 6))
    assert layers is not None and len(layers) == len(heights) == 17
    assert sum(l.atoms for l in layers) == pytest.approx(truth.n_atoms, rel=0.01)


def test_a_plane_is_the_2d_projection_of_its_atoms(fcc55):
    problem = particle_problem(fcc55, [-45, 0, 45])
    layers = find_layers(problem)
    middle = layers[len(layers) // 2]
    flat = plane_problems(problem, layers)[len(layers) // 2]
    atoms = fcc55.positions[np.isclose(fcc55.positions[:, 1], middle.y, atol=0.1)][:, [0, 2]]
    expected = ForwardModel(flat.geometry, problem.sigma).project(atoms)
    assert flat.ndim == 2 and flat.geometry.n_angles == 3
    # exact up to the planes' fitted heights (the truth's planes are flat here)
    assert np.max(np.abs(flat.data - expected)) < 1e-3 * expected.max()


def test_not_layered_data_and_2d_data_give_none():
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-4, 4, size=(40, 3))  # atoms at every height: no planes
    geo = Geometry.from_angles(3, np.radians([-45, 0, 45]), (48, 48), 0.25)
    model = ForwardModel(geo, 0.35)
    problem = Problem(model, model.project(cloud), np.array([[-5, 5]] * 3), bond_length=2.0)
    assert find_layers(problem) is None
    flat = Problem(ForwardModel(Geometry.from_angles(2, [0, 1], (32,), 0.25), 0.35),
                   np.zeros((2, 32)), np.array([[-4, 4]] * 2))
    assert find_layers(flat) is None
    with pytest.raises(InputError, match="layers=on: the data do not split into planes"):
        reconstruct(problem, "adcg", alpha=0.0, layers="on")
    with pytest.raises(InputError, match="layers=on: it needs 3D single-axis data"):
        reconstruct(flat, "adcg", alpha=0.0, layers="on")


def test_plane_by_plane_recovers_an_fcc_particle_from_two_and_three_angles(fcc55):
    bond = fcc55.info["bond_length"]
    # (the two-angle search budget cut from 1200 to 300 hops to keep the test short)
    for angles, budget in (([-45, 0, 45], {}), ([0, 45], {"hops": 300, "patience": 60})):
        problem = particle_problem(fcc55, angles, noise=0.01, seed=1)
        rec = reconstruct(problem, "adcg", alpha="auto", seed=0, **budget)
        assert rec.info["layers"] == 5 and rec.info["start"] == "layers"
        m = match_atoms(rec.configuration, fcc55, 0.1 * bond)
        assert m.f1 == 1.0, (angles, m.as_dict())
        # the planes' searches from two angles use the hull pressure (solver.md), from three not
        hulls = {float(h) for h in str(rec.info.get("layer_hull", "0")).split(",")}
        assert hulls == ({3.0} if len(angles) == 2 else {0.0}), rec.info.get("layer_hull")


def test_killed_and_resumed_layered_run_matches_uninterrupted(tmp_path, fcc55):
    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01, seed=2)
    options = dict(alpha=0.01, seed=3, hops=6, sweeps=2)
    full = reconstruct(problem, "adcg", **options)
    ckpt = tmp_path / "run.ckpt"
    records = []

    class Killed(Exception):
        pass

    def kill_in_third_plane(record):
        records.append(record)
        if record["phase"].startswith("plane 3/") and record["iteration"] == 4:
            raise Killed

    with pytest.raises(Killed):  # (one process: the callback sees the planes' own iterations)
        reconstruct(problem, "adcg", checkpoint=ckpt, callback=kill_in_third_plane, jobs=1,
                    **options)
    assert ckpt.exists() and ckpt.with_name("run.ckpt.layer2").exists()
    # the records carry the whole particle so far, in 3D
    assert records[-1]["positions"].shape[1] == 3
    with pytest.raises(InputError, match="belongs to another run"):
        reconstruct(problem, "adcg", checkpoint=ckpt, resume=True, **{**options, "hops": 7})
    resumed = reconstruct(problem, "adcg", checkpoint=ckpt, resume=True, **options)
    assert np.array_equal(resumed.configuration.positions, full.configuration.positions)
    assert resumed.info["objective"] == full.info["objective"]
    assert not ckpt.with_name("run.ckpt.layer2").exists()
    assert not ckpt.with_name("run.ckpt.polish").exists()


def test_layers_off_is_the_direct_3d_solver(fcc55):
    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01)
    rec = reconstruct(problem, "adcg", alpha=0.0, seed=0, hops=3, sweeps=0, layers="off")
    assert "layers" not in rec.info and rec.info["start"] == "greedy"


def test_planes_in_worker_processes_give_the_same_result(fcc55):
    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01, seed=2)
    options = dict(alpha=0.01, seed=3, hops=6, sweeps=2)
    one = reconstruct(problem, "adcg", jobs=1, **options)
    records = []
    two = reconstruct(problem, "adcg", jobs=2, callback=records.append, **options)
    assert np.array_equal(one.configuration.positions, two.configuration.positions)
    assert one.info["objective"] == two.info["objective"]
    done = [r for r in records if " done (" in r["phase"]]
    planes = [int(a) for a in one.info["layer_atoms"].split(",")]
    assert len(done) == 5 and done[-1]["n_atoms"] == sum(planes)


def _turned(config, about_x, about_z):
    """``config`` turned about x, then about z (radians), in a box that holds it."""
    cx, sx, cz, sz = np.cos(about_x), np.sin(about_x), np.cos(about_z), np.sin(about_z)
    rot = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array(
        [[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    turned = Configuration(config.positions @ rot.T, list(config.species),
                           dict(config.species_weights))
    turned.info.update(config.info, box=[[-8.0, 8.0]] * 3)
    return turned


@pytest.mark.parametrize("turn, layered", [((1.0, 1.0), True), ((17.0, 40.0), False)])
def test_planes_turned_slightly_are_found_and_odd_orientations_are_not(turn, layered):
    truth = _turned(build_phantom("fcc-particle", {"size": 2}), *np.radians(turn))
    assert (find_layers(particle_problem(truth, [-45, 0, 45], noise=0.01)) is not None) == layered


def test_neighbour_field_energy_and_gradient():
    from atomtomo.potentials import make_potential
    from atomtomo.solvers.layers import NeighbourField

    pair = make_potential("lj", 1.0, 3)
    rng = np.random.default_rng(4)
    fixed = rng.uniform(-2, 2, size=(30, 3)) * [1, 0.2, 1] - [0, 0.7, 0]
    field = NeighbourField(pair, fixed, height=0.0)
    points = rng.uniform(-1.5, 1.5, size=(6, 2))
    lifted = np.column_stack([points[:, 0], np.zeros(6), points[:, 1]])
    expected = pair.insertion_energy(fixed, lifted)
    assert np.allclose(field.atom_energies(points), expected)
    energy, grad = field.energy_and_gradient(points)
    assert np.isclose(energy, expected.sum())
    h = 1e-6
    for i in range(len(points)):
        for d in range(2):
            step = np.zeros_like(points)
            step[i, d] = h
            fd = (field.energy_and_gradient(points + step)[0]
                  - field.energy_and_gradient(points - step)[0]) / (2 * h)
            assert np.isclose(grad[i, d], fd, rtol=1e-5, atol=1e-6)


def test_a_plane_on_top_of_its_neighbour_is_searched_again_in_its_field(fcc55):
    from atomtomo.solvers.adcg import reconstruct_adcg
    from atomtomo.solvers.layers import LayeredRun, lift

    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01, seed=1)
    layers = find_layers(problem)
    run = LayeredRun(problem, layers, solve=reconstruct_adcg, alpha=0.01, seed=0, callback=None,
                     checkpoint=None, resume=False, options={"hops": 20, "sweeps": 2})
    bond = fcc55.info["bond_length"]
    truth_planes = []
    for k, layer in enumerate(layers):
        atoms = fcc55.positions[np.isclose(fcc55.positions[:, 1], layer.y, atol=0.2)]
        truth_planes.append(Configuration(atoms, ["Pt"] * len(atoms), {"Pt": 1.0}))
        run.done[k] = truth_planes[-1]
        run.layer_info[k] = {"layer": k + 1, "alpha": 0.01, "n_atoms": len(atoms)}
    # plane 3 put exactly on top of plane 2's atoms (0.71 bond lengths above them)
    below = truth_planes[1].positions
    run.done[2] = lift(Configuration(below[:, [0, 2]], ["Pt"] * len(below), {"Pt": 1.0}),
                       layers[2].y)
    run._restack(plane_problems(problem, layers), dict(run.options), 0.0)
    assert run.layer_info[2].get("restacked")
    assert match_atoms(run.done[2], truth_planes[2], 0.1 * bond).f1 == 1.0
    assert not any(run.layer_info[k].get("restacked") for k in (0, 1, 3, 4))


def test_planes_on_a_dask_cluster_give_the_same_result(fcc55):
    distributed = pytest.importorskip("distributed")
    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01, seed=2)
    options = dict(alpha=0.01, seed=3, hops=4, sweeps=1)
    one = reconstruct(problem, "adcg", jobs=1, **options)
    records = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        two = reconstruct(problem, "adcg", scheduler=cluster.scheduler_address,
                          callback=records.append, **options)
    assert np.array_equal(one.configuration.positions, two.configuration.positions)
    assert one.info["objective"] == two.info["objective"]
    done = [r for r in records if " done (" in r["phase"]]
    assert len(done) == 5 and all(r["milestone"] for r in done)


def test_an_unreachable_scheduler_is_a_one_line_input_error(fcc55):
    pytest.importorskip("distributed")
    problem = particle_problem(fcc55, [-45, 0, 45], noise=0.01)
    with pytest.raises(InputError, match="cannot connect"):
        reconstruct(problem, "adcg", alpha=0.0, hops=0, scheduler="tcp://127.0.0.1:9")


def test_the_layers_module_imports_no_solver():
    """layers.py gets its solve function from the caller (no import cycle with adcg)."""
    import ast
    import inspect

    from atomtomo.solvers import layers

    tree = ast.parse(inspect.getsource(layers))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"adcg", "global_search", "restarts"}, imported


def test_planes_seen_as_shoulders_are_found_in_a_decahedron_and_the_measured_crop(request):
    """Planes across a <110> axis are 2.7 atom widths apart; one lighter than its neighbour is
    a shoulder of the rows' profile, not a maximum: the fit adds it where the profile is least
    explained. Each plane's weight is its atom count."""
    from pathlib import Path

    from atomtomo.phantoms.particles3d import turn_and_crop
    from atomtomo.phantoms.registry import build_phantom as build

    cases = [build("decahedron", {"p": 4, "q": 2, "r": 2, "species": "Pd,Pt",
                                  "chemistry": "core-shell"})]
    path = Path(request.config.rootpath).parent / "shared" / "data" / "aet" / \
        "pdpt_core_shell_epb.xyz"
    if path.exists():
        cases.append(build("measured", {"path": str(path), "axis": "z", "radius": 8}))
    for truth in cases:
        box = np.array(truth.info["box"])
        rows = int(np.ceil((box[1, 1] - box[1, 0]) / 0.35)) + 4
        cols = int(np.ceil(np.hypot(*(box[[0, 2], 1] - box[[0, 2], 0])) / 0.35)) + 4
        geo = Geometry.from_angles(3, np.radians([-72, -36, 0, 36, 72]), (rows, cols), 0.35)
        ts = simulate_tiltseries(truth, geo, sigma=0.5, relative_noise=0.01, seed=0)
        layers = find_layers(Problem.from_tiltseries(ts))
        y = np.sort(truth.positions[:, 1])
        groups = np.split(y, np.flatnonzero(np.diff(y) > 0.6) + 1)  # the true planes
        assert layers is not None and len(layers) == len(groups)
        assert np.allclose([l.y for l in layers], [g.mean() for g in groups], atol=0.1)
        w = truth.species_weights
        weight = [sum(w[s] for s, yy in zip(truth.species, truth.positions[:, 1])
                      if abs(yy - g.mean()) < 0.6) / min(w.values()) for g in groups]
        assert np.allclose([l.atoms for l in layers], weight, rtol=0.05, atol=0.5)


def test_cli_scheduler_is_for_adcg_only(tmp_path):
    from click.testing import CliRunner

    from atomtomo.cli import cli
    from atomtomo.tiltseries import write_tiltseries

    truth = build_phantom("fcc-particle", {"size": 1})
    geo = Geometry.from_angles(3, np.radians([-45, 0, 45]), (40, 40), 0.4)
    path = tmp_path / "p.h5"
    write_tiltseries(simulate_tiltseries(truth, geo, sigma=0.4, seed=0), path)
    result = CliRunner().invoke(cli, ["reconstruct", str(path), "--method", "sirt",
                                      "--scheduler", "tcp://127.0.0.1:9", "-o",
                                      str(tmp_path / "o.xyz")])
    assert result.exit_code == 2 and "--scheduler is not supported by method sirt" in result.output
    assert not (tmp_path / "o.xyz").exists()
