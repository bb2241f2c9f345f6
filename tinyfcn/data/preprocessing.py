"""A checkpoint's input preprocessing, read from its metadata: what ``predict`` and ``evaluate``
do to an image before the network sees it, so they compute what the network was trained with.

Every image enters as RGB float in [0, 1], shape (3, H, W). Per output channel c::

    out[c] = (scale * image[order[c]] - mean[c]) / std[c]

``meta["preprocess"] = {"channel_order": "RGB" | "BGR", "scale": s, "mean": [...], "std": [...]}``
says it in full (``tinyfcn import-weights`` writes pytorch-fcn's: BGR, 255, mean BGR
104.00698793, 116.66876762, 122.67891434, std 1). A trained checkpoint holds
``meta["normalize"] = {"mean", "std"}``: RGB, scale 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

ORDERS = {"RGB": (0, 1, 2), "BGR": (2, 1, 0)}


def preprocess_spec(meta: Mapping, default: Mapping | None = None) -> dict | None:
    """The full preprocessing of ``meta`` (``default``, a {mean, std} dict, when it has none)."""
    if "preprocess" in meta:
        spec = dict(meta["preprocess"])
    elif "normalize" in meta or default is not None:
        norm = meta.get("normalize", default)
        spec = {"channel_order": "RGB", "scale": 1.0, "mean": norm["mean"], "std": norm["std"]}
    else:
        return None
    if spec.get("channel_order") not in ORDERS or len(spec["mean"]) != 3 or len(spec["std"]) != 3:
        raise ValueError(f"unsupported preprocessing in the checkpoint's metadata: {spec}")
    return spec


def apply_preprocess(image: np.ndarray, spec: Mapping) -> np.ndarray:
    """(..., 3, H, W) RGB in [0, 1] -> float32 ``(scale * image[order] - mean) / std``.

    With scale 1 it is ``transforms.Normalize``'s float32 arithmetic, as in training; otherwise
    float64, so that ``255 * (v / 255)`` comes back as v before the mean is taken off.
    """
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"preprocessing expects (..., 3, H, W) RGB, got {tuple(image.shape)}")
    dtype = np.float32 if float(spec["scale"]) == 1.0 else np.float64
    mean = np.asarray(spec["mean"], dtype).reshape(3, 1, 1)
    std = np.asarray(spec["std"], dtype).reshape(3, 1, 1)
    x = image[..., list(ORDERS[spec["channel_order"]]), :, :].astype(dtype)
    if dtype is np.float32:
        return ((x - mean) / std).astype(np.float32)
    return ((float(spec["scale"]) * x - mean) / std).astype(np.float32)


class Preprocess:
    """The transform form: ``t(image, label, rng) -> (apply_preprocess(image), label)``."""

    def __init__(self, spec: Mapping) -> None:
        self.spec = dict(spec)

    def __call__(self, image, label, rng=None):
        return apply_preprocess(image, self.spec), label

    def __repr__(self) -> str:
        return f"Preprocess({self.spec})"
