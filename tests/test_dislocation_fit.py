"""Crystals with an edge dislocation fitted to two projections, and the solver stage that uses them."""

from functools import partial

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomtomo import ForwardModel, Geometry
from atomtomo.errors import InputError
from atomtomo.phantoms.defects import edge_dislocation_lattice
from atomtomo.solvers import dislocation_fit
from atomtomo.solvers.dislocation_fit import detected_families, fit_site_models
from atomtomo.solvers.lattice_seed import _basis, lattice_kind, lattice_sites
from killing import killed_then_resumed  # tests/killing.py
from atomtomo.solvers.problem import Problem

SPACING = 0.15
BOX = np.array([[-0.5, 0.5], [-0.5, 0.5]])
THETA = np.radians(20.0)


def _two_zone_axes(truth, noise_seed=0):
    """Both zone axes of a square crystal at ``THETA`` (1 % noise)."""
    geo = Geometry.from_angles(2, [THETA + np.pi / 2, THETA], 110, 1 / 80)
    model = ForwardModel(geo, SPACING / 6)
    y = model.project(truth)
    std = 0.01 * y.max()
    y = y + np.random.default_rng(noise_seed).normal(scale=std, size=y.shape)
    return Problem(model, y, BOX, bond_length=SPACING, noise_std=std)


def _recall(sites, truth):
    return np.mean(cKDTree(sites).query(truth)[0] < 0.1 * SPACING)


@pytest.fixture(scope="module")
def dislocated():
    """A square crystal with an edge dislocation at the centre, its data, and the fitted models
    (started from a lattice 3 degrees off, as the data lattice of a dislocated crop is)."""
    truth = edge_dislocation_lattice("square", SPACING, THETA).positions
    problem = _two_zone_axes(truth)
    models = fit_site_models(problem, _basis("square", SPACING, THETA + np.radians(3.0)))
    return truth, problem, models


def test_the_fit_finds_the_dislocated_crystal_and_prefers_it_to_any_single_crystal(dislocated):
    truth, _, models = dislocated
    plain, found = models[0], detected_families(models)
    assert not plain.dislocated and all(m.dislocated for m in models[1:])
    assert found, [m.misfit for m in models]
    best = found[0]
    assert best.misfit < 0.3 < 5 < plain.misfit  # the noise level against a single crystal
    assert _recall(best.sites, truth) == 1.0  # every atom within 0.1 spacing of a site
    assert _recall(plain.sites, truth) < 0.5
    assert lattice_kind(best.basis) == "square"


def test_a_crystal_without_a_dislocation_is_not_taken_for_one():
    sites = lattice_sites("square", SPACING, THETA, np.array([0.02, -0.03]), BOX)
    truth = np.delete(sites[np.linalg.norm(sites, axis=1) < 0.42], 5, axis=0)  # a vacancy
    problem = _two_zone_axes(truth)
    models = fit_site_models(problem, _basis("square", SPACING, THETA))
    assert models[0].misfit < 0.3 and _recall(models[0].sites, truth) == 1.0
    assert detected_families(models) == []
    # a crystal that fits below the detection margin: the dislocated scan is skipped
    (plain,) = fit_site_models(problem, _basis("square", SPACING, THETA), detectable_only=True)
    assert plain.misfit == models[0].misfit


def test_lattice_kind():
    assert lattice_kind(_basis("square", 1.0, 0.3)) == "square"
    assert lattice_kind(_basis("hexagonal", 1.0, 0.3)) == "hexagonal"


@pytest.fixture
def fitted_once(dislocated, monkeypatch):
    """The driver's fit replaced by the module fixture's models (the fit is the slow part)."""
    from atomtomo.solvers import global_search

    _, problem, models = dislocated
    monkeypatch.setattr(global_search, "fit_site_models", lambda *a, **k: models)
    monkeypatch.setattr(global_search, "_FITTED_CRYSTALS", {})  # nothing fitted before
    return problem


OPTIONS = dict(alpha=0.01, seed=1, lattice_prior=3, hops=12, sweeps=2, dislocation=True)


def test_dislocation_stage_searches_under_the_fitted_sites_and_keeps_the_lower_result(
        fitted_once, dislocated):
    from atomtomo.metrics import match_atoms
    from atomtomo.solvers.adcg import reconstruct_adcg

    truth = dislocated[0]
    records = []
    result = reconstruct_adcg(fitted_once, callback=records.append, **OPTIONS)
    phases = [r["phase"] for r in records]
    first = phases.index("dislocation")
    assert phases.index("strain") < first
    assert records[first]["accepted"]  # detected
    assert "hop" in phases[first:]  # a search under the fitted sites
    assert result.info["lattice_prior"].endswith("with an edge dislocation (fitted to the data)")
    assert match_atoms(result.configuration, truth, 0.1 * SPACING).f1 >= 0.95


def test_run_killed_in_the_dislocation_stage_resumes_to_the_same_result(fitted_once, tmp_path):
    """The fitted crystals still to try, the well in place and the rival's well are part of
    the checkpoint."""
    from atomtomo.solvers.adcg import reconstruct_adcg

    records = []
    full = reconstruct_adcg(fitted_once, callback=records.append, **OPTIONS)
    stage = [r["iteration"] for r in records if r["phase"] == "dislocation"]
    assert len(stage) >= 2  # the fit, then (at least) one search

    resumed = killed_then_resumed(partial(reconstruct_adcg, fitted_once, **OPTIONS),
                                  stage[1] + 2, tmp_path / "run.ckpt")
    assert np.array_equal(resumed.configuration.positions, full.configuration.positions)
    assert resumed.info["objective"] == full.info["objective"]
    assert resumed.info["lattice_prior"] == full.info["lattice_prior"]


def test_dislocation_needs_an_energy_term():
    from atomtomo.solvers.adcg import reconstruct_adcg

    model = ForwardModel(Geometry.from_angles(2, [0.0, 1.0], 64, 1 / 64), 0.02)
    problem = Problem(model, np.zeros(model.geometry.data_shape), BOX, bond_length=SPACING)
    with pytest.raises(InputError, match="dislocation is part of the energy term"):
        reconstruct_adcg(problem, alpha=0.0, dislocation=True)


def test_the_stage_is_on_by_default_where_it_can_run_and_off_elsewhere():
    from atomtomo.solvers.global_search import SearchDriver

    model = ForwardModel(Geometry.from_angles(2, [0.3, 1.1], 64, 1 / 64), 0.02)
    grid = SPACING * (np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2) - 2)
    problem = Problem(model, model.project(grid), BOX, bond_length=SPACING)  # 25 atoms
    assert SearchDriver(problem, alpha=0.01, hops=0).dislocation
    assert not SearchDriver(problem, alpha=0.0, hops=0).dislocation  # no energy term
    assert not SearchDriver(problem, alpha=0.01, hops=0, dislocation=False).dislocation
    # too few atoms to hold a dislocation: off by default, on when asked for
    few = Problem(model, model.project(grid[:dislocation_fit.MIN_ATOMS - 1]), BOX,
                  bond_length=SPACING)
    assert not SearchDriver(few, alpha=0.01, hops=0).dislocation
    assert SearchDriver(few, alpha=0.01, hops=0, dislocation=True).dislocation
    geo3 = Geometry.from_angles(3, [0.0, 1.0], (16, 16), 1 / 16)
    problem3 = Problem(ForwardModel(geo3, 0.05), np.zeros(geo3.data_shape),
                       np.array([[-0.5, 0.5]] * 3), bond_length=0.2)
    assert not SearchDriver(problem3, alpha=0.01, hops=0).dislocation
    with pytest.raises(InputError, match="needs 2D data"):
        SearchDriver(problem3, alpha=0.01, hops=0, dislocation=True)


@pytest.mark.parametrize("turn, expected", [(0.0, True), (np.radians(12.0), False)])
def test_a_fitted_dislocation_turns_the_lattice_stage_on_where_the_columns_test_misses(
        fitted_once, dislocated, monkeypatch, turn, expected):
    """Where the column coherence misses the zone axes (a hexagonal crop's extra half-row
    spoils its columns) but a crystal with a dislocation fits the data and both beams run
    along its rows, the run is treated as along zone axes; not when the beams cross its rows
    (the fitted crystal turned by 12 degrees)."""
    from atomtomo.solvers import global_search
    from atomtomo.solvers.global_search import SearchDriver

    monkeypatch.setattr(global_search, "along_zone_axes", lambda p: (False, np.array([0.5, 0.6])))
    models = [dislocation_fit.SiteModel(m.sites, m.misfit, m.rotation, m.origin,
                                        dislocation_fit.rotation_matrix(turn) @ m.basis,
                                        m.burgers, m.core) for m in dislocated[2]]
    monkeypatch.setattr(global_search, "fit_site_models", lambda *a, **k: models)
    driver = SearchDriver(fitted_once, alpha="auto")
    assert (driver.lattice_beta > 0) == expected
    assert (driver.zone_axes_from is not None) == expected
    assert bool(driver.hull) == expected
    if expected:
        assert driver.zone_axes_from == "a crystal with a dislocation fitted to the data"
        assert driver.site_models is models  # fitted once: the stage uses the same models
