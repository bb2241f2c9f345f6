"""2-d convolution as im2col + one GEMM, and its backward pass (dW by a GEMM, dX by col2im).

Shapes (NCHW, PyTorch's weight layout)::

    x      (N, C, H, W)             weight (O, C, kh, kw)          bias (O,)
    cols   (C*kh*kw, N*Ho*Wo)       y      (N, O, Ho, Wo)
    Ho = floor((H + 2P - D(kh-1) - 1) / S) + 1        (likewise Wo)

cols has one column per output pixel of the whole batch, so every product below is ONE matrix
multiplication (GEMM), whatever N is. With dY2 = dy as (O, N*Ho*Wo) and W2 = weight as (O, C*kh*kw):

Forward:   Y2 = W2 @ cols + b
Backward:  dW = dY2 @ cols^T
           dX = col2im(W2^T @ dY2)            (this *is* a transposed convolution of dy)
           db = sum over n, h, w of dy
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_array_module
from ._checks import (
    check_float_array,
    check_nchw,
    check_non_negative,
    check_positive,
    check_same_dtype,
    pair,
)

IntOrPair = int | tuple[int, int]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    """``floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1`` along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def normalize_conv_args(kernel_size, stride, padding, dilation):
    """int-or-pair arguments -> four validated pairs."""
    k, s = pair(kernel_size, "kernel_size"), pair(stride, "stride")
    p, d = pair(padding, "padding"), pair(dilation, "dilation")
    check_positive(k, "kernel_size")
    check_positive(s, "stride")
    check_positive(d, "dilation")
    check_non_negative(p, "padding")
    return k, s, p, d


def conv_output_shape(op: str, hw: tuple[int, int], k, s, p, d) -> tuple[int, int]:
    """(Ho, Wo), or a ValueError when the dilated kernel does not fit in the padded input."""
    out = []
    for axis in range(2):
        span = d[axis] * (k[axis] - 1) + 1
        padded = hw[axis] + 2 * p[axis]
        if span > padded:
            raise ValueError(
                f"{op}: kernel {k} with dilation {d} spans {span} pixels along "
                f"{'HW'[axis]}, larger than the padded input ({hw[0]}x{hw[1]} plus padding {p} "
                f"= {hw[0] + 2 * p[0]}x{hw[1] + 2 * p[1]})"
            )
        out.append(conv_output_size(hw[axis], k[axis], s[axis], p[axis], d[axis]))
    return out[0], out[1]


def _window_slices(i: int, j: int, out_hw, s, d) -> tuple[slice, slice]:
    """The strided slice of the padded input that kernel tap (i, j) sees at every output pixel."""
    (Ho, Wo), (sh, sw), (dh, dw) = out_hw, s, d
    return (
        slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh),
        slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw),
    )


def pad2d(x: Any, padding: tuple[int, int], value: float = 0.0):
    """Pad the last two axes by (ph, pw) on both sides (a fresh array; ``x`` if no padding)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.full((N, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph : ph + H, pw : pw + W] = x
    return out


def pixels_as_columns(x: Any):
    """(N, C, H, W) -> (C, N*H*W): channels as rows, every pixel of the batch a column.

    A view when N == 1 (the common inference case), else one copy.
    """
    N, C = x.shape[:2]
    if N == 1:
        return x.reshape(C, -1)
    return get_array_module(x).ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(C, -1)


def columns_as_batch(y2: Any, N: int, H: int, W: int):
    """(C, N*H*W) -> (N, C, H, W): the inverse of ``pixels_as_columns`` (contiguous result)."""
    C = y2.shape[0]
    if N == 1:
        return y2.reshape(1, C, H, W)
    return get_array_module(y2).ascontiguousarray(y2.reshape(C, N, H, W).transpose(1, 0, 2, 3))


def im2col(
    x: Any,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
):
    """Unfold every receptive field of ``x`` into a column.

    x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo): row ``(c*kh + i)*kw + j`` (the weight's order),
    column ``(n*Ho + oh)*Wo + ow`` (one per output pixel of the batch).

    One strided-slice copy per kernel tap (i, j): the (Ho, Wo) grid of input pixels that tap sees.
    """
    k, s, p, d = normalize_conv_args(kernel_size, stride, padding, dilation)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Ho, Wo = conv_output_shape("im2col", (H, W), k, s, p, d)
    cols = xp.empty((C, k[0], k[1], N, Ho, Wo), dtype=x.dtype)
    x_pad = pad2d(x, p).transpose(1, 0, 2, 3)  # (C, N, Hp, Wp): a view, in the column order
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, (Ho, Wo), s, d)
            cols[:, i, j] = x_pad[:, :, rows, columns]
    return cols.reshape(C * k[0] * k[1], N * Ho * Wo)


def col2im(
    cols: Any,
    x_shape: tuple[int, int, int, int],
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
):
    """The adjoint of im2col (not its inverse): sum every column back onto the pixels it came from.

    cols (C*kh*kw, N*Ho*Wo) -> (N, C, H, W). A pixel covered by several windows receives the sum
    of their entries, so ``<im2col(x), c> == <x, col2im(c)>`` for all x, c.

    Written as kh*kw strided-slice additions (no ``np.add.at``), which runs unchanged on CuPy.
    """
    k, s, p, d = normalize_conv_args(kernel_size, stride, padding, dilation)
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    Ho, Wo = conv_output_shape("col2im", (H, W), k, s, p, d)
    if cols.shape != (C * k[0] * k[1], N * Ho * Wo):
        raise ValueError(
            f"col2im expected cols of shape {(C * k[0] * k[1], N * Ho * Wo)} for x_shape "
            f"{tuple(x_shape)}, got {tuple(cols.shape)}"
        )
    x_pad = xp.zeros((C, N, H + 2 * p[0], W + 2 * p[1]), dtype=cols.dtype)  # cols' (C, N) order
    cols6 = cols.reshape(C, k[0], k[1], N, Ho, Wo)
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, (Ho, Wo), s, d)
            x_pad[:, :, rows, columns] += cols6[:, i, j]
    x = x_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W].transpose(1, 0, 2, 3)  # (N, C, H, W)
    return x if p == (0, 0) and N == 1 else xp.ascontiguousarray(x)


def flip_transpose(weight: Any):
    """(A, B, kh, kw) -> (B, A, kh, kw) flipped in both spatial axes (a view); its own inverse.

    The kernel of the transposed convolution: conv_transpose2d(y, W) == conv2d(z, flip_transpose(W))
    where z is y with zeros inserted and padded (see conv_transpose.py).
    """
    return weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]


def is_pointwise(k, s, p, d) -> bool:
    """A 1x1 kernel, stride 1, no padding: cols is the input itself, the conv one plain GEMM."""
    return k == (1, 1) and s == (1, 1) and p == (0, 0)


@dataclass
class Conv2dCache:
    """What conv2d_forward keeps for the backward pass."""

    cols: Any
    weight: Any
    x_shape: tuple[int, int, int, int]
    has_bias: bool
    args: tuple  # (kernel, stride, padding, dilation) as pairs


def check_conv_inputs(op: str, x, weight, bias) -> None:
    """Float arrays of one dtype, a 4-d weight."""
    check_float_array(weight, "weight", op)
    if weight.ndim != 4:
        raise ValueError(f"{op} expected a 4-d weight, got shape {tuple(weight.shape)}")
    if bias is not None:
        check_float_array(bias, "bias", op)
    check_same_dtype(op, input=x, weight=weight, bias=bias)


def check_conv2d_args(op: str, x, weight, bias, stride, padding, dilation):
    """Validate a convolution's arguments: (k, s, p, d) as pairs and the output size (Ho, Wo)."""
    get_array_module(x, weight, bias)
    check_nchw(x, op)
    check_conv_inputs(op, x, weight, bias)
    O, C, kh, kw = weight.shape
    if x.shape[1] != C:
        raise ValueError(
            f"{op} expected input with {C} channels (weight {tuple(weight.shape)}), got "
            f"{x.shape[1]} (shape {tuple(x.shape)})"
        )
    k, s, p, d = normalize_conv_args((kh, kw), stride, padding, dilation)
    return (k, s, p, d), conv_output_shape(op, tuple(x.shape[2:]), k, s, p, d)


def check_grad_shape(op: str, dy: Any, expected: tuple) -> None:
    """The upstream gradient must have the forward output's shape."""
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(
            f"{op} backward expected dy of shape {tuple(expected)}, got {tuple(dy.shape)}"
        )


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
):
    """y = conv2d(x, weight) + bias, and the cache its backward needs.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo), Conv2dCache.
    Y2 = W2 @ cols: one GEMM for the whole batch (a 1x1 conv needs no im2col: cols is x itself).
    """
    (k, s, p, d), (Ho, Wo) = check_conv2d_args("conv2d", x, weight, bias, stride, padding, dilation)
    O = weight.shape[0]
    cols = pixels_as_columns(x) if is_pointwise(k, s, p, d) else im2col(x, k, s, p, d)
    y = columns_as_batch(weight.reshape(O, -1) @ cols, x.shape[0], Ho, Wo)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y, Conv2dCache(cols, weight, tuple(x.shape), bias is not None, (k, s, p, d))


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
):
    """Forward only, as ``torch.nn.functional.conv2d``: (N, C, H, W) -> (N, O, Ho, Wo)."""
    return conv2d_forward(x, weight, bias, stride, padding, dilation)[0]


def conv2d_weight_grad(dy: Any, cols: Any, weight_shape: tuple[int, ...]):
    """dW = dY2 @ cols^T: dy (N, O, Ho, Wo), cols (C*kh*kw, N*Ho*Wo) -> weight_shape.

    Every output pixel adds (its gradient) x (the patch it saw) to dW: the sum over the batch.
    """
    return (pixels_as_columns(dy) @ cols.T).reshape(weight_shape)


def conv2d_input_grad(
    dy: Any,
    weight: Any,
    x_shape: tuple[int, int, int, int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
):
    """dX = col2im(W2^T @ dY2): the gradient of conv2d w.r.t. its input.

    dy (N, O, Ho, Wo), weight (O, C, kh, kw) -> dx of shape x_shape = (N, C, H, W).
    This is exactly a transposed convolution of dy with ``weight`` (see conv_transpose.py).
    """
    O, C, kh, kw = weight.shape
    k, s, p, d = normalize_conv_args((kh, kw), stride, padding, dilation)
    get_array_module(dy, weight)
    dcols = weight.reshape(O, C * kh * kw).T @ pixels_as_columns(dy)
    if is_pointwise(k, s, p, d):
        return columns_as_batch(dcols, x_shape[0], *x_shape[2:])
    return col2im(dcols, x_shape, k, s, p, d)


def conv2d_backward(dy: Any, cache: Conv2dCache):
    """(dx, dw, db) for y = conv2d(x, weight) + bias; ``db`` is None without a bias.

    dy (N, O, Ho, Wo) -> dx (N, C, H, W), dw (O, C, kh, kw), db (O,):
        dW = dY2 @ cols^T      dX = col2im(W2^T @ dY2)      db = sum of dy over n, h, w
    """
    get_array_module(dy, cache.weight)
    k, s, p, d = cache.args
    N, _, H, W = cache.x_shape
    Ho, Wo = conv_output_shape("conv2d backward", (H, W), k, s, p, d)
    check_grad_shape("conv2d", dy, (N, cache.weight.shape[0], Ho, Wo))
    dw = conv2d_weight_grad(dy, cache.cols, cache.weight.shape)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return conv2d_input_grad(dy, cache.weight, cache.x_shape, s, p, d), dw, db
