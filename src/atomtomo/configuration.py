"""Atomic configurations: positions, species and species weights; extended-XYZ I/O.

A configuration is ``n`` atoms at positions ``x_i`` (2D or 3D) with one species each. Each species
has a weight ``w`` (the integrated intensity of one atom of that species, spec section 1); the
density is ``mu = sum_i w_i N(x_i, sigma^2 I)``.

Atom files are extended XYZ (spec section 4), readable by :func:`ase.io.read` and OVITO: species
in the first column, positions in the data's length unit, ``z = 0`` for 2D configurations, then
one column per per-atom property (:attr:`Configuration.arrays`, e.g. ``structure``,
``coordination``, ``confidence``). The comment line carries key=value pairs describing what
produced the file. Keys that ASE would turn into calculator results (``energy``, ``forces``,
...) are written with the prefix ``prior_`` (the prior's energy is dimensionless, not a potential
energy), and read back under their own name; string values lose control characters (a newline
in a file name would end the comment line) and keep quotes and backslashes.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .errors import InputError, first_line

#: Species name used when a data set has one species of weight 1 and names none.
DEFAULT_SPECIES = "X"


@dataclass
class Configuration:
    """``n`` atoms in ``d`` = 2 or 3 dimensions.

    Parameters
    ----------
    positions : (n, d) array_like
        Atom positions in the data's length unit.
    species : (n,) array_like of str, optional
        Species of each atom; default :data:`DEFAULT_SPECIES` for all.
    species_weights : dict, optional
        Weight ``w`` of each species; species not listed have weight 1.
    info : dict, optional
        Free-form metadata written to the comment line of atom files.
    arrays : dict, optional
        Per-atom properties (name -> array of length ``n``), written as columns of atom files.
    """

    positions: np.ndarray
    species: np.ndarray | None = None
    species_weights: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def __post_init__(self):
        pos = np.asarray(self.positions, dtype=float)
        if pos.ndim == 2 and pos.shape[0] == 0 and pos.shape[1] in (2, 3):
            pass
        elif pos.ndim != 2 or pos.shape[1] not in (2, 3):
            raise InputError(f"positions must have shape (n, 2) or (n, 3), got {pos.shape}")
        if not np.all(np.isfinite(pos)):
            raise InputError("positions contain NaN or infinite values")
        self.positions = pos
        if self.species is None:
            self.species = np.full(len(pos), DEFAULT_SPECIES, dtype=object)
        else:
            sp = np.asarray(self.species, dtype=object).reshape(-1)
            if len(sp) != len(pos):
                raise InputError(f"{len(sp)} species for {len(pos)} positions")
            self.species = np.array([str(s) for s in sp], dtype=object)
        weights = {}
        for name, w in dict(self.species_weights).items():
            w = float(w)
            if not np.isfinite(w) or w <= 0:
                raise InputError(f"species weight of {name!r} must be a positive number, got {w}")
            weights[str(name)] = w
        self.species_weights = weights
        arrays = {}
        for name, values in dict(self.arrays or {}).items():
            values = np.asarray(values)
            if values.shape[:1] != (len(pos),):
                raise InputError(f"per-atom property {name!r} has {len(values)} values for "
                                 f"{len(pos)} atoms")
            arrays[str(name)] = values
        self.arrays = arrays

    # -- basic properties -------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return len(self.positions)

    def __len__(self) -> int:
        return self.n_atoms

    @property
    def ndim(self) -> int:
        return self.positions.shape[1]

    @property
    def weights(self) -> np.ndarray:
        """Weight of every atom, from its species."""
        return np.array([self.species_weights.get(s, 1.0) for s in self.species], dtype=float)

    @property
    def species_names(self) -> list[str]:
        """Species present, in order of first appearance, then any extra weighted species."""
        names = list(dict.fromkeys(self.species.tolist()))
        names += [s for s in self.species_weights if s not in names]
        return names

    def copy(self) -> Configuration:
        return Configuration(
            self.positions.copy(), self.species.copy(), dict(self.species_weights), dict(self.info),
            {k: v.copy() for k, v in self.arrays.items()},
        )

    def subset(self, index) -> Configuration:
        """The configuration restricted to ``index`` (a boolean mask or integer indices)."""
        return Configuration(
            self.positions[index], self.species[index], dict(self.species_weights), dict(self.info),
            {k: v[index] for k, v in self.arrays.items()},
        )

    def with_positions(self, positions, species=None) -> Configuration:
        """A new configuration with other positions (and species), same weights and info."""
        return Configuration(
            positions,
            self.species.copy() if species is None else species,
            dict(self.species_weights),
            dict(self.info),
        )

    # -- ASE ---------------------------------------------------------------------------------
    def to_ase(self):
        """An :class:`ase.Atoms` (z = 0 for 2D); species weights and info go to ``atoms.info``."""
        from ase import Atoms

        pos3 = np.zeros((self.n_atoms, 3))
        pos3[:, : self.ndim] = self.positions
        atoms = Atoms(symbols=_ase_symbols(self.species), positions=pos3, pbc=False)
        if any(s not in _ase_symbol_set() for s in self.species):
            atoms.new_array("species", np.array(self.species, dtype=str))
        for name, values in self.arrays.items():
            if name in atoms.arrays or name in ("numbers", "positions", "species", "pos", "Z"):
                continue
            values = np.asarray(values)
            if values.dtype.kind in "OUS":
                values = np.array([_clean_text(v).replace(" ", "_") or "-" for v in values],
                                  dtype=str)
            elif values.dtype.kind == "b":
                values = values.astype(bool)
            elif values.dtype.kind in "iu":
                values = values.astype(int)
            else:
                values = values.astype(float)
            atoms.new_array(name, values)
        atoms.info.update(_flatten_info(self.info))
        if self.species_weights:
            atoms.info["species_weights"] = json.dumps(self.species_weights)
        atoms.info["ndim"] = self.ndim
        return atoms

    @classmethod
    def from_ase(cls, atoms, ndim: int | None = None, species_weights=None) -> Configuration:
        """Build from :class:`ase.Atoms`. ``ndim=None`` means 2 when every z is 0, else 3."""
        pos = np.asarray(atoms.get_positions(), dtype=float)
        info = dict(atoms.info)
        if ndim is None:
            ndim = int(info.pop("ndim", 0)) or (2 if len(pos) and np.all(pos[:, 2] == 0) else 3)
        else:
            info.pop("ndim", None)
        if ndim not in (2, 3):
            raise InputError(f"ndim must be 2 or 3, got {ndim}")
        if ndim == 2 and len(pos) and np.any(pos[:, 2] != 0):
            raise InputError("a 2D configuration must have z = 0 for every atom")
        if "species" in atoms.arrays:
            species = [str(s) for s in atoms.arrays["species"]]
        else:
            species = atoms.get_chemical_symbols()
        arrays = {k: np.asarray(v) for k, v in atoms.arrays.items()
                  if k not in ("numbers", "positions", "species")}
        for key, value in list(info.items()):  # lists and dicts were written as JSON
            if isinstance(value, str) and value[:1] in ("[", "{"):
                try:
                    info[key] = json.loads(value)
                except json.JSONDecodeError:
                    pass
        for key in list(info):  # written with a prefix so that ASE leaves them alone
            if key.startswith(_PREFIX) and key[len(_PREFIX):] in _ase_result_keys():
                info.setdefault(key[len(_PREFIX):], info.pop(key))
        calc = getattr(atoms, "calc", None)
        if calc is not None and getattr(calc, "results", None):  # another tool's file
            for key, value in calc.results.items():
                if np.ndim(value) == 0:
                    info.setdefault(key, float(value))
        weights = info.pop("species_weights", None)
        if isinstance(weights, str):
            try:
                weights = json.loads(weights)
            except json.JSONDecodeError:
                weights = None
        if species_weights is not None:
            weights = species_weights
        return cls(pos[:, :ndim], species, weights or {}, info, arrays)


def _ase_symbol_set():
    from ase.data import chemical_symbols

    return set(chemical_symbols)


def _ase_symbols(species):
    known = _ase_symbol_set()
    return [s if s in known else DEFAULT_SPECIES for s in species]


#: Prefix of comment-line keys that ASE would otherwise read as calculator results.
_PREFIX = "prior_"


def _ase_result_keys() -> set:
    from ase.calculators.calculator import all_properties

    return set(all_properties)


def _clean_text(value) -> str:
    """``value`` as text that the extended-XYZ comment line carries and ASE reads back as is.

    Control characters (newlines, tabs, ...) become ``?`` as ``ls`` shows them: a newline
    would end the comment line. ASE's writer escapes double quotes but not backslashes while
    its reader unescapes both, so backslashes are doubled here.
    """
    text = "".join("?" if unicodedata.category(c) in ("Cc", "Cs") else c for c in str(value))
    return text.replace("\\", "\\\\")


def _clean_key(key) -> str:
    key = "".join(c if (c.isalnum() or c in "_-.") else "_" for c in str(key)) or "_"
    return _PREFIX + key if key in _ase_result_keys() else key


def _flatten_info(info: dict) -> dict:
    """Keep only values the extended-XYZ comment line can carry (numbers, strings, booleans),
    under keys that ASE does not turn into calculator results."""
    out = {}
    for k, v in info.items():
        k = _clean_key(k)
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out[k] = v.item() if hasattr(v, "item") else v
        elif isinstance(v, str):
            out[k] = _clean_text(v)
        elif v is not None:
            from ._io import jsonable

            out[k] = _clean_text(json.dumps(jsonable(v)))
    return out


def write_xyz(config: Configuration, path, **info) -> None:
    """Write ``config`` as extended XYZ (spec section 4), atomically.

    Keyword arguments are added to the comment line, e.g. ``method="adcg", alpha=0.1``.
    """
    from ase.io import write

    cfg = config.copy()
    cfg.info.update(info)
    with atomic_path(path) as tmp:
        write(str(tmp), cfg.to_ase(), format="extxyz")


def read_xyz(path, ndim: int | None = None) -> Configuration:
    """Read an atom file (extended or plain XYZ); raise :class:`InputError` when it is broken."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise InputError(f"atom file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"atom file {path} is empty")
    try:
        atoms = read(str(path), format="extxyz", index=-1)
    except Exception as exc:  # ase raises many types for malformed files
        if isinstance(exc, UnicodeDecodeError):
            raise InputError(f"cannot read atom file {path}: not a text (XYZ) file") from None
        try:
            atoms = read(str(path), index=-1)
        except Exception:
            msg = first_line(exc)
            if isinstance(exc, KeyError):  # ase: a symbol that is no chemical element
                msg = f"unknown chemical symbol {msg} (species must be element symbols, or X)"
            raise InputError(f"cannot read atom file {path}: {msg}") from None
    try:
        return Configuration.from_ase(atoms, ndim=ndim)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
