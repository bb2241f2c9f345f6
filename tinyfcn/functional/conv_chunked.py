"""Inference convolution in bounded memory: im2col + GEMM over blocks of output rows.

The im2col matrix of one layer can be huge: conv1_2 of the paper's FCN on a 500x500 image sees a
698x698 map (padding 100), so its (64*3*3, 698*698) matrix is 1.1 GB in float32. Forward-only
passes (``no_grad``) keep no matrix for a backward, so they can build it a few rows at a time:

    for each sample n, for each block of output rows [r0, r1):
        slab = the padded input rows that block reads:  [r0*S, (r1-1)*S + D(K-1) + 1)
        y[n, :, r0:r1] = W2 @ im2col(slab)              (the same im2col, padding 0)

The result equals ``conv2d`` exactly (same products, same order within each output). The block
height is chosen so that one block's matrix stays under ``im2col_budget()`` bytes, and all layers
share one workspace for it (as Caffe shares its column buffer): layers run one after another, so
an inference pass holds a single block matrix, and reusing it spares the page faults of a fresh
allocation per layer.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from .conv import (
    _check_conv_inputs,
    columns_as_batch,
    conv_output_shape,
    im2col,
    is_pointwise,
    normalize_conv_args,
    pad2d,
    pixels_as_columns,
)

_budget = {"bytes": 128 * 2**20}
_workspaces: dict = {}  # (array module, dtype) -> flat array, grown on demand up to the budget


def im2col_budget() -> int:
    """Largest im2col block, in bytes, that a forward-only convolution builds at once."""
    return _budget["bytes"]


def set_im2col_budget(nbytes: int) -> None:
    """Set the im2col memory budget (default 128 MiB); small budgets trade speed for memory."""
    if nbytes < 1:
        raise ValueError(f"the im2col budget must be a positive number of bytes, got {nbytes}")
    _budget["bytes"] = int(nbytes)
    _workspaces.clear()


def _workspace(xp, dtype, size: int, name: str = "cols"):
    """A flat array of at least ``size`` elements, shared by every convolution that asks for
    ``name`` (one layer runs at a time)."""
    key = (xp.__name__, str(dtype), name)
    buffer = _workspaces.get(key)
    if buffer is None or buffer.size < size:
        buffer = _workspaces[key] = xp.empty(size, dtype=dtype)
    return buffer


def cols_nbytes(x_shape, weight_shape, stride, padding, dilation, itemsize: int) -> int:
    """Bytes of the whole im2col matrix conv2d would build for this input."""
    O, C, kh, kw = weight_shape
    k, s, p, d = normalize_conv_args((kh, kw), stride, padding, dilation)
    Ho, Wo = conv_output_shape("conv2d", tuple(x_shape[2:]), k, s, p, d)
    return C * kh * kw * x_shape[0] * Ho * Wo * itemsize


def conv2d_chunked(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    dilation=1,
    budget: int | None = None,
) -> Any:
    """Forward-only conv2d, (N, C, H, W) -> (N, O, Ho, Wo), never holding more than ``budget``
    bytes of im2col matrix (default ``im2col_budget()``)."""
    xp = get_array_module(x, weight, bias)
    _check_conv_inputs("conv2d", x, weight, bias)
    O, C, kh, kw = weight.shape
    k, s, p, d = normalize_conv_args((kh, kw), stride, padding, dilation)
    N, _, H, W = x.shape
    Ho, Wo = conv_output_shape("conv2d", (H, W), k, s, p, d)
    w2 = weight.reshape(O, C * kh * kw)
    if is_pointwise(k, s, p, d):  # no matrix to build: one GEMM on the input itself
        y = columns_as_batch(w2 @ pixels_as_columns(x), N, Ho, Wo)
    else:
        y = xp.empty((N, O, Ho, Wo), dtype=x.dtype)
        row_elems = C * kh * kw * Wo
        rows = max(1, (im2col_budget() if budget is None else budget) // (row_elems * x.itemsize))
        rows = min(rows, Ho)
        buffer = _workspace(xp, x.dtype, row_elems * rows)
        for n in range(N):
            x_pad = pad2d(x[n : n + 1], p)
            for r0 in range(0, Ho, rows):
                r1 = min(Ho, r0 + rows)
                slab = x_pad[:, :, r0 * s[0] : (r1 - 1) * s[0] + d[0] * (k[0] - 1) + 1]
                block = buffer[: row_elems * (r1 - r0)].reshape(C * kh * kw, (r1 - r0) * Wo)
                rows_of_y = y[n].reshape(O, Ho * Wo)[:, r0 * Wo : r1 * Wo]  # a view
                xp.matmul(w2, im2col(slab, k, s, 0, d, out=block), out=rows_of_y)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y
