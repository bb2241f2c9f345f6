"""Winograd F(2x2, 3x3) and F(4x4, 3x3) vs the engine's im2col kernels and torch, VGG layers.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_THREAD_TIMEOUT=4 \\
        python benchmarks/winograd_bench.py [--rounds 5] [--only conv3_2,w4-conv2_2] [--threads 1]
    ... --blocks      (Winograd's forward at block sizes 2 MiB to 128 MiB instead)

Forward: ``winograd_conv3x3`` with m = 2 and m = 4 (F2, F4) vs ``conv2d_chunked`` (the planner's
forward-only block size) vs
``torch.nn.functional.conv2d`` under ``no_grad``. dX: ``winograd_input_grad`` vs
``conv2d_input_grad_as_conv`` (the planner's block size) vs ``torch.nn.grad.conv2d_input``.
dW: ``winograd_weight_grad`` vs the engine's dW GEMM (im2col matrix kept, or rebuilt) vs torch.
Every layer is a 3x3 conv, padding 1, C = O. One process; in each round the three run in a
rotating order, each after a 20 ms pause (torch's OpenMP threads spin after a call) and repeated
to at least 20 ms; the table shows the best round (ms per call).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as TF

from tinyfcn.blas import get_blas_threads, set_blas_threads
from tinyfcn.fast import plan
from tinyfcn.fast.conv_blocked import conv2d_input_grad_as_conv
from tinyfcn.fast.conv_chunked import conv2d_chunked
from tinyfcn.fast.gemm import weight_grad_gemm
from tinyfcn.fast.im2col import im2col_into
from tinyfcn.fast.winograd import winograd_conv3x3, winograd_input_grad, winograd_weight_grad
from tinyfcn.functional.conv import normalize_conv_args, pad2d, pixels_as_columns

# (name, batch, channels, size): FCN/VGG's second conv of each block, width 1 at 224x224 batch 1
# and width 1/4 at 128x128 batch 8
LAYERS = [
    ("conv1_2", 1, 64, 224),
    ("conv2_2", 1, 128, 112),
    ("conv3_2", 1, 256, 56),
    ("conv4_2", 1, 512, 28),
    ("conv5_2", 1, 512, 14),
    ("w4-conv1_2", 8, 16, 128),
    ("w4-conv2_2", 8, 32, 64),
    ("w4-conv3_2", 8, 64, 32),
    ("w4-conv4_2", 8, 128, 16),
    ("w4-conv5_2", 8, 128, 8),
]
ARGS = normalize_conv_args(3, 1, 1, 1)


def per_call(fn, min_seconds: float = 0.02) -> float:
    """Seconds per call of ``fn``, repeated to at least ``min_seconds``, after a 20 ms pause."""
    time.sleep(0.02)
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / reps


def best_of_rounds(candidates: dict, rounds: int) -> dict:
    """{name: best seconds per call}, the candidates run in a rotating order each round."""
    names = list(candidates)
    for fn in candidates.values():  # warm-up: workspaces, torch's first-call setup
        fn()
    best = dict.fromkeys(names, float("inf"))
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            best[name] = min(best[name], per_call(candidates[name]))
    return best


def layer_arrays(N: int, C: int, size: int, seed: int = 0):
    """x (post-ReLU), w (He-scaled), b, dy: float32."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((N, C, size, size)), 0)
    w = rng.standard_normal((C, C, 3, 3)) * np.sqrt(2 / (9 * C))
    b = rng.standard_normal(C) * 0.1
    dy = rng.standard_normal((N, C, size, size))
    return tuple(a.astype(np.float32) for a in (x, w, b, dy))


def forward_and_dx(N: int, C: int, size: int, rounds: int) -> dict:
    x, w, b, dy = layer_arrays(N, C, size)
    xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
    k, s, p, d = ARGS
    fwd_block = plan.forward_block_bytes(C * 9, 4)
    dx_block = plan.forward_block_bytes(C * 9, 4)  # what dx_conv_block_bytes gives where it applies

    def torch_forward():
        with torch.no_grad():
            TF.conv2d(xt, wt, bt, padding=1)

    times = best_of_rounds(
        {
            "fwd engine": lambda: conv2d_chunked(x, w, b, *ARGS, (size, size), fwd_block),
            "fwd F2": lambda: winograd_conv3x3(x, w, b, 1, m=2),
            "fwd F4": lambda: winograd_conv3x3(x, w, b, 1, m=4),
            "fwd torch": torch_forward,
        },
        rounds,
    )
    times |= best_of_rounds(
        {
            "dx engine": lambda: conv2d_input_grad_as_conv(dy, w, k, p, d, dx_block),
            "dx F2": lambda: winograd_input_grad(dy, w, 1, m=2),
            "dx F4": lambda: winograd_input_grad(dy, w, 1, m=4),
            "dx torch": lambda: torch.nn.grad.conv2d_input(x.shape, wt, dyt, padding=1),
        },
        rounds,
    )
    return times


def weight_grad(N: int, C: int, size: int, rounds: int) -> dict:
    """dW: Winograd (V recomputed from x) vs the engine's GEMM on the im2col matrix kept from the
    forward (``conv_kept``), vs the matrix rebuilt first (``conv_blocked``), vs torch."""
    x, w, _, dy = layer_arrays(N, C, size)
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    k, s, p, d = ARGS
    cols = np.empty((C * 9, N * size * size), np.float32)
    im2col_into(cols, pad2d(x, p), k, s, d, (size, size))
    dy2, dw2 = pixels_as_columns(dy), np.empty((C, C * 9), np.float32)
    transposed = plan.transposed_dw(C, N * size * size)

    def rebuilt():
        im2col_into(cols, pad2d(x, p), k, s, d, (size, size))
        weight_grad_gemm(pixels_as_columns(dy), cols, dw2, transposed)

    return best_of_rounds(
        {
            "dw F2": lambda: winograd_weight_grad(x, dy, 1, m=2),
            "dw F4": lambda: winograd_weight_grad(x, dy, 1, m=4),
            "dw kept": lambda: weight_grad_gemm(dy2, cols, dw2, transposed),
            "dw rebuilt": rebuilt,
            "dw torch": lambda: torch.nn.grad.conv2d_weight(xt, w.shape, dyt, padding=1),
        },
        rounds,
    )


def header() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"commit {commit}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
        f"load average {load} (before the run), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), OpenBLAS {get_blas_threads()} threads, float32"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated layer names")
    parser.add_argument("--blocks", action="store_true", help="Winograd forward block sizes")
    parser.add_argument("--no-dw", action="store_true", help="skip the dW table")
    parser.add_argument("--threads", type=int, default=0, help="BLAS and torch threads (0: all)")
    args = parser.parse_args()
    if args.threads:
        set_blas_threads(args.threads)
        torch.set_num_threads(args.threads)
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        print("warning: OPENBLAS_THREAD_TIMEOUT is not set; torch's threads may be starved")
    layers = [row for row in LAYERS if not args.only or row[0] in args.only.split(",")]
    print(header())
    if args.blocks:
        sizes = {"2M": 2 * 2**20, "8M": 8 * 2**20, "32M": 32 * 2**20, "128M": 128 * 2**20}
        print(f"{'layer':12s}" + "".join(f"{name:>9s}" for name in sizes) + "   (ms, forward)")
        for name, N, C, size in layers:
            x, w, b, _ = layer_arrays(N, C, size)
            t = best_of_rounds(
                {n: partial(winograd_conv3x3, x, w, b, 1, sizes[n], m=4) for n in sizes},
                args.rounds,
            )
            print(f"{name:12s}" + "".join(f"{t[n] * 1e3:9.2f}" for n in sizes), flush=True)
        return
    print(
        f"{'layer':12s}{'N,C,HxW':>14s} |{'fwd: F2':>8s}{'F4':>8s}{'engine':>8s}{'torch':>8s}"
        f"{'best/torch':>11s} |{'dX: F2':>8s}{'F4':>8s}{'engine':>8s}{'torch':>8s}"
        f"{'best/torch':>11s}"
    )
    for name, N, C, size in layers:
        t = {key: v * 1e3 for key, v in forward_and_dx(N, C, size, args.rounds).items()}
        cells = ""
        for what in ("fwd", "dx"):
            row = [t[f"{what} {k}"] for k in ("F2", "F4", "engine", "torch")]
            cells += " |" + "".join(f"{v:8.2f}" for v in row) + f"{min(row[:3]) / row[3]:11.2f}"
        print(f"{name:12s}{f'{N},{C},{size}x{size}':>14s}{cells}", flush=True)
    print("ms per call, best of the rounds; best/torch: the fastest of F2, F4, engine / torch")
    if args.no_dw:
        return
    print(
        f"\n{'layer':12s}{'N,C,HxW':>14s} |{'dW: F2':>8s}{'F4':>8s}{'kept':>8s}{'rebuilt':>8s}"
        f"{'torch':>8s}{'best/torch':>11s}"
    )
    for name, N, C, size in layers:
        t = {key: v * 1e3 for key, v in weight_grad(N, C, size, args.rounds).items()}
        row = [t[f"dw {k}"] for k in ("F2", "F4", "kept", "rebuilt", "torch")]
        print(
            f"{name:12s}{f'{N},{C},{size}x{size}':>14s} |"
            + "".join(f"{v:8.2f}" for v in row)
            + f"{min(row[:4]) / row[4]:11.2f}",
            flush=True,
        )
    print("dW engine: kept = GEMM on the forward's im2col matrix; rebuilt = im2col, then the GEMM")


if __name__ == "__main__":
    main()
