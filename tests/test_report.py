"""The HTML report: self-contained, and drawn by a real headless browser without JS errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from atomtomo.configuration import Configuration
from atomtomo.geometry import Geometry
from atomtomo.tiltseries import simulate_tiltseries

plotly = pytest.importorskip("plotly")

from atomtomo.report import build_report, read_history, write_report  # noqa: E402


def _fcc_cluster():
    a = 3.92
    pts = [(i, j, k) for i in range(-1, 2) for j in range(-1, 2) for k in range(-1, 2)]
    basis = [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    pos = np.array([(np.array(p) + b) * a for p in pts for b in basis])
    pos = pos[np.linalg.norm(pos, axis=1) < 5.6]
    return Configuration(pos, ["Pt"] * len(pos), info={"bond_length": a / np.sqrt(2)})


def _inputs(tmp_path):
    truth = _fcc_cluster()
    rng = np.random.default_rng(1)
    found = truth.subset(np.arange(1, truth.n_atoms))  # one atom missed
    found.positions = found.positions + rng.normal(0, 0.05, found.positions.shape)
    found.arrays["confidence"] = rng.uniform(0.3, 1.0, found.n_atoms)
    geo = Geometry.from_angles(3, np.radians([-45.0, 0.0, 45.0]), (24, 24), 0.6)
    ts = simulate_tiltseries(truth, geo, 0.4)
    history = tmp_path / "run.jsonl"
    history.write_text("\n".join(json.dumps({"iteration": k, "objective": 10.0 / (k + 1),
                                             "n_atoms": min(k, 40)}) for k in range(30)))
    return found, truth, ts, read_history(history)


def test_report_is_self_contained(tmp_path):
    found, truth, ts, history = _inputs(tmp_path)
    page = build_report(found, truth=truth, tiltseries=ts, history=history, structure=False)
    assert page.count("<script") >= 4  # plotly.js once, then one script per figure
    # No script or stylesheet is fetched at view time.
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"?https?:", page)
    assert "colour: confidence" in page and "colour: distance to truth" in page
    assert "certain atoms" in page


def test_report_of_2d_atoms(tmp_path):
    found = Configuration(np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 0.2], [0.2, 0.2]]))
    out = tmp_path / "r.html"
    write_report(out, found, truth=found, structure=True)
    text = out.read_text()
    assert "2D: coordination and edge atoms only" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Records uncaught errors and, once loaded, how many plotly graphs were drawn into the page.
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () { setTimeout(function () {
  var div = document.createElement('div'); div.id = 'probe';
  div.setAttribute('data-errors', JSON.stringify(window.__errors));
  div.setAttribute('data-svg', document.querySelectorAll('.main-svg').length);
  div.setAttribute('data-gl', document.querySelectorAll('.gl-container canvas').length);
  div.setAttribute('data-points', document.querySelectorAll('.point').length);
  document.body.appendChild(div); }, 2000); });
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_draws_in_headless_chromium(tmp_path):
    found, truth, ts, history = _inputs(tmp_path)
    page = build_report(found, truth=truth, tiltseries=ts, history=history, structure=False)
    path = tmp_path / "report.html"
    path.write_text(page.replace("<head>", "<head>" + _PROBE, 1))
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking",
            "--virtual-time-budget=15000", "--window-size=1280,2000"]
    dom = subprocess.run(args + ["--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    probe = re.search(r'<div id="probe"([^>]*)>', dom)
    assert probe, "the page did not finish loading"
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', probe.group(1)))
    assert json.loads(attrs["errors"].replace("&quot;", '"')) == []
    assert int(attrs["svg"]) >= 4  # the 3D view's overlay, planes, projections, convergence
    assert int(attrs["gl"]) >= 1  # the 3D view's WebGL canvas
    assert int(attrs["points"]) > 40  # the 2D panels drew their atoms
    shot = tmp_path / "shot.png"
    subprocess.run(args + [f"--screenshot={shot}", path.as_uri()], capture_output=True,
                   timeout=120)
    import imageio.v3 as iio

    img = np.asarray(iio.imread(shot), float)
    assert img.std() > 10  # not a blank page
