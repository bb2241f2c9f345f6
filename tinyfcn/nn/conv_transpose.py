"""ConvTranspose2d: learnable upsampling (weight (in, out, kh, kw), as torch.nn.ConvTranspose2d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fast
from .. import functional as F
from ..fast import plan
from ..functional._checks import check_nchw
from ..functional.conv import normalize_conv_args
from ..functional.conv_transpose import METHODS as TEXTBOOK_METHODS
from ..functional.conv_transpose import check_output_padding
from . import init
from ._layer import cast_back, cast_to_weight, conv_repr
from .grad_mode import is_grad_enabled
from .module import Module
from .parameter import Parameter


class ConvTranspose2d(Module):
    """(N, C_in, H, W) -> (N, C_out, Ho, Wo), Ho = S(H-1) - 2P + D(kh-1) + output_padding + 1.

    ``method``: the textbook's ``"adjoint"`` (GEMM + col2im, any kernel) or ``"zero_insertion"``
    (insert S-1 zeros, pad, convolve with the flipped kernel: the picture the FCN literature
    draws), see ``functional.conv_transpose``; or the engine's ``"subpixel"`` (a stride-1 conv
    with Cout*S*S channels + pixel shuffle, for K a multiple of S) and ``"auto"`` (default:
    subpixel where it applies, else adjoint), see ``fast.plan``. All give the same numbers;
    with the engine off (``tinyfcn.fast.disabled()``) the engine's two run as "adjoint".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        bias: bool = True,
        dilation=1,
        method: str = "auto",
        dtype=np.float32,
    ) -> None:
        super().__init__()
        k, s, p, d = normalize_conv_args(kernel_size, stride, padding, dilation)
        plan.resolve_method(method, k, s, d, "ConvTranspose2d")  # an unknown or unusable method
        op_ = check_output_padding("ConvTranspose2d", output_padding, s, d)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding, self.dilation = k, s, p, d
        self.output_padding, self.method = op_, method
        fan_in = self.out_channels * k[0] * k[1]  # PyTorch computes it from weight.shape[1]
        self.weight = Parameter(init.torch_default_((in_channels, out_channels) + k, fan_in, dtype))
        self.bias = Parameter(init.torch_default_((out_channels,), fan_in, dtype)) if bias else None

    def forward(self, x: Any) -> Any:
        check_nchw(x, "ConvTranspose2d", self.in_channels)
        x_dtype = x.dtype
        x = cast_to_weight(x, self.weight.data, "ConvTranspose2d")
        b = None if self.bias is None else self.bias.data
        args = (x, self.weight.data, b, self.stride, self.padding, self.output_padding)
        engine = fast.is_enabled()
        if engine:
            y, cache = plan.conv_transpose2d_forward(
                *args, self.dilation, self.method, owner=self, need_backward=is_grad_enabled()
            )
        else:
            textbook = self.method if self.method in TEXTBOOK_METHODS else "adjoint"
            y, cache = F.conv_transpose2d_forward(*args, self.dilation, textbook)
        self._save((engine, cache, x_dtype))
        return y

    def backward(self, dy: Any) -> Any:
        engine, cache, x_dtype = self._take_cache()
        dy = dy.astype(self.weight.dtype, copy=False)
        if engine:
            dx, dw, db = plan.conv_transpose2d_backward(dy, cache)
        else:
            dx, dw, db = F.conv_transpose2d_backward(dy, cache)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return cast_back(dx, x_dtype)

    def extra_repr(self) -> str:
        return conv_repr(self, **({"method": self.method} if self.method != "auto" else {}))
