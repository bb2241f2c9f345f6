"""Training convolution in cache-sized blocks, keeping no im2col matrix; dX as a convolution.

``functional.conv2d_forward`` keeps the whole im2col matrix (C*kh*kw, N*Ho*Wo) for its backward.
For a thin layer on a large image that matrix is 9x the input, and writing it, reading it back for
dW and again through col2im for dX is all memory traffic. Here the forward and the backward walk
the same blocks of output rows, sample by sample, and build each block's matrix in a small
workspace that stays in the cache; the backward rebuilds it from the input instead of storing it:

    forward:   y[n, :, r0:r1]  = W2 @ im2col(slab)                      (conv2d_chunked)
    backward:  dW             += dY[n, :, r0:r1] @ im2col(slab)^T
               dx_slab        += col2im(W2^T @ dY[n, :, r0:r1])          (slabs overlap: add)

where slab is the padded input rows the block reads: the textbook's products, in another order.

dX without col2im. At stride 1 the transposed convolution that is dX needs no zero insertion, so
it is an ordinary convolution of dY, with the kernel flipped and its two channel axes swapped:

    dX = conv2d(dY, flip_transpose(W), padding = D(K-1) - P, dilation D)        (stride 1 only)

run through the same cache-sized blocks as the forward: no (C*kh*kw, N*Ho*Wo) matrix and none of
col2im's kh*kw read-modify-write passes over dX. The planner says when each pays.

With ``threads`` > 1 the samples are shared out among threads (``shares.py``): each share walks
its own samples' blocks in its own workspace and sums its own dW, added up in share order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_array_module
from ..functional.conv import conv_output_shape, flip_transpose, pad2d
from .conv_chunked import conv2d_chunked
from .gemm import weight_grad_gemm
from .im2col import col2im_add, im2col_into
from .shares import run_shares
from .workspace import workspace


@dataclass
class BlockedConvCache:
    """What the blocked backward needs: the input itself, not its im2col matrix."""

    x: Any
    weight: Any
    has_bias: bool
    args: tuple  # (kernel, stride, padding, dilation) as pairs
    block_bytes: int
    threads: int = 1  # samples shared out among this many threads (shares.py)


def conv2d_blocked_forward(
    x: Any, weight: Any, bias: Any, k, s, p, d, out_hw, block_bytes: int, threads: int = 1
):
    """y = conv2d(x, weight) + bias in blocks of output rows, and the cache (the input);
    ``threads``: samples shared out among that many, here and in the backward."""
    y = conv2d_chunked(x, weight, bias, k, s, p, d, out_hw, block_bytes, threads)
    return y, BlockedConvCache(x, weight, bias is not None, (k, s, p, d), block_bytes, threads)


def conv2d_input_grad_as_conv(
    dy: Any, weight: Any, k, p, d, block_bytes: int, threads: int = 1
) -> Any:
    """dX = conv2d(dY, flip_transpose(W), padding D(K-1) - P, dilation D) for a stride-1 conv.

    dy (N, O, Ho, Wo), weight (O, C, kh, kw) -> dx (N, C, H, W), in blocks of ``block_bytes``.
    """
    xp = get_array_module(dy, weight)
    pad = tuple(d[a] * (k[a] - 1) - p[a] for a in range(2))
    w_flip = xp.ascontiguousarray(flip_transpose(weight))  # (C, O, kh, kw)
    out_hw = conv_output_shape("conv2d dX", tuple(dy.shape[2:]), k, (1, 1), pad, d)
    return conv2d_chunked(dy, w_flip, None, k, (1, 1), pad, d, out_hw, block_bytes, threads)


def conv2d_blocked_backward(
    dy: Any,
    cache: BlockedConvCache,
    dw_transposed: bool,
    dx_conv_block_bytes: int | None,
    dw_out: Any = None,
):
    """(dx, dw, db), each block's im2col matrix rebuilt from the input (see the module doc).

    ``dx_conv_block_bytes``: compute dX as a convolution in blocks of that size; None: col2im.
    ``dw_out``: an array of the weight's shape to write dW into (its contents are overwritten).
    """
    dx_as_conv = dx_conv_block_bytes is not None
    x, weight = cache.x, cache.weight
    k, s, p, d = cache.args
    xp = get_array_module(dy, x, weight)
    N, C, H, W = x.shape
    O = weight.shape[0]
    Ho, Wo = dy.shape[2:]
    patch = C * k[0] * k[1]
    w2 = weight.reshape(O, patch)
    dw = xp.empty(weight.shape, dtype=dy.dtype) if dw_out is None else dw_out
    dw2 = dw.reshape(O, patch)
    dw2[...] = 0
    rows = max(1, min(Ho, cache.block_bytes // (patch * Wo * dy.itemsize)))
    dx_pad = None if dx_as_conv else xp.zeros((N, C, H + 2 * p[0], W + 2 * p[1]), dy.dtype)

    def backward(share: int, samples: range) -> Any:
        """dW over these samples (share 0: into dw2 itself), their dX by col2im."""
        dw2_share = dw2 if share == 0 else xp.zeros_like(dw2)
        for n in samples:
            x_pad = pad2d(x[n : n + 1], p)
            dy_n = dy[n].reshape(O, Ho * Wo)
            for r0 in range(0, Ho, rows):
                r1 = min(Ho, r0 + rows)
                m = (r1 - r0) * Wo
                lo, hi = r0 * s[0], (r1 - 1) * s[0] + d[0] * (k[0] - 1) + 1  # the slab's rows
                block = workspace(xp, x.dtype, patch * m, share=share)[: patch * m]
                cols = im2col_into(
                    block.reshape(patch, m), x_pad[:, :, lo:hi], k, s, d, (r1 - r0, Wo)
                )
                g = dy_n[:, r0 * Wo : r1 * Wo]  # (O, m)
                weight_grad_gemm(g, cols, dw2_share, dw_transposed, accumulate=True)
                if not dx_as_conv:
                    dcols = workspace(xp, x.dtype, patch * m, "dcols", share)[: patch * m]
                    dcols = xp.matmul(w2.T, g, out=dcols.reshape(patch, m))
                    dx_n = dx_pad[n : n + 1].transpose(1, 0, 2, 3)  # (C, 1, Hp, Wp): col2im's
                    col2im_add(dcols, dx_n[:, :, lo:hi], k, s, d, (r1 - r0, Wo))
        return dw2_share

    for partial in run_shares(backward, N, cache.threads)[1:]:  # in share order
        dw2 += partial
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if dx_as_conv:
        dx = conv2d_input_grad_as_conv(dy, weight, k, p, d, dx_conv_block_bytes, cache.threads)
        return dx, dw, db
    dx = dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W]
    return (dx if p == (0, 0) else xp.ascontiguousarray(dx)), dw, db
