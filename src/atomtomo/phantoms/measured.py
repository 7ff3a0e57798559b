"""Measured atomic structures (published AET atom models) as phantoms.

The files are extended XYZ with chemical symbols and positions in angstrom, e.g. the Pd@Pt
core-shell particle of the PdPtCoreShellNanoparticles repository. Cite the source papers in anything
derived from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..configuration import Configuration
from ..errors import InputError, first_line
from ..potentials import nearest_neighbour_distance
from .nanoparticles import zcontrast_weights


def load_measured(path, exponent: float = 1.7) -> Configuration:
    """Load a measured atom model as a phantom.

    Parameters
    ----------
    path : str or Path
        An (extended) XYZ file with chemical symbols and positions in angstrom.
    exponent : float
        Exponent of the Z-contrast species weights (:func:`zcontrast_weights`).

    Returns
    -------
    Configuration
        3D positions centred on the centroid, the file's species with Z-contrast weights
        (heaviest = 1), and info ``phantom`` ("measured"), ``source`` (the file name),
        ``bond_length`` = ``spacing`` = the median nearest-neighbour distance, ``box`` = the
        bounding box padded by one bond length, ``length_unit`` ("angstrom").
    """
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise InputError(f"measured atom file not found: {path}")
    try:
        atoms = read(str(path), index=-1)
    except Exception as exc:  # ase raises many kinds of errors on broken files
        msg = first_line(exc)
        raise InputError(f"cannot read measured atom file {path}: {msg}") from None
    pos = np.asarray(atoms.get_positions(), float)
    if len(pos) < 2 or not np.isfinite(pos).all():
        raise InputError(f"{path}: needs at least two atoms with finite positions")
    pos = pos - pos.mean(0)
    species = np.array(atoms.get_chemical_symbols(), dtype=object)
    bond = nearest_neighbour_distance(pos)
    lo, hi = pos.min(0) - bond, pos.max(0) + bond
    info = {
        "phantom": "measured",
        "source": path.name,
        "spacing": bond,
        "bond_length": bond,
        "box": [[float(a), float(b)] for a, b in zip(lo, hi)],
        "length_unit": str(atoms.info.get("unit", "angstrom")),
    }
    return Configuration(pos, species, zcontrast_weights(species.tolist(), exponent), info)
