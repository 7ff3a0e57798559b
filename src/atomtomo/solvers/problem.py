"""What every reconstruction method takes and returns.

A :class:`Problem` is a tilt series resolved into what a solver needs: the forward model, the
data, the box, the species and their weights, the bond length and the noise level. A
:class:`Reconstruction` is the configuration found plus a record of how it was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..configuration import DEFAULT_SPECIES, Configuration
from ..errors import InputError
from ..forward import ForwardModel
from ..tiltseries import TiltSeries


@dataclass
class Problem:
    """A reconstruction problem.

    Attributes
    ----------
    model : ForwardModel
    data : ndarray
        Measured projections, ``model.geometry.data_shape``.
    box : (ndim, 2) ndarray
        Atoms are confined to ``box[:, 0] <= x <= box[:, 1]``.
    species_weights : dict
        Weight per species; one species of weight 1 unless the data say otherwise.
    bond_length : float or None
        Nearest-neighbour distance of the material (minimum of the pair potential).
    noise_std : float or None
        Standard deviation of the additive noise, if known.
    ground_truth : Configuration or None
        For progress reports and animations only; solvers must not use it otherwise.
    """

    model: ForwardModel
    data: np.ndarray
    box: np.ndarray
    species_weights: dict = field(default_factory=lambda: {DEFAULT_SPECIES: 1.0})
    bond_length: float | None = None
    noise_std: float | None = None
    ground_truth: Configuration | None = None
    length_unit: str = ""

    @classmethod
    def from_tiltseries(cls, ts: TiltSeries, sigma=None, bond_length=None) -> Problem:
        """Resolve a tilt series; ``sigma`` and ``bond_length`` override the file's values."""
        sigma = ts.atom_sigma if sigma is None else sigma
        if sigma is None:
            raise InputError("the tilt series has no atom_sigma attribute: pass --sigma")
        bond = ts.bond_length if bond_length is None else bond_length
        if bond is not None and (not np.isfinite(bond) or bond <= 0):
            raise InputError(f"bond length must be positive, got {bond}")
        weights = dict(ts.species_weights) if ts.species_weights else {DEFAULT_SPECIES: 1.0}
        return cls(
            model=ForwardModel(ts.geometry, sigma),
            data=np.asarray(ts.projections, dtype=float),
            box=ts.domain,
            species_weights=weights,
            bond_length=None if bond is None else float(bond),
            noise_std=ts.noise_std,
            ground_truth=ts.ground_truth,
            length_unit=ts.length_unit,
        )

    @property
    def ndim(self) -> int:
        return self.model.geometry.ndim

    @property
    def geometry(self):
        return self.model.geometry

    @property
    def sigma(self) -> float:
        return self.model.sigma

    def data_energy(self, config: Configuration) -> float:
        """``0.5 ||A(config) - y||^2``."""
        r = self.model.project(config.positions, config.weights) - self.data
        return 0.5 * float(np.sum(r * r))

    def empty(self) -> Configuration:
        return Configuration(np.zeros((0, self.ndim)), [], dict(self.species_weights))


@dataclass
class Reconstruction:
    """A method's result.

    ``info`` goes to the comment line of the output atom file; it holds at least ``method``,
    ``objective``, ``data_discrepancy`` (``||A(x) - y||``), ``energy``, ``alpha``,
    ``iterations`` and ``runtime_s``. ``history`` holds one dict per iteration. ``density``,
    for the grid methods, is ``(image, axes)``: the grid image indexed ``[ix, iy(, iz)]`` in
    weight per unit volume and the cell centres per axis.
    """

    configuration: Configuration
    info: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    density: tuple | None = None
