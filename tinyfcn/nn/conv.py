"""Conv2d: the learnable convolution (weight (out, in, kh, kw), as torch.nn.Conv2d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional._checks import check_nchw
from ..functional.conv import conv2d_backward, conv2d_forward, normalize_conv_args
from ..functional.conv_blocked import (
    BlockedConvCache,
    chunk_budget,
    conv2d_blocked_backward,
    conv2d_blocked_forward,
    conv2d_input_grad_as_conv,
    input_grad_is_conv,
    use_blocked,
)
from ..functional.conv_chunked import conv2d_chunked
from . import init
from ._layer import cast_back, cast_to_weight
from .grad_mode import is_grad_enabled
from .module import Module
from .parameter import Parameter


class Conv2d(Module):
    """y = conv2d(x, weight) + bias:  (N, C_in, H, W) -> (N, C_out, Ho, Wo).

    Ho = floor((H + 2P - D(kh-1) - 1) / S) + 1. Initialised like PyTorch, U(+-1/sqrt(fan_in)).
    The im2col matrix of one forward is reused as the next forward's buffer once backward has
    run, so a training loop does not allocate it afresh each step. Thin layers on large images
    train in cache-sized blocks instead and keep no matrix at all (``functional.conv_blocked``).
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
        object.__setattr__(self, "_spare_cols", None)

    def forward(self, x: Any) -> Any:
        check_nchw(x, "Conv2d", self.in_channels)
        x_dtype = x.dtype
        x = cast_to_weight(x, self.weight.data, "Conv2d")
        bias = None if self.bias is None else self.bias.data
        if not is_grad_enabled():  # inference: im2col in bounded blocks, a shared workspace
            budget = chunk_budget(self.weight.data[0].size, x.itemsize)
            return conv2d_chunked(
                x, self.weight.data, bias, self.stride, self.padding, self.dilation, budget
            )
        args = (self.kernel_size, self.stride, self.padding, self.dilation)
        if use_blocked(x.shape, self.weight.shape, *args, x.itemsize):
            y, cache = conv2d_blocked_forward(x, self.weight.data, bias, *args)
            self._save((cache, x_dtype))
            return y
        stale = self.__dict__.get("_cache")
        if stale is not None and not isinstance(stale[0], BlockedConvCache):
            self._keep_spare(stale[0].cols)  # a forward whose backward never ran: replaced
        spare = self._fitting(self._spare_cols, x)
        object.__setattr__(self, "_spare_cols", None)
        y, cache = conv2d_forward(
            x, self.weight.data, bias, self.stride, self.padding, self.dilation, cols_out=spare
        )
        self._save((cache, x_dtype))
        return y

    def backward(self, dy: Any) -> Any:
        cache, x_dtype = self._take_cache()
        dy = dy.astype(self.weight.dtype, copy=False)
        dw_out = self.weight.writable_grad()
        if isinstance(cache, BlockedConvCache):
            dx, dw, db = conv2d_blocked_backward(dy, cache, dw_out=dw_out)
        else:
            dx_is_conv = input_grad_is_conv(cache.weight.shape, cache.x_shape, *cache.args)
            dx, dw, db = conv2d_backward(
                dy, cache, need_input_grad=not dx_is_conv, overwrite_cols=True, dw_out=dw_out
            )
            if dx_is_conv:
                k, _, p, d = cache.args
                dx = conv2d_input_grad_as_conv(dy, cache.weight, k, p, d)
            self._keep_spare(cache.cols)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return cast_back(dx, x_dtype)

    def _fitting(self, buffer: Any, x: Any) -> Any:
        """``buffer`` if it is the im2col matrix shape this input needs, else None."""
        if buffer is None or buffer.dtype != x.dtype or type(buffer) is not type(x):
            return None
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
        )
        Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return buffer if buffer.shape == (C * kh * kw, N * Ho * Wo) else None

    def _keep_spare(self, cols: Any) -> None:
        # a pointwise conv's "cols" is a view of its input: never write into that
        if cols is not None and cols.base is None:
            object.__setattr__(self, "_spare_cols", cols)

    def _on_to(self, device, dtype) -> None:
        object.__setattr__(self, "_spare_cols", None)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}" if self.stride != (1, 1) else ""
        s += f", padding={self.padding}" if self.padding != (0, 0) else ""
        s += f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        return s + ("" if self.bias is not None else ", bias=False")
