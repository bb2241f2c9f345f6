"""The engine's im2col and col2im: the textbook's strided copies, into and onto arrays it owns.

``functional.conv.im2col`` allocates its matrix; here the caller hands in the matrix (a block of a
shared workspace, or a layer's spare from the previous step) and col2im adds onto a frame that
blocks share. Same taps, same order: the numbers are the textbook's.
"""

from __future__ import annotations

from typing import Any

from ..functional.conv import _window_slices


def im2col_into(out: Any, x_pad: Any, k, s, d, out_hw: tuple[int, int]) -> Any:
    """out (C*kh*kw, N*Ho*Wo) = im2col of the already padded x_pad (N, C, Hp, Wp); returns out."""
    N, C = x_pad.shape[:2]
    cols = out.reshape(C, k[0], k[1], N, *out_hw)
    x_pad = x_pad.transpose(1, 0, 2, 3)  # (C, N, Hp, Wp): a view, in the column order
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, out_hw, s, d)
            cols[:, i, j] = x_pad[:, :, rows, columns]
    return out


def col2im_add(cols: Any, x_pad: Any, k, s, d, out_hw: tuple[int, int]) -> None:
    """x_pad (C, N, Hp, Wp) += col2im(cols): each kernel tap's (N, Ho, Wo) block of cols
    (C*kh*kw, N*Ho*Wo) added onto the strided window of x_pad it was read from."""
    C, N = x_pad.shape[:2]
    cols6 = cols.reshape(C, k[0], k[1], N, *out_hw)
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, out_hw, s, d)
            x_pad[:, :, rows, columns] += cols6[:, i, j]
