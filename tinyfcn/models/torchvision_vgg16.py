"""torchvision's ImageNet VGG16 weights in tinyfcn's names: the weights FCN starts from.

torchvision keys its VGG16 by position (``features.0`` ... ``classifier.6``); the reference FCNs
and tinyfcn name the layers (``conv1_1`` ... ``fc8``). Loading into an FCN convolutionalizes fc6
and fc7 on the way in (a reshape: the flatten was C-major) and drops fc8, as the paper does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .vgg import VGG16_STAGES


def _torchvision_vgg16_names() -> dict[str, str]:
    """torchvision's ``features`` is one Sequential, (Conv2d, ReLU) per conv and a MaxPool2d per
    stage; its ``classifier`` is (Linear, ReLU, Dropout) x 2 then Linear."""
    names, i = {}, 0
    for s, (convs, _) in enumerate(VGG16_STAGES, start=1):
        for c in range(1, convs + 1):
            names[f"features.{i}"] = f"conv{s}_{c}"
            i += 2  # Conv2d, ReLU
        i += 1  # MaxPool2d
    names.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
    return names


# features.0 -> conv1_1, features.2 -> conv1_2, features.5 -> conv2_1, ... features.28 -> conv5_3
TORCHVISION_VGG16 = _torchvision_vgg16_names()


def vgg16_state_from_torchvision(model: Any, weights: dict, source: str) -> dict:
    """torchvision's VGG16 state dict (NumPy arrays) -> ``model``'s names and shapes.

    Into a ``VGG16``: copied (dense), or fc6/fc7/fc8 reshaped (``fully_conv=True``). Into an FCN:
    the 13 convs copied, fc6 (4096, 25088) -> (4096, 512, 7, 7) and fc7 (4096, 4096) ->
    (4096, 4096, 1, 1), fc8 dropped: FCN's score layers start at zero. Every missing or
    unexpected key and every shape mismatch is named in one KeyError.
    """
    from .fcn import FCNBase
    from .vgg import VGG16

    if not isinstance(model, (VGG16, FCNBase)):
        raise TypeError(f"expected a tinyfcn VGG16 or FCN model, got {type(model).__name__}")
    layers = [k for k in TORCHVISION_VGG16 if isinstance(model, VGG16) or k != "classifier.6"]
    expected = [f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")]
    dropped = set() if isinstance(model, VGG16) else {"classifier.6.weight", "classifier.6.bias"}
    own = dict(model.named_parameters())
    loaded, mismatched = {}, []
    for key in (k for k in expected if k in weights):
        layer, kind = key.rsplit(".", 1)
        name, value = f"{TORCHVISION_VGG16[layer]}.{kind}", weights[key]
        target = own[name].shape
        if value.shape == target:
            loaded[name] = value
        elif value.ndim == 2 and len(target) == 4 and value.shape == (target[0], _prod(target[1:])):
            loaded[name] = value.reshape(target)  # a dense layer as a conv
        else:
            mismatched.append(f"{key} {value.shape} -> {name} {target}")
    problems = []
    if missing := [k for k in expected if k not in weights]:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected := [k for k in weights if k not in expected and k not in dropped]:
        bn = any("running_" in k for k in unexpected)
        hint = " (batch-norm statistics: vgg16_bn weights? tinyfcn's VGG16 has no batch norm)"
        problems.append("unexpected keys: " + ", ".join(unexpected) + (hint if bn else ""))
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched) + _vgg_hint(model, weights))
    if problems:
        raise KeyError(
            f"cannot load torchvision VGG16 weights from {source} into {type(model).__name__}: "
            + " | ".join(problems)
        )
    return loaded


def _vgg_hint(model: Any, weights: dict) -> str:
    hint = (
        ". ImageNet VGG16 weights fit width=1.0, fc_channels=4096, a 7x7 fc6 and 3 input channels"
    )
    if "features.0.weight" in weights:
        theirs, ours = weights["features.0.weight"].shape[0], model.conv1_1.out_channels
        if theirs != ours:
            hint += (
                f"; these have {theirs} conv1_1 channels (width {theirs / 64:g}), the model has "
                f"{ours} (width={model.width:g})"
            )
    return hint


def _prod(shape: tuple) -> int:
    return int(np.prod(shape))
