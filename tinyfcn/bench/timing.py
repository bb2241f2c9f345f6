"""Timing one block of calls fairly, and the machine's GEMM speed to measure FLOP rates against."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import to_device

GEMM_SIZE = 2048
SETTLE_S = 0.02  # idle time before each timed block, for the other library's threads to sleep


def synchronizer(device: str, torch) -> Callable[[], None]:
    """A function that waits for queued GPU work in CuPy and torch (nothing to do on the CPU)."""
    if device == "cpu":
        return lambda: None
    import cupy

    def sync() -> None:
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    return sync


def time_block(run, number: int, sync, settle_s: float = SETTLE_S) -> float:
    """Seconds per call of ``run()``, over ``number`` back-to-back calls (gc paused inside).

    Sleeps ``settle_s`` first: PyTorch's OpenMP (libgomp) workers spin for 5-10 ms after each
    call, and a NumPy call started meanwhile gets one core instead of two (measured: conv5_1
    forward 10.1 ms right after a torch call, 6.2 ms after 20 ms). OpenBLAS's threads sleep at
    once with OPENBLAS_THREAD_TIMEOUT=4, so the pause makes the two libraries start alike.
    """
    time.sleep(settle_s)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        sync()
        start = time.perf_counter()
        for _ in range(number):
            run()
        sync()
        return (time.perf_counter() - start) / number
    finally:
        if was_enabled:
            gc.enable()


class GemmProbe:
    """An n x n float32 matmul (2n^3 FLOPs) in NumPy/CuPy and in torch: the machine's speed.

    Sampled once per round beside the benchmark, since a shared machine's speed drifts; the
    peak is the best sample, and the per-round medians show how much the machine moved.
    """

    def __init__(self, device: str, torch, sync, n: int = GEMM_SIZE) -> None:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        da, db = to_device(a, device), to_device(b, device)
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
        self.n, self.sync = n, sync
        self.runs = {"numpy": lambda: da @ db, "torch": lambda: ta @ tb}
        self.samples: dict[str, list[float]] = {lib: [] for lib in self.runs}

    def measure(self) -> dict[str, float]:
        """One GFLOP/s figure per library."""
        return {
            lib: 2 * self.n**3 / time_block(run, 1, self.sync) / 1e9
            for lib, run in self.runs.items()
        }

    def sample(self, repeats: int = 1) -> None:
        for _ in range(repeats):
            for lib, gflops in self.measure().items():
                self.samples[lib].append(gflops)

    def summary(self) -> dict:
        out: dict[str, Any] = {"n": self.n}
        for lib, gflops in self.samples.items():
            out[f"{lib}_gflops"] = max(gflops)
            out[f"{lib}_median_gflops"] = statistics.median(gflops)
            out[f"{lib}_samples_gflops"] = gflops
        return out
