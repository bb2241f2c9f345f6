"""Per-pixel cross-entropy over NCHW class scores, with ignored pixels (label 255 in VOC).

    scores (N, C, H, W), labels (N, H, W) integers in [0, C) or ignore_index
    log_p  = scores - logsumexp(scores, axis=1)         (shifted by the max: numerically stable)
    loss_i = -log_p[label_i] at every pixel i that is not ignored
    mean:  sum_i loss_i / (number of valid pixels)      sum: sum_i loss_i
    dscores = (softmax(scores) - onehot(labels)) / normaliser, and 0 at ignored pixels

The FCN paper *sums* the loss over pixels (hence its tiny learning rate, 1e-10 for a 500x500
image with momentum 0.99); tinyfcn's default averages it, like PyTorch.
When every pixel is ignored the mean has no pixels: tinyfcn then returns 0 with a zero gradient
(PyTorch returns nan), so that one fully-ignored crop does not poison a training run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import asnumpy, get_array_module
from ._checks import check_nchw

REDUCTIONS = ("mean", "sum")


@dataclass
class CrossEntropyCache:
    softmax: Any  # (N, C, H, W)
    labels: Any  # (N, H, W), ignored pixels replaced by 0
    valid: Any  # (N, H, W) bool
    normaliser: float


def _check_labels(xp, scores, labels, ignore_index):
    op = "cross_entropy"
    N, C, H, W = scores.shape
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(
            f"{op} expected integer labels of shape {(N, H, W)}, got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if tuple(labels.shape) != (N, H, W):
        raise ValueError(
            f"{op} expected labels of shape {(N, H, W)} for scores of shape {tuple(scores.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= C))
    if bool(bad.any()):
        values = [int(v) for v in np.unique(asnumpy(labels[bad]))[:10]]
        raise ValueError(
            f"{op}: labels must be in [0, {C - 1}] or ignore_index={ignore_index}; found "
            f"{int(bad.sum())} pixels with labels {values}"
        )
    return valid


def cross_entropy_forward(
    scores: Any, labels: Any, ignore_index: int = 255, reduction: str = "mean"
):
    """The loss (a 0-d array) and the cache for the backward pass."""
    op = "cross_entropy"
    xp = get_array_module(scores, labels)
    check_nchw(scores, op)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not bool(xp.isfinite(scores).all()):
        raise ValueError(
            f"{op}: scores contain NaN or inf (shape {tuple(scores.shape)}); training has "
            "diverged: lower the learning rate or check the inputs"
        )
    valid = _check_labels(xp, scores, labels, ignore_index)
    safe = xp.where(valid, labels, 0)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    log_p = shifted - xp.log(total)
    picked = xp.take_along_axis(log_p, safe[:, None].astype(np.int64), axis=1)[:, 0]
    loss = -(picked * valid).sum()
    count = int(valid.sum())
    normaliser = float(max(count, 1)) if reduction == "mean" else 1.0
    loss = (loss / normaliser).astype(scores.dtype)
    return loss, CrossEntropyCache(exp / total, safe, valid, normaliser)


def cross_entropy(scores: Any, labels: Any, ignore_index: int = 255, reduction: str = "mean"):
    """Forward only, as ``torch.nn.functional.cross_entropy`` on (N, C, H, W) scores."""
    return cross_entropy_forward(scores, labels, ignore_index, reduction)[0]


def cross_entropy_backward(cache: CrossEntropyCache, dloss: float = 1.0):
    """dscores = dloss * (softmax - onehot(labels)) / normaliser, zero at ignored pixels."""
    xp = get_array_module(cache.softmax)
    C = cache.softmax.shape[1]
    onehot = cache.labels[:, None] == xp.arange(C).reshape(1, C, 1, 1)
    grad = cache.softmax - onehot
    grad *= cache.valid[:, None]
    grad *= grad.dtype.type(dloss / cache.normaliser)
    return grad
