"""Crop: cut a score map down to a reference size at a fixed offset (FCN's alignment step)."""

from __future__ import annotations

from typing import Any

from ..functional._checks import pair
from ..functional.crop import crop_backward, crop_forward
from .module import Module


class Crop(Module):
    """y = x[:, :, oh:oh+h, ow:ow+w] where (h, w) is the size of ``like``; backward zero-pads.

    ``like`` is a reference array (its last two axes give the size) or an (h, w) pair, as Caffe's
    Crop layer takes a second bottom blob.
    """

    def __init__(self, offset) -> None:
        super().__init__()
        self.offset = pair(offset, "offset")

    def forward(self, x: Any, like: Any) -> Any:
        size = tuple(like.shape[2:]) if hasattr(like, "shape") else pair(like, "size")
        y = crop_forward(x, self.offset, size)
        self._save(tuple(x.shape))
        return y

    def backward(self, dy: Any) -> Any:
        return crop_backward(dy, self._take_cache(), self.offset)

    def extra_repr(self) -> str:
        return f"offset={self.offset}"
