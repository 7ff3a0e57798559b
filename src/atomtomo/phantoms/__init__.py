"""Test configurations: 2D lattices with defects, 3D nanoparticles, measured AET particles.

Every phantom is a :class:`~atomtomo.configuration.Configuration` whose ``info`` holds
``"phantom"`` (its name), ``"spacing"`` and ``"bond_length"`` (the ideal nearest-neighbour
distance), and ``"box"`` (the ``(d, 2)`` reconstruction domain). 2D phantoms live in the unit box
``[-0.5, 0.5]^2``; 3D particles are in angstrom, centred on their centroid.

Modules: :mod:`.lattices2d` (lattices, cropping, jitter, zone axes), :mod:`.defects` (point
defects, dislocations, grain boundaries, the poster's lattices, random training lattices),
:mod:`.nanoparticles` (fcc/bcc particles, faults, species, Z-contrast weights), :mod:`.measured`
(published atom models) and :mod:`.registry` (names for the command line).
"""

from .defects import (
    DEFECT_KINDS,
    add_divacancy,
    add_edge_dislocation,
    add_interstitial,
    add_vacancy,
    dislocation_core,
    divacancy_lattice,
    edge_dislocation_displacement,
    edge_dislocation_lattice,
    grain_boundary,
    interstitial_sites,
    poster_dislocation,
    poster_interstitial,
    poster_vacancy,
    random_defect_lattice,
    relax_point_defect,
    substitute,
    substitution_lattice,
)
from .lattices2d import (
    UNIT_BOX,
    crop,
    hexagonal_lattice,
    jitter,
    lattice_vectors,
    square_lattice,
    zone_axis_angles,
)
from .measured import load_measured
from .nanoparticles import (
    add_particle_interstitials,
    add_particle_vacancies,
    alloy_particle,
    bcc_particle,
    core_shell_particle,
    fcc_particle,
    planar_fault,
    twin_particle,
    zcontrast_weights,
)
from .registry import PHANTOMS, build_phantom, list_phantoms, parse_params

__all__ = [
    "DEFECT_KINDS",
    "PHANTOMS",
    "UNIT_BOX",
    "add_divacancy",
    "add_edge_dislocation",
    "add_interstitial",
    "add_particle_interstitials",
    "add_particle_vacancies",
    "add_vacancy",
    "alloy_particle",
    "bcc_particle",
    "build_phantom",
    "core_shell_particle",
    "crop",
    "dislocation_core",
    "divacancy_lattice",
    "edge_dislocation_displacement",
    "edge_dislocation_lattice",
    "fcc_particle",
    "grain_boundary",
    "hexagonal_lattice",
    "interstitial_sites",
    "jitter",
    "lattice_vectors",
    "list_phantoms",
    "load_measured",
    "parse_params",
    "planar_fault",
    "poster_dislocation",
    "poster_interstitial",
    "poster_vacancy",
    "random_defect_lattice",
    "relax_point_defect",
    "square_lattice",
    "substitute",
    "substitution_lattice",
    "twin_particle",
    "zcontrast_weights",
    "zone_axis_angles",
]
