"""Forward-only convolution in bounded memory: im2col + GEMM over blocks of output rows.

The im2col matrix of one layer can be huge: conv1_2 of the paper's FCN on a 500x500 image sees a
698x698 map (padding 100), so its (64*3*3, 698*698) matrix is 1.1 GB in float32. A forward-only
pass keeps no matrix for a backward, so it can build it a few rows at a time:

    for each sample n, for each block of output rows [r0, r1):
        slab = the padded input rows that block reads:  [r0*S, (r1-1)*S + D(K-1) + 1)
        y[n, :, r0:r1] = W2 @ im2col(slab)              (the same im2col, padding 0)

The result equals ``functional.conv2d`` (same products; only BLAS's blocking of the sums can
differ). All blocks of all layers share one workspace (``workspace.py``); where samples are shared
out among threads (``shares.py``), each thread has its own.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..functional.conv import columns_as_batch, is_pointwise, pad2d, pixels_as_columns
from .im2col import im2col_into
from .shares import run_shares
from .workspace import workspace


def conv2d_chunked(
    x: Any, weight: Any, bias: Any, k, s, p, d, out_hw, block_bytes: int, threads: int = 1
) -> Any:
    """conv2d forward, (N, C, H, W) -> (N, O, Ho, Wo), never holding more than ``block_bytes``
    of im2col matrix (at least one output row) per thread; ``threads`` > 1: samples shared out
    among that many threads (``shares.py``), each with its own block."""
    xp = get_array_module(x, weight, bias)
    N = x.shape[0]
    O = weight.shape[0]
    Ho, Wo = out_hw
    w2 = weight.reshape(O, -1)
    patch = w2.shape[1]
    if is_pointwise(k, s, p, d):  # no matrix to build: one GEMM on the input itself
        y = columns_as_batch(w2 @ pixels_as_columns(x), N, Ho, Wo)
    else:
        y = xp.empty((N, O, Ho, Wo), dtype=x.dtype)
        rows = min(Ho, max(1, block_bytes // (patch * Wo * x.itemsize)))

        def convolve(share: int, samples: range) -> None:
            buffer = workspace(xp, x.dtype, patch * Wo * rows, share=share)
            for n in samples:
                x_pad = pad2d(x[n : n + 1], p)
                for r0 in range(0, Ho, rows):
                    r1 = min(Ho, r0 + rows)
                    slab = x_pad[:, :, r0 * s[0] : (r1 - 1) * s[0] + d[0] * (k[0] - 1) + 1]
                    block = buffer[: patch * Wo * (r1 - r0)].reshape(patch, (r1 - r0) * Wo)
                    im2col_into(block, slab, k, s, d, (r1 - r0, Wo))
                    rows_of_y = y[n].reshape(O, Ho * Wo)[:, r0 * Wo : r1 * Wo]  # a view
                    xp.matmul(w2, block, out=rows_of_y)

        run_shares(convolve, N, threads)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y
