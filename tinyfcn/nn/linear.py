"""Linear: the dense layer of a classifier (weight (out, in), as torch.nn.Linear), and Flatten.

FCN's first lesson is that a Linear layer on a flattened (C, H, W) map is a convolution whose
kernel covers the whole map: ``tinyfcn.models.surgery`` turns one into the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional._checks import check_float_array
from . import init
from ._layer import cast_back, cast_to_weight
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """y = x @ W^T + b:  (N, in_features) -> (N, out_features);  dx = dy @ W, dW = dy^T @ x."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(
            init.torch_default_((out_features, in_features), in_features, dtype)
        )
        self.bias = (
            Parameter(init.torch_default_((out_features,), in_features, dtype)) if bias else None
        )

    def forward(self, x: Any) -> Any:
        check_float_array(x, "input", "Linear")
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expected input of shape (N, {self.in_features}), got {tuple(x.shape)}"
            )
        x_dtype = x.dtype
        x = cast_to_weight(x, self.weight.data, "Linear")
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        self._save((x, x_dtype))
        return y

    def backward(self, dy: Any) -> Any:
        x, x_dtype = self._take_cache()
        self.weight.accumulate(dy.T @ x)
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=0))
        return cast_back(dy @ self.weight.data, x_dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}" + (
            "" if self.bias is not None else ", bias=False"
        )


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) in C order, as torch.flatten(x, 1); backward reshapes back."""

    def forward(self, x: Any) -> Any:
        self._save(tuple(x.shape))
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Any) -> Any:
        return dy.reshape(self._take_cache())
