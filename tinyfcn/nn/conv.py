"""Conv2d: the learnable convolution (weight (out, in, kh, kw), as torch.nn.Conv2d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fast
from .. import functional as F
from ..fast import plan
from ..functional._checks import check_nchw
from ..functional.conv import normalize_conv_args
from . import init
from ._layer import cast_back, cast_to_weight, conv_repr
from .grad_mode import is_grad_enabled
from .module import Module
from .parameter import Parameter


class Conv2d(Module):
    """y = conv2d(x, weight) + bias:  (N, C_in, H, W) -> (N, C_out, Ho, Wo).

    Ho = floor((H + 2P - D(kh-1) - 1) / S) + 1. Initialised like PyTorch, U(+-1/sqrt(fan_in)).
    Computed by ``functional.conv2d_forward`` / ``conv2d_backward`` (im2col + GEMM, col2im), or,
    while the engine is on, by the kernel ``fast.plan`` picks for the same numbers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        k, s, p, d = normalize_conv_args(kernel_size, stride, padding, dilation)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding, self.dilation = k, s, p, d
        fan_in = self.in_channels * k[0] * k[1]
        self.weight = Parameter(init.torch_default_((out_channels, in_channels) + k, fan_in, dtype))
        self.bias = Parameter(init.torch_default_((out_channels,), fan_in, dtype)) if bias else None

    def forward(self, x: Any) -> Any:
        check_nchw(x, "Conv2d", self.in_channels)
        x_dtype = x.dtype
        x = cast_to_weight(x, self.weight.data, "Conv2d")
        b = None if self.bias is None else self.bias.data
        args = (x, self.weight.data, b, self.stride, self.padding, self.dilation)
        engine = fast.is_enabled()
        if engine:
            y, cache = plan.conv2d_forward(*args, owner=self, need_backward=is_grad_enabled())
        else:
            y, cache = F.conv2d_forward(*args)
        self._save((engine, cache, x_dtype))
        return y

    def backward(self, dy: Any) -> Any:
        engine, cache, x_dtype = self._take_cache()
        dy = dy.astype(self.weight.dtype, copy=False)
        if engine:
            dx, dw, db = plan.conv2d_backward(dy, cache, dw_out=self.weight.writable_grad())
        else:
            dx, dw, db = F.conv2d_backward(dy, cache)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return cast_back(dx, x_dtype)

    def extra_repr(self) -> str:
        return conv_repr(self)
