"""CrossEntropyLoss over (N, C, H, W) scores and (N, H, W) labels, ignoring label 255."""

from __future__ import annotations

from typing import Any

from ..functional.loss import REDUCTIONS, cross_entropy_backward, cross_entropy_forward
from .module import Module


class CrossEntropyLoss(Module):
    """``forward(scores, labels)`` -> the loss (0-d array); ``backward()`` -> dscores.

    ``reduction="mean"`` divides by the number of non-ignored pixels (PyTorch's default);
    ``"sum"`` is the FCN paper's choice (and the reason its learning rate was 1e-10).
    """

    def __init__(self, ignore_index: int = 255, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"CrossEntropyLoss: reduction must be one of {REDUCTIONS}, got {reduction!r}"
            )
        self.ignore_index, self.reduction = int(ignore_index), reduction

    def forward(self, scores: Any, labels: Any) -> Any:
        loss, cache = cross_entropy_forward(scores, labels, self.ignore_index, self.reduction)
        self._save(cache)
        return loss

    def backward(self, dloss: float = 1.0) -> Any:
        return cross_entropy_backward(self._take_cache(), float(dloss))

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"
