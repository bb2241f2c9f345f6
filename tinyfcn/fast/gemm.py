"""The weight-gradient GEMM in either order: dW = dY2 @ cols^T, or (cols @ dY2^T)^T.

The same sums; OpenBLAS runs the second order faster when the output channels are few and the
pixels many (the planner decides; docs/performance.md has the measurements).
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module


def weight_grad_gemm(
    dy2: Any, cols: Any, dw2: Any, transposed: bool, accumulate: bool = False
) -> None:
    """dw2 (O, K) = (or +=) dy2 (O, M) @ cols (K, M)^T, the sum over the M output pixels."""
    xp = get_array_module(dy2, cols, dw2)
    if transposed:
        dw2_t = xp.matmul(cols, dy2.T)
        if accumulate:
            dw2 += dw2_t.T
        else:
            dw2[...] = dw2_t.T
    elif accumulate:
        dw2 += dy2 @ cols.T
    else:
        xp.matmul(dy2, cols.T, out=dw2)
