"""pchw: compile a neural network into FPGA hardware that runs predictive coding."""

from .errors import PchwError
from .fixedpoint import Format
from .network import Activation, Formats, Network, PCSettings, load
from .torch_import import from_torch

__all__ = ["PchwError", "Format", "Activation", "Formats", "Network", "PCSettings", "load",
           "from_torch"]
__version__ = "0.1.0"
