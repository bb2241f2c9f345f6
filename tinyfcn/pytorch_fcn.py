"""The weights of the widely used PyTorch port of FCN (wkentaro/pytorch-fcn), taken in with the
preprocessing they were trained under, so that a tinyfcn checkpoint computes what the port computes.

The port feeds its networks BGR images in 0..255 with the Caffe mean subtracted (its
``transform``: ``img[:, :, ::-1] - mean_bgr``), and its networks are the paper geometry (conv1_1
padding 100, crops). Its ``.pth`` holds neither fact: a state dict has the same keys and shapes in
both geometries and says nothing about inputs. Wrapped into a checkpoint by hand, the weights would
run with tinyfcn's own normalisation (RGB, 0-1), or in geometry "compact" (argmax agreement with the
port about 6%). ``import_pytorch_fcn`` builds the paper network from the file's shapes and stores
the port's preprocessing in the checkpoint's metadata, where ``predict`` and ``evaluate`` read it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from . import io, models
from .data.voc import VOC_CLASSES

MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # pytorch-fcn's datasets/voc.py
PREPROCESS = {
    "source": "pytorch-fcn",
    "channel_order": "BGR",
    "scale": 255.0,
    "mean": list(MEAN_BGR),
    "std": [1.0, 1.0, 1.0],
}
GEOMETRY_REASON = (
    "pytorch-fcn's networks are the paper geometry (conv1_1 padding 100, crops 19 / 5+27 / "
    "5+9+31); its weights have the same shapes in geometry 'compact' but compute another "
    "function there (argmax agreement with the port about 6%)"
)
# the transposed conv nearest the image names the network; 8s staged and at-once share it
LAST_UPSAMPLING = {
    "upscore": ("fcn32s",),
    "upscore16": ("fcn16s",),
    "upscore8": ("fcn8s", "fcn8s-atonce"),
}


def port_config(state_dict: dict, source: str) -> dict:
    """The tinyfcn FCN config (classes, width, fc channels) that the port's weights fit."""
    for key in ("conv1_1.weight", "fc6.weight", "score_fr.weight"):
        if key not in state_dict:
            hint = ""
            if "features.0.weight" in state_dict:
                hint = " (these are torchvision VGG16 weights: an FCN starts from them in training)"
            raise ValueError(f"{source} is not a pytorch-fcn FCN: it has no {key!r}{hint}")
    conv1, fc6 = state_dict["conv1_1.weight"], state_dict["fc6.weight"]
    if conv1.shape[1] != 3 or fc6.shape[2:] != (7, 7):
        raise ValueError(
            f"{source}: conv1_1 {tuple(conv1.shape)} and fc6 {tuple(fc6.shape)} are not the port's "
            "VGG16 FCN (3 input channels, a 7x7 fc6)"
        )
    return {
        "num_classes": int(state_dict["score_fr.weight"].shape[0]),
        "geometry": "paper",
        "width": conv1.shape[0] / 64,
        "fc_channels": int(fc6.shape[0]),
    }


def port_model_name(state_dict: dict, path: str, model: str | None = None) -> str:
    """``fcn32s``, ``fcn16s``, ``fcn8s`` or ``fcn8s-atonce`` from the keys (and ``model``).

    FCN-8s and FCN-8s at-once have the same keys; at-once scales pool4 by 0.01 and pool3 by
    0.0001. Without ``model``, a file name containing "atonce" picks at-once (as the port names
    its ``fcn8s-atonce_from_caffe.pth``), any other name the staged FCN-8s.
    """
    found = [names for key, names in LAST_UPSAMPLING.items() if f"{key}.weight" in state_dict]
    if len(found) != 1:
        keys = ", ".join(f"{k}.weight" for k in LAST_UPSAMPLING)
        raise ValueError(f"{path}: expected exactly one of {keys}, the port's last upsampling")
    candidates = found[0]
    if model is not None:
        if model not in candidates:
            raise ValueError(
                f"--model {model} does not fit {path}: its keys are those of "
                f"{' or '.join(candidates)}"
            )
        return model
    if len(candidates) == 1:
        return candidates[0]
    return "fcn8s-atonce" if "atonce" in os.path.basename(path).lower() else "fcn8s"


def _numpy_scalar_globals() -> list:
    """What a pickled NumPy scalar needs: pytorch-fcn's trainer saves ``best_mean_iu`` as one."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4", "u1", "?")]
    return [scalar, np.dtype, *dtypes]


def load_port_file(path: str) -> dict:
    """The state dict of a pytorch-fcn ``.pth``: its models' weights, or its trainer's
    ``checkpoint.pth.tar`` (weights under ``model_state_dict``, beside NumPy scalars that
    ``torch.load(weights_only=True)`` refuses unless allowed: they are data, not code)."""
    torch = io._import_torch()
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return io.load_torch_state_dict(path)
    except ValueError as error:  # torch's messages run over many lines, with terminal colours
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
        raise ValueError(" ".join(text.split())) from error


def import_pytorch_fcn(
    path: str | os.PathLike, model: str | None = None, geometry: str = "paper"
) -> tuple[Any, dict]:
    """(tinyfcn model, checkpoint metadata) from a pytorch-fcn ``.pth`` (state dict or its
    trainer's checkpoint). ``geometry`` other than "paper" is refused, with the reason."""
    path = os.fspath(path)
    if geometry != "paper":
        raise ValueError(f"--geometry {geometry} refused for {path}: {GEOMETRY_REASON}")
    state_dict = load_port_file(path)
    config = port_config(state_dict, path)
    name = port_model_name(state_dict, path, model)
    network = models.MODELS[name](**config)
    try:
        network.load_state_dict(state_dict)
    except KeyError as error:
        raise ValueError(
            f"{path} does not fit {type(network).__name__}: {error.args[0]}"
        ) from error
    classes = network.num_classes
    meta = {
        "class_names": list(VOC_CLASSES)
        if classes == len(VOC_CLASSES)
        else [str(i) for i in range(classes)],
        "preprocess": dict(PREPROCESS),
        "imported_from": {"format": "pytorch-fcn", "file": os.path.basename(path), "model": name},
    }
    return network.eval(), meta


def describe(model: Any, meta: dict) -> str:
    """One line: what was imported and how its inputs will be preprocessed."""
    config = model.config
    return (
        f"{type(model).__name__}, geometry {config['geometry']}, {model.num_classes} classes, "
        f"width {config['width']:g} (fc {config['fc_channels']}); inputs as pytorch-fcn feeds "
        f"them: BGR, 0-255, mean BGR {', '.join(f'{m:.3f}' for m in MEAN_BGR)} subtracted"
    )
