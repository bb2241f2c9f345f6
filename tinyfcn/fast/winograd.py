"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications than im2col.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). The padded input
is cut into overlapping 4x4 tiles d at stride 2 (tile (i, j) starts at padded pixel (2i, 2j)); each
tile gives a 2x2 block of the output::

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, 4x4; g the 3x3 kernel)

        B^T = [[1,  0, -1,  0],    G = [[  1,    0,    0],    A^T = [[1, 1,  1,  0],
               [0,  1,  1,  0],         [1/2,  1/2,  1/2],           [0, 1, -1, -1]]
               [0, -1,  1,  0],         [1/2, -1/2,  1/2],
               [0,  1,  0, -1]]         [  0,    0,    1]]

Summed over input channels, the elementwise product at each of the 16 positions (a, b) of the
transformed tile is one GEMM over all tiles of the batch::

    U[ab] = (G g G^T)[a, b]     (O, C)        the filter transform, once per call
    V[ab] = (B^T d B)[a, b]     (C, tiles)    the input transform: 4x the input (16 per 4 pixels)
    M[ab] = U[ab] @ V[ab]       (O, tiles)    16 GEMMs (``xp.matmul``, batched)
    y tile = A^T M A            (O, 2x2)      the output transform

Multiplications: 16 per 4 outputs per (c, o) instead of 9 per output: 36/16 = 2.25x fewer.
Shapes: x (N, C, H, W), weight (O, C, 3, 3) -> y (N, O, Ho, Wo), Ho = H + 2P - 2 (likewise Wo).
An odd Ho or Wo is padded to whole tiles (zeros) and the extra output row or column cropped.

Memory: V, M and the intermediates hold ~28 (C + O) numbers per tile (14x the input where C = O;
im2col's matrix is 9x). They are built in blocks of samples, or of tile rows within one sample,
of at most ``block_bytes`` (the engine's im2col budget, 128 MiB, unless given: conv1_2 at
224x224 needs 180 MB, so two blocks of 83 and 29 tile rows), in reused workspaces.

Rounding, relative to max |y| against the float64 textbook: float64 ~5e-16; float32 2e-7 to
7e-7 on VGG-like layers (He-scaled weights, post-ReLU inputs; 64 to 512 channels), up to 2x
im2col's own float32 error (the transforms add and subtract before the GEMM). Tested: 1e-12 in
float64, 2e-6 in float32 (``tests/test_fast_winograd.py``).

Gradients: at stride 1, dX is the 3x3 convolution of dY with the flipped, channel-swapped kernel
and padding 2 - P (as ``conv_blocked.conv2d_input_grad_as_conv``): ``winograd_input_grad``. dW
differentiates the tile formula: ``winograd_weight_grad``, 16 GEMMs summing over the tiles.

Where it pays (``benchmarks/winograd_bench.py``; 2-core EPYC shared with other jobs, one BLAS
thread, float32, two runs; Winograd's time / the engine's im2col kernel's): forward 0.6-0.9, dX
0.6-0.8, dW 0.5-0.9 on conv2_2 to conv4_2 at 224x224 (128-512 channels, 112 to 28 pixels); not
on conv1_2 (64 channels, 1.0-1.3), conv5_2 (14 pixels, 0.9-1.5) or at width 1/4 (16-128
channels, 1.0-2.9), where the transforms' memory passes cost more than the GEMMs save. Two BLAS
threads on a busy machine make its 16 short GEMMs each wait for the second thread: time it on a
quiet one.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..functional._checks import check_nchw, pair
from ..functional.conv import check_conv2d_args, check_conv_inputs, flip_transpose
from .workspace import im2col_budget, workspace

B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
A_T = ((1, 1, 1, 0), (0, 1, -1, -1))


def winograd_conv3x3(
    x: Any, weight: Any, bias: Any = None, padding=1, block_bytes: int | None = None
) -> Any:
    """y = conv2d(x, weight, bias, stride 1, padding) by Winograd F(2x2, 3x3).

    x (N, C, H, W), weight (O, C, 3, 3), bias (O,) or None -> y (N, O, H + 2P - 2, W + 2P - 2).
    ``block_bytes``: the most transformed-tile memory held at once (default ``im2col_budget()``).
    """
    op = "winograd_conv3x3"
    (k, _, p, _), out_hw = check_conv2d_args(op, x, weight, bias, 1, padding, 1)
    if k != (3, 3):
        raise ValueError(f"{op} computes 3x3 convolutions only, got a {k[0]}x{k[1]} kernel")
    return _winograd(x, weight, bias, p, out_hw, block_bytes)


def winograd_input_grad(dy: Any, weight: Any, padding=1, block_bytes: int | None = None) -> Any:
    """dX of y = conv2d(x, weight, stride 1, padding), by Winograd: the 3x3 convolution of dY
    with ``flip_transpose(weight)`` and padding 2 - P (a negative padding crops dY).

    dy (N, O, Ho, Wo), weight (O, C, 3, 3) -> dx (N, C, Ho - 2P + 2, Wo - 2P + 2).
    """
    op = "winograd_input_grad"
    check_nchw(dy, op)
    check_conv_inputs(op, dy, weight, None)
    O, C, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"{op} computes 3x3 convolutions only, got a {kh}x{kw} kernel")
    if dy.shape[1] != O:
        raise ValueError(
            f"{op} expected dy with {O} channels (weight {tuple(weight.shape)}), got "
            f"{dy.shape[1]} (shape {tuple(dy.shape)})"
        )
    p = pair(padding, "padding")
    p_dx = (2 - p[0], 2 - p[1])
    out_hw = (dy.shape[2] + 2 * p_dx[0] - 2, dy.shape[3] + 2 * p_dx[1] - 2)
    if min(out_hw) < 1:
        raise ValueError(f"{op}: dy of shape {tuple(dy.shape)} with padding {p} has no input")
    w_flip = get_array_module(weight).ascontiguousarray(flip_transpose(weight))  # (C, O, 3, 3)
    return _winograd(dy, w_flip, None, p_dx, out_hw, block_bytes)


def winograd_weight_grad(x: Any, dy: Any, padding=1, block_bytes: int | None = None) -> Any:
    """dW of y = conv2d(x, weight, stride 1, padding) for a 3x3 weight, by Winograd.

    x (N, C, H, W), dy (N, O, H + 2P - 2, W + 2P - 2) -> dw (O, C, 3, 3). The gradient of
    Y = A^T [U * V] A with respect to U is (A dY A^T) * V, summed over the tiles: 16 GEMMs
    (O, tiles) @ (tiles, C); then dW = G^T dU G (the filter transform's adjoint)::

        dU[ab] = sum over tiles of (A dY_t A^T)[a, b] (O, 1) x V_t[a, b] (1, C)
        dW[o, c] = G^T dU[o, c] G                                    (4x4 -> 3x3)
    """
    op = "winograd_weight_grad"
    check_nchw(x, op)
    check_nchw(dy, op)
    check_conv_inputs(op, x, dy, None)
    p = pair(padding, "padding")
    N, C, H, W = x.shape
    O = dy.shape[1]
    out_hw = (H + 2 * p[0] - 2, W + 2 * p[1] - 2)
    if tuple(dy.shape) != (N, O) + out_hw:
        raise ValueError(
            f"{op} expected dy of shape (N, O, H + 2P - 2, W + 2P - 2) = {(N, O) + out_hw} for "
            f"x {tuple(x.shape)} and padding {p}, got {tuple(dy.shape)}"
        )
    xp = get_array_module(x, dy)
    th, tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
    du = xp.zeros((16, O, C), dtype=x.dtype)
    nb, rb = _block_shape(N, th, tw, C, O, x.itemsize, block_bytes or im2col_budget())
    for n0 in range(0, N, nb):
        xs = x[n0 : n0 + nb].transpose(1, 0, 2, 3)
        dys = dy[n0 : n0 + nb].transpose(1, 0, 2, 3)  # (O, nb, Ho, Wo)
        for r0 in range(0, th, rb):
            r1 = min(th, r0 + rb)
            v = _input_transform(xs, p, r0, r1, tw).reshape(16, C, -1)
            z = _grad_transform(dys, r0, r1, tw).reshape(16, O, -1)
            du += xp.matmul(z, v.transpose(0, 2, 1))
    g = xp.asarray(G, dtype=x.dtype)
    dw = (xp.kron(g, g).T @ du.reshape(16, O * C)).reshape(3, 3, O, C)
    return xp.ascontiguousarray(dw.transpose(2, 3, 0, 1))


def filter_transform(weight: Any) -> Any:
    """U = G g G^T for every (o, c): (O, C, 3, 3) -> (16, O, C), position a*4 + b first.

    One GEMM: U[4a + b] = sum_ij G[a, i] G[b, j] g[:, :, i, j], i.e. kron(G, G) (16, 9) times
    the weight as (9, O*C), not O*C tiny 4x3 products (``G @ weight @ G.T`` loops over them).
    """
    xp = get_array_module(weight)
    O, C = weight.shape[:2]
    g = xp.asarray(G, dtype=weight.dtype)
    return (xp.kron(g, g) @ weight.reshape(O * C, 9).T).reshape(16, O, C)


def _winograd(x: Any, weight: Any, bias: Any, p, out_hw, block_bytes: int | None) -> Any:
    """The convolution of x (padded by p; negative p crops) with a 3x3 weight, in blocks."""
    xp = get_array_module(x, weight, bias)
    N, C = x.shape[:2]
    O = weight.shape[0]
    th, tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2  # tiles per column and per row
    u = filter_transform(weight)
    y6 = xp.empty((N, O, th, 2, tw, 2), dtype=x.dtype)  # y6[n, o, i, r, j, c] = y[2i + r, 2j + c]
    nb, rb = _block_shape(N, th, tw, C, O, x.itemsize, block_bytes or im2col_budget())
    for n0 in range(0, N, nb):
        xs = x[n0 : n0 + nb].transpose(1, 0, 2, 3)  # (C, nb, H, W): the GEMM's column order
        for r0 in range(0, th, rb):
            r1 = min(th, r0 + rb)
            v = _input_transform(xs, p, r0, r1, tw)  # (16, C, nb, rows, tw)
            m = _workspace(xp, x.dtype, "winograd_M", (16, O) + v.shape[2:])
            xp.matmul(u, v.reshape(16, C, -1), out=m.reshape(16, O, -1))
            out = y6[n0 : n0 + nb, :, r0:r1].transpose(1, 0, 2, 3, 4, 5)  # (O, nb, rows, 2, tw, 2)
            _output_transform(m, out)
    y = y6.reshape(N, O, 2 * th, 2 * tw)
    if (2 * th, 2 * tw) != tuple(out_hw):
        y = xp.ascontiguousarray(y[:, :, : out_hw[0], : out_hw[1]])
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


def _block_shape(N: int, th: int, tw: int, C: int, O: int, itemsize: int, budget: int):
    """(samples, tile rows) per block: whole samples where one fits in ``budget`` bytes, else
    tile rows of one sample (at least one row)."""
    # per tile row of one sample, in units of tw: on the input side the padded slab 4C, B^T d 8C,
    # V 16C; on the output side M 16O and A^T M 8O (forward), or the dY slab 4O, A dY 8O and
    # Z 16O (dW); plus the slab's and B^T d's two extra columns
    row_bytes = itemsize * (tw * 28 * (C + O) + 12 * C)
    rows = max(1, budget // row_bytes)
    if rows >= th:
        return max(1, min(N, rows // th)), th
    return 1, rows


def _workspace(xp: Any, dtype: Any, name: str, shape: tuple) -> Any:
    """An array of ``shape`` in the shared workspace ``name`` (contents undefined)."""
    size = 1
    for s in shape:
        size *= s
    return workspace(xp, dtype, size, name)[:size].reshape(shape)


def _combine(coefficients, terms, out: Any) -> None:
    """out = sum_i coefficients[i] * terms[i] for coefficients 0, 1 or -1 (rows of B^T and A^T,
    columns of A^T), as ufuncs writing into ``out``; never -1 for the first two nonzero ones."""
    xp = get_array_module(out)
    nonzero = [(c, t) for c, t in zip(coefficients, terms, strict=True) if c != 0]
    if len(nonzero) == 1:
        c0, t0 = nonzero[0]
        if c0 == 1:
            out[...] = t0
        else:
            xp.negative(t0, out=out)
        return
    (c0, t0), (c1, t1) = nonzero[:2]
    if c0 == 1:
        (xp.add if c1 == 1 else xp.subtract)(t0, t1, out=out)
    else:
        xp.subtract(t1, t0, out=out)  # -t0 + t1
    for c, t in nonzero[2:]:
        (xp.add if c == 1 else xp.subtract)(out, t, out=out)


def _input_transform(xs: Any, p, r0: int, r1: int, tw: int) -> Any:
    """V = B^T d B for tile rows r0..r1 of every tile of xs (C, nb, H, W) padded by p:
    (16, C, nb, r1 - r0, tw) in a workspace. Rows first (B^T d), then columns (. B), on the
    padded slab with even and odd columns apart (``_padded_columns_split``)."""
    xp = get_array_module(xs)
    C, nb = xs.shape[:2]
    rows = r1 - r0
    slab = _workspace(xp, xs.dtype, "winograd_slab", (C, nb, 2 * rows + 2, 2, tw + 1))
    _padded_columns_split(xs, p, 2 * r0, slab)
    bd = _workspace(xp, xs.dtype, "winograd_BTd", (4, C, nb, rows, 2, tw + 1))
    tile_rows = [slab[:, :, i : i + 2 * rows : 2] for i in range(4)]  # row i of every tile
    for a in range(4):
        _combine(B_T[a], tile_rows, bd[a])
    v = _workspace(xp, xs.dtype, "winograd_V", (4, 4, C, nb, rows, tw))
    for a in range(4):
        # column j of tile t is padded column 2t + j: even/odd column t + j // 2
        tile_columns = [bd[a][..., j % 2, j // 2 : j // 2 + tw] for j in range(4)]
        for b in range(4):
            _combine(B_T[b], tile_columns, v[a, b])
    return v.reshape(16, C, nb, rows, tw)


def _grad_transform(dys: Any, r0: int, r1: int, tw: int) -> Any:
    """Z = A dY A^T for the 2x2 output tiles of rows r0..r1 of dys (O, nb, Ho, Wo), zeros past
    its edge: (16, O, nb, r1 - r0, tw) in a workspace. A = (A^T)^T, so A's rows are A^T's
    columns."""
    xp = get_array_module(dys)
    O, nb = dys.shape[:2]
    rows = r1 - r0
    a_cols = list(zip(*A_T, strict=True))  # rows of A: (1, 0), (1, 1), (1, -1), (0, -1)
    slab = _workspace(xp, dys.dtype, "winograd_dy", (O, nb, 2 * rows, 2, tw))
    _padded_columns_split(dys, (0, 0), 2 * r0, slab)
    ad = _workspace(xp, dys.dtype, "winograd_Ady", (4, O, nb, rows, 2, tw))
    for a in range(4):
        _combine(a_cols[a], [slab[:, :, r : 2 * rows : 2] for r in range(2)], ad[a])
    z = _workspace(xp, dys.dtype, "winograd_Z", (4, 4, O, nb, rows, tw))
    for a in range(4):
        for b in range(4):
            _combine(a_cols[b], [ad[a][..., c, :] for c in range(2)], z[a, b])
    return z.reshape(16, O, nb, rows, tw)


def _padded_columns_split(xs: Any, p, lo: int, out: Any) -> None:
    """out (C, nb, h, 2, w) = rows lo..lo+h of xs padded by p, padded column 2t + q at
    out[..., q, t]: the tiles' column slices are then contiguous, not strided by 2."""
    for q in range(2):
        s = (q - p[1]) % 2  # the first column of xs that lands on parity q
        _padded_rows(xs[..., s::2], (p[0], (s + p[1] - q) // 2), lo, out[..., q, :])


def _padded_rows(xs: Any, p, lo: int, out: Any) -> None:
    """out (C, nb, h, w) = rows lo..lo+h, columns 0..w of xs padded by p (zeros outside xs;
    a negative p crops)."""
    H, W = xs.shape[2:]
    h, w = out.shape[2:]
    r0 = min(max(lo, p[0]), lo + h)  # the rows of out that hold rows of xs: r0..r1
    r1 = max(min(lo + h, p[0] + H), r0)
    c0 = min(max(0, p[1]), w)
    c1 = max(min(w, p[1] + W), c0)
    out[:, :, : r0 - lo] = 0
    out[:, :, r1 - lo :] = 0
    inner = out[:, :, r0 - lo : r1 - lo]
    inner[..., :c0] = 0
    inner[..., c1:] = 0
    inner[..., c0:c1] = xs[:, :, r0 - p[0] : r1 - p[0], c0 - p[1] : c1 - p[1]]


def _output_transform(m: Any, out: Any) -> None:
    """out[:, :, :, r, :, c] = (A^T M A)[r, c] for M (16, O, nb, rows, tw): rows, then columns."""
    xp = get_array_module(m)
    m = m.reshape((4, 4) + m.shape[1:])
    am = _workspace(xp, m.dtype, "winograd_ATM", (2, 4) + m.shape[2:])
    for r in range(2):
        for b in range(4):
            _combine(A_T[r], [m[a, b] for a in range(4)], am[r, b])
    for r in range(2):
        for c in range(2):
            _combine(A_T[c], [am[r, b] for b in range(4)], out[:, :, :, r, :, c])
