"""Tilt series: measured or simulated projections with their geometry (spec section 3).

SKELETON — the HDF5 reader/writer and the MRC/TIFF importers are filled in by the I/O work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .configuration import Configuration
from .geometry import Geometry


@dataclass
class TiltSeries:
    """Projections plus everything needed to interpret them.

    Attributes mirror the HDF5 fields of spec section 3.
    """

    projections: np.ndarray  # geometry.data_shape
    geometry: Geometry
    atom_sigma: float | None = None
    species_weights: dict | None = None  # None = one species of weight 1
    box: np.ndarray | None = None  # (ndim, 2); None = geometry.default_box()
    bond_length: float | None = None
    length_unit: str = ""
    noise_model: str | None = None
    noise_std: float | None = None
    ground_truth: Configuration | None = None
    attrs: dict = field(default_factory=dict)  # any other root attributes, kept on round trip

    @property
    def ndim(self) -> int:
        return self.geometry.ndim

    @property
    def domain(self) -> np.ndarray:
        """The reconstruction box: ``box`` if given, else the detector's span."""
        return self.geometry.default_box() if self.box is None else np.asarray(self.box, float)
