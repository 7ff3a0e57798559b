"""The learned locator: loss, merging, SIRT map, a tiny end-to-end training run, model selection."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from atomtomo.errors import InputError  # noqa: E402
from atomtomo.learn import data, locator  # noqa: E402
from atomtomo.learn.loss import kernel_distance  # noqa: E402


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


# -- loss ---------------------------------------------------------------------------------------
def test_loss_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.4, 0.4, (1, 12, 2))
    loss = kernel_distance(_t(truth), _t(np.ones((1, 12))), _t(truth), spacing=0.15)
    assert abs(float(loss)) < 1e-5


def test_loss_grows_monotonically_with_displacement():
    truth = np.array([[[0.0, 0.0], [0.2, 0.1]]])
    values = []
    for d in np.linspace(0, 0.2, 11):
        pred = truth + np.array([[[d, 0.0], [0.0, 0.0]]])
        values.append(float(kernel_distance(_t(pred), _t([[1.0, 1.0]]), _t(truth), spacing=0.15)))
    assert values[0] < 1e-5
    assert np.all(np.diff(values) > 0)


def test_loss_padding_and_weights():
    truth = np.array([[[0.0, 0.0], [0.3, 0.3], [9.0, 9.0]]])
    mask = np.array([[1, 1, 0]])
    # A candidate with zero weight costs nothing; a missing atom costs; padding is ignored.
    pred = np.array([[[0.0, 0.0], [0.3, 0.3], [-0.2, 0.1]]])
    exact = kernel_distance(_t(pred), _t([[1, 1, 0]]), _t(truth), _t(mask), spacing=0.15)
    missing = kernel_distance(_t(pred), _t([[1, 0, 0]]), _t(truth), _t(mask), spacing=0.15)
    assert abs(float(exact)) < 1e-5 < float(missing)
    per = kernel_distance(_t(np.repeat(pred, 2, 0)), _t([[1, 1, 0], [1, 0, 0]]),
                          _t(np.repeat(truth, 2, 0)), _t(np.repeat(mask, 2, 0)), spacing=0.15,
                          reduction="none")
    assert per.shape == (2,) and float(per[1]) == pytest.approx(float(missing), rel=1e-5)


# -- merging ------------------------------------------------------------------------------------
def test_merge_candidates():
    pos = np.array([[0.0, 0.0], [0.02, 0.0],    # one atom split between two cells
                    [0.3, 0.3],                 # a confident atom
                    [-0.3, 0.2],                # a weak candidate: dropped
                    [0.3, -0.3], [0.45, -0.3]])  # two atoms a bond apart: not merged
    w = np.array([0.4, 0.4, 0.9, 0.2, 0.8, 0.8])
    found, fw = locator.merge_candidates(pos, w, threshold=0.5, merge_distance=0.075)
    order = np.lexsort(found.T[::-1])
    found, fw = found[order], fw[order]
    assert len(found) == 4
    expect = np.array([[0.01, 0.0], [0.3, -0.3], [0.3, 0.3], [0.45, -0.3]])
    np.testing.assert_allclose(found, expect[np.lexsort(expect.T[::-1])], atol=1e-12)
    assert fw.max() == pytest.approx(0.9)
    empty, _ = locator.merge_candidates(pos, w * 0, threshold=0.5, merge_distance=0.075)
    assert empty.shape == (0, 2)


def test_f1_score():
    truth = np.array([[0.0, 0.0], [0.2, 0.0], [0.4, 0.0]])
    found = np.array([[0.005, 0.0], [0.21, 0.0], [0.9, 0.9]])
    f1, precision, recall = locator.f1_score(found, truth, 0.015)
    assert (precision, recall) == pytest.approx((2 / 3, 2 / 3))
    assert f1 == pytest.approx(2 / 3)


# -- SIRT map and augmentation ------------------------------------------------------------------
def test_sirt_map_matches_iterative_sirt():
    acq = data.acquisition(np.radians([0, 60, 120]), grid=16, n_det=24, pixel_size=1 / 16,
                           sigma=0.05, sirt_iterations=30)
    model = data.unit_model(acq)
    A = data.system_matrix(model, data.UNIT_BOX, (16, 16))
    sirt = data.SirtMap(A, (16, 16), 30)
    y = model.project([[0.1, -0.2], [-0.25, 0.05]], [1.0, 1.0])
    ref = data.sirt_iterative(A, y.ravel(), 30)[0].reshape(16, 16)
    np.testing.assert_allclose(sirt(y), ref, atol=1e-5 * np.abs(ref).max())
    # ... and the project's SIRT, which inference uses.
    img = data.sirt_image(model, y, data.UNIT_BOX, (16, 16), 30)
    np.testing.assert_allclose(sirt(y), img, atol=1e-4 * np.abs(img).max())


def test_symmetries_of_angle_sets():
    assert len(data.valid_symmetries(locator.uniform_angles(4))) == 8
    assert len(data.valid_symmetries(locator.uniform_angles(3))) == 4
    assert len(data.valid_symmetries(np.radians([0, 10, 35]))) == 2  # identity, 180 deg rotation


def test_augmentation_is_consistent():
    """A symmetry applied to a sample's image equals the image of the transformed atoms."""
    acq = data.acquisition(locator.uniform_angles(3), grid=16, n_det=24, pixel_size=1 / 16,
                           sigma=0.05, sirt_iterations=20, noise=0)
    model = data.unit_model(acq)
    sirt = data.SirtMap(data.system_matrix(model, data.UNIT_BOX, (16, 16)), (16, 16), 20)
    pts = np.array([[0.1, -0.2], [-0.25, 0.05]])
    for sym in data.valid_symmetries(np.asarray(acq["angles"])):
        img = data.transform_image(sirt(model.project(pts)), sym)
        img2 = sirt(model.project(data._transform_points(pts, sym)))
        np.testing.assert_allclose(img, img2, atol=1e-4 * np.abs(img2).max())


# -- training and inference end to end ----------------------------------------------------------
TINY = {"grid": 16, "n_det": 24, "pixel_size": 1 / 16, "sigma": 0.04, "sirt_iterations": 20}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from atomtomo.learn.train import train_locator, write_provenance

    path = tmp_path_factory.mktemp("models") / "locator_3angles.pt"
    seen = []
    summary = train_locator(locator.uniform_angles(3), 4, path, seed=1, batch_size=4,
                            validation=8, pool_size=8, refresh=2, checkpoint_every=2,
                            progress=lambda step, loss: seen.append((step, loss)),
                            architecture={"channels": [4, 8, 8], "dilations": [1]},
                            acquisition_options=TINY,
                            lattice_options={"spacing_range": (0.25, 0.3)})
    write_provenance(summary, path.with_suffix(".json"))
    assert [s for s, _ in seen] == [1, 2, 3, 4] and np.all(np.isfinite([v for _, v in seen]))
    return path, summary


def test_training_writes_model_and_provenance(tiny_model):
    path, summary = tiny_model
    assert path.is_file() and not path.with_name(path.name + ".ckpt").exists()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["n_angles"] == 3 and meta["seed"] == 1 and meta["steps"] == 4
    assert 0 <= meta["validation"]["f1"] <= 1
    model = locator.load_model(path)
    assert model["acquisition"]["sigma"] == TINY["sigma"]
    assert model["acquisition"]["angles"] == pytest.approx(locator.uniform_angles(3).tolist())


def test_resume_continues_from_checkpoint(tmp_path):
    from atomtomo.learn.train import train_locator

    out = tmp_path / "m.pt"
    kw = dict(batch_size=2, validation=4, pool_size=4, refresh=1,
              architecture={"channels": [4, 4, 4], "dilations": [1]},
              acquisition_options=TINY, lattice_options={"spacing_range": (0.25, 0.3)})
    steps = []

    class Stop(Exception):
        pass

    def interrupt(step, loss):
        steps.append(step)
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        train_locator(locator.uniform_angles(2), 3, out, checkpoint_every=1, progress=interrupt, **kw)
    assert not out.exists() and (tmp_path / "m.pt.ckpt").exists()
    steps.clear()
    summary = train_locator(locator.uniform_angles(2), 3, out, checkpoint_every=1, resume=True,
                            progress=lambda s, v: steps.append(s), **kw)
    assert steps == [2, 3] and summary["steps"] == 3 and out.exists()


def test_reconstruct_learned_end_to_end(tiny_model):
    from atomtomo.solvers import reconstruct

    path, _ = tiny_model
    problem, truth = locator.simulate_test_case(3, np.random.default_rng(5), 0.01, TINY)
    records = []
    rec = reconstruct(problem, "learned", model=str(path), callback=records.append,
                      threshold=0.3)
    info = rec.info
    for key in ("method", "alpha", "objective", "data_discrepancy", "energy", "iterations",
                "runtime_s", "n_atoms", "model"):
        assert key in info
    assert info["method"] == "learned" and info["model"] == str(path)
    assert info["n_atoms"] == rec.configuration.n_atoms and len(records) == 1
    assert info["objective"] == pytest.approx(problem.data_energy(rec.configuration))
    box = problem.box
    pos = rec.configuration.positions
    assert np.all((pos >= box[:, 0]) & (pos <= box[:, 1]))


def test_reconstruct_learned_rejects_3d_and_bad_model(tmp_path):
    from atomtomo.forward import ForwardModel
    from atomtomo.geometry import Geometry
    from atomtomo.solvers.problem import Problem

    geo = Geometry.from_angles(3, [0.0], (8, 8), 0.1)
    problem = Problem(ForwardModel(geo, 0.05), np.zeros(geo.data_shape), geo.default_box())
    with pytest.raises(InputError, match="2D only"):
        locator.reconstruct_learned(problem)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    with pytest.raises(InputError):
        locator.load_model(bad)


def test_shipped_model_selection(tmp_path):
    models = [{"n_angles": n, "angles_deg": np.degrees(locator.uniform_angles(n)).tolist(),
               "path": f"m{n}.pt"} for n in (2, 3, 5, 8, 10, 15)]
    pick = lambda ang: locator.select_model(np.radians(ang), models)  # noqa: E731
    assert pick([0, 90]) == "m2.pt"
    assert pick([-60, 0, 60]) == "m3.pt"
    assert pick(np.arange(12) * 15) == "m10.pt"
    assert pick(np.arange(40) * 4.5) == "m15.pt"
    # 4 angles: 3 and 5 are equally near in count; 4 angles over 135 deg are nearer 5 (144 deg).
    assert pick([0, 45, 90, 135]) == "m5.pt"
    # 4 angles over only 60 degrees: nearer the spread of 3 uniform angles (120 deg).
    assert pick([0, 20, 40, 60]) == "m3.pt"
    with pytest.raises(InputError, match="no shipped"):
        locator.select_model([0.0], [])


def test_list_shipped_models():
    for m in locator.list_shipped_models():
        assert m["n_angles"] == len(m["angles_deg"]) and m["path"].endswith(".pt")


def test_import_atomtomo_does_not_need_torch():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import atomtomo, atomtomo.learn, "
            "atomtomo.learn.locator; from atomtomo.learn import require_torch\n"
            "try:\n    require_torch()\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "InputError" in out.stdout and "atomtomo[learn]" in out.stdout


def test_f1_against_angles_smoke(tiny_model):
    path, _ = tiny_model
    seen = []
    rows = locator.f1_against_angles((3,), n_samples=2, methods=("learned",), models={3: str(path)},
                                     acquisition=TINY, progress=seen.append)
    assert len(rows) == 1 and len(seen) == 2
    row = rows[0]
    assert row["method"] == "learned" and row["n_angles"] == 3 and row["n_samples"] == 2
    assert 0 <= row["f1_mean"] <= 1 and len(row["f1"]) == 2
