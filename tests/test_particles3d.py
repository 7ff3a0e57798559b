"""Test particles for single-axis 3D tomography (phantoms/particles3d.py)."""

import numpy as np
import pytest

from atomtomo import InputError
from atomtomo.phantoms.particles3d import rotation_onto, tilt_errors, turn_and_crop
from atomtomo.phantoms.registry import build_phantom, list_phantoms
from atomtomo.configuration import Configuration

PDPT = "pdpt_core_shell_epb.xyz"


def _planes(config, tol=0.05):
    """Number of distinct heights y (planes across the tilt axis)."""
    return np.unique(np.round(config.positions[:, 1] / tol)).size


def test_rotation_onto_is_proper_and_maps_the_axis():
    rng = np.random.default_rng(0)
    for a, b in [((0, 0, 1), (0, 1, 0)), ((1, 1, 0), (0, 1, 0)), ((0, -1, 0), (0, 1, 0)),
                 tuple(rng.normal(size=(2, 3)))]:
        r = rotation_onto(a, b)
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1)
        assert np.allclose(r @ (np.array(a) / np.linalg.norm(a)), np.array(b) / np.linalg.norm(b))


def test_decahedron_has_its_five_fold_axis_on_y():
    deca = build_phantom("decahedron", {})
    assert deca.n_atoms == 146 and deca.info["phantom"] == "decahedron"
    # five-fold symmetry about y: turning by 72 degrees maps the atoms onto themselves
    c, s = np.cos(2 * np.pi / 5), np.sin(2 * np.pi / 5)
    turned = deca.positions @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T
    from scipy.spatial import cKDTree
    assert cKDTree(deca.positions).query(turned)[0].max() < 1e-6
    assert _planes(deca) == 11  # planes across the <110> axis, a / (2 sqrt 2) apart


def test_icosahedron_and_turned_single_crystals():
    ico = build_phantom("icosahedron", {"shells": 3})
    assert ico.n_atoms == 55
    for axis, planes in (("001", 7), ("110", 13)):
        cfg = build_phantom("crystal-particle", {"axis": axis})
        assert cfg.n_atoms == 147 and _planes(cfg) == planes, axis
        bond = cfg.info["bond_length"]
        from scipy.spatial import cKDTree
        assert np.isclose(cKDTree(cfg.positions).query(cfg.positions, 2)[0][:, 1].min(), bond)


def test_two_species_with_z_contrast_weights():
    shell = build_phantom("decahedron", {"species": "Pd,Pt", "chemistry": "core-shell"})
    assert set(shell.species) == {"Pd", "Pt"}
    assert shell.species_weights["Pt"] == 1.0
    assert shell.species_weights["Pd"] == pytest.approx((46 / 78) ** 1.7)
    r = np.linalg.norm(shell.positions, axis=1)
    assert r[shell.species == "Pt"].mean() > r[shell.species == "Pd"].mean()
    alloy = build_phantom("icosahedron", {"shells": 3, "species": "Pt,Pd", "chemistry": "alloy",
                                          "fractions": "0.25,0.75"})
    assert np.sum(alloy.species == "Pt") == 14  # 55 / 4, rounded by largest remainder


def test_misalignment_turns_the_planes_off_the_axis_and_is_seeded():
    straight = build_phantom("crystal-particle", {"axis": "001"})
    bent = build_phantom("crystal-particle", {"axis": "001", "misalign": "0.5deg", "seed": 3})
    again = build_phantom("crystal-particle", {"axis": "001", "misalign": "0.5deg", "seed": 3})
    assert np.array_equal(bent.positions, again.positions)
    assert _planes(bent, 0.001) > _planes(straight, 0.001)
    errors = tilt_errors(5, np.radians(0.5), seed=1)
    assert errors.shape == (5,) and np.all(np.abs(errors) <= np.radians(0.5))


@pytest.mark.parametrize("params, message", [
    ({"axis": "123"}, "axis must be one of"),
    ({"chemistry": "core-shell"}, "needs two species"),
    ({"species": "Xx"}, "not a chemical symbol"),
    ({"misalign": "-1"}, "misalign must be"),
    ({"chemistry": "mixed"}, "chemistry must be one of"),
])
def test_bad_parameters_are_one_line_input_errors(params, message):
    with pytest.raises(InputError, match=message):
        build_phantom("crystal-particle", params)


def test_turn_and_crop_keeps_the_weights_and_recentres():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-10, 10, size=(400, 3))
    cfg = Configuration(pos, ["Pt"] * 200 + ["Pd"] * 200, {"Pt": 1.0, "Pd": 0.4},
                        {"bond_length": 2.7})
    crop = turn_and_crop(cfg, (0, 0, 1), radius=5.0)
    assert crop.species_weights == {"Pt": 1.0, "Pd": 0.4}
    assert np.allclose(crop.positions.mean(0), 0)
    assert np.linalg.norm(crop.positions, axis=1).max() <= 5.0 + np.linalg.norm(pos.mean(0)) + 1
    with pytest.raises(InputError, match="fewer than two"):
        turn_and_crop(cfg, (0, 0, 1), radius=0.01)


def test_the_measured_pdpt_particle_turned_and_cropped(request):
    from pathlib import Path

    path = Path(request.config.rootpath).parent / "shared" / "data" / "aet" / PDPT
    if not path.exists():
        pytest.skip("../shared/data/aet not present")
    crop = build_phantom("measured", {"path": str(path), "axis": "z", "radius": "8"})
    assert crop.n_atoms == 142 and set(crop.species) == {"Pd"}
    assert set(crop.species_weights) == {"Pd", "Pt"}
    assert crop.info["crop_radius"] == 8.0


def test_the_particles_are_in_the_registry():
    names = {p["name"] for p in list_phantoms()}
    assert {"decahedron", "icosahedron", "crystal-particle"} <= names
