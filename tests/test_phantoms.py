"""Tests of the phantoms: poster lattices, defects, particles, measured loader, registry."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomtomo.configuration import Configuration
from atomtomo.errors import InputError
from atomtomo.phantoms import (
    PHANTOMS,
    add_interstitial,
    add_vacancy,
    alloy_particle,
    bcc_particle,
    build_phantom,
    core_shell_particle,
    crop,
    edge_dislocation_displacement,
    fcc_particle,
    hexagonal_lattice,
    interstitial_sites,
    jitter,
    list_phantoms,
    load_measured,
    parse_params,
    poster_dislocation,
    random_defect_lattice,
    relax_point_defect,
    square_lattice,
    twin_particle,
    zcontrast_weights,
    zone_axis_angles,
)

AET = Path(__file__).resolve().parents[2] / "shared" / "data" / "aet"
NAMES_2D = [p["name"] for p in list_phantoms() if p["ndim"] == 2]
NAMES_3D = [p["name"] for p in list_phantoms() if p["ndim"] == 3 and p["name"] != "measured"]


def min_pair_distance(pos):
    d, _ = cKDTree(pos).query(pos, 2)
    return d[:, 1].min()


def assert_phantom_info(cfg, name):
    assert cfg.info["phantom"] == name
    assert cfg.info["bond_length"] > 0 and cfg.info["spacing"] > 0
    box = np.asarray(cfg.info["box"])
    assert box.shape == (cfg.ndim, 2)
    assert np.all(cfg.positions >= box[:, 0]) and np.all(cfg.positions <= box[:, 1])


# -- the poster's lattices ---------------------------------------------------------------------
@pytest.mark.parametrize("name, n", [("interstitial", 37), ("vacancy", 48), ("dislocation", 39)])
def test_poster_lattices(name, n):
    cfg = build_phantom(name)
    assert cfg.n_atoms == n and cfg.ndim == 2
    assert_phantom_info(cfg, name)
    assert cfg.info["box"] == [[-0.5, 0.5], [-0.5, 0.5]]
    assert np.abs(cfg.positions).max() <= 0.45 + 1e-9  # >= 0.05 inside the box
    assert 0.14 <= cfg.info["spacing"] <= 0.17
    assert min_pair_distance(cfg.positions) > 0.8 * cfg.info["spacing"]


def test_poster_dislocation_rows():
    cfg = poster_dislocation()
    a = cfg.info["spacing"]
    y = cfg.positions[:, 1]
    order = np.argsort(y)
    counts = []
    # Rows are about one spacing apart; bin by the sorted heights' gaps.
    breaks = np.flatnonzero(np.diff(y[order]) > 0.5 * a) + 1
    for row in np.split(order, breaks):
        counts.append(len(row))
    assert counts == [7, 7, 7, 6, 6, 6]
    # The rows bend: the lower rows are compressed, the upper ones stretched.
    bottom, top = order[:7], order[-6:]
    assert np.ptp(cfg.positions[bottom, 1]) > 0.02 * a
    assert np.ptp(cfg.positions[bottom, 0]) / 6 < a < np.ptp(cfg.positions[top, 0]) / 5


def test_poster_interstitial_relaxed():
    cfg = build_phantom("interstitial")
    a = cfg.info["spacing"]
    d = np.sort(np.linalg.norm(cfg.positions[:-1], axis=1))
    assert np.allclose(cfg.positions[-1], 0)
    assert d[0] > a / np.sqrt(2) * 1.1  # pushed out


# -- every phantom -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES_2D)
def test_2d_phantoms_valid(name):
    cfg = build_phantom(name, seed=1)
    assert_phantom_info(cfg, name)
    assert cfg.ndim == 2 and cfg.n_atoms >= 10
    assert np.abs(cfg.positions).max() <= 0.45 + 1e-9
    assert min_pair_distance(cfg.positions) > 0.6 * cfg.info["spacing"]


@pytest.mark.parametrize("name", NAMES_3D)
def test_3d_phantoms_valid(name):
    cfg = build_phantom(name, seed=1)
    assert_phantom_info(cfg, name)
    assert cfg.ndim == 3
    assert np.allclose(cfg.positions.mean(0), 0, atol=1e-9)
    assert min_pair_distance(cfg.positions) > 0.6 * cfg.info["spacing"]
    assert max(cfg.weights) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["random-lattice", "substitution", "fcc-particle"])
def test_seeds_reproducible(name):
    params = {"n": 3} if name == "substitution" else {}
    if name == "fcc-particle":
        params = {"n_vacancies": 2, "n_interstitials": 1, "jitter": 0.05}
    a = build_phantom(name, params, seed=5)
    b = build_phantom(name, params, seed=5)
    c = build_phantom(name, params, seed=6)
    assert np.array_equal(a.positions, b.positions) and list(a.species) == list(b.species)
    assert a.n_atoms != c.n_atoms or not np.array_equal(a.positions, c.positions) or list(
        a.species
    ) != list(c.species)


def test_random_defect_lattice_many():
    rng = np.random.default_rng(0)
    seen = Counter()
    for _ in range(40):
        cfg = random_defect_lattice(rng)
        a = cfg.info["spacing"]
        assert 0.12 <= a <= 0.2
        assert np.abs(cfg.positions).max() <= 0.45 + 1e-9
        assert min_pair_distance(cfg.positions) >= 0.6 * a
        seen.update(cfg.info["defects"].split(","))
        seen[cfg.info["lattice"]] += 1
    assert {"square", "hexagonal", "vacancy", "interstitial", "dislocation"} <= set(seen)
    perfect = random_defect_lattice(1, defects=(), jitter_range=0)
    assert perfect.info["defects"] == ""


# -- 2D builders and defects -------------------------------------------------------------------
def test_lattice_builders():
    sq = square_lattice(nx=4, ny=3, spacing=0.1, rotation=0.3)
    assert sq.n_atoms == 12 and np.allclose(sq.positions.mean(0), 0)
    assert min_pair_distance(sq.positions) == pytest.approx(0.1)
    hx = hexagonal_lattice(radius=0.25, spacing=0.1)
    assert hx.n_atoms == 1 + 6 + 12  # shells at 0.1, 0.173, 0.2
    centre = np.argmin(np.linalg.norm(hx.positions, axis=1))
    d, _ = cKDTree(hx.positions).query(hx.positions[centre], 7)
    assert np.allclose(d[1:], 0.1)  # the centre atom has six neighbours at one spacing
    filled = square_lattice()
    assert filled.n_atoms == 49 and filled.info["box"] == [[-0.5, 0.5], [-0.5, 0.5]]
    big = square_lattice(nx=20, spacing=0.2)
    assert np.all(np.asarray(big.info["box"])[:, 1] > big.positions.max(0))


def test_crop_and_jitter():
    cfg = square_lattice(nx=10, spacing=0.1)
    assert crop(cfg, [[-0.2, 0.2], [-0.2, 0.2]]).n_atoms == 16
    assert crop(cfg, radius=0.11, centre=(0.05, 0.05)).n_atoms == 5
    j1, j2 = jitter(cfg, 0.01, rng=3), jitter(cfg, 0.01, rng=3)
    assert np.array_equal(j1.positions, j2.positions)
    assert 0.005 < np.std(j1.positions - cfg.positions) < 0.015
    with pytest.raises(InputError):
        jitter(cfg, -1)


def test_relaxation_law():
    pos = np.array([[1.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    out = relax_point_defect(pos, (0, 0), 0.1, 1.0, cutoff=3.0)
    assert np.allclose(out[0], [1.1, 0.0]) and np.allclose(out[1], [0.0, 2.05])
    assert np.allclose(out[2], pos[2])  # beyond the cutoff
    out3 = relax_point_defect(np.array([[0.0, 0.0, 2.0]]), (0, 0, 0), 0.1, 1.0, cutoff=3.0)
    assert np.allclose(out3, [[0, 0, 2.025]])  # A a^3 / r^2


def test_point_defects_on_lattice():
    cfg = hexagonal_lattice(radius=0.5, spacing=0.1)
    vac = add_vacancy(cfg)
    assert vac.n_atoms == cfg.n_atoms - 1 and vac.info["defects"] == "vacancy"
    inter = add_interstitial(cfg, species="Y")
    assert inter.n_atoms == cfg.n_atoms + 1 and inter.species[-1] == "Y"
    # The site is a triangle centre: a/sqrt(3) from its three corners before relaxation.
    d = np.sort(np.linalg.norm(cfg.positions - inter.positions[-1], axis=1))[:3]
    assert np.allclose(d, 0.1 / np.sqrt(3))
    assert min_pair_distance(inter.positions) > 0.6 * 0.1
    sites = interstitial_sites(square_lattice(nx=6, spacing=1.0).positions, 1.0)
    assert len(sites) == 9 and np.allclose(np.abs(sites) % 1, 0)  # plaquette centres


def test_volterra_field():
    b = 1.0
    pts = np.array([[-3.0, 1e-6], [-3.0, -1e-6], [3.0, 1e-6], [3.0, -1e-6]])
    u = edge_dislocation_displacement(pts, [b, 0.0], poisson=0.3)
    assert u[0, 0] - u[1, 0] == pytest.approx(b, abs=1e-6)  # the cut: a jump of b
    assert u[2, 0] == pytest.approx(u[3, 0], abs=1e-6)
    # Closing a circuit around the core picks up exactly the Burgers vector.
    t = np.linspace(-np.pi, np.pi, 2001)
    circle = 2.0 * np.stack([np.cos(t), np.sin(t)], 1)
    circle[0, 1], circle[-1, 1] = -1e-7, 1e-7
    uc = edge_dislocation_displacement(circle, [b, 0.0])
    assert np.allclose(uc[-1] - uc[0], [b, 0.0], atol=1e-6)
    with pytest.raises(InputError):
        edge_dislocation_displacement(np.zeros((1, 2)), [1.0, 0.0])


def test_zone_axis_angles():
    for lattice, dense in [("square", True), ("hexagonal", True), ("hexagonal", False)]:
        rotation = 0.2
        cfg = (square_lattice if lattice == "square" else hexagonal_lattice)(
            radius=2.0, spacing=0.2, rotation=rotation
        )
        angles = zone_axis_angles(lattice, rotation, n=3, dense=dense)
        assert np.all((angles > -np.pi / 2) & (angles <= np.pi / 2))
        for theta in angles:
            s = cfg.positions @ [np.cos(theta), np.sin(theta)]
            assert len(np.unique(np.round(s, 6))) < cfg.n_atoms / 4  # columns line up
    assert np.allclose(zone_axis_angles("square", 0.0), np.deg2rad([0, 90, 45]))
    assert np.allclose(zone_axis_angles("hexagonal", 0.0, dense=False), np.deg2rad([0, 60, -60]))


# -- 3D particles --------------------------------------------------------------------------------
def _mirror_symmetric(pos, bond, normal):
    """Interior atoms whose neighbour shell is mirror-symmetric about their own (111) plane (hcp
    stacking, as in a twin plane or a stacking fault; fcc is not)."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    tree = cKDTree(pos)
    count = 0
    for i, nb in enumerate(tree.query_ball_point(pos, 1.1 * bond)):
        v = pos[nb] - pos[i]
        v = v[np.linalg.norm(v, axis=1) > 0]
        if len(v) != 12:
            continue
        mirrored = v - 2 * np.outer(v @ n, n)
        if np.all(cKDTree(v).query(mirrored)[0] < 1e-6):
            count += 1
    return count


def test_particle_counts_and_species():
    assert fcc_particle(size=3).n_atoms == 147
    assert bcc_particle(size=3).n_atoms == 91
    assert fcc_particle(size=2, shape="octahedron").n_atoms == 85
    cs = core_shell_particle(size=3)
    assert Counter(cs.species) == {"Pt": 92, "Pd": 55}
    assert cs.species_weights == pytest.approx({"Pt": 1.0, "Pd": (46 / 78) ** 1.7})
    pd_r = np.linalg.norm(cs.positions[cs.species == "Pd"], axis=1).max()
    pt_r = np.linalg.norm(cs.positions[cs.species == "Pt"], axis=1).max()
    assert pd_r < pt_r
    al = alloy_particle(size=3, species=("Pt", "Pd", "Ni"), fractions=(0.2, 0.3, 0.5), seed=2)
    assert sum(Counter(al.species).values()) == 147
    assert Counter(al.species) == {"Pt": 29, "Pd": 44, "Ni": 74}
    defect = fcc_particle(size=3, n_vacancies=2, n_interstitials=1, seed=4)
    assert defect.n_atoms == 146
    assert min_pair_distance(defect.positions) > 0.8 * defect.info["bond_length"]
    bcc_def = bcc_particle(size=4, n_interstitials=1, seed=1)
    assert bcc_def.n_atoms == 190 and min_pair_distance(bcc_def.positions) > 0.6 * bcc_def.info["bond_length"]


def test_planar_faults():
    perfect = fcc_particle(size=4)
    twin = twin_particle(size=4)
    fault = twin_particle(size=4, kind="stacking-fault")
    bond = perfect.info["bond_length"]
    assert perfect.n_atoms == twin.n_atoms == fault.n_atoms == 309
    for cfg in (twin, fault):
        assert min_pair_distance(cfg.positions) == pytest.approx(bond)
    m0 = _mirror_symmetric(perfect.positions, bond, (1, 1, 1))
    m1 = _mirror_symmetric(twin.positions, bond, (1, 1, 1))
    m2 = _mirror_symmetric(fault.positions, bond, (1, 1, 1))
    assert m0 == 0 and m1 > 0 and m2 > m1  # one hcp layer in a twin, two in a stacking fault


def test_zcontrast_weights():
    w = zcontrast_weights(["Pt", "Pd", "Pt"])
    assert w == pytest.approx({"Pt": 1.0, "Pd": (46 / 78) ** 1.7})
    assert zcontrast_weights("Au", exponent=2.0) == {"Au": 1.0}
    with pytest.raises(InputError):
        zcontrast_weights(["X"])


# -- measured particles --------------------------------------------------------------------------
@pytest.mark.skipif(not AET.is_dir(), reason="shared AET data not available")
def test_load_measured():
    cfg = load_measured(AET / "pdpt_core_shell_epb.xyz")
    assert cfg.n_atoms == 5377 and cfg.ndim == 3
    assert Counter(cfg.species) == {"Pd": 1372, "Pt": 4005}
    assert np.allclose(cfg.positions.mean(0), 0, atol=1e-9)
    assert cfg.info["bond_length"] == pytest.approx(2.63, abs=0.02)
    assert cfg.species_weights["Pt"] == 1.0 and 0.3 < cfg.species_weights["Pd"] < 0.5
    box = np.asarray(cfg.info["box"])
    assert np.allclose(box[:, 0], cfg.positions.min(0) - cfg.info["bond_length"])
    assert build_phantom("measured", {"path": str(AET / "hea_nanoparticle_4.xyz")}).n_atoms == 1501


def test_load_measured_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_measured(tmp_path / "missing.xyz")
    broken = tmp_path / "broken.xyz"
    broken.write_text("12\nnothing\nPt 1 2\n")
    with pytest.raises(InputError, match="cannot read"):
        load_measured(broken)


# -- registry ----------------------------------------------------------------------------------
def test_registry_names_and_listing():
    required = {"interstitial", "vacancy", "dislocation", "divacancy", "substitution",
                "grain-boundary", "square", "hexagonal", "fcc-particle", "bcc-particle",
                "core-shell", "alloy-particle", "twin-particle"}
    assert required <= set(PHANTOMS)
    listing = {p["name"]: p for p in list_phantoms()}
    assert set(listing) == set(PHANTOMS)
    assert listing["square"]["params"]["spacing"] == 0.15 and listing["square"]["ndim"] == 2
    assert listing["measured"]["required"] == ["path"]
    assert all(p["description"] for p in listing.values())


def test_registry_parsing():
    cfg = build_phantom("square", {"nx": "5", "spacing": "0.1", "rotation": "30deg"})
    assert cfg.n_atoms == 25 and cfg.info["rotation"] == pytest.approx(np.pi / 6)
    assert build_phantom("square", {"nx": 3}).n_atoms == 9  # Python values pass through
    assert build_phantom("square", {"nx": "none", "radius": "0.21", "spacing": "0.1"}).n_atoms == 13
    kw = parse_params("alloy-particle", {"species": "Pt,Pd", "fractions": "0.25, 0.75"})
    assert kw == {"species": ("Pt", "Pd"), "fractions": (0.25, 0.75)}
    gb = build_phantom("grain_boundary", {"lattice": "hexagonal", "theta": "21.79deg"})
    assert gb.info["phantom"] == "grain-boundary"
    from atomtomo.phantoms.registry import _parse

    assert _parse("yes", bool, "x") is True and _parse("0", bool, "x") is False


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("nonsense", {}, "unknown phantom.*vacancy"),
        ("square", {"colour": "red"}, "unknown parameter 'colour'.*spacing"),
        ("square", {"nx": "abc"}, "bad value"),
        ("square", {"nx": "2.5"}, "bad value"),
        ("square", {"spacing": "-1"}, "spacing"),
        ("square", {"lattice": "x"}, "unknown parameter"),
        ("grain-boundary", {"lattice": "pentagonal"}, "unknown lattice"),
        ("fcc-particle", {"shape": "blob"}, "unknown fcc shape"),
        ("measured", {}, "needs parameter 'path'"),
    ],
)
def test_registry_errors(name, params, match):
    with pytest.raises(InputError, match=match):
        build_phantom(name, params)


def test_configuration_roundtrip(tmp_path):
    from atomtomo.configuration import read_xyz, write_xyz

    cfg = build_phantom("core-shell", {"size": "2"})
    write_xyz(cfg, tmp_path / "p.xyz")
    back = read_xyz(tmp_path / "p.xyz")
    assert isinstance(back, Configuration) and back.n_atoms == cfg.n_atoms
    assert back.species_weights == pytest.approx(cfg.species_weights)


def test_registry_jitter():
    base = build_phantom("vacancy")
    a = build_phantom("vacancy", {"jitter": "0.005"}, seed=3)
    b = build_phantom("vacancy", {"jitter": "0.005"}, seed=3)
    assert np.array_equal(a.positions, b.positions) and a.n_atoms == base.n_atoms
    assert 0 < np.abs(a.positions - base.positions).max() < 0.05
    assert "jitter" in {p["name"]: p for p in list_phantoms()}["interstitial"]["params"]
