"""Transposed convolution as a stride-1 convolution plus a pixel shuffle ("sub-pixel" convolution).

When the kernel is a multiple of the stride, K = m*S (FCN's upsamplings: 4/2, 16/8, 32/16, 64/32),
every output pixel of a transposed convolution receives exactly m*m input pixels, and which kernel
taps it uses depends only on its phase (r, q) = (y mod S, x mod S). Writing y = S*I + r on the full,
unpadded frame (S(H-1) + K = S(H+m-1) rows)::

    y[o, S*I + r, S*J + q] = sum_{c, t, u} W'[(o, r, q), c, t, u] * x_pad[c, I + t, J + u]
    W'[(o, r, q), c, t, u] = weight[c, o, (m-1-t)*S + r, (m-1-u)*S + q]

with x padded by m-1: an ordinary stride-1 convolution with an m x m kernel and Cout*S*S output
channels, whose channels are then moved into space (``pixel_shuffle``). One GEMM, an im2col of
only m*m taps of the small input, and one copy of the output, instead of the adjoint path's
K*K strided col2im additions onto the large output. The backward pass is the same in reverse:
``pixel_unshuffle`` dy, then the convolution's own backward (``plan.py`` composes the steps).

Shapes: x (N, Cin, H, W), weight (Cin, Cout, kh, kw) with kh = mh*sh, kw = mw*sw, dilation 1.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module


def supports_subpixel(k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]) -> bool:
    """Every kernel size a multiple of its stride, no dilation."""
    return d == (1, 1) and k[0] % s[0] == 0 and k[1] % s[1] == 0


def pixel_shuffle(y: Any, s: tuple[int, int]):
    """(N, C*sh*sw, H, W) -> (N, C, H*sh, W*sw): channel (c, r, q) becomes pixel (sh*i+r, sw*j+q).

    As ``torch.nn.functional.pixel_shuffle`` (for sh == sw). One copy.
    """
    N, Crs, H, W = y.shape
    sh, sw = s
    C = Crs // (sh * sw)
    xp = get_array_module(y)
    out = xp.empty((N, C, H, sh, W, sw), dtype=y.dtype)
    out[...] = y.reshape(N, C, sh, sw, H, W).transpose(0, 1, 4, 2, 5, 3)
    return out.reshape(N, C, H * sh, W * sw)


def pixel_unshuffle(y: Any, s: tuple[int, int]):
    """(N, C, H*sh, W*sw) -> (N, C*sh*sw, H, W): the inverse (and adjoint) of ``pixel_shuffle``."""
    N, C, Hs, Ws = y.shape
    sh, sw = s
    H, W = Hs // sh, Ws // sw
    xp = get_array_module(y)
    out = xp.empty((N, C, sh, sw, H, W), dtype=y.dtype)
    out[...] = y.reshape(N, C, H, sh, W, sw).transpose(0, 1, 3, 5, 2, 4)
    return out.reshape(N, C * sh * sw, H, W)


def subpixel_weight(weight: Any, s: tuple[int, int]):
    """(Cin, Cout, mh*sh, mw*sw) -> W' (Cout*sh*sw, Cin, mh, mw), taps flipped (see above)."""
    Cin, Cout, kh, kw = weight.shape
    (sh, sw), mh, mw = s, kh // s[0], kw // s[1]
    w6 = weight.reshape(Cin, Cout, mh, sh, mw, sw)[:, :, ::-1, :, ::-1, :]
    w6 = w6.transpose(1, 3, 5, 0, 2, 4)  # (Cout, sh, sw, Cin, mh, mw)
    return get_array_module(weight).ascontiguousarray(w6).reshape(Cout * sh * sw, Cin, mh, mw)


def weight_from_subpixel(w2: Any, weight_shape: tuple[int, int, int, int], s: tuple[int, int]):
    """The inverse of ``subpixel_weight``: W' (Cout*sh*sw, Cin, mh, mw) -> (Cin, Cout, kh, kw)."""
    Cin, Cout, kh, kw = weight_shape
    (sh, sw), mh, mw = s, kh // s[0], kw // s[1]
    w6 = w2.reshape(Cout, sh, sw, Cin, mh, mw).transpose(3, 0, 4, 1, 5, 2)[:, :, ::-1, :, ::-1, :]
    return get_array_module(w2).ascontiguousarray(w6).reshape(weight_shape)
