"""atomtomo: grid-free atomic electron tomography.

The pipeline, in the order of the package layout:

configurations and phantoms  ->  geometry and forward model  ->  solvers  ->  metrics  ->  plots / experiments  ->  CLI
``configuration``, ``phantoms``   ``geometry``, ``forward``,      ``solvers``   ``metrics``   ``plotting``,            ``cli``
                                  ``noise``, ``tiltseries``                                  ``experiments``
"""

from .configuration import Configuration, read_xyz, write_xyz
from .errors import InputError
from .forward import ForwardModel
from .geometry import Geometry

__version__ = "0.1.0"

__all__ = [
    "Configuration",
    "ForwardModel",
    "Geometry",
    "InputError",
    "read_xyz",
    "write_xyz",
    "__version__",
]
