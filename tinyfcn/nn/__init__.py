"""Stateful layers with PyTorch's names, arguments and weight layouts, each with a backward pass."""

from .activation import Dropout, Dropout2d, ReLU
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .crop import Crop
from .grad_mode import is_grad_enabled, no_grad
from .init import manual_seed
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss
from .module import Module, Sequential
from .parameter import Parameter
from .pool import MaxPool2d

__all__ = [
    "Conv2d",
    "ConvTranspose2d",
    "Crop",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "is_grad_enabled",
    "manual_seed",
    "no_grad",
]
