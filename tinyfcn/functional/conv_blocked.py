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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_array_module
from .conv import col2im_add, conv_output_shape, im2col, pad2d, weight_grad_gemm
from .conv_chunked import _workspace, conv2d_chunked

# Measured on the 2-core development machine (float32, fwd + bwd): thin layers gain (16 -> 16
# channels at 8 x 128 x 128: 57 -> 47 ms), wide ones lose (256 channels at 56 x 56: 65 -> 75 ms).
BLOCKED = {"max_patch": 512, "min_cols_bytes": 4 * 2**20, "block_bytes": 2**20}


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


def _rows_per_block(patch: int, Wo: int, Ho: int, itemsize: int) -> int:
    return max(1, min(Ho, BLOCKED["block_bytes"] // (patch * Wo * itemsize)))


def conv2d_blocked_forward(x: Any, weight: Any, bias: Any, k, s, p, d):
    """y = conv2d(x, weight) + bias in blocks of output rows, and the cache (the input)."""
    y = conv2d_chunked(x, weight, bias, s, p, d, budget=BLOCKED["block_bytes"])
    return y, BlockedConvCache(x, weight, bias is not None, (k, s, p, d))


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
    rows = _rows_per_block(patch, Wo, Ho, dy.itemsize)
    dx_pad = xp.zeros((N, C, H + 2 * p[0], W + 2 * p[1]), dtype=dy.dtype)
    for n in range(N):
        x_pad = pad2d(x[n : n + 1], p)
        dy_n = dy[n].reshape(O, Ho * Wo)
        dx_n = dx_pad[n : n + 1].transpose(1, 0, 2, 3)  # (C, 1, Hp, Wp): col2im's order
        for r0 in range(0, Ho, rows):
            r1 = min(Ho, r0 + rows)
            m = (r1 - r0) * Wo
            lo, hi = r0 * s[0], (r1 - 1) * s[0] + d[0] * (k[0] - 1) + 1  # the slab's rows
            block = _workspace(xp, x.dtype, patch * m)[: patch * m].reshape(patch, m)
            cols = im2col(x_pad[:, :, lo:hi], k, s, 0, d, out=block)
            g = dy_n[:, r0 * Wo : r1 * Wo]  # (O, m)
            weight_grad_gemm(g, cols, dw2, accumulate=True)
            dcols = _workspace(xp, x.dtype, patch * m, "dcols")[: patch * m].reshape(patch, m)
            xp.matmul(w2.T, g, out=dcols)
            col2im_add(dcols, dx_n[:, :, lo:hi], k, s, d, (r1 - r0, Wo))
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    dx = dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W]
    return (dx if p == (0, 0) else xp.ascontiguousarray(dx)), dw, db
