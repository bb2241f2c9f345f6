"""The networks: VGG16 (classifier and backbone) and FCN-32s/16s/8s/8s-at-once on top of it."""

from . import geometry, surgery
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, FCNBase
from .vgg import VGG16, VGG16_STAGES

MODELS = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s, "fcn8s-atonce": FCN8sAtOnce}

__all__ = [
    "FCN8s",
    "FCN8sAtOnce",
    "FCN16s",
    "FCN32s",
    "FCNBase",
    "MODELS",
    "VGG16",
    "VGG16_STAGES",
    "geometry",
    "surgery",
]
