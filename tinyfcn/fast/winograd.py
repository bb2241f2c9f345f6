"""Winograd F(m x m, 3x3): a 3x3 stride-1 convolution with 2.25x (m = 2) or 4x (m = 4) fewer
multiplications than im2col.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). The padded input
is cut into overlapping (m+2)x(m+2) tiles d at stride m (tile (i, j) starts at padded pixel
(m i, m j)); each tile gives an m x m block of the output::

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, (m+2)x(m+2); g the 3x3 kernel)

F(2x2, 3x3), 4x4 tiles::

    B^T = [[1,  0, -1,  0],    G = [[  1,    0,    0],    A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],         [1/2,  1/2,  1/2],           [0, 1, -1, -1]]
           [0, -1,  1,  0],         [1/2, -1/2,  1/2],
           [0,  1,  0, -1]]         [  0,    0,    1]]

F(4x4, 3x3), 6x6 tiles (polynomial interpolation at 0, 1, -1, 2, -2 and infinity)::

    B^T = [[4,  0, -5,  0, 1, 0],    G = [[ 1/4,     0,    0],    A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],         [-1/6, -1/6, -1/6],           [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],         [-1/6,  1/6, -1/6],           [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],         [1/24, 1/12,  1/6],           [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],         [1/24,-1/12,  1/6],
           [0,  4,  0, -5, 0, 1]]         [   0,    0,    1]]

A transform X -> P X Q^T of every tile, flattened row by row, is one matrix kron(P, Q) applied to
the (m+2)^2 values of each tile: for all tiles and channels at once, one GEMM. With t = (m+2)^2::

    D[uv] = d[u, v] of every tile     (t, C, tiles)    gathered: t / m^2 x the input
    V = kron(B^T, B^T) @ D            (t, C, tiles)    the input transform, one GEMM
    U = kron(G, G) @ g                (t, O, C)        the filter transform, one GEMM
    M[ab] = U[ab] @ V[ab]             (t, O, tiles)    t GEMMs (``xp.matmul``, batched)
    Y = kron(A^T, A^T) @ M            (m^2, O, tiles)  the output transform, one GEMM

Multiplications in the t GEMMs: t per m^2 outputs per (c, o) instead of 9 per output: 16/4 = 4
(2.25x fewer) for m = 2, 36/16 = 2.25 (4x fewer) for m = 4; the transforms add t^2 / m^2 per
(c, tile) and t per (o, tile), small beside O and C GEMM columns.
Shapes: x (N, C, H, W), weight (O, C, 3, 3) -> y (N, O, Ho, Wo), Ho = H + 2P - 2 (likewise Wo).
A map that is not a whole number of tiles is padded (zeros) and the extra outputs cropped.

Memory: the blocks of samples, or of tile rows within one sample, hold at most ``block_bytes``
(the engine's im2col budget, 128 MiB, unless given) of gathered, transformed and product tiles,
in reused workspaces.

Rounding, relative to max |y| (|dx|, |dw|) against the float64 textbook: float64 ~1e-14.
float32 on VGG-like layers (He-scaled weights, post-ReLU inputs; 16 to 512 channels, 28 to 224
pixels): m = 2 2e-7 to 7e-7, up to 2x im2col's own; m = 4 3e-6 to 1.7e-5, 10x to 40x im2col's:
its matrices hold 4, 5, 8 and 1/24, and the input transform sums terms of up to 25 times an
input. Tested: 1e-12 in float64; float32 within 2e-6 (m = 2) and 3e-5 (m = 4)
(``tests/test_fast_winograd.py``).

Gradients: at stride 1, dX is the 3x3 convolution of dY with the flipped, channel-swapped kernel
and padding 2 - P (as ``conv_blocked.conv2d_input_grad_as_conv``): ``winograd_input_grad``. dW
differentiates the tile formula: ``winograd_weight_grad``, t GEMMs summing over the tiles. It
needs V, the forward's input transform: ``winograd_conv3x3_keeping_v`` hands it over (one flat
array, block by block) so the backward need not gather and transform x again.

Where each pays is the planner's table (``plan.py``); measurements in ``docs/performance.md``
(``benchmarks/winograd_bench.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..functional._checks import check_nchw, pair
from ..functional.conv import check_conv2d_args, check_conv_inputs, flip_transpose
from .shares import run_shares
from .workspace import im2col_budget, workspace_array

# (B^T, G, A^T) of F(m x m, 3x3), by output tile side m
MATRICES = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    ),
}


def transform_matrices(m: int, xp: Any = np, dtype: Any = np.float64):
    """kron(B^T, B^T) (t, t), kron(G, G) (t, 9), kron(A^T, A^T) (m^2, t) of F(m x m, 3x3), t =
    (m+2)^2: each applies its transform to every tile flattened row by row."""
    if m not in MATRICES:
        raise ValueError(
            f"Winograd F(m x m, 3x3) is implemented for m in {tuple(MATRICES)}, got {m}"
        )
    return tuple(xp.asarray(k, dtype=dtype) for k in _kron_matrices(m))


@functools.cache  # three Kronecker products at every call cost ~0.15 ms, ~45 calls a step
def _kron_matrices(m: int) -> tuple:
    """The three Kronecker matrices of F(m x m, 3x3) in float64 NumPy, read-only."""
    products = tuple(np.kron(a, a) for a in map(np.array, MATRICES[m]))
    for k in products:
        k.setflags(write=False)
    return products


def winograd_conv3x3(
    x: Any,
    weight: Any,
    bias: Any = None,
    padding=1,
    block_bytes: int | None = None,
    m: int = 2,
    threads: int = 1,
) -> Any:
    """y = conv2d(x, weight, bias, stride 1, padding) by Winograd F(m x m, 3x3).

    x (N, C, H, W), weight (O, C, 3, 3), bias (O,) or None -> y (N, O, H + 2P - 2, W + 2P - 2).
    ``block_bytes``: the most tile memory held at once (default ``im2col_budget()``); ``threads``
    > 1: the blocks shared out among that many threads, each with its own (``shares.py``).
    """
    p, out_hw = _checked_3x3(x, weight, bias, padding)
    return _winograd(x, weight, bias, p, out_hw, block_bytes, m, threads)


def _checked_3x3(x: Any, weight: Any, bias: Any, padding):
    """(padding pair, output size) of a valid 3x3 stride-1 convolution, else a clear error."""
    op = "winograd_conv3x3"
    (k, _, p, _), out_hw = check_conv2d_args(op, x, weight, bias, 1, padding, 1)
    if k != (3, 3):
        raise ValueError(f"{op} computes 3x3 convolutions only, got a {k[0]}x{k[1]} kernel")
    return p, out_hw


@dataclass
class TransformedInput:
    """V = B^T d B of every tile of x as the forward computed it, block by block: what
    ``winograd_weight_grad`` would otherwise gather and transform again."""

    blocks: list  # ((n0, n1), (r0, r1)) of each block, as ``_blocks`` cut them
    v: list  # each block's V (t, C, its tiles): views of ``buffer``
    buffer: Any  # one flat array holding them all


def winograd_conv3x3_keeping_v(
    x: Any,
    weight: Any,
    bias: Any = None,
    padding=1,
    block_bytes: int | None = None,
    m: int = 2,
    threads: int = 1,
    buffer: Any = None,
) -> tuple[Any, TransformedInput]:
    """(y, V): ``winograd_conv3x3`` and the input transform V of every tile, for the weight
    gradient. ``buffer``: a flat array to hold V if it has the right size and dtype (a spare
    from the last step; see ``winograd_v_size``), else a new one is made."""
    p, out_hw = _checked_3x3(x, weight, bias, padding)
    kept: list = []
    y = _winograd(x, weight, bias, p, out_hw, block_bytes, m, threads, kept, buffer)
    return y, kept[0]


def winograd_v_size(x_shape, out_hw, m: int) -> int:
    """Elements of V for x of ``x_shape`` and an output of ``out_hw``: t C N th tw."""
    th, tw = -(-out_hw[0] // m), -(-out_hw[1] // m)
    return (m + 2) ** 2 * x_shape[1] * x_shape[0] * th * tw


def winograd_input_grad(
    dy: Any,
    weight: Any,
    padding=1,
    block_bytes: int | None = None,
    m: int = 2,
    threads: int = 1,
) -> Any:
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
    return _winograd(dy, w_flip, None, p_dx, out_hw, block_bytes, m, threads)


def winograd_weight_grad(
    x: Any,
    dy: Any,
    padding=1,
    block_bytes: int | None = None,
    m: int = 2,
    threads: int = 1,
    v: TransformedInput | None = None,
    out: Any = None,
) -> Any:
    """dW of y = conv2d(x, weight, stride 1, padding) for a 3x3 weight, by Winograd.

    x (N, C, H, W), dy (N, O, H + 2P - 2, W + 2P - 2) -> dw (O, C, 3, 3). The gradient of
    Y = A^T [U * V] A with respect to U is (A dY A^T) * V, summed over the tiles: t GEMMs
    (O, tiles) @ (tiles, C); then dW = G^T dU G (the filter transform's adjoint)::

        E = dY's m x m output tiles                       (m^2, O, tiles)
        dM = kron(A^T, A^T)^T @ E                         (t, O, tiles)
        dU[ab] = sum over tiles of dM[ab] @ V[ab]^T       (t, O, C)
        dW = kron(G, G)^T @ dU                            (9, O, C)

    ``v``: the forward's V (``winograd_conv3x3_keeping_v``, same x, padding and m), taken as it
    is, in its blocks, instead of transforming x again. ``out``: an (O, C, 3, 3) array to write
    dW into (e.g. the zeroed ``.grad``), else a new one.
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
    kb, kg, ka = transform_matrices(m, xp, x.dtype)
    t = kb.shape[0]
    th, tw = -(-out_hw[0] // m), -(-out_hw[1] // m)
    if v is None:
        blocks = _blocks(N, th, tw, C, O, x.itemsize, block_bytes, m, threads)
    else:
        blocks = v.blocks
        if sum(block.size for block in v.v) != winograd_v_size(x.shape, out_hw, m):
            raise ValueError(f"{op}: the kept V does not belong to x {tuple(x.shape)} and m={m}")

    def weight_grad(share: int, indices: range) -> Any:
        """dU summed over these blocks."""
        du = xp.zeros((t, O, C), dtype=x.dtype)
        for i in indices:
            (n0, n1), (r0, r1) = blocks[i]
            dys = dy[n0:n1].transpose(1, 0, 2, 3)  # (O, nb, Ho, Wo)
            if v is None:
                xs = x[n0:n1].transpose(1, 0, 2, 3)
                vi = _input_transform(xs, p, r0, r1, tw, kb, m, share)  # (t, C, tiles)
            else:
                vi = v.v[i]
            e = _gather_tiles(dys, (0, 0), r0, r1, tw, m, m, "winograd_E", share)
            dm = workspace_array(xp, x.dtype, (t, O, vi.shape[2]), "winograd_M", share)
            xp.matmul(ka.T, e.reshape(m * m, -1), out=dm.reshape(t, -1))
            du += xp.matmul(dm, vi.transpose(0, 2, 1))
        return du

    du, *others = run_shares(weight_grad, len(blocks), threads)
    for du_share in others:  # in share order
        du += du_share
    dw = (kg.T @ du.reshape(t, O * C)).reshape(3, 3, O, C).transpose(2, 3, 0, 1)
    if out is None:
        return xp.ascontiguousarray(dw)
    out[...] = dw
    return out


def filter_transform(weight: Any, m: int = 2) -> Any:
    """U = G g G^T for every (o, c): (O, C, 3, 3) -> (t, O, C), position a (m+2) + b first.

    One GEMM: kron(G, G) (t, 9) times the weight as (9, O*C), not O*C tiny products."""
    xp = get_array_module(weight)
    O, C = weight.shape[:2]
    kg = transform_matrices(m, xp, weight.dtype)[1]
    return (kg @ weight.reshape(O * C, 9).T).reshape(-1, O, C)


def _winograd(
    x: Any,
    weight: Any,
    bias: Any,
    p,
    out_hw,
    block_bytes: int | None,
    m: int,
    threads: int = 1,
    kept: list | None = None,
    buffer: Any = None,
) -> Any:
    """The convolution of x (padded by p; negative p crops) with a 3x3 weight, in blocks.
    ``kept`` (a list): V is written into ``buffer`` (or a new array) instead of a workspace and
    its ``TransformedInput`` appended to the list."""
    xp = get_array_module(x, weight, bias)
    N, C = x.shape[:2]
    O = weight.shape[0]
    kb, _, ka = transform_matrices(m, xp, x.dtype)
    t = kb.shape[0]
    th, tw = -(-out_hw[0] // m), -(-out_hw[1] // m)  # tiles per column and per row
    u = filter_transform(weight, m)
    y6 = xp.empty((N, O, th, m, tw, m), dtype=x.dtype)  # y6[n, o, i, r, j, c] = y[m i + r, m j + c]
    blocks = _blocks(N, th, tw, C, O, x.itemsize, block_bytes, m, threads)
    vs = None
    if kept is not None:
        vs = _kept_v(xp, x.dtype, blocks, t, C, tw, buffer)
        kept.append(vs)

    def convolve(share: int, indices: range) -> None:
        for i in indices:
            (n0, n1), (r0, r1) = blocks[i]
            xs = x[n0:n1].transpose(1, 0, 2, 3)  # (C, nb, H, W): the GEMM's column order
            out = None if vs is None else vs.v[i]
            v = _input_transform(xs, p, r0, r1, tw, kb, m, share, out)  # (t, C, tiles)
            mt = workspace_array(xp, x.dtype, (t, O, v.shape[2]), "winograd_M", share)
            xp.matmul(u, v, out=mt)
            yt_shape = (m, m, O, n1 - n0, r1 - r0, tw)
            yt = workspace_array(xp, x.dtype, yt_shape, "winograd_Y", share)
            xp.matmul(ka, mt.reshape(t, -1), out=yt.reshape(m * m, -1))
            out = y6[n0:n1, :, r0:r1].transpose(1, 0, 2, 3, 4, 5)  # (O, nb, rows, m, tw, m)
            for r in range(m):
                for c in range(m):
                    out[:, :, :, r, :, c] = yt[r, c]

    run_shares(convolve, len(blocks), threads)
    y = y6.reshape(N, O, m * th, m * tw)
    if (m * th, m * tw) != tuple(out_hw):
        y = xp.ascontiguousarray(y[:, :, : out_hw[0], : out_hw[1]])
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


def _kept_v(xp: Any, dtype: Any, blocks: list, t: int, C: int, tw: int, buffer: Any):
    """A TransformedInput with room for every block's V, in ``buffer`` where it fits exactly."""
    sizes = [t * C * (n1 - n0) * (r1 - r0) * tw for (n0, n1), (r0, r1) in blocks]
    total = sum(sizes)
    fits = buffer is not None and buffer.size == total and buffer.dtype == dtype
    flat = buffer if fits and get_array_module(buffer) is xp else xp.empty(total, dtype=dtype)
    views, start = [], 0
    for size in sizes:
        views.append(flat[start : start + size].reshape(t, C, -1))
        start += size
    return TransformedInput(blocks, views, flat)


def _block_shape(N: int, th: int, tw: int, C: int, O: int, itemsize: int, budget: int, m: int = 2):
    """(samples, tile rows) per block: whole samples where one fits in ``budget`` bytes, else
    tile rows of one sample (at least one row)."""
    # per tile, t = (m+2)^2: the padded slab (m^2) + gathered D + V (2t) per input channel; M (t)
    # + Y (m^2) per output channel, or for dW dY's slab and E (2 m^2) + dM (t); rounded up
    t = (m + 2) ** 2
    row_bytes = itemsize * (tw + 1) * (m + 2) * ((m + 2 * t) * C + (t + 2 * m * m) * O) // m
    rows = max(1, budget // row_bytes)
    if rows >= th:
        return max(1, min(N, rows // th)), th
    return 1, rows


def _blocks(N, th, tw, C, O, itemsize, block_bytes, m, threads) -> list:
    """[((n0, n1), (r0, r1)), ...]: samples n0..n1, tile rows r0..r1 of each block; with
    ``threads``, each thread's blocks fit in an equal part of the budget."""
    budget = (block_bytes or im2col_budget()) // max(1, threads)
    nb, rb = _block_shape(N, th, tw, C, O, itemsize, budget, m)
    return [
        ((n0, min(N, n0 + nb)), (r0, min(th, r0 + rb)))
        for n0 in range(0, N, nb)
        for r0 in range(0, th, rb)
    ]


def _gather_tiles(
    xs: Any, p, r0: int, r1: int, tw: int, m: int, side: int, name: str, share: int = 0
) -> Any:
    """D (side^2, C, nb * (r1 - r0) * tw): value (u, v) of every side x side tile at stride m
    in tile rows r0..r1 of xs (C, nb, H, W) padded by p (zeros past its edges), in the
    workspaces ``name`` and "winograd_slab" of ``share`` (shares.py)."""
    xp = get_array_module(xs)
    C, nb = xs.shape[:2]
    rows = r1 - r0
    slab_shape = (C, nb, m * rows + side - m, m * tw + side - m)
    slab = workspace_array(xp, xs.dtype, slab_shape, "winograd_slab", share)
    _padded_rows(xs, p, m * r0, slab)
    d = workspace_array(xp, xs.dtype, (side, side, C, nb, rows, tw), name, share)
    for u in range(side):
        for v in range(side):
            d[u, v] = slab[:, :, u : u + m * rows : m, v : v + m * tw : m]
    return d.reshape(side * side, C, -1)


def _input_transform(
    xs: Any, p, r0: int, r1: int, tw: int, kb: Any, m: int, share=0, out: Any = None
) -> Any:
    """V = B^T d B for every tile of tile rows r0..r1 of xs (C, nb, H, W) padded by p:
    (t, C, tiles), one GEMM with kron(B^T, B^T) on the gathered tiles (in ``share``'s
    workspaces, or into ``out``)."""
    xp = get_array_module(xs)
    d = _gather_tiles(xs, p, r0, r1, tw, m, m + 2, "winograd_D", share)
    v = workspace_array(xp, xs.dtype, d.shape, "winograd_V", share) if out is None else out
    xp.matmul(kb, d.reshape(kb.shape[0], -1), out=v.reshape(kb.shape[0], -1))
    return v


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
