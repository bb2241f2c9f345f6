"""A stride-1 convolution without im2col: every kernel tap is a shifted view of the flat input.

Pad one sample's input and lay each channel out flat, (C, Hp*Wp). Output pixel (h, w) of tap
(i, j) reads input pixel (h + D i, w + D j): in the flat layout, column h*Wp + w shifted by
D i * Wp + D j. So for all pixels at once, each tap is one GEMM on a shifted *view* of the flat
input, and the taps add up in the output::

    Y_ext (O, Ho*Wp) = sum over taps (i, j) of  W[:, :, i, j] (O, C) @ X_flat[:, s : s + Ho*Wp]
                                                                   s = s_ij = D i Wp + D j

Y_ext has Wp columns a row, not Wo: the last Wp - Wo of each row mix two image rows and are
dropped. The kh*kw products are added by the GEMM itself (``cblas.gemm`` with beta = 1): no
(C*kh*kw, Ho*Wo) matrix is written and read back, the input is read from the cache kh*kw times.
This is the issue's "shift-and-add", with the shifts on the input side where they cost nothing.
The weight gradient is the same sum turned around, one GEMM a tap summing over all pixels::

    dW[:, :, i, j] (O, C) += dY_ext (O, Ho*Wp) @ X_flat[:, s_ij : s_ij + Ho*Wp]^T

with dY_ext = dY padded to Wp columns with zeros (the dropped columns get no gradient). dX is a
stride-1 convolution of dY with the kernel flipped and its channel axes swapped, padding
D(K-1) - P (``conv_blocked``'s docstring), so the same shifted forward computes it.

Outputs are computed in chunks of rows (``CHUNK_BYTES``), whole samples where they fit. With
``threads`` > 1 whole samples are shared out among threads (``shares.py``); dW is summed per share,
then in share order. Needs ``cblas.gemm`` (NumPy and its OpenBLAS); the planner checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..functional.conv import flip_transpose
from . import cblas
from .shares import run_shares
from .workspace import workspace_array

# a chunk's input and output columns together: a whole sample of every width-1/4 layer. Measured,
# fwd+dX+dW of 8 samples on 2 threads, chunks of 128 KiB / 512 KiB / 4 MiB (the blocked im2col
# kernel): 16 ch at 128x128 36 / 24 / 22 ms (28), 32 ch at 64x64 24 / 20 / 17 (21)
CHUNK_BYTES = 4 * 2**20
NN = (cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.NO_TRANS)  # row-major C = A @ B
NT = (cblas.ROW_MAJOR, cblas.NO_TRANS, cblas.TRANS)  # row-major C = A @ B^T


@dataclass
class ShiftedConvCache:
    """The shifted backward needs the input itself."""

    x: Any
    weight: Any
    has_bias: bool
    args: tuple  # (kernel, stride, padding, dilation) as pairs
    threads: int = 1


def supports_shifted(args) -> bool:
    """Stride 1 and 0 <= P <= D(K-1) on both axes (dX is then a convolution of dY)."""
    k, s, p, d = args
    return s == (1, 1) and all(0 <= p[a] <= d[a] * (k[a] - 1) for a in range(2))


def conv2d_shifted_forward(x: Any, weight: Any, bias: Any, k, s, p, d, threads: int = 1):
    """(y, cache): y = conv2d(x, weight, bias, stride 1, p, d) by shifted views."""
    y = shifted_conv2d(x, weight, bias, p, d, threads)
    return y, ShiftedConvCache(x, weight, bias is not None, (k, s, p, d), threads)


def conv2d_shifted_backward(dy: Any, cache: ShiftedConvCache, dw_out: Any = None):
    """(dx, dw, db): dW by the shifted GEMMs (written into ``dw_out`` if given), dX as the
    shifted convolution of dY with the flipped kernel."""
    k, _, p, d = cache.args
    dy = dy.astype(cache.x.dtype, copy=False)
    dw = shifted_weight_grad(cache.x, dy, k, p, d, cache.threads, dw_out)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    w_flip = np.ascontiguousarray(flip_transpose(cache.weight))
    p_dx = tuple(d[a] * (k[a] - 1) - p[a] for a in range(2))
    dx = shifted_conv2d(dy, w_flip, None, p_dx, d, cache.threads)
    return dx, dw, db


def _geometry(x_shape, k, p, d):
    """(Hp, Wp, Ho, Wo, flat length, tap shifts): the padded and output sizes, the length of a
    channel's flat row (room for the last tap's shift past the end), and s_ij of each tap."""
    H, W = x_shape[2:]
    Hp, Wp = H + 2 * p[0], W + 2 * p[1]
    Ho, Wo = Hp - d[0] * (k[0] - 1), Wp - d[1] * (k[1] - 1)
    shifts = [(i, j, d[0] * i * Wp + d[1] * j) for i in range(k[0]) for j in range(k[1])]
    return Hp, Wp, Ho, Wo, Hp * Wp + d[1] * (k[1] - 1), shifts


def _flat_padded(x_n: Any, p, Hp: int, Wp: int, out: Any) -> Any:
    """out (C, length) = x_n (C, H, W) zero-padded by p, each channel flat, zeros after."""
    C, H, W = x_n.shape
    grid = out[:, : Hp * Wp].reshape(C, Hp, Wp)
    grid[:, : p[0]] = 0
    grid[:, p[0] + H :] = 0
    rows = grid[:, p[0] : p[0] + H]
    rows[:, :, : p[1]] = 0
    rows[:, :, p[1] + W :] = 0
    rows[:, :, p[1] : p[1] + W] = x_n
    out[:, Hp * Wp :] = 0
    return out


def shifted_conv2d(x: Any, weight: Any, bias: Any, p, d, threads: int = 1) -> Any:
    """y (N, O, Ho, Wo) = conv2d(x (N, C, H, W), weight (O, C, kh, kw), bias, stride 1, p, d)."""
    N, C = x.shape[:2]
    O, _, kh, kw = weight.shape
    Hp, Wp, Ho, Wo, length, shifts = _geometry(x.shape, (kh, kw), p, d)
    taps = np.ascontiguousarray(weight.transpose(2, 3, 0, 1))  # (kh, kw, O, C)
    y = np.empty((N, O, Ho, Wo), dtype=x.dtype)
    rows = max(1, min(Ho, CHUNK_BYTES // ((C + O) * Wp * x.itemsize)))

    gemm, item = cblas.gemm_function(x.dtype), x.itemsize
    tap_at = [taps[i, j].ctypes.data for i, j, _ in shifts]

    def convolve(share: int, samples: range) -> None:
        x_flat = workspace_array(np, x.dtype, (C, length), "shifted_x", share)
        y_ext = workspace_array(np, x.dtype, (O, rows * Wp), "shifted_y", share)
        x_at, y_at = x_flat.ctypes.data, y_ext.ctypes.data
        for n in samples:
            _flat_padded(x[n], p, Hp, Wp, x_flat)
            for h0 in range(0, Ho, rows):
                r = min(rows, Ho - h0)
                for t, (_, _, shift) in enumerate(shifts):
                    # y_ext[:, :r Wp] (+)= taps[i, j] @ x_flat[:, h0 Wp + s : ... + r Wp]
                    b_at = x_at + item * (h0 * Wp + shift)
                    beta = float(t > 0)
                    gemm(*NN, O, r * Wp, C, 1.0, tap_at[t], C, b_at, length, beta, y_at, rows * Wp)
                y[n, :, h0 : h0 + r] = y_ext[:, : r * Wp].reshape(O, r, Wp)[:, :, :Wo]

    run_shares(convolve, N, threads)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


def shifted_weight_grad(x: Any, dy: Any, k, p, d, threads: int = 1, dw_out: Any = None) -> Any:
    """dW (O, C, kh, kw) of y = conv2d(x, W, stride 1, p, d) for dy (N, O, Ho, Wo): one GEMM a
    tap and sample, summing over all of its pixels; written into ``dw_out`` if given."""
    N, C = x.shape[:2]
    O = dy.shape[1]
    Hp, Wp, Ho, Wo, length, shifts = _geometry(x.shape, k, p, d)

    def weight_grad(share: int, samples: range) -> Any:
        x_flat = workspace_array(np, x.dtype, (C, length), "shifted_x", share)
        dy_ext = workspace_array(np, x.dtype, (O, Ho, Wp), "shifted_dy", share)
        dy_ext[:, :, Wo:] = 0
        dw_taps = np.zeros((k[0], k[1], O, C), dtype=x.dtype)
        dy_flat = dy_ext.reshape(O, Ho * Wp)
        for n in samples:
            _flat_padded(x[n], p, Hp, Wp, x_flat)
            dy_ext[:, :, :Wo] = dy[n]
            for i, j, shift in shifts:  # dw_taps[i, j] += dy_flat @ x_flat[:, s : s + Ho Wp]^T
                cblas.gemm(dy_flat, x_flat[:, shift : shift + Ho * Wp].T, dw_taps[i, j], 1.0)
        return dw_taps

    dw_taps, *others = run_shares(weight_grad, N, threads)
    for part in others:  # in share order
        dw_taps += part
    dw = np.empty((O, C) + tuple(k), dtype=x.dtype) if dw_out is None else dw_out
    dw[...] = dw_taps.transpose(2, 3, 0, 1)
    return dw
