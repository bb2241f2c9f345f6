"""Training convolution in cache-sized blocks, keeping no im2col matrix for the backward pass.

``conv2d_forward`` keeps the whole im2col matrix (C*kh*kw, N*Ho*Wo) for its backward. For a thin
layer on a large image (conv1_2 of the educational model: 16 channels, 8 x 128 x 128) that matrix
is 9x the input, and writing it, reading it back for dW and again through col2im for dX is all
memory traffic. Here the forward and the backward walk the same blocks of output rows, sample by
sample, and build each block's matrix in a small workspace that stays in the cache; the backward
rebuilds it from the input (a cheap copy) instead of storing it:

    forward:   y[n, :, r0:r1]  = W2 @ im2col(slab)                      (conv2d_chunked)
    backward:  dW             += dY[n, :, r0:r1] @ im2col(slab)^T
               dx_slab        += col2im(W2^T @ dY[n, :, r0:r1])          (slabs overlap: add)

where slab is the padded input rows the block reads. The same products as ``conv2d_backward``;
only the order of the sums in dW differs (float rounding). ``use_blocked`` says when it pays.

dX without col2im. At stride 1 the transposed convolution that is dX needs no zero insertion, so
it is an ordinary convolution of dY, with the kernel flipped and its two channel axes swapped:

    dX = conv2d(dY, flip_transpose(W), padding = D(K-1) - P, dilation D)        (stride 1 only)

and runs through the same cache-sized im2col blocks as the forward: no (C*kh*kw, N*Ho*Wo)
matrix of W2^T @ dY2, and none of col2im's kh*kw read-modify-write passes over dX (conv1_2 of the
educational model, 16 channels at 8 x 128 x 128, one thread: 40 -> 14 ms). But im2col(dY) has
O*kh*kw rows where W2^T @ dY2 has C*kh*kw, and the flipped kernel is a copy of W: so this route
is taken only where O <= C and W is smaller than dX (not for conv1_1, 3 -> 64 channels, nor for
fc6, whose weight is 411 MB at full width). ``input_grad_is_conv`` says when; every Conv2d uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_array_module
from .conv import (
    col2im_add,
    conv_output_shape,
    flip_transpose,
    im2col,
    pad2d,
    weight_grad_gemm,
)
from .conv_chunked import _workspace, conv2d_chunked, im2col_budget

# Measured on the 2-core development machine (float32, fwd + bwd): thin layers gain (16 -> 16
# channels at 8 x 128 x 128: 57 -> 47 ms), wide ones lose (256 channels at 56 x 56: 65 -> 75 ms).
# A block is block_bytes of im2col matrix, or min_pixels columns where the patch is long. Forward
# of a 3x3 conv on two threads, best of 9, by block size 1 / 2 / 4 / 8 / 128 MiB: 64 channels at
# 224 x 224 42 / 36 / 37 / 42 / 41 ms, 16 at 8 x 128 x 128 14.8 / 12.1 / 12.4 / 11.4 / 12.4 ms,
# 512 at 28 x 28 (784 columns, one block by the min_pixels rule) 29.9 / 24.8 / 23.4 / 22.1 /
# 20.9 ms.
BLOCKED = {"max_patch": 512, "min_cols_bytes": 4 * 2**20, "block_bytes": 2**21, "min_pixels": 1024}


@dataclass
class BlockedConvCache:
    """What the blocked backward needs: the input itself, not its im2col matrix."""

    x: Any
    weight: Any
    has_bias: bool
    args: tuple  # (kernel, stride, padding, dilation) as pairs


def use_blocked(x_shape, weight_shape, k, s, p, d, itemsize: int) -> bool:
    """A thin patch (C*kh*kw <= max_patch) whose full im2col matrix would be large."""
    O, C, kh, kw = weight_shape
    if C * kh * kw > BLOCKED["max_patch"] or (kh, kw) == (1, 1):
        return False
    Ho, Wo = conv_output_shape("conv2d", tuple(x_shape[2:]), k, s, p, d)
    return C * kh * kw * x_shape[0] * Ho * Wo * itemsize >= BLOCKED["min_cols_bytes"]


def block_bytes(patch: int, itemsize: int) -> int:
    """Bytes of im2col matrix one block holds: ``BLOCKED["block_bytes"]``, or ``min_pixels``
    columns where the patch is long (a GEMM on few columns runs badly on two threads)."""
    return max(BLOCKED["block_bytes"], patch * itemsize * BLOCKED["min_pixels"])


def chunk_budget(patch: int, itemsize: int) -> int:
    """im2col bytes per block for a forward-type pass (inference, dX as a convolution): a block
    of ``block_bytes``, never above the memory budget ``im2col_budget()``."""
    return min(block_bytes(patch, itemsize), im2col_budget())


def _rows_per_block(patch: int, Wo: int, Ho: int, itemsize: int) -> int:
    return max(1, min(Ho, block_bytes(patch, itemsize) // (patch * Wo * itemsize)))


def conv2d_blocked_forward(x: Any, weight: Any, bias: Any, k, s, p, d):
    """y = conv2d(x, weight) + bias in blocks of output rows, and the cache (the input)."""
    budget = block_bytes(weight[0].size, x.itemsize)
    y = conv2d_chunked(x, weight, bias, s, p, d, budget=budget)
    return y, BlockedConvCache(x, weight, bias is not None, (k, s, p, d))


def input_grad_is_conv(weight_shape, x_shape, k, s, p, d) -> bool:
    """dX is a convolution of dY (stride 1, P <= D(K-1)) that pays: no more output channels than
    input channels (im2col(dY) is then no larger than im2col(x); conv1_1, 3 -> 64 channels at
    224 x 224, takes 11 ms by col2im and 33 ms as a convolution) and W no larger than dX."""
    O, C = weight_shape[:2]
    n_dx = x_shape[0] * x_shape[1] * x_shape[2] * x_shape[3]
    fits = all(p[a] <= d[a] * (k[a] - 1) for a in range(2))
    return s == (1, 1) and fits and O <= C and O * C * k[0] * k[1] <= n_dx


def conv2d_input_grad_as_conv(dy: Any, weight: Any, k, p, d):
    """dX = conv2d(dY, flip_transpose(W), padding D(K-1) - P, dilation D) for a stride-1 conv.

    dy (N, O, Ho, Wo), weight (O, C, kh, kw) -> dx (N, C, H, W), one sample at a time, in
    blocks of ``chunk_budget`` bytes.
    """
    xp = get_array_module(dy, weight)
    pad = tuple(d[a] * (k[a] - 1) - p[a] for a in range(2))
    w_flip = xp.ascontiguousarray(flip_transpose(weight))  # (C, O, kh, kw)
    budget = chunk_budget(w_flip[0].size, dy.itemsize)
    return conv2d_chunked(dy, w_flip, None, 1, pad, d, budget=budget)


def conv2d_blocked_backward(dy: Any, cache: BlockedConvCache, dw_out: Any = None):
    """(dx, dw, db), each block's im2col matrix rebuilt from the input (see the module doc)."""
    x, weight = cache.x, cache.weight
    k, s, p, d = cache.args
    xp = get_array_module(dy, x, weight)
    N, C, H, W = x.shape
    O = weight.shape[0]
    Ho, Wo = dy.shape[2:]
    patch = C * k[0] * k[1]
    w2 = weight.reshape(O, patch)
    dw = xp.zeros(weight.shape, dtype=dy.dtype) if dw_out is None else dw_out
    dw2 = dw.reshape(O, patch)
    dw2[...] = 0
    dx_is_conv = input_grad_is_conv(weight.shape, x.shape, k, s, p, d)
    rows = _rows_per_block(patch, Wo, Ho, dy.itemsize)
    dx_pad = None if dx_is_conv else xp.zeros((N, C, H + 2 * p[0], W + 2 * p[1]), dy.dtype)
    for n in range(N):
        x_pad = pad2d(x[n : n + 1], p)
        dy_n = dy[n].reshape(O, Ho * Wo)
        for r0 in range(0, Ho, rows):
            r1 = min(Ho, r0 + rows)
            m = (r1 - r0) * Wo
            lo, hi = r0 * s[0], (r1 - 1) * s[0] + d[0] * (k[0] - 1) + 1  # the slab's rows
            block = _workspace(xp, x.dtype, patch * m)[: patch * m].reshape(patch, m)
            cols = im2col(x_pad[:, :, lo:hi], k, s, 0, d, out=block)
            g = dy_n[:, r0 * Wo : r1 * Wo]  # (O, m)
            weight_grad_gemm(g, cols, dw2, accumulate=True)
            if not dx_is_conv:
                dcols = _workspace(xp, x.dtype, patch * m, "dcols")[: patch * m]
                dcols = xp.matmul(w2.T, g, out=dcols.reshape(patch, m))
                dx_n = dx_pad[n : n + 1].transpose(1, 0, 2, 3)  # (C, 1, Hp, Wp): col2im's order
                col2im_add(dcols, dx_n[:, :, lo:hi], k, s, d, (r1 - r0, Wo))
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if dx_is_conv:
        return conv2d_input_grad_as_conv(dy, weight, k, p, d), dw, db
    dx = dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W]
    return (dx if p == (0, 0) else xp.ascontiguousarray(dx)), dw, db
