"""Two GEMM forms the planner picks between.

``weight_grad_gemm``: dW = dY2 @ cols^T, or (cols @ dY2^T)^T. The same sums; OpenBLAS runs the
second order faster when the output channels are few and the pixels many.

``matmul_in_bands``: out = a @ b with the rows of out cut into bands, the bands shared out among
threads (``shares.py``), one BLAS thread each. For fc6 at batch 1 every GEMM is one huge matrix
(its 4096 x 25088 weight, 411 MB) against 49 columns; OpenBLAS's two threads then pack that matrix
in lockstep, and independent bands run faster (fc6's fwd+dX+dW in ``bench layers``, two runs
alternated: 367, 388 -> 330, 313 ms; fc7 63, 63 -> 58, 56).
Each row of out is the same dot products either way.

docs/performance.md has the measurements.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from .shares import run_shares, runs

BANDS_PER_THREAD = 4  # fc6's forward GEMM, medians of two runs: 120, 139 ms in one GEMM, 103,
# 128 in 2 bands, 95, 113 in 8


def weight_grad_gemm(
    dy2: Any, cols: Any, dw2: Any, transposed: bool, accumulate: bool = False, threads: int = 1
) -> None:
    """dw2 (O, K) = (or +=) dy2 (O, M) @ cols (K, M)^T, the sum over the M output pixels;
    ``threads`` > 1: the direct order written in bands (``matmul``)."""
    xp = get_array_module(dy2, cols, dw2)
    if threads > 1 and not (transposed or accumulate):
        matmul(dy2, cols.T, dw2, threads)
    elif transposed:
        dw2_t = xp.matmul(cols, dy2.T)
        if accumulate:
            dw2 += dw2_t.T
        else:
            dw2[...] = dw2_t.T
    elif accumulate:
        dw2 += dy2 @ cols.T
    else:
        xp.matmul(dy2, cols.T, out=dw2)


def matmul(a: Any, b: Any, out: Any, threads: int = 1) -> Any:
    """out = a @ b; in bands shared out among ``threads`` threads where that is more than one."""
    if threads > 1:
        return matmul_in_bands(a, b, out, threads, BANDS_PER_THREAD * threads)
    return get_array_module(a, b, out).matmul(a, b, out=out)


def matmul_in_bands(a: Any, b: Any, out: Any, threads: int, bands: int) -> Any:
    """out (M, N) = a (M, K) @ b (K, N), the M rows in ``bands`` bands of about M / bands rows
    shared out among ``threads`` threads (round robin); returns out."""
    xp = get_array_module(a, b, out)
    rows = runs(out.shape[0], bands)

    def multiply(share: int, indices: range) -> None:
        for i in indices:
            xp.matmul(a[rows[i]], b, out=out[rows[i]])

    run_shares(multiply, len(rows), threads)
    return out
