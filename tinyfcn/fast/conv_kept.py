"""The textbook's training convolution (im2col kept for the backward), with its memory reused.

The same products as ``functional.conv2d_forward`` / ``conv2d_backward``; three differences, each
for speed: the im2col matrix is written into the layer's spare from the previous step; dW is
written straight into the parameter's gradient, in the GEMM order the planner picks; and once dW
is computed the matrix is dead, so W2^T @ dY2 (the same shape) is written into it before col2im,
or dX is computed as a convolution of dY (``conv_blocked``) where the planner says that pays.
With ``threads`` > 1 (fc6 and fc7 at batch 1: a huge weight against a few columns) each of the
three GEMMs runs in bands of rows shared out among threads (``gemm.matmul``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_array_module
from ..functional.conv import col2im, columns_as_batch, is_pointwise, pad2d, pixels_as_columns
from .conv_blocked import conv2d_input_grad_as_conv
from .gemm import matmul, weight_grad_gemm
from .im2col import im2col_into
from .workspace import keep_spare, take_spare


@dataclass
class KeptConvCache:
    """The im2col matrix and what the backward needs; ``owner`` gets the matrix back as spare."""

    cols: Any
    weight: Any
    x_shape: tuple[int, int, int, int]
    has_bias: bool
    args: tuple  # (kernel, stride, padding, dilation) as pairs
    owner: Any
    threads: int = 1  # > 1: every GEMM in bands shared out among this many threads


def conv2d_kept_forward(
    x: Any, weight: Any, bias: Any, k, s, p, d, out_hw, owner: Any = None, threads: int = 1
):
    """y (N, O, Ho, Wo) = W2 @ im2col(x) + b, the matrix written into ``owner``'s spare."""
    xp = get_array_module(x, weight, bias)
    N, O = x.shape[0], weight.shape[0]
    w2 = weight.reshape(O, -1)
    if is_pointwise(k, s, p, d):
        cols = pixels_as_columns(x)
    else:
        shape = (w2.shape[1], N * out_hw[0] * out_hw[1])
        cols = take_spare(owner, shape, x)
        cols = xp.empty(shape, dtype=x.dtype) if cols is None else cols
        im2col_into(cols, pad2d(x, p), k, s, d, out_hw)
    y2 = matmul(w2, cols, xp.empty((O, cols.shape[1]), dtype=x.dtype), threads)
    y = columns_as_batch(y2, N, *out_hw)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    args = (k, s, p, d)
    return y, KeptConvCache(cols, weight, tuple(x.shape), bias is not None, args, owner, threads)


def conv2d_kept_backward(
    dy: Any,
    cache: KeptConvCache,
    dw_transposed: bool,
    dx_conv_block_bytes: int | None,
    dw_out: Any = None,
):
    """(dx, dw, db). ``dx_conv_block_bytes``: dX as a convolution in blocks of that size (stride
    1); None: col2im(W2^T @ dY2). ``dw_out``: an array to write dW into (overwritten)."""
    xp = get_array_module(dy, cache.weight)
    k, s, p, d = cache.args
    weight, cols = cache.weight, cache.cols
    O = weight.shape[0]
    dy2 = pixels_as_columns(dy)
    dw = xp.empty(weight.shape, dtype=dy.dtype) if dw_out is None else dw_out
    weight_grad_gemm(dy2, cols, dw.reshape(O, -1), dw_transposed, threads=cache.threads)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if dx_conv_block_bytes is not None:
        dx = conv2d_input_grad_as_conv(dy, weight, k, p, d, dx_conv_block_bytes)
    elif is_pointwise(k, s, p, d):  # cols is x itself: never write into it
        dx2 = xp.empty((weight.shape[1], dy2.shape[1]), dtype=dy.dtype)
        dx2 = matmul(weight.reshape(O, -1).T, dy2, dx2, cache.threads)
        dx = columns_as_batch(dx2, cache.x_shape[0], *cache.x_shape[2:])
    else:  # the matrix is dead once dW is computed: W2^T @ dY2 takes its place
        dcols = matmul(weight.reshape(O, -1).T, dy2, cols, cache.threads)
        dx = col2im(dcols, cache.x_shape, k, s, p, d)
    keep_spare(cache.owner, cols)
    return dx, dw, db
