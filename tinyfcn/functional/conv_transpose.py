"""Transposed convolution ("deconvolution", 전치 합성곱), the upsampling layer of FCN, two ways.

Shapes (PyTorch's layout: the weight is stored (in, out, kh, kw))::

    x (N, Cin, H, W), weight (Cin, Cout, kh, kw), bias (Cout,) -> y (N, Cout, Ho, Wo)
    Ho = S(H-1) - 2P + D(kh-1) + output_padding + 1        (= S(H-1) + K - 2P + output_padding)

``method="zero_insertion"`` (what the FCN literature draws):
    1. insert S-1 zeros between neighbouring inputs: (H, W) -> (S(H-1)+1, S(W-1)+1)
    2. pad by D(K-1)-P on each side (a negative amount crops), plus output_padding bottom/right
    3. convolve, stride 1, with the kernel flipped in space and transposed to (Cout, Cin, kh, kw)

``method="adjoint"`` (how it is computed): the transposed convolution is the adjoint of the
convolution with the same weight, i.e. exactly conv2d's input gradient: y = col2im(W2^T @ x).
Its backward is then a forward convolution of dy (dx) and a conv weight gradient (dW).

Both give the same numbers. The engine (``tinyfcn.fast``) adds a third way for FCN's layers, where
K is a multiple of S: a stride-1 convolution and a pixel shuffle (``tinyfcn.fast.subpixel``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_array_module
from ._checks import check_nchw, check_non_negative, pair
from .conv import (
    Conv2dCache,
    check_conv_inputs,
    check_grad_shape,
    columns_as_batch,
    conv2d_backward,
    conv2d_forward,
    conv2d_input_grad,
    conv2d_weight_grad,
    flip_transpose,
    im2col,
    is_pointwise,
    normalize_conv_args,
    pixels_as_columns,
)

METHODS = ("adjoint", "zero_insertion")


def conv_transpose_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """``S(size-1) - 2P + D(K-1) + output_padding + 1`` along one axis."""
    return stride * (size - 1) - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def check_output_padding(op: str, output_padding, s, d) -> tuple[int, int]:
    """output_padding as a pair, each smaller than the stride or the dilation on its axis."""
    op_ = pair(output_padding, "output_padding")
    check_non_negative(op_, "output_padding")
    for axis in range(2):
        if op_[axis] >= s[axis] and op_[axis] >= d[axis]:
            raise ValueError(
                f"{op}: output_padding {op_} must be smaller than either stride {s} or "
                f"dilation {d} (it only picks among the output sizes that the stride makes "
                "ambiguous)"
            )
    return op_


def check_conv_transpose2d_args(op, x, weight, bias, stride, padding, output_padding, dilation):
    """Validate the arguments: (k, s, p, output_padding, d) as pairs and the output shape."""
    get_array_module(x, weight, bias)
    check_nchw(x, op)
    check_conv_inputs(op, x, weight, bias)
    Cin, Cout, kh, kw = weight.shape
    if x.shape[1] != Cin:
        raise ValueError(
            f"{op} expected input with {Cin} channels (weight {tuple(weight.shape)} is "
            f"(in, out, kh, kw)), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    k, s, p, d = normalize_conv_args((kh, kw), stride, padding, dilation)
    op_ = check_output_padding(op, output_padding, s, d)
    N, _, H, W = x.shape
    out_hw = tuple(
        conv_transpose_output_size((H, W)[a], k[a], s[a], p[a], op_[a], d[a]) for a in range(2)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{op}: input {H}x{W} with kernel {k}, stride {s}, padding {p} gives an empty "
            f"output {out_hw[0]}x{out_hw[1]}; reduce the padding"
        )
    return k, s, p, op_, d, (N, Cout) + out_hw


@dataclass
class ConvTranspose2dCache:
    method: str
    x: Any  # adjoint: the input; zero_insertion: unused
    weight: Any
    has_bias: bool
    args: tuple  # (kernel, stride, padding, output_padding, dilation) as pairs
    conv_cache: Conv2dCache | None = None  # zero_insertion: the cache of the inner convolution
    x_shape: tuple = ()


# --- (b) the adjoint path --------------------------------------------------------------------


def _adjoint_forward(x, weight, bias, k, s, p, op_, d, y_shape):
    """y = col2im(W2^T @ x) on the full, unpadded frame, then crop P (and add output_padding).

    The full frame has S(H-1) + D(K-1) + 1 rows: every row some kernel tap reaches. The output is
    its rows [P, P + Ho); output_padding keeps up to op rows that the bottom crop would drop
    (zeros where even the full frame ends).
    """
    N, Cout, Ho, Wo = y_shape
    full = (N, Cout) + tuple(s[a] * (x.shape[2 + a] - 1) + d[a] * (k[a] - 1) + 1 for a in range(2))
    y = crop_full_frame(conv2d_input_grad(x, weight, full, s, 0, d), p, op_)
    if bias is not None:
        y += bias.reshape(1, Cout, 1, 1)
    return y


def _adjoint_backward(dy, cache: ConvTranspose2dCache):
    """dx = conv2d(dy, weight); dW = conv weight gradient with the roles of x and dy swapped."""
    k, s, p, op_, d = cache.args
    x, weight = cache.x, cache.weight
    N, Cin, H, W = x.shape
    dy = full_frame_grad(dy, p, op_)
    if is_pointwise(k, s, (0, 0), d):
        cols = pixels_as_columns(dy)
    else:
        cols = im2col(dy, k, s, 0, d)  # (Cout*kh*kw, N*H*W)
    dx = columns_as_batch(weight.reshape(Cin, -1) @ cols, N, H, W)
    dw = conv2d_weight_grad(x, cols, weight.shape)
    return dx, dw


def crop_full_frame(y, p, op_):
    """Full frame -> output: crop P from each side, keep output_padding extra rows/columns."""
    if p == (0, 0) and op_ == (0, 0):
        return y
    return pad_or_crop(y, -p[0], op_[0] - p[0], -p[1], op_[1] - p[1])


def full_frame_grad(dy, p, op_):
    """The adjoint of ``crop_full_frame``: dy back onto the full frame, zeros where it was cut."""
    if p == (0, 0) and op_ == (0, 0):
        return dy
    return pad_or_crop(dy, p[0], p[0] - op_[0], p[1], p[1] - op_[1])


# --- (a) the zero-insertion path -------------------------------------------------------------


def insert_zeros(x: Any, stride: tuple[int, int]):
    """(N, C, H, W) -> (N, C, S(H-1)+1, S(W-1)+1) with S-1 zeros between neighbouring pixels."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    sh, sw = stride
    z = xp.zeros((N, C, sh * (H - 1) + 1, sw * (W - 1) + 1), dtype=x.dtype)
    z[:, :, ::sh, ::sw] = x
    return z


def pad_or_crop(x: Any, top: int, bottom: int, left: int, right: int):
    """Zero-pad the last two axes by the given amounts; a negative amount crops instead."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H + top + bottom, W + left + right), dtype=x.dtype)
    src = x[:, :, max(0, -top) : H - max(0, -bottom), max(0, -left) : W - max(0, -right)]
    out[
        :, :, max(0, top) : max(0, top) + src.shape[2], max(0, left) : max(0, left) + src.shape[3]
    ] = src
    return out


def _zero_insertion_pads(k, p, op_, d):
    """(top, bottom, left, right) = D(K-1)-P on each side, plus output_padding bottom/right."""
    ph, pw = (d[a] * (k[a] - 1) - p[a] for a in range(2))
    return ph, ph + op_[0], pw, pw + op_[1]


def _zero_insertion_forward(x, weight, bias, k, s, p, op_, d):
    z = pad_or_crop(insert_zeros(x, s), *_zero_insertion_pads(k, p, op_, d))
    w_conv = get_array_module(weight).ascontiguousarray(flip_transpose(weight))
    return conv2d_forward(z, w_conv, bias, stride=1, padding=0, dilation=d)


def _zero_insertion_backward(dy, cache: ConvTranspose2dCache):
    """Undo the three forward steps in reverse: conv backward, un-pad, keep every S-th pixel."""
    k, s, p, op_, d = cache.args
    dz, dw_conv, _ = conv2d_backward(dy, cache.conv_cache)
    top, bottom, left, right = _zero_insertion_pads(k, p, op_, d)
    dz = pad_or_crop(dz, -top, -bottom, -left, -right)  # adjoint of pad is crop, and vice versa
    dx = dz[:, :, :: s[0], :: s[1]]
    xp = get_array_module(dy)
    return xp.ascontiguousarray(dx), xp.ascontiguousarray(flip_transpose(dw_conv))


# --- public functions ------------------------------------------------------------------------


def conv_transpose2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    method: str = "adjoint",
):
    """y = conv_transpose2d(x, weight) + bias, and the cache for the backward pass.

    x (N, Cin, H, W), weight (Cin, Cout, kh, kw), bias (Cout,) -> y (N, Cout, Ho, Wo) with
    Ho = S(H-1) - 2P + D(kh-1) + output_padding + 1. ``method``: "adjoint" or "zero_insertion".
    """
    op = "conv_transpose2d"
    if method not in METHODS:
        raise ValueError(f"{op}: method must be one of {METHODS}, got {method!r}")
    k, s, p, op_, d, y_shape = check_conv_transpose2d_args(
        op, x, weight, bias, stride, padding, output_padding, dilation
    )
    cache = ConvTranspose2dCache(
        method, x, weight, bias is not None, (k, s, p, op_, d), x_shape=tuple(x.shape)
    )
    if method == "adjoint":
        y = _adjoint_forward(x, weight, bias, k, s, p, op_, d, y_shape)
    else:
        y, cache.conv_cache = _zero_insertion_forward(x, weight, bias, k, s, p, op_, d)
        cache.x = None
    assert tuple(y.shape) == y_shape, (y.shape, y_shape)
    return y, cache


def conv_transpose2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    method: str = "adjoint",
):
    """Forward only, as ``torch.nn.functional.conv_transpose2d`` (plus ``method``)."""
    return conv_transpose2d_forward(
        x, weight, bias, stride, padding, output_padding, dilation, method
    )[0]


def conv_transpose2d_output_shape(cache: ConvTranspose2dCache) -> tuple[int, int, int, int]:
    """(N, Cout, Ho, Wo) of the forward pass that made ``cache``."""
    N, _, H, W = cache.x_shape
    k, s, p, op_, d = cache.args
    out_hw = tuple(
        conv_transpose_output_size((H, W)[a], k[a], s[a], p[a], op_[a], d[a]) for a in range(2)
    )
    return (N, cache.weight.shape[1]) + out_hw


def conv_transpose2d_backward(dy: Any, cache: ConvTranspose2dCache):
    """(dx, dw, db): dy (N, Cout, Ho, Wo) -> dx (N, Cin, H, W), dw (Cin, Cout, kh, kw), db."""
    get_array_module(dy, cache.weight)
    check_grad_shape("conv_transpose2d", dy, conv_transpose2d_output_shape(cache))
    if cache.method == "adjoint":
        dx, dw = _adjoint_backward(dy, cache)
    else:
        dx, dw = _zero_insertion_backward(dy, cache)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dw, db
