"""tinyfcn: Fully Convolutional Networks from scratch on NumPy/CuPy, every backward pass by hand."""

from . import backend, fast, functional, nn
from .backend import asnumpy, get_array_module, to_device
from .nn.init import manual_seed

__version__ = "0.1.0"
__all__ = [
    "asnumpy",
    "backend",
    "fast",
    "functional",
    "get_array_module",
    "manual_seed",
    "nn",
    "to_device",
]
