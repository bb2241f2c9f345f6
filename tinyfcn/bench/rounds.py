"""Alternating rounds: tinyfcn and torch timed turn about in one process, on a quiet machine.

``start_session`` imports torch, gives it every core, writes the header and probes the GEMM
peak; ``run_rounds`` times a set of cases round after round (the order of the two libraries
flips every round; untimed warm-up rounds first; rounds another process disturbed run again);
``summarise`` turns one case's samples into medians, ratios and FLOP rates.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backend import check_device
from .machine import core_count, machine_header
from .quiet import OtherLoad, QuietGate, busy_cores
from .timing import GEMM_SIZE, GemmProbe, synchronizer, time_block

PASSES = ("fwd", "fwd+bwd")
LIBS = ("tinyfcn", "torch")
# (item, pass, lib) -> (setup, run): setup is untimed, run is what a timed block calls
Cases = dict[tuple[str, str, str], tuple[Callable[[], Any], Callable[[], Any]]]


def import_torch():
    try:
        import torch
    except ImportError as e:
        raise ModuleNotFoundError(
            "tinyfcn.bench compares against PyTorch, which is not installed: "
            "pip install 'tinyfcn[test]' (torch==2.13.0)"
        ) from e
    return torch


@dataclass
class Session:
    torch: Any
    device: str
    sync: Callable[[], None]
    header: dict
    gemm: GemmProbe


def start_session(
    device: str, rounds: int, warmup: int, gemm_size: int = GEMM_SIZE, **header: Any
) -> Session:
    """Check the arguments, set torch up like the benchmark needs, header and first GEMM samples.

    ``header`` items (benchmark, size, batch, ...) are added to the machine header.
    """
    torch = import_torch()
    check_device(device)
    if rounds < 1 or warmup < 1:
        raise ValueError(f"need rounds >= 1 and warmup >= 1, got rounds={rounds}, warmup={warmup}")
    if device == "cpu" and os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None:
        warnings.warn(
            "OPENBLAS_THREAD_TIMEOUT was not set before NumPy loaded: OpenBLAS's spinning threads "
            "slow PyTorch down and skew the ratios; run `python -m tinyfcn.bench` instead",
            RuntimeWarning,
            stacklevel=3,
        )
    torch.set_num_threads(core_count())
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    sync = synchronizer(device, torch)
    head = machine_header(torch, device)
    head.update(rounds=rounds, warmup=warmup, dtype="float32", **header)
    head["busy_cores_before"] = busy_cores()
    gemm = GemmProbe(device, torch, sync, gemm_size)
    gemm.sample()  # warm-up, discarded
    gemm.samples = {lib: [] for lib in gemm.samples}
    gemm.sample(repeats=3)
    return Session(torch, device, sync, head, gemm)


def run_rounds(
    session: Session,
    cases: Cases,
    rounds: int,
    warmup: int,
    *,
    min_block_s: float = 0.02,
    quiet_wait_s: float = 0.0,
    progress: bool = False,
) -> tuple[dict[tuple[str, str, str], list[float]], dict[tuple[str, str], int]]:
    """({case: ms per call in each timed round}, {(item, pass): calls per timed block}).

    Each round runs every (item, pass) in the order of ``cases``, both libraries back to back.
    A timed block calls ``run`` enough times to last ``min_block_s`` for the faster library
    (chosen after the last warm-up round; 1 for anything slow). ``gc.collect()`` runs once a
    round, outside the blocks: a collection costs ~70 ms with torch loaded. The GEMM probe is
    sampled once per kept round; the header gets its summary and the quiet gate's.
    """
    pairs = list(dict.fromkeys((item, pss) for item, pss, _ in cases))
    times: dict[tuple[str, str, str], list[float]] = {key: [] for key in cases}
    number: dict[tuple[str, str], int] = {}
    quiet = QuietGate(quiet_wait_s)
    r = 0
    while r < warmup + rounds:
        quiet.wait()
        if progress:
            kind, i = ("warm-up", r + 1) if r < warmup else ("round", r - warmup + 1)
            print(f"  {kind} {i}", file=sys.stderr, flush=True)
        gc.collect()
        load = OtherLoad().start()
        order = LIBS if r % 2 == 0 else LIBS[::-1]
        measured = {}
        gemm_round = session.gemm.measure() if r >= warmup else {}
        for item, pss in pairs:
            for lib in order:
                setup, run = cases[(item, pss, lib)]
                setup()
                measured[(item, pss, lib)] = time_block(
                    run, number.get((item, pss), 1), session.sync
                )
        if quiet.disturbed(load):
            if progress:
                print("    disturbed by another process: again", file=sys.stderr, flush=True)
            continue
        for key, t in measured.items():
            times[key].append(t)
        for lib, gflops in gemm_round.items():
            session.gemm.samples[lib].append(gflops)
        if r == warmup - 1:  # calls per timed block, from the faster library's best warm-up
            for item, pss in pairs:
                fastest = min(min(times[(item, pss, lib)]) for lib in LIBS)
                number[(item, pss)] = max(1, min(1000, math.ceil(min_block_s / fastest)))
        r += 1
    session.gemm.sample(repeats=3)
    session.header["gemm"] = session.gemm.summary()
    session.header["quiet"] = quiet.summary()
    return {key: [1e3 * t for t in ts[warmup:]] for key, ts in times.items()}, number


def summarise(samples: dict[str, list[float]], flops: int, peak: float) -> dict:
    """Row fields from each library's samples (ms): medians, extremes, ratios, GFLOP/s.

    ``ratio`` is median over median; ``ratio_paired`` the median of the per-round ratios (the
    same round's times paired: steadier when the machine's speed drifts).
    """
    row: dict[str, Any] = {}
    for lib in LIBS:
        ms = samples[lib]
        row.update(
            {
                f"{lib}_ms": statistics.median(ms),
                f"{lib}_min_ms": min(ms),
                f"{lib}_max_ms": max(ms),
                f"{lib}_samples_ms": ms,
            }
        )
    row["ratio"] = row["tinyfcn_ms"] / row["torch_ms"]
    pairs = zip(samples["tinyfcn"], samples["torch"], strict=True)
    row["ratio_paired"] = statistics.median([a / b for a, b in pairs])
    gflops = flops / row["tinyfcn_ms"] / 1e6 if flops else None
    row["tinyfcn_gflops"] = gflops
    row["torch_gflops"] = flops / row["torch_ms"] / 1e6 if flops else None
    row["peak_fraction"] = gflops / peak if gflops else None
    row["gemm_peak_gflops"] = peak
    return row
