"""The planner: the one place that decides which kernel computes each layer.

The layers of ``tinyfcn.nn`` call these functions while the engine is on (``switch.py``); they
take the textbook's arguments and give the textbook's numbers (float64: equal to 1e-12). Every
case not in this table falls through to ``tinyfcn.functional``. Measurements: 2-core EPYC,
float32, numpy's OpenBLAS; the history is in ``docs/performance.md``.

=========================  ============================  ==========================================
case                       kernel                        why (measured gain)
=========================  ============================  ==========================================
conv, no backward          ``conv_chunked``: im2col in   conv1_2 of the paper net at 500x500 would
(inference, ``no_grad``)   blocks of output rows, one    build a 1.1 GB matrix; a 2 MiB block stays
                           shared workspace              in cache (64 ch at 224: 41 -> 36 ms)
conv 3x3 stride 1: >= 64   ``winograd``: F(4x4, 3x3)     4x (2.25x) fewer multiplications; the
channels in and out on a   (F(2x2, 3x3)); dX and dW by   transforms cost more than that saves on
map >= 56x56 (conv1_2 ...  Winograd too; keeps x, and    thinner or smaller layers; 4x4 tiles
conv3_3), >= 128 on a map  V for dW where <= 64 MiB;     leave too few tiles per GEMM at 28x28
>= 28x28 (conv4_x)         its blocks shared out among   (conv3_2 fwd+dX+dW, 2 threads: im2col 81,
                           threads, 1/T of the budget    F2 64, F4 53 ms; conv4_2: 82, 67, 95;
                                                         shared blocks: conv1_2 142 -> 121 ms)
conv, training, thin       ``conv_blocked``: the same    the matrix is 9x the input: writing and
patch (C*kh*kw <= 512)     blocks, rebuilt in backward;  re-reading it is all memory traffic (16 ch
on a big map (>= 4 MiB)    no matrix kept                at 8x128x128 fwd+bwd: 57 -> 47 ms)
conv, training, other      ``conv_kept``: the textbook   no fresh matrix each step; dW written
                           im2col + GEMM into the        into ``.grad``; W2^T @ dY2 written into
                           layer's spare matrix          the dead matrix before col2im
chunked or blocked conv    whole samples across          OpenBLAS's second thread gains nothing on
of >= 2 samples, patch     threads (``shares.py``), one  a (16, 144) weight; a thread per sample
>= 64, map >= 32x32        BLAS thread each; training    overlaps copies and GEMMs (width 1/4,
(conv1_2 .. conv3_3 at     takes the blocked kernel for  fwd+bwd: conv1_2 46-71 -> 28-42 ms;
width 1/4)                 any patch                     conv3_1..3_3 + conv4_1 101-111 -> 91-94)
the same, stride 1 and     ``conv_shifted``: each tap    no im2col matrix written and read back
P <= D(K-1), NumPy with    a GEMM on a shifted view of   (width 1/4, fwd+dX+dW, 2 threads: conv1_2
its OpenBLAS's cblas       the flat padded input, added  28 -> 22 ms, conv2_1 15 -> 11, conv2_2
                           up by the GEMM (beta = 1)     21 -> 17, conv3_2 17 -> 16); not at batch
                                                         1 nor on 16x16 maps (slower)
dX of a stride-1 conv      ``conv2d_input_grad_as_conv`` no col2im read-modify-write passes (16 ch
with O <= C, |W| <= |dX|   conv of dY, flipped kernel    at 8x128x128, 1 thread: 40 -> 14 ms); not
                                                         3 -> 64 ch (11 ms col2im, 33 as a conv)
kept conv with a weight    ``gemm.matmul_in_bands``:     OpenBLAS's two threads pack the weight in
>= 32 MiB on <= 64 pixels  each GEMM's rows in bands      lockstep; fc6 at batch 1 (4096 x 25088
(fc6, fc7 at batch 1)      shared out among threads      against 49 columns) fwd+dX+dW: 367, 388
                                                         -> 330, 313 ms; no gain at 128+ pixels
dW with O <= 128 output    ``gemm``: (cols @ dY2^T)^T    OpenBLAS runs this order faster for thin
channels, >= 256 pixels                                  layers (16 ch, 16384 px: 2.1 -> 1.2 ms)
ConvTranspose2d "auto" or  ``subpixel``: stride-1 conv   one GEMM and one copy instead of K*K
"subpixel", K % S == 0     with Cout*S*S channels, then  col2im additions onto the big output
(every FCN upsampling)     a pixel shuffle               (the x8 layer was 2.8x PyTorch's time)
max-pool 2x2, stride 2     ``pool2x2``: two pairwise     half the time of four strided taps
(every VGG pool)           maxima; backward writes       (conv1_2's output, width 1/4: 11.5 ->
                           instead of adding             5.3 ms)
ReLU, the 2x2 pool, on     ``relu.py``, ``pool2x2``:     NumPy's ufuncs run on one thread, torch's
>= 2^20 elements (NumPy;   runs of elements (samples,    on all (width 1/4, pool1..pool3 forward
ReLU <= 2^22)              channels) shared out among    15.6 -> 11.5 ms, fwd+bwd 23.5 -> 20.1)
                           threads
training a small network    one BLAS thread               waking OpenBLAS's second thread costs more
(< 1 GFLOP forward a step:                               than it saves (a demo step: 19.7 -> 17.4
the demo's is 0.09)                                      ms); ``tinyfcn.runs`` pins the choice
=========================  ============================  ==========================================

The thresholds are in ``RULES``; ``conv2d_kernel`` names the choice for a given layer and input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import functional as F
from ..backend import get_array_module
from ..blas import get_blas_threads
from ..functional._checks import check_float_array, pair
from ..functional.conv import (
    check_conv2d_args,
    check_grad_shape,
    conv_output_shape,
    normalize_conv_args,
)
from ..functional.conv_transpose import (
    check_conv_transpose2d_args,
    conv_transpose2d_output_shape,
    crop_full_frame,
    full_frame_grad,
)
from ..functional.pool import (
    MaxPool2dCache,
    check_pool_args,
    pad_for_windows,
    route_nan_windows,
)
from . import cblas, relu
from .conv_blocked import BlockedConvCache, conv2d_blocked_backward, conv2d_blocked_forward
from .conv_chunked import conv2d_chunked
from .conv_kept import KeptConvCache, conv2d_kept_backward, conv2d_kept_forward
from .conv_shifted import (
    ShiftedConvCache,
    conv2d_shifted_backward,
    conv2d_shifted_forward,
    shifted_conv2d,
    supports_shifted,
)
from .pool2x2 import max_pool2d_backward_disjoint, max_pool_2x2
from .subpixel import (
    pixel_shuffle,
    pixel_unshuffle,
    subpixel_weight,
    supports_subpixel,
    weight_from_subpixel,
)
from .winograd import (
    TransformedInput,
    winograd_conv3x3,
    winograd_conv3x3_keeping_v,
    winograd_input_grad,
    winograd_v_size,
    winograd_weight_grad,
)
from .workspace import im2col_budget, keep_spare, take_spare

RULES = {
    # conv_blocked: a patch this short at most, a full im2col matrix this large at least
    "blocked_max_patch": 512,
    "blocked_min_cols_bytes": 4 * 2**20,
    # im2col blocks: this many bytes, or this many output pixels where the patch is long
    # (a GEMM on few columns runs badly on two threads)
    "block_bytes": 2 * 2**20,
    "block_min_pixels": 1024,
    # dW as (cols @ dY2^T)^T: at most this many output channels, at least this many pixels
    "transposed_dw_max_channels": 128,
    "transposed_dw_min_pixels": 256,
    # Winograd F(m x m, 3x3) for 3x3 stride-1 convs with this many channels in and out, on maps
    # of at least this side: F(4x4, 3x3) first, else F(2x2, 3x3)
    "winograd_f4_min_channels": 64,
    "winograd_f4_min_side": 56,
    "winograd_f2_min_channels": 128,
    "winograd_f2_min_side": 28,
    # a training Winograd conv keeps its input transform V for dW if V is this small at most
    # (conv1_2 at full width, batch 1: 29 MB)
    "winograd_keep_v_max_bytes": 64 * 2**20,
    # whole samples across threads (shares.py), in the blocked kernel (any patch) or forward
    # only, for a conv of several samples: a patch this long at least (not conv1_1's 27), this
    # many output pixels a sample at least (32x32: conv3_x at width 1/4; not 16x16)
    "shared_min_patch": 64,
    "shared_min_pixels": 1024,
    # ... and where those shares' conv is stride 1 with P <= D(K-1), by shifted views
    # (conv_shifted.py) instead of im2col blocks (False: never)
    "shifted_conv": True,
    # the kept conv's GEMMs in bands shared out among threads: a weight this large at least, on
    # this many pixels (the batch's output pixels, the GEMMs' columns) at most
    "banded_min_weight_bytes": 32 * 2**20,
    "banded_max_pixels": 64,
    # ReLU and the 2x2 pool on several threads (relu.py): arrays of this many elements at least
    # (ReLU fwd+bwd, 1 / 2 threads: 2^19 0.85 / 1.43 ms, 2^20 2.0 / 1.7, 2^22 8.5 / 6.3); ReLU at
    # most this many: from 2^23 (32 MB float32, fresh pages every call) two threads faulting pages
    # in at once lose (24 / 32-48 ms), where the pool still gains (63 / 35)
    "threaded_elementwise_min_elements": 2**20,
    "threaded_relu_max_elements": 2**22,
    # BLAS threads for training a network this small (forward GFLOP per step)
    "small_network_blas_threads": 1,
    "small_network_max_gflops": 1.0,
}

METHODS = ("auto", "adjoint", "zero_insertion", "subpixel")


# --- decisions -----------------------------------------------------------------------------------


def block_bytes(patch: int, itemsize: int) -> int:
    """Bytes of im2col matrix in one block of a training convolution."""
    return max(RULES["block_bytes"], patch * itemsize * RULES["block_min_pixels"])


def forward_block_bytes(patch: int, itemsize: int, threads: int = 1) -> int:
    """The same for a forward-only pass on ``threads`` threads, each with its own block, never
    above the memory budget ``im2col_budget()`` in all."""
    return min(block_bytes(patch, itemsize), max(1, im2col_budget() // threads))


def share_threads(x: Any) -> int:
    """How many threads may share out a kernel's work (``shares.py``): OpenBLAS's thread count
    in NumPy, else 1 (CuPy has its own parallelism; one BLAS thread, as for the demo, means one)."""
    if get_array_module(x).__name__ != "numpy":
        return 1
    return get_blas_threads() or 1


def sample_threads(x: Any, patch: int, out_hw) -> int:
    """How many threads share out the samples of a blocked or forward-only convolution:
    ``share_threads`` for a thin conv of several samples, else 1."""
    if x.shape[0] < 2:
        return 1
    if patch < RULES["shared_min_patch"] or out_hw[0] * out_hw[1] < RULES["shared_min_pixels"]:
        return 1
    return share_threads(x)


def banded_gemm_threads(x: Any, weight_shape, out_hw) -> int:
    """How many threads share out the bands of a kept conv's GEMMs: ``share_threads`` for a
    huge weight against few columns (fc6, fc7 at batch 1), else 1."""
    weight_bytes = x.itemsize
    for n in weight_shape:
        weight_bytes *= n
    pixels = x.shape[0] * out_hw[0] * out_hw[1]
    if weight_bytes < RULES["banded_min_weight_bytes"] or pixels > RULES["banded_max_pixels"]:
        return 1
    return share_threads(x)


def elementwise_threads(x: Any) -> int:
    """Threads for ReLU's and the 2x2 pool's passes over x: ``share_threads`` for a large NumPy
    array, else 1."""
    if x.size < RULES["threaded_elementwise_min_elements"]:
        return 1
    return share_threads(x)


def relu_threads(x: Any) -> int:
    """``elementwise_threads`` for ReLU, which has no gain from 2^23 elements on."""
    return 1 if x.size > RULES["threaded_relu_max_elements"] else elementwise_threads(x)


def conv2d_kernel(
    x_shape, weight_shape, args, itemsize: int, need_backward: bool, threads: int = 1
) -> str:
    """Which kernel computes this convolution: "winograd", "chunked", "blocked" or "kept".
    ``threads`` > 1 (``sample_threads``: the samples are shared out) takes the blocked kernel
    for any patch: each thread then walks its own samples' blocks."""
    k, s, p, d = args
    Ho, Wo = conv_output_shape("conv2d", tuple(x_shape[2:]), k, s, p, d)
    if winograd_tile(weight_shape, args, (Ho, Wo)) is not None:
        return "winograd"
    if not need_backward:
        return "chunked"
    patch = weight_shape[1] * k[0] * k[1]
    if k == (1, 1):
        return "kept"
    if threads > 1:
        return "blocked"
    if patch > RULES["blocked_max_patch"]:
        return "kept"
    cols_bytes = patch * x_shape[0] * Ho * Wo * itemsize
    return "blocked" if cols_bytes >= RULES["blocked_min_cols_bytes"] else "kept"


def winograd_tile(weight_shape, args, out_hw) -> int | None:
    """m of the Winograd F(m x m, 3x3) that computes this convolution, or None: 4 (4x fewer
    multiplications) on big maps, 2 on smaller maps of wider layers (4x4 tiles would leave too
    few tiles per GEMM), None for thin or small layers and for any other kernel or stride."""
    k, s, p, d = args
    if not (k == (3, 3) and s == d == (1, 1) and max(p) <= 2):
        return None
    for m in (4, 2):
        if (
            min(weight_shape[:2]) >= RULES[f"winograd_f{m}_min_channels"]
            and min(out_hw) >= RULES[f"winograd_f{m}_min_side"]
        ):
            return m
    return None


def transposed_dw(out_channels: int, pixels: int) -> bool:
    """dW as (cols @ dY2^T)^T: thin layers on many pixels."""
    return (
        out_channels <= RULES["transposed_dw_max_channels"]
        and pixels >= RULES["transposed_dw_min_pixels"]
    )


def dx_conv_block_bytes(weight_shape, x_shape, args, itemsize: int, threads: int = 1) -> int | None:
    """Block size for dX as a convolution of dY where that pays, else None (col2im).

    It needs stride 1 and P <= D(K-1); it pays where im2col(dY) is no larger than im2col(x)
    (O <= C) and the flipped copy of W is smaller than dX.
    """
    k, s, p, d = args
    O, C = weight_shape[:2]
    n_dx = x_shape[0] * x_shape[1] * x_shape[2] * x_shape[3]
    fits = all(p[a] <= d[a] * (k[a] - 1) for a in range(2))
    if s == (1, 1) and fits and O <= C and O * C * k[0] * k[1] <= n_dx:
        return forward_block_bytes(O * k[0] * k[1], itemsize, threads)
    return None


def training_blas_threads(step_gflops: float, available: int) -> int:
    """BLAS threads for training steps of ``step_gflops`` (forward): one for a small network,
    else all that are ``available``."""
    if step_gflops < RULES["small_network_max_gflops"]:
        return RULES["small_network_blas_threads"]
    return available


# --- what runs, in words (for benchmarks and the curious) ---------------------------------------


def describe_conv2d(x, weight_shape, stride=1, padding=0, dilation=1, need_backward=True) -> str:
    """What ``conv2d_forward`` (and its backward) runs for ``x`` (its shape and array type are
    read) and a weight of ``weight_shape``: "winograd F(4x4)", "shifted", "blocked", "kept" or
    "chunked", with ", N threads" where the work is shared out among threads."""
    args = normalize_conv_args(tuple(weight_shape[2:]), stride, padding, dilation)
    out_hw = conv_output_shape("conv2d", tuple(x.shape[2:]), *args)
    kernel, m, threads = conv2d_choice(x, weight_shape, args, out_hw, need_backward)
    name = f"winograd F({m}x{m})" if kernel == "winograd" else kernel
    return name if threads == 1 else f"{name}, {threads} threads"


def describe_conv_transpose2d(
    x, weight_shape, stride, padding, dilation=1, method="auto", need_backward=True
) -> str:
    """The same for ``conv_transpose2d_forward``: "subpixel (<what its stride-1 conv runs>)"
    or the textbook's method."""
    k, s, _, d = normalize_conv_args(tuple(weight_shape[2:]), stride, padding, dilation)
    method = resolve_method(method, k, s, d)
    if method != "subpixel":
        return f"textbook {method}"
    mh, mw = k[0] // s[0], k[1] // s[1]
    inner = (weight_shape[1] * s[0] * s[1], weight_shape[0], mh, mw)  # subpixel_weight's shape
    return f"subpixel ({describe_conv2d(x, inner, 1, (mh - 1, mw - 1), 1, need_backward)})"


def describe_max_pool2d(kernel_size, stride=None, dilation=1) -> str:
    """The same for ``max_pool2d_forward``: "pool2x2" or "textbook"."""
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    return "pool2x2" if k == s == (2, 2) and pair(dilation, "dilation") == (1, 1) else "textbook"


# --- Conv2d --------------------------------------------------------------------------------------


def conv2d_choice(x: Any, weight_shape, args, out_hw, need_backward: bool):
    """(kernel, m, threads): the kernel ``conv2d_kernel`` picks, the Winograd tile side m (else
    None), and how many threads share out its work (for "kept": its GEMMs' bands)."""
    patch = weight_shape[1] * args[0][0] * args[0][1]
    threads = sample_threads(x, patch, out_hw)
    kernel = conv2d_kernel(x.shape, weight_shape, args, x.itemsize, need_backward, threads)
    if kernel == "winograd":
        return kernel, winograd_tile(weight_shape, args, out_hw), share_threads(x)
    if kernel == "kept":
        return kernel, None, banded_gemm_threads(x, weight_shape, out_hw)
    if threads > 1 and RULES["shifted_conv"] and supports_shifted(args) and cblas.available(x):
        return "shifted", None, threads
    return kernel, None, threads


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    dilation=1,
    *,
    owner: Any = None,
    need_backward: bool = True,
):
    """``functional.conv2d_forward`` by the kernel the table picks: (y, cache); the cache is None
    without ``need_backward``. ``owner`` (the layer) keys the reused im2col matrix."""
    args, out_hw = check_conv2d_args("conv2d", x, weight, bias, stride, padding, dilation)
    patch = weight[0].size
    kernel, m, threads = conv2d_choice(x, weight.shape, args, out_hw, need_backward)
    if kernel == "winograd":
        if not need_backward:
            return winograd_conv3x3(x, weight, bias, args[2], m=m, threads=threads), None
        v_size = winograd_v_size(x.shape, out_hw, m)
        v = None
        if v_size * x.itemsize <= RULES["winograd_keep_v_max_bytes"]:
            spare = take_spare(owner, (v_size,), x)
            y, v = winograd_conv3x3_keeping_v(x, weight, bias, args[2], None, m, threads, spare)
        else:
            y = winograd_conv3x3(x, weight, bias, args[2], m=m, threads=threads)
        return y, WinogradCache(x, weight, bias is not None, args, m, v, owner)
    if kernel == "shifted":
        if not need_backward:
            return shifted_conv2d(x, weight, bias, args[2], args[3], threads), None
        return conv2d_shifted_forward(x, weight, bias, *args, threads)
    if kernel == "chunked":
        block = forward_block_bytes(patch, x.itemsize, threads)
        return conv2d_chunked(x, weight, bias, *args, out_hw, block, threads), None
    if kernel == "blocked":
        block = block_bytes(patch, x.itemsize)
        return conv2d_blocked_forward(x, weight, bias, *args, out_hw, block, threads)
    return conv2d_kept_forward(x, weight, bias, *args, out_hw, owner, threads)


@dataclass
class WinogradCache:
    """A Winograd convolution's backward needs the input, not an im2col matrix; where it is
    small enough, the forward's input transform V too (``RULES["winograd_keep_v_max_bytes"]``:
    dW then skips gathering and transforming x again)."""

    x: Any
    weight: Any
    has_bias: bool
    args: tuple  # (kernel, stride, padding, dilation) as pairs
    m: int  # the output tile side of F(m x m, 3x3)
    v: TransformedInput | None = None  # the forward's input transform, for dW (small layers)
    owner: Any = None  # the layer: V's memory goes back to it as its spare


def conv2d_backward(dy: Any, cache: Any, *, dw_out: Any = None):
    """(dx, dw, db) as ``functional.conv2d_backward``; ``dw_out`` (e.g. a zeroed ``.grad``) is
    where dW is written."""
    weight = cache.weight
    x_shape = cache.x_shape if isinstance(cache, KeptConvCache) else tuple(cache.x.shape)
    k, s, p, d = cache.args
    out_hw = conv_output_shape("conv2d backward", x_shape[2:], k, s, p, d)
    check_grad_shape("conv2d", dy, (x_shape[0], weight.shape[0]) + out_hw)
    if isinstance(cache, WinogradCache):
        threads = share_threads(dy)
        dw = winograd_weight_grad(cache.x, dy, p, m=cache.m, threads=threads, v=cache.v, out=dw_out)
        if cache.v is not None:
            keep_spare(cache.owner, cache.v.buffer)
        db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
        dx = winograd_input_grad(dy, weight, p, m=cache.m, threads=threads)
        return dx, dw, db
    if isinstance(cache, ShiftedConvCache):
        return conv2d_shifted_backward(dy, cache, dw_out)
    threads = cache.threads if isinstance(cache, BlockedConvCache) else 1
    dx_block = dx_conv_block_bytes(weight.shape, x_shape, cache.args, dy.itemsize, threads)
    if isinstance(cache, BlockedConvCache):
        patch = weight[0].size
        rows = max(1, min(out_hw[0], cache.block_bytes // (patch * out_hw[1] * dy.itemsize)))
        dw_t = transposed_dw(weight.shape[0], rows * out_hw[1])
        return conv2d_blocked_backward(dy, cache, dw_t, dx_block, dw_out)
    dw_t = transposed_dw(weight.shape[0], x_shape[0] * out_hw[0] * out_hw[1])
    return conv2d_kept_backward(dy, cache, dw_t, dx_block, dw_out)


# --- ConvTranspose2d -----------------------------------------------------------------------------


def resolve_method(method: str, k, s, d, op: str = "conv_transpose2d") -> str:
    """The method that runs: "auto" is "subpixel" where K % S == 0 and D == 1, else "adjoint";
    an explicit "subpixel" where it does not apply is an error."""
    if method not in METHODS:
        raise ValueError(f"{op}: method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "subpixel" if supports_subpixel(k, s, d) else "adjoint"
    if method == "subpixel" and not supports_subpixel(k, s, d):
        raise ValueError(
            f"{op}: method 'subpixel' needs every kernel size a multiple of its stride and no "
            f"dilation, got kernel {k}, stride {s}, dilation {d}; use 'adjoint'"
        )
    return method


@dataclass
class SubpixelCache:
    conv_cache: Any  # the inner stride-1 convolution's
    weight: Any
    x_shape: tuple
    has_bias: bool
    args: tuple  # (kernel, stride, padding, output_padding, dilation) as pairs
    method: str = "subpixel"


def conv_transpose2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    method: str = "auto",
    *,
    owner: Any = None,
    need_backward: bool = True,
):
    """``functional.conv_transpose2d_forward``, plus "subpixel" and "auto"; (y, cache)."""
    op = "conv_transpose2d"
    k, s, p, op_, d, y_shape = check_conv_transpose2d_args(
        op, x, weight, bias, stride, padding, output_padding, dilation
    )
    method = resolve_method(method, k, s, d, op)
    if method != "subpixel":
        return F.conv_transpose2d_forward(
            x, weight, bias, stride, padding, output_padding, dilation, method
        )
    m = (k[0] // s[0] - 1, k[1] // s[1] - 1)  # the inner conv's padding: m - 1
    y_cells, conv_cache = conv2d_forward(
        x, subpixel_weight(weight, s), None, 1, m, owner=owner, need_backward=need_backward
    )
    y = crop_full_frame(pixel_shuffle(y_cells, s), p, op_)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    assert tuple(y.shape) == y_shape, (y.shape, y_shape)
    args = (k, s, p, op_, d)
    return y, SubpixelCache(conv_cache, weight, tuple(x.shape), bias is not None, args)


def conv_transpose2d_backward(dy: Any, cache: Any, *, dw_out: Any = None):
    """(dx, dw, db) as ``functional.conv_transpose2d_backward``: unshuffle dy, then the inner
    convolution's backward (subpixel); the textbook's own backward for its methods."""
    if not isinstance(cache, SubpixelCache):
        return F.conv_transpose2d_backward(dy, cache)
    check_grad_shape("conv_transpose2d", dy, conv_transpose2d_output_shape(cache))
    k, s, p, op_, d = cache.args
    dy_cells = pixel_unshuffle(full_frame_grad(dy, p, op_), s)
    dx, dw_cells, _ = conv2d_backward(dy_cells, cache.conv_cache)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, weight_from_subpixel(dw_cells, cache.weight.shape, s), db


# --- MaxPool2d -----------------------------------------------------------------------------------


def max_pool2d_forward(x: Any, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``functional.max_pool2d_forward``; 2x2 windows at stride 2 in two pairwise steps."""
    k, s, p, d, out_hw = check_pool_args(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode
    )
    if not (k == s == (2, 2) and d == (1, 1)):
        return F.max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
    x_pad = pad_for_windows(x, p, k, s, d, out_hw, -float("inf"))
    threads = elementwise_threads(x)
    y, argmax = max_pool_2x2(x_pad[:, :, : 2 * out_hw[0], : 2 * out_hw[1]], threads)
    route_nan_windows(y, argmax, x_pad, k, s, d)
    return y, MaxPool2dCache(argmax, tuple(x.shape), (k, s, p, d))


def max_pool2d_backward(dy: Any, cache: Any):
    """``functional.max_pool2d_backward``; where windows do not overlap, written, not added."""
    k, s, p, d = cache.args
    if not all(s[a] >= d[a] * (k[a] - 1) + 1 for a in range(2)):
        return F.max_pool2d_backward(dy, cache)
    check_grad_shape("max_pool2d", dy, tuple(cache.x_shape[:2]) + tuple(cache.argmax.shape[2:]))
    return max_pool2d_backward_disjoint(dy, cache, elementwise_threads(dy))


# --- ReLU ----------------------------------------------------------------------------------------


def relu_forward(x: Any):
    """``functional.relu_forward``: (y, mask), on several threads for a large contiguous array."""
    check_float_array(x, "input", "relu")
    threads = relu_threads(x)
    if threads == 1 or not x.flags.c_contiguous:
        return F.relu_forward(x)
    return relu.relu_forward(x, threads)


def relu_backward(dy: Any, mask: Any):
    """``functional.relu_backward``, on several threads for large contiguous arrays."""
    threads = relu_threads(dy)
    contiguous = dy.flags.c_contiguous and mask.flags.c_contiguous
    if threads == 1 or not contiguous or dy.shape != mask.shape:
        return F.relu_backward(dy, mask)
    return relu.relu_backward(dy, mask, threads)
