"""Slow, loop-based reference implementations: the oracles the fast kernels are tested against.

Written for the reader, not for speed: each is the textbook definition, one output (or one input)
at a time. NumPy only; use small sizes.
"""

from __future__ import annotations

import numpy as np

from ._checks import pair


def conv2d_reference(x, weight, bias=None, stride=1, padding=0, dilation=1) -> np.ndarray:
    """y[n, o, i, j] = b[o] + sum_{c, u, v} x_pad[n, c, i*S + u*D, j*S + v*D] * w[o, c, u, v]."""
    (sh, sw), (ph, pw), (dh, dw) = (
        pair(stride, "stride"),
        pair(padding, "padding"),
        pair(dilation, "dilation"),
    )
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    x_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    x_pad[:, :, ph : ph + H, pw : pw + W] = x
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    window = x_pad[
                        n,
                        :,
                        i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                        j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                    ]
                    y[n, o, i, j] = np.sum(window * weight[o])
            if bias is not None:
                y[n, o] += bias[o]
    return y


def conv_transpose2d_reference(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1
) -> np.ndarray:
    """The scatter form: every input pixel stamps its weighted kernel onto the output.

    y_full[n, o, i*S + u*D, j*S + v*D] += x[n, c, i, j] * w[c, o, u, v], then crop P from the
    top/left and keep Ho = S(H-1) - 2P + D(K-1) + output_padding + 1 rows.
    """
    (sh, sw), (ph, pw), (dh, dw) = (
        pair(stride, "stride"),
        pair(padding, "padding"),
        pair(dilation, "dilation"),
    )
    oph, opw = pair(output_padding, "output_padding")
    N, Cin, H, W = x.shape
    _, Cout, kh, kw = weight.shape
    Ho = sh * (H - 1) - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = sw * (W - 1) - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((N, Cout, Ho + 2 * ph, Wo + 2 * pw), dtype=x.dtype)
    for n in range(N):
        for c in range(Cin):
            for i in range(H):
                for j in range(W):
                    for u in range(kh):
                        for v in range(kw):
                            full[n, :, i * sh + u * dh, j * sw + v * dw] += (
                                x[n, c, i, j] * weight[c, :, u, v]
                            )
    y = full[:, :, ph : ph + Ho, pw : pw + Wo].copy()
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def max_pool2d_reference(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """y[n, c, i, j] = max of the window at (i*S - P, j*S - P); and the winners' flat index.

    Returns (y, argmax) with argmax[n, c, i, j] = row * W + col of the first maximum in the window
    (the same convention as torch's ``return_indices``).
    """
    from .pool import pool_output_size

    (kh, kw) = pair(kernel_size, "kernel_size")
    (sh, sw) = pair(kernel_size if stride is None else stride, "stride")
    (ph, pw), (dh, dw) = pair(padding, "padding"), pair(dilation, "dilation")
    N, C, H, W = x.shape
    Ho = pool_output_size(H, kh, sh, ph, dh, ceil_mode)
    Wo = pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    argmax = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best, where = -np.inf, -1
                    for u in range(kh):
                        for v in range(kw):
                            r, q = i * sh - ph + u * dh, j * sw - pw + v * dw
                            if 0 <= r < H and 0 <= q < W and x[n, c, r, q] > best:
                                best, where = x[n, c, r, q], r * W + q
                    y[n, c, i, j], argmax[n, c, i, j] = best, where
    return y, argmax


def max_pool2d_backward_reference(dy, argmax, x_shape) -> np.ndarray:
    """dx[n, c, argmax[n, c, i, j]] += dy[n, c, i, j], one output at a time."""
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    dx[n, c, argmax[n, c, i, j]] += dy[n, c, i, j]
    return dx.reshape(x_shape)
