"""Tests of the energy priors: values, gradients, continuity, local changes, scaling, EMT."""

import time

import numpy as np
import pytest

from atomtomo.errors import InputError
from atomtomo.potentials import (
    EMTPotential,
    LennardJones,
    NoPotential,
    emt_reference,
    make_potential,
    nearest_neighbour_distance,
)
from gradients import finite_difference  # tests/gradients.py


def tricky_configuration(rng, d, bond):
    """Random atoms plus pairs in the soft core, at its edge, in the switch and near the cutoff."""
    x = rng.uniform(0, 4 * bond, size=(12, d))
    offsets = [0.3, 0.59, 0.61, 1.0, 1.55, 1.95, 1.999]
    extra = []
    for k, r in enumerate(offsets):
        base = np.full(d, 10 * bond + 3 * k * bond)
        u = rng.normal(size=d)
        extra += [base, base + r * bond * u / np.linalg.norm(u)]
    return np.vstack([x, extra])


def fcc(n_cells, a):
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return ((g[:, None, :] + basis[None]) * a).reshape(-1, 3)


# -- Lennard-Jones ---------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3])
def test_lj_dimer_at_minimum(d):
    lj = LennardJones(1.7, epsilon=0.3)
    x = np.zeros((2, d))
    x[1, 0] = 1.7
    e, g = lj.energy_and_gradient(x)
    assert e == pytest.approx(-0.3, rel=1e-12)
    assert np.abs(g).max() < 1e-12
    # minimum of the pair curve is at r_m with depth epsilon (cutoff switch does not move it)
    r = np.linspace(0.7, 3.5, 20001) * 1.7
    phi = lj.pair_energy(r)
    assert r[np.argmin(phi)] == pytest.approx(1.7, abs=2e-4)
    assert phi.min() == pytest.approx(-0.3, rel=1e-6) and phi.min() >= -0.3 * (1 + 1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_lj_gradient_matches_finite_differences(d):
    rng = np.random.default_rng(d)
    lj = LennardJones(0.8, epsilon=1.5)
    x = tricky_configuration(rng, d, 0.8)
    _, g = lj.energy_and_gradient(x)
    fd = finite_difference(lj, x)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.abs(g).max())


def test_lj_continuity_at_cutoff_switch_and_core():
    lj = LennardJones(1.0, epsilon=1.0, cutoff=2.0, soft_core=0.6)
    h = 1e-6
    for r0 in (lj.cutoff_radius, lj.switch_radius, lj.core_radius):
        # extrapolate energy and force from each side to r0: a jump would show as an O(1) gap
        r = r0 + h * np.array([-2.0, -1.0, 1.0, 2.0])
        phi, dphi_r = lj.pair_terms(r * r)
        for f in (phi, dphi_r * r):
            left, right = 2 * f[1] - f[0], 2 * f[2] - f[3]
            assert abs(left - right) <= 1e-6 * (1 + abs(left)), (r0, left, right)
    phi, dphi_r = lj.pair_terms(np.array([lj.cutoff_radius ** 2, 1.0001 * lj.cutoff_radius ** 2]))
    assert np.all(phi == 0) and np.all(dphi_r == 0)
    assert lj.pair_energy(0.0) == pytest.approx(3044.29, abs=0.01)  # finite core


def test_lj_coincident_atoms_are_finite():
    lj = LennardJones(1.0)
    x = np.array([[0.0, 0, 0], [0, 0, 0], [0, 0, 0], [0.3, 0, 0], [1.0, 0, 0]])
    e, g = lj.energy_and_gradient(x)
    assert np.isfinite(e) and e > 1000
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.sum(axis=0), 0, atol=1e-8)  # Newton's third law
    ins = lj.insertion_energy(x, x[:2])
    assert np.all(np.isfinite(ins))
    assert np.all(np.isfinite(lj.removal_energy(x)))


@pytest.mark.parametrize("d", [2, 3])
def test_lj_insertion_removal_and_atom_energies(d):
    rng = np.random.default_rng(10 + d)
    lj = LennardJones(1.0)
    x = rng.uniform(0, 5, size=(60, d))
    e, _ = lj.energy_and_gradient(x)
    assert lj.atom_energies(x).sum() == pytest.approx(e, rel=1e-12, abs=1e-12)
    assert lj.energy(x) == pytest.approx(e, rel=1e-12, abs=1e-12)
    cand = np.vstack([rng.uniform(-1, 6, size=(40, d)), x[:2]])  # incl. on top of atoms
    ins = lj.insertion_energy(x, cand)
    want = [lj.energy_and_gradient(np.vstack([x, c]))[0] - e for c in cand]
    np.testing.assert_allclose(ins, want, rtol=1e-10, atol=1e-10)
    rem = lj.removal_energy(x)
    want = [lj.energy_and_gradient(np.delete(x, i, axis=0))[0] - e for i in range(len(x))]
    np.testing.assert_allclose(rem, want, rtol=1e-10, atol=1e-10)
    assert lj.insertion_energy(np.zeros((0, d)), cand).tolist() == [0.0] * len(cand)


def test_lj_scales_linearly_to_20000_atoms():
    rng = np.random.default_rng(0)
    a = np.sqrt(2.0)  # fcc with nearest-neighbour distance 1
    x = fcc(18, a)[:20000] + rng.normal(scale=0.05, size=(20000, 3))
    lj = LennardJones(1.0)
    t = time.perf_counter()
    e, g = lj.energy_and_gradient(x)
    ins = lj.insertion_energy(x, rng.uniform(0, 18 * a, size=(5000, 3)))
    elapsed = time.perf_counter() - t
    assert np.isfinite(e) and np.all(np.isfinite(g)) and np.all(np.isfinite(ins))
    # bulk atoms have 12 bonds of ~ -eps, shared by two: ~ -6 eps per atom plus the tail
    assert -8 < e / len(x) < -4
    assert elapsed < 10.0


def test_lj_rejects_bad_parameters():
    with pytest.raises(InputError):
        LennardJones(0.0)
    with pytest.raises(InputError):
        LennardJones(1.0, cutoff=0.9)
    with pytest.raises(InputError):
        LennardJones(1.0, soft_core=1.2)
    with pytest.raises(InputError):
        LennardJones(1.0).energy_and_gradient(np.zeros((3, 4)))
    with pytest.raises(InputError):
        LennardJones(1.0).insertion_energy(np.zeros((3, 2)), np.zeros((2, 3)))


# -- no potential, factory, helpers ----------------------------------------------------------------
def test_no_potential_is_zero():
    p = make_potential("none", 1.0, 2)
    assert isinstance(p, NoPotential) and p.epsilon == 0
    x = np.random.default_rng(0).normal(size=(5, 2))
    e, g = p.energy_and_gradient(x)
    assert e == 0 and g.shape == (5, 2) and not g.any()
    assert p.insertion_energy(x, x[:3]).shape == (3,)
    assert not p.removal_energy(x).any() and not p.atom_energies(x).any()


def test_make_potential():
    lj = make_potential("LJ", 2.5, 2, epsilon=3.0)
    assert isinstance(lj, LennardJones) and lj.bond_length == 2.5 and lj.epsilon == 3.0
    with pytest.raises(InputError, match="unknown potential"):
        make_potential("morse", 1.0, 3)
    with pytest.raises(InputError, match="3D only"):
        make_potential("emt", 1.0, 2)
    with pytest.raises(InputError, match="unknown option"):
        make_potential("lj", 1.0, 2, sigma=1.0)
    emt = make_potential("emt", 0.4, 3, species=["Au"])
    assert isinstance(emt, EMTPotential) and emt.element == "Au" and emt.bond_length == 0.4


def test_nearest_neighbour_distance():
    x = fcc(3, 4.0)
    assert nearest_neighbour_distance(x) == pytest.approx(4.0 / np.sqrt(2))
    with pytest.raises(InputError):
        nearest_neighbour_distance(np.zeros((1, 3)))


# -- EMT -------------------------------------------------------------------------------------------
def pt_cluster(seed=0, rattle=0.08):
    from ase.cluster import Octahedron

    atoms = Octahedron("Pt", 3)  # 19 atoms
    atoms.rattle(rattle, seed=seed)
    return atoms.positions.copy()


def test_emt_matches_ase_for_an_alloy_cluster():
    from ase import Atoms
    from ase.calculators.emt import EMT

    x = pt_cluster(1)
    species = np.array(["Pt", "Au", "Cu"] * 7)[: len(x)]
    atoms = Atoms(list(species), positions=x)
    atoms.calc = EMT()
    p = EMTPotential()
    e, g = p.energy_and_gradient(x, species)
    assert e == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(g, -atoms.get_forces(), atol=1e-10)
    np.testing.assert_allclose(p.atom_energies(x, species), atoms.get_potential_energies(),
                               atol=1e-10)
    e_ase, g_ase = EMTPotential(engine="ase").energy_and_gradient(x, species)
    assert e_ase == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(g_ase, g, atol=1e-10)


def test_emt_gradient_matches_finite_differences_with_length_scale():
    ref = emt_reference("Pt")["nearest_neighbour"]
    x = pt_cluster(2) / ref * 0.5  # data unit: nearest-neighbour distance 0.5
    p = EMTPotential(species_map={"X": "Pt"}, bond_length=0.5)
    assert p.scale == pytest.approx(ref / 0.5)
    species = ["X"] * len(x)
    _, g = p.energy_and_gradient(x, species)
    fd = finite_difference(p, x, species, h=1e-7)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.abs(g).max())


def test_emt_insertion_and_removal_are_exact():
    rng = np.random.default_rng(3)
    x = pt_cluster(3)
    species = np.array(["Pt"] * len(x), dtype=object)
    species[::4] = "Au"
    p = EMTPotential()
    e = p.energy(x, species)
    centre = x.mean(axis=0)
    cand = np.vstack([centre + rng.uniform(-7, 7, size=(25, 3)),
                      centre + [30.0, 0, 0],  # far away: an isolated atom
                      x[0]])  # on top of an atom
    for name in ("Pt", "Au"):
        ins = p.insertion_energy(x, cand, species, name)
        want = [p.energy(np.vstack([x, c]), np.append(species, name)) - e for c in cand]
        np.testing.assert_allclose(ins, want, rtol=1e-9, atol=1e-9)
    assert ins[-2] == pytest.approx(3.80, abs=1e-9)  # isolated Au: -E0 (bulk reference)
    rem = p.removal_energy(x, species)
    want = [p.energy(np.delete(x, i, axis=0), np.delete(species, i)) - e for i in range(len(x))]
    np.testing.assert_allclose(rem, want, rtol=1e-9, atol=1e-9)
    # an atom whose only neighbour is removed goes back to the isolated-atom energy
    pair = np.array([[0.0, 0, 0], [2.8, 0, 0]])
    rem = p.removal_energy(pair, ["Pt", "Pt"])
    assert rem == pytest.approx([5.85 - p.energy(pair, ["Pt", "Pt"])] * 2)


def test_emt_epsilon_and_coincident_atoms():
    p = EMTPotential(species_map={"X": "Pt"})
    assert p.epsilon == pytest.approx(5.85 / 6, rel=1e-3)
    assert p.bond_length == pytest.approx(2.77, abs=0.01)
    x = np.vstack([pt_cluster(4), pt_cluster(4)[:1]])
    e, g = p.energy_and_gradient(x, ["X"] * len(x))
    assert np.isfinite(e) and np.all(np.isfinite(g))
    e, g = EMTPotential(element="Pt", engine="ase").energy_and_gradient(x)
    assert np.isfinite(e) and np.all(np.isfinite(g))


def test_emt_rejects_unsupported_species():
    x = pt_cluster(0)
    with pytest.raises(InputError, match="Al Cu Ag Au Ni Pd Pt"):
        EMTPotential().energy_and_gradient(x, ["X"] * len(x))
    with pytest.raises(InputError, match="not supported"):
        EMTPotential(species_map={"X": "Fe"})
    with pytest.raises(InputError, match="3D"):
        EMTPotential(element="Pt").energy_and_gradient(np.zeros((3, 2)))
    with pytest.raises(InputError, match="element"):
        EMTPotential().epsilon
