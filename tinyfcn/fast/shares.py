"""Whole samples across CPU threads, for the thin convolutions OpenBLAS cannot spread.

A thin layer's GEMM is small: conv1_2 at width 1/4 multiplies a (16, 144) weight by a block of
(144, 3584) im2col columns, and OpenBLAS's second thread gains nothing on it (2-core EPYC: 65
GFLOP/s with one thread or two). Its time is the im2col copies and GEMMs on freshly written blocks,
one after another. Here each thread takes whole samples instead, with one BLAS thread and its own
workspace, and the im2col copies and the GEMMs of different samples overlap:

    share t of T threads: samples t, t + T, t + 2T, ...      (T = OpenBLAS's thread count)
    share 0 runs on the calling thread, shares 1 .. T-1 on a pool; BLAS at 1 thread meanwhile

numpy releases the GIL in its copies and in BLAS, so the shares run at once. Results that add up
over samples (dW) are kept per share and summed in share order after all have finished: the same
numbers every run for a given T (the sum order differs from one thread's, within rounding).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..blas import blas_threads

_pools: dict[int, ThreadPoolExecutor] = {}  # workers -> pool, made on first use
if hasattr(os, "register_at_fork"):  # POSIX: a forked child has none of the pool's threads
    os.register_at_fork(after_in_child=_pools.clear)


def sample_shares(n: int, threads: int) -> list[range]:
    """The items (samples, or Winograd's blocks) of each share, round robin:
    [range(t, n, T) for t < min(T, n)]."""
    threads = max(1, min(threads, n))
    return [range(t, n, threads) for t in range(threads)]


def runs(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices of about n / parts items covering range(n) (fewer where n is
    smaller): bands of rows, runs of elements, of samples or of channels."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return [slice(edges[i], edges[i + 1]) for i in range(parts)]


def run_shares(work: Callable[[int, range], Any], n: int, threads: int) -> list[Any]:
    """[work(t, items of share t) for each share of n items], share 0 on this thread, the others
    on a pool, each with one BLAS thread; returns when every share has finished, even if one
    raised (no share is left writing into arrays the caller goes on to use), and re-raises the
    first error. One share: work(0, range(n)) on this thread, BLAS threads untouched."""
    shares = sample_shares(n, threads)
    if len(shares) == 1:
        return [work(0, shares[0])]
    pool = _pools.get(len(shares) - 1)
    if pool is None:
        pool = _pools[len(shares) - 1] = ThreadPoolExecutor(
            len(shares) - 1, thread_name_prefix="tinyfcn-share"
        )
    with blas_threads(1):
        futures = [pool.submit(work, t, shares[t]) for t in range(1, len(shares))]
        try:
            first = work(0, shares[0])
        finally:
            for future in futures:  # wait for all, whatever happened here
                future.exception()
    return [first] + [future.result() for future in futures]
