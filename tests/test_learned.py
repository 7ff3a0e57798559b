"""The learned locator: loss, merging, SIRT map, a tiny end-to-end training run, model selection."""

import json
from pathlib import Path

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


def test_loss_gradient_matches_autograd_reference():
    """The hand-written backward pass equals autograd through the plain formula."""
    gen = torch.Generator().manual_seed(0)
    b, k, m = 2, 9, 5
    p = (torch.rand(b, k, 2, generator=gen, dtype=torch.float64) * 0.6 - 0.3).requires_grad_()
    w = torch.rand(b, k, generator=gen, dtype=torch.float64).requires_grad_()
    t = torch.rand(b, m, 2, generator=gen, dtype=torch.float64) * 0.6 - 0.3
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.float64)
    spacing = torch.tensor([0.15, 0.3], dtype=torch.float64)

    def reference(p, w):
        total = 0
        for scale in (0.05, 0.1, 0.2, 0.4):
            s2 = (scale * spacing)[:, None, None] ** 2

            def gram(a, c):
                return torch.exp(-((a[:, :, None] - c[:, None]) ** 2).sum(-1) / (2 * s2))
            total = total + (torch.einsum("bi,bij,bj->b", mask, gram(t, t), mask)
                             - 2 * torch.einsum("bi,bij,bj->b", mask, gram(t, p), w)
                             + torch.einsum("bi,bij,bj->b", w, gram(p, p), w))
        return (total / mask.sum(1)).mean()

    ours = kernel_distance(p, w, t, mask, spacing)
    ref = reference(p, w)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    for g, r in zip(torch.autograd.grad(ours, (p, w)), torch.autograd.grad(ref, (p, w))):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-9, atol=1e-12)


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
def test_sirt_map_matches_project_sirt():
    """Training-time SIRT (one precomputed map) == inference-time grid.sirt, to rounding."""
    from atomtomo.solvers.grid import PixelGrid, sirt
    from atomtomo.solvers.problem import Problem

    for angles, relaxation in ((np.radians([0, 60, 120]), 1.0), (locator.uniform_angles(2), 1.5)):
        acq = data.acquisition(angles, grid=16, n_det=24, pixel_size=1 / 16, sigma=0.05,
                               sirt_iterations=30, sirt_relaxation=relaxation, noise=0)
        model = data.unit_model(acq)
        smap = data.SirtMap(data.system_matrix(model, data.UNIT_BOX, (16, 16)), (16, 16), 30,
                            relaxation)
        rng = np.random.default_rng(3)
        y = model.project([[0.1, -0.2], [-0.25, 0.05]], [1.0, 1.0])
        y = y + 0.01 * y.max() * rng.standard_normal(y.shape)
        problem = Problem(model=model, data=y, box=data.UNIT_BOX)
        ref = sirt(problem, PixelGrid(data.UNIT_BOX, (16, 16)), iterations=30, relaxation=relaxation)
        np.testing.assert_allclose(smap(y), ref, atol=2e-5 * np.abs(ref).max())
        recon = data.sirt_reconstructor(model, data.UNIT_BOX, (16, 16), 30, relaxation)
        np.testing.assert_array_equal(recon(y), ref)


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


def test_reconstruct_learned_rejects_bad_options(tiny_model):
    path, _ = tiny_model
    problem, _ = locator.simulate_test_case(3, np.random.default_rng(5), 0.01, TINY)
    with pytest.raises(InputError, match="valid: model, threshold"):
        locator.reconstruct_learned(problem, model=str(path), hops=3)
    # alpha is recorded and ignored, as by the grid methods: one command line runs every method.
    rec = locator.reconstruct_learned(problem, model=str(path), alpha="auto")
    assert rec.info["alpha"] == "auto" and "ignored" in rec.info["alpha_note"]
    with pytest.raises(InputError, match="threshold"):
        locator.reconstruct_learned(problem, model=str(path), threshold=-1)


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


def test_shipped_models_and_provenance():
    """One small model per shipped angle count, made by the project's command, with provenance."""
    models = locator.list_shipped_models()
    assert [m["n_angles"] for m in models] == list(locator.SHIPPED_ANGLE_COUNTS)
    for m in models:
        path = locator.MODELS_DIR / locator.shipped_model_name(m["n_angles"])
        assert m["path"] == str(path) and path.stat().st_size < 2_000_000
        np.testing.assert_allclose(m["angles_deg"], np.degrees(locator.uniform_angles(m["n_angles"])),
                                   atol=1e-6)
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["command"].startswith("atomtomo train-locator --angles ")
        assert meta["command"].endswith(f"-o src/atomtomo/models/{path.name}")
        for key in ("seed", "steps", "validation", "date", "torch_version", "acquisition"):
            assert key in meta, key
        assert 0 <= meta["validation"]["f1"] <= 1 and meta["steps"] > 0
    # The nearest angle set is picked: by count, then by angular spread.
    assert Path(locator.select_model(locator.uniform_angles(4))).name == "locator_5angles.pt"
    assert Path(locator.select_model(locator.uniform_angles(40))).name == "locator_15angles.pt"
    assert Path(locator.select_model(np.radians([-60, 0, 60]))).name == "locator_3angles.pt"


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
    adcg = {"alpha": 0.0, "hops": 0, "sweeps": 0, "lattice_start": False}
    rows = locator.f1_against_angles((3,), n_samples=2, methods=("learned", "adcg"),
                                     models={3: str(path)}, acquisition=TINY, progress=seen.append,
                                     method_options={"adcg": adcg})
    assert len(rows) == 2 and len(seen) == 4
    for row, method in zip(rows, ("learned", "adcg")):
        assert row["method"] == method and row["n_angles"] == 3 and row["n_samples"] == 2
        assert 0 <= row["f1_mean"] <= 1 and len(row["f1"]) == 2
    assert json.loads(rows[1]["options"]) == adcg
    # The same test cases for both methods, and case k does not depend on n_samples.
    assert [r["n_true"] for r in seen[:2]] == [r["n_true"] for r in seen[2:]]
    one = locator.f1_against_angles((3,), n_samples=1, methods=("learned",), models={3: str(path)},
                                    acquisition=TINY)
    assert one[0]["f1"] == rows[0]["f1"][:1]


# -- command line -------------------------------------------------------------------------------
def _write_test_file(tmp_path, n_angles=3):
    from atomtomo.tiltseries import write_tiltseries

    ts = locator.simulate_test_tiltseries(n_angles, np.random.default_rng(7), 0.01, TINY)
    path = tmp_path / "tilt.h5"
    write_tiltseries(ts, path)
    return path


def test_cli_reconstruct_learned_with_model(tiny_model, tmp_path):
    from click.testing import CliRunner

    from atomtomo.cli import cli
    from atomtomo.configuration import read_xyz

    model_path, _ = tiny_model
    tilt, out = _write_test_file(tmp_path), tmp_path / "out.xyz"
    r = CliRunner().invoke(cli, ["reconstruct", str(tilt), "--method", "learned", "--model",
                                 str(model_path), "-o", str(out)])
    assert r.exit_code == 0, (r.output, r.stderr)
    cfg = read_xyz(out, ndim=2)
    assert cfg.info["method"] == "learned" and cfg.info["model"] == str(model_path)
    assert "using shipped model" not in r.stderr
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(tilt), "--json"])
    assert r.exit_code == 0 and 0 <= json.loads(r.stdout)["f1"] <= 1
    # A bad model file: exit status 2, one line, no output.
    bad = tmp_path / "bad.pt"
    bad.write_text("no model")
    r = CliRunner().invoke(cli, ["reconstruct", str(tilt), "--method", "learned", "--model",
                                 str(bad), "-o", str(tmp_path / "bad.xyz")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.xyz").exists()


def test_cli_reconstruct_learned_picks_nearest_shipped_model(tiny_model, tmp_path, monkeypatch):
    """Without --model: the nearest shipped angle set, named on stderr and in the comment line."""
    import shutil

    from click.testing import CliRunner

    from atomtomo.cli import cli
    from atomtomo.configuration import read_xyz

    model_path, _ = tiny_model
    shipped = tmp_path / "models"
    shipped.mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(model_path.with_suffix(suffix), shipped / f"locator_3angles{suffix}")
    monkeypatch.setattr(locator, "MODELS_DIR", shipped)
    tilt, out = _write_test_file(tmp_path, n_angles=4), tmp_path / "out.xyz"
    r = CliRunner().invoke(cli, ["reconstruct", str(tilt), "--method", "learned", "-o", str(out)])
    assert r.exit_code == 0, (r.output, r.stderr)
    assert "using shipped model locator_3angles.pt (3 angles, the nearest to the data's 4)" in r.stderr
    info = read_xyz(out, ndim=2).info
    assert info["model"] == "locator_3angles.pt"
    assert info["model_selected"] == "nearest shipped angle set"
