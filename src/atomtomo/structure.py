"""What the reconstructed atoms are: structure type, coordination, surface, point defects, twins.

3D configurations are analysed with OVITO's Python module (``pip install 'atomtomo[analysis]'``;
docs/decisions/2026-12-07-structure-analysis.md says why OVITO):

* **structure type** per atom by polyhedral template matching (PTM; Larsen, Schmidt &
  Schiøtz 2016): ``fcc``, ``hcp``, ``bcc``, ``ico`` or ``other``, with the local lattice
  orientation;
* **coordination**: neighbours closer than ``(1 + sqrt 2) / 2`` bond lengths (between the
  first and second fcc shells);
* **surface** atoms: those on the surface mesh of OVITO's alpha-shape construction
  (probe sphere of radius one bond length);
* **vacancies and interstitials relative to the fitted lattice**: every atom whose structure
  gives an orientation (fcc, bcc; others borrow that of the nearest such atom) predicts its
  ideal neighbour sites ``x_i + d R_i v_k`` (``d`` the bond length, ``v_k`` the template's unit
  neighbour vectors). A predicted site with no atom within ``0.35 d`` that at least
  ``VACANCY_VOTES`` atoms predict is a vacancy (a site inside the crystal; a site outside a
  facet is predicted by 3-4 atoms); an atom farther than ``0.35 d`` from every site its
  neighbours predict, with at least 4 neighbours, is an interstitial;
* **twin planes and stacking faults**: in an fcc crystal, hcp atoms form the faults. A
  connected set of hcp atoms one (111) layer thick is a twin plane, two layers thick an
  intrinsic stacking fault;
* **dislocations** (fcc): OVITO's dislocation extraction algorithm (DXA; Stukowski 2012),
  the count and total line length.

2D configurations (and 3D without OVITO) get coordination and surface (edge) atoms only,
and the summary says so rather than failing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .configuration import Configuration
from .errors import InputError

#: Structure names in the order of OVITO's PTM types (OTHER, FCC, HCP, BCC, ICO).
STRUCTURE_NAMES = ("other", "fcc", "hcp", "bcc", "ico")

#: Coordination cut-off in bond lengths: between the first (1) and second (sqrt 2) fcc shells.
COORDINATION_CUTOFF = (1 + math.sqrt(2)) / 2

#: Distance (bond lengths) within which an atom occupies a lattice site.
SITE_TOLERANCE = 0.35

#: A predicted empty site is a vacancy when at least this many atoms predict it.
VACANCY_VOTES = 8


@dataclass
class StructureAnalysis:
    """Per-atom columns and a summary.

    Attributes
    ----------
    columns : dict
        Per-atom arrays: ``structure`` (str), ``coordination`` (int), ``surface`` (bool),
        ``interstitial`` (bool).
    summary : dict
        Counts per structure type, surface atoms, vacancies (with their positions),
        interstitials, twin planes, stacking faults, dislocations and what was analysed.
    """

    columns: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def annotate(self, config: Configuration) -> Configuration:
        """A copy of ``config`` with the per-atom columns added (for the atom file)."""
        out = config.copy()
        out.arrays.update(self.columns)
        return out


def have_ovito() -> bool:
    try:
        import ovito.modifiers  # noqa: F401
    except Exception:  # noqa: BLE001 -- missing, or a broken binary install
        return False
    return True


def _bond_length(pos, bond_length):
    from scipy.spatial import cKDTree

    if bond_length is not None:
        return float(bond_length)
    if len(pos) < 2:
        raise InputError("structure analysis needs a bond length or at least 2 atoms")
    d, _ = cKDTree(pos).query(pos, k=2)
    return float(np.median(d[:, 1]))


def _coordination(pos, bond):
    from scipy.spatial import cKDTree

    tree = cKDTree(pos)
    counts = np.array([len(n) - 1 for n in tree.query_ball_point(pos, COORDINATION_CUTOFF * bond)])
    return counts


def _surface_2d(pos, bond):
    """Edge atoms of a 2D configuration: on the alpha shape of probe radius one bond length,
    approximated by atoms with an empty half-plane sector of their neighbourhood."""
    from scipy.spatial import cKDTree

    tree = cKDTree(pos)
    out = np.zeros(len(pos), bool)
    for i, nbrs in enumerate(tree.query_ball_point(pos, 2.0 * bond)):
        vec = pos[[j for j in nbrs if j != i]] - pos[i]
        if len(vec) < 3:
            out[i] = True
            continue
        ang = np.sort(np.arctan2(vec[:, 1], vec[:, 0]))
        gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * np.pi]))
        out[i] = gaps.max() > 0.75 * np.pi  # an open sector wider than 135 degrees
    return out


def analyse(config: Configuration, bond_length=None) -> StructureAnalysis:
    """Structure analysis of ``config`` (see the module docstring).

    Parameters
    ----------
    config : Configuration
    bond_length : float, optional
        Nearest-neighbour distance; default the median nearest-neighbour distance.

    Returns
    -------
    StructureAnalysis
    """
    pos = np.asarray(config.positions, float)
    n = len(pos)
    if n == 0:
        return StructureAnalysis({}, {"n_atoms": 0, "analysed": "nothing (no atoms)"})
    bond = _bond_length(pos, bond_length)
    coordination = _coordination(pos, bond) if n > 1 else np.zeros(1, int)
    if config.ndim == 2 or not have_ovito():
        surface = _surface_2d(pos, bond) if config.ndim == 2 else coordination < 10
        why = ("2D: coordination and edge atoms only (structure types, point defects and "
               "twins need 3D)" if config.ndim == 2 else
               "coordination and surface (coordination < 10) only: install OVITO "
               "(pip install 'atomtomo[analysis]') for structure types, defects and twins")
        summary = {"n_atoms": n, "analysed": why, "bond_length": bond,
                   "surface_atoms": int(surface.sum()),
                   "mean_coordination": float(coordination.mean()),
                   "coordination_histogram": _histogram(coordination)}
        return StructureAnalysis({"coordination": coordination, "surface": surface}, summary)
    return _analyse_3d(pos, bond, coordination)


def _histogram(values) -> dict:
    keys, counts = np.unique(np.asarray(values), return_counts=True)
    return {str(k): int(c) for k, c in zip(keys, counts)}


def _ovito_data(pos, bond):
    from ovito.data import DataCollection

    data = DataCollection()
    lo = pos.min(axis=0) - 3 * bond
    hi = pos.max(axis=0) + 3 * bond
    matrix = np.zeros((3, 4))
    matrix[:, :3] = np.diag(hi - lo)
    matrix[:, 3] = lo
    data.create_cell(matrix, pbc=(False, False, False))
    particles = data.create_particles(count=len(pos))
    particles.create_property("Position", data=pos)
    return data


def _analyse_3d(pos, bond, coordination) -> StructureAnalysis:
    from ovito.modifiers import ConstructSurfaceModifier, PolyhedralTemplateMatchingModifier
    from ovito.pipeline import Pipeline, StaticSource

    data = _ovito_data(pos, bond)
    ptm = PolyhedralTemplateMatchingModifier(output_orientation=True)
    ptm.structures[PolyhedralTemplateMatchingModifier.Type.ICO].enabled = True
    surf = ConstructSurfaceModifier(radius=bond, select_surface_particles=True)
    pipeline = Pipeline(source=StaticSource(data=data))
    pipeline.modifiers.append(ptm)
    pipeline.modifiers.append(surf)
    out = pipeline.compute()
    types = np.asarray(out.particles["Structure Type"], int)
    names = np.array([STRUCTURE_NAMES[t] if t < len(STRUCTURE_NAMES) else "other"
                      for t in types], dtype=object)
    quat = np.asarray(out.particles["Orientation"], float)  # (x, y, z, w)
    surface = np.asarray(out.particles["Selection"], int) > 0

    vac_sites, interstitial = _point_defects(pos, bond, names, quat)
    faults = _faults(pos, bond, names, quat)
    summary = {"n_atoms": len(pos), "analysed": "3D: PTM structure types, coordination, "
               "surface (alpha shape), point defects against the fitted lattice, twins (OVITO)",
               "bond_length": bond}
    for name in STRUCTURE_NAMES[1:] + STRUCTURE_NAMES[:1]:
        summary[name] = int(np.sum(names == name))
    summary.update({
        "surface_atoms": int(surface.sum()),
        "mean_coordination": float(coordination.mean()),
        "vacancies": len(vac_sites),
        "vacancy_sites": np.round(vac_sites, 4).tolist(),
        "interstitials": int(interstitial.sum()),
        **faults,
        **_dislocations(data, names),
    })
    columns = {"structure": names.astype(str), "coordination": coordination,
               "surface": surface, "interstitial": interstitial}
    return StructureAnalysis(columns, summary)


# -- point defects -----------------------------------------------------------------------------
def _fcc_vectors():
    v = [np.array(p, float) for p in
         [(1, 1, 0), (1, -1, 0), (-1, 1, 0), (-1, -1, 0), (1, 0, 1), (1, 0, -1), (-1, 0, 1),
          (-1, 0, -1), (0, 1, 1), (0, 1, -1), (0, -1, 1), (0, -1, -1)]]
    return np.array(v) / math.sqrt(2)


def _bcc_vectors():
    v = np.array([(a, b, c) for a in (1, -1) for b in (1, -1) for c in (1, -1)], float)
    return v / math.sqrt(3)


def _rotation(q):
    """Rotation matrix of the unit quaternion ``(x, y, z, w)`` (OVITO's order)."""
    x, y, z, w = q / (np.linalg.norm(q) + 1e-300)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _point_defects(pos, bond, names, quat):
    """Vacancy sites and interstitial atoms against the locally fitted lattice."""
    from scipy.spatial import cKDTree

    crystal = np.isin(names, ("fcc", "bcc"))
    if not crystal.any():
        return np.zeros((0, 3)), np.zeros(len(pos), bool)
    # Atoms without an orientation borrow that of the nearest crystalline atom.
    ref = np.flatnonzero(crystal)
    _, nearest = cKDTree(pos[ref]).query(pos)
    source = ref[nearest]
    sites, owner = [], []
    for i in range(len(pos)):
        j = source[i]
        template = _fcc_vectors() if names[j] == "fcc" else _bcc_vectors()
        sites.append(pos[i] + bond * template @ _rotation(quat[j]).T)
        owner.append(np.full(len(template), i))
    sites, owner = np.concatenate(sites), np.concatenate(owner)
    tol = SITE_TOLERANCE * bond
    atoms = cKDTree(pos)
    dist, _ = atoms.query(sites)
    empty = dist > tol
    # Empty predicted sites: merge the predictions of one site, count the predicting atoms.
    vacancies = []
    if empty.any():
        e_sites, e_owner = sites[empty], owner[empty]
        tree = cKDTree(e_sites)
        done = np.zeros(len(e_sites), bool)
        for k in range(len(e_sites)):
            if done[k]:
                continue
            group = [g for g in tree.query_ball_point(e_sites[k], tol) if not done[g]]
            done[group] = True
            if len(set(e_owner[group].tolist())) >= VACANCY_VOTES:
                vacancies.append(e_sites[group].mean(axis=0))
    vac = np.array(vacancies).reshape(-1, 3)
    # Interstitials: far from every site that the other atoms predict, and not at the surface.
    site_tree = cKDTree(sites)
    interstitial = np.zeros(len(pos), bool)
    coordination = _coordination(pos, bond)
    for i in range(len(pos)):
        near = [k for k in site_tree.query_ball_point(pos[i], tol) if owner[k] != i]
        interstitial[i] = not near and coordination[i] >= 4
    return vac, interstitial


# -- planar faults ---------------------------------------------------------------------------
def _faults(pos, bond, names, quat):
    """Twin planes (one hcp layer) and intrinsic stacking faults (two) in an fcc crystal."""
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    out = {"twin_planes": 0, "stacking_faults": 0, "hcp_layers": []}
    hcp = np.flatnonzero(names == "hcp")
    if len(hcp) < 3 or np.sum(names == "hcp") > np.sum(names == "fcc") + np.sum(names == "other"):
        return out  # an hcp crystal, not faults in an fcc one
    from scipy.sparse import coo_matrix

    p = pos[hcp]
    tree = cKDTree(p)
    # Each hcp atom's fault plane: normal to its stacking direction, the c axis of PTM's hcp
    # template (its z axis) turned by the atom's orientation. Planes that meet (the five twins
    # of a decahedron, the twenty of an icosahedron) are told apart by it.
    normals = np.array([_rotation(quat[i]) @ np.array([0.0, 0.0, 1.0]) for i in hcp])
    pairs = tree.query_pairs(COORDINATION_CUTOFF * bond, output_type="ndarray")
    if len(pairs):
        parallel = np.abs(np.sum(normals[pairs[:, 0]] * normals[pairs[:, 1]], axis=1)) > 0.9
        pairs = pairs[parallel]
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(hcp),) * 2)
    n_comp, labels = connected_components(adj, directed=False)
    spacing = bond * math.sqrt(2 / 3)  # (111) layer spacing in fcc
    for c in range(n_comp):
        members = pos[hcp[labels == c]]
        if len(members) < 3:
            continue
        centred = members - members.mean(axis=0)
        n_c = normals[labels == c]  # +-n: the principal axis of sum n n^T
        normal = np.linalg.eigh(n_c.T @ n_c)[1][:, -1]
        normal *= np.sign(normal[np.argmax(np.abs(normal))])
        heights = centred @ normal
        layers = int(round(float(np.ptp(heights)) / spacing)) + 1
        out["hcp_layers"].append({"atoms": int(len(members)), "layers": layers,
                                  "normal": np.round(normal, 3).tolist()})
        if layers == 1:
            out["twin_planes"] += 1
        elif layers == 2:
            out["stacking_faults"] += 1
    return out


def _dislocations(data, names):
    """Dislocation lines by DXA (fcc crystals of a few hundred atoms or more)."""
    if np.sum(names == "fcc") < 100:
        return {"dislocations": None}
    try:
        from ovito.modifiers import DislocationAnalysisModifier
        from ovito.pipeline import Pipeline, StaticSource

        pipeline = Pipeline(source=StaticSource(data=data))
        pipeline.modifiers.append(DislocationAnalysisModifier(
            input_crystal_structure=DislocationAnalysisModifier.Lattice.FCC))
        out = pipeline.compute()
        lines = out.dislocations.lines if out.dislocations is not None else []
        length = float(sum(np.sum(np.linalg.norm(np.diff(np.asarray(line.points), axis=0),
                                                 axis=1)) for line in lines))
        return {"dislocations": len(lines), "dislocation_length": length}
    except Exception as exc:  # noqa: BLE001 -- DXA is an extra; say why it is missing
        return {"dislocations": None, "dislocation_note": f"DXA failed: {exc}"[:120]}
