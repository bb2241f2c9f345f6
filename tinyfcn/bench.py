"""Layer benchmark: every VGG16/FCN-8s layer, tinyfcn vs torch.nn with identical weights.

    python -m tinyfcn.bench layers [--rounds 7] [--size 224] [--only conv3_1,fc7] [--json PATH]

Both libraries run in one process, alternating within each round (the order flips every round),
after untimed warm-up rounds. "fwd" is an inference forward (``no_grad`` in both); "fwd+bwd" is a
training step: forward, then backward with a random upstream gradient made once, computing
dx, dW and db in both (torch's input requires grad). A conv's FLOPs are 2*MACs forward and
3 times that forward+backward. PyTorch is imported only inside the benchmark functions.

Fair timing on a small shared machine takes three precautions: OpenBLAS's idle threads spin and
starve PyTorch's unless ``OPENBLAS_THREAD_TIMEOUT`` is set before NumPy loads (``main``
re-executes itself with it set); PyTorch's OpenMP threads spin for 5-10 ms after each call, so
every timed block starts after a 20 ms pause; and rounds that another process disturbed are
run again (``--quiet-wait``).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import nn
from .backend import asnumpy, check_device, to_device

THREAD_TIMEOUT = "4"  # OpenBLAS idle threads sleep after 2**4 spin cycles
GEMM_SIZE = 2048
SETTLE_S = 0.02  # idle time before each timed block, for the other library's threads to sleep
PASSES = ("fwd", "fwd+bwd")
LIBS = ("tinyfcn", "torch")
# fwd+bwd ratio (tinyfcn / torch) the kernels aim for; the table marks a group member above it
TARGETS = {"conv1-2": 1.8, "conv3-5": 1.3, "1x1 convs": 1.2}
GROUPS = ("conv1-2", "conv3-5", "fc6", "1x1 convs", "pools", "upscore")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``kind`` is "conv", "pool" or "convT"; ``hw`` the input's spatial size."""

    name: str
    kind: str
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int
    hw: int
    group: str

    def flops(self, batch: int) -> int:
        """2*MACs of the forward pass (0 for a pool): conv at its output, convT at its input."""
        k2 = self.kernel * self.kernel
        if self.kind == "conv":
            out = (self.hw + 2 * self.padding - self.kernel) // self.stride + 1
            return 2 * batch * self.cout * self.cin * k2 * out * out
        if self.kind == "convT":
            return 2 * batch * self.cin * self.cout * k2 * self.hw * self.hw
        return 0


def layer_specs(size: int = 224) -> list[LayerSpec]:
    """FCN-8s in compact geometry (3x3 convs padded by 1, ceil-mode 2x2 pools) at ``size`` input.

    s[i] = ceil(s[i-1] / 2): the spatial size entering conv1..conv5 (s[0..4]) and fc6 (s[5]).
    """
    s = [size]
    for _ in range(5):
        s.append(-(-s[-1] // 2))
    specs = []
    widths = [(3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3)]
    for block, (cin, width, depth) in enumerate(widths, start=1):
        group = "conv1-2" if block <= 2 else "conv3-5"
        for i in range(1, depth + 1):
            c = cin if i == 1 else width
            specs.append(
                LayerSpec(f"conv{block}_{i}", "conv", c, width, 3, 1, 1, s[block - 1], group)
            )
        specs.append(
            LayerSpec(f"pool{block}", "pool", width, width, 2, 2, 0, s[block - 1], "pools")
        )
    return specs + [
        LayerSpec("fc6", "conv", 512, 4096, 7, 1, 3, s[5], "fc6"),
        LayerSpec("fc7", "conv", 4096, 4096, 1, 1, 0, s[5], "1x1 convs"),
        LayerSpec("score_fr", "conv", 4096, 21, 1, 1, 0, s[5], "1x1 convs"),
        LayerSpec("score_pool4", "conv", 512, 21, 1, 1, 0, s[4], "1x1 convs"),
        LayerSpec("score_pool3", "conv", 256, 21, 1, 1, 0, s[3], "1x1 convs"),
        LayerSpec("upscore2", "convT", 21, 21, 4, 2, 1, s[5], "upscore"),
        LayerSpec("upscore_pool4", "convT", 21, 21, 4, 2, 1, s[4], "upscore"),
        LayerSpec("upscore8", "convT", 21, 21, 16, 8, 4, s[3], "upscore"),
    ]


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ModuleNotFoundError(
            "tinyfcn.bench compares against PyTorch, which is not installed: "
            "pip install 'tinyfcn[test]' (torch==2.13.0)"
        ) from e
    return torch


def _make_pair(spec: LayerSpec, torch) -> tuple[nn.Module, Any]:
    """The tinyfcn layer and its torch.nn twin, holding the same weights."""
    if spec.kind == "pool":
        return (
            nn.MaxPool2d(spec.kernel, spec.stride, ceil_mode=True),
            torch.nn.MaxPool2d(spec.kernel, spec.stride, ceil_mode=True),
        )
    args = (spec.cin, spec.cout, spec.kernel, spec.stride, spec.padding)
    if spec.kind == "conv":
        ours, theirs = nn.Conv2d(*args), torch.nn.Conv2d(*args)
    else:  # FCN's upsampling layers have no bias
        ours = nn.ConvTranspose2d(*args, bias=False)
        theirs = torch.nn.ConvTranspose2d(*args, bias=False)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            getattr(theirs, name).copy_(torch.from_numpy(p.data))
    return ours, theirs


# --- machine information ---------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _openblas_call(names: tuple[str, ...], restype) -> Any:
    """Call the first of ``names`` found in the OpenBLAS that NumPy loaded (Linux), else None."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = restype
                value = fn()
                return value.decode() if isinstance(value, bytes) else value
    return None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait, guests excluded
    return busy / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by *other* processes between ``start()`` and ``cores()``.

    Machine busy time minus this process's own CPU time, over the wall time: a benchmark beside
    another job (a test run, a build) measures that job as much as the code.
    """

    def start(self) -> OtherLoad:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_cpu_seconds(), _own_cpu()
        return self

    def cores(self) -> float | None:
        busy = _busy_cpu_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        return max(0.0, (busy - self.busy0 - (_own_cpu() - self.own0)) / max(wall, 1e-9))


class QuietGate:
    """Wait for other processes to go idle before a round, and re-run a round they disturbed.

    Spends at most ``budget_s`` seconds in all on waiting and on re-run rounds, then lets the
    run finish as it is; the header records the other load during every kept round. 0: off.
    """

    THRESHOLD = 0.1  # cores kept busy by other processes

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.spent_s, self.waited_s = budget_s, 0.0, 0.0
        self.rerun, self.loads = 0, []

    def wait(self) -> None:
        start = time.perf_counter()
        while self.spent_s + time.perf_counter() - start < self.budget_s:
            load = busy_cores(0.5)
            if load is None or load < self.THRESHOLD:
                break
        waited = time.perf_counter() - start
        self.spent_s += waited
        self.waited_s += waited

    def disturbed(self, load: OtherLoad) -> bool:
        """True when the round just run should be thrown away and run again."""
        cores, round_s = load.cores(), time.perf_counter() - load.t0
        if cores is not None and cores >= self.THRESHOLD and self.spent_s < self.budget_s:
            self.rerun += 1
            self.spent_s += round_s
            return True
        self.loads.append(cores)
        return False

    def summary(self) -> dict:
        return {
            "budget_s": self.budget_s,
            "waited_s": self.waited_s,
            "rounds_rerun": self.rerun,
            "round_loads": self.loads,
        }


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def busy_cores(seconds: float = 0.5) -> float | None:
    """Cores kept busy by other processes while this one sleeps for ``seconds``."""
    load = OtherLoad().start()
    time.sleep(seconds)
    return load.cores()


def numpy_blas_info() -> dict:
    """NumPy's BLAS: name, version, runtime kernel and thread count (None where unknown)."""
    info: dict[str, Any] = {"name": None, "version": None, "config": None, "threads": None}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=blas.get("name"), version=blas.get("version"))
    except Exception:
        pass
    prefixes = ("scipy_openblas_", "openblas_")
    for key, stem, restype in (
        ("config", "get_config", ctypes.c_char_p),
        ("threads", "get_num_threads", ctypes.c_int),
    ):
        names = tuple(p + stem + sfx for p in prefixes for sfx in ("64_", "_64", ""))
        value = _openblas_call(names, restype)
        if value is not None:
            info[key] = value
    return info


def machine_header(torch, device: str) -> dict:
    """CPU, versions, BLAS threads and the date: what a timing means nothing without."""
    header = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "cpu": _cpu_model(),
        "cores": _core_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numpy_blas": numpy_blas_info(),
        "torch_threads": torch.get_num_threads(),
        "torch_mkl": bool(torch.backends.mkl.is_available()),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
    }
    if device == "cuda":
        header["gpu"] = torch.cuda.get_device_name()
    return header


# --- timing ----------------------------------------------------------------------------------


def _synchronizer(device: str, torch):
    if device == "cpu":
        return lambda: None
    import cupy

    def sync() -> None:
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    return sync


def _time_block(run, number: int, sync, settle_s: float = SETTLE_S) -> float:
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

    Sampled once per round beside the layers, since a shared machine's speed drifts; the peak
    is the best sample, and the per-round medians show how much the machine moved.
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
            lib: 2 * self.n**3 / _time_block(run, 1, self.sync) / 1e9
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


def _cases(spec, ours, theirs, x, dy, torch, device):
    """(setup, run) for each (pass, library); setup is untimed (fresh gradients, like a step)."""
    tx = torch.from_numpy(np.array(asnumpy(x))).to(device).requires_grad_(True)
    tdy = torch.from_numpy(np.array(asnumpy(dy))).to(device)

    def ours_fwd():
        with nn.no_grad():
            ours(x)

    def ours_step():
        ours(x)
        ours.backward(dy)

    def theirs_fwd():
        with torch.no_grad():
            theirs(tx)

    def theirs_setup():
        theirs.zero_grad(set_to_none=True)
        tx.grad = None

    def theirs_step():
        theirs(tx).backward(tdy)

    return (
        {
            ("fwd", "tinyfcn"): (lambda: None, ours_fwd),
            ("fwd+bwd", "tinyfcn"): (ours.zero_grad, ours_step),
            ("fwd", "torch"): (lambda: None, theirs_fwd),
            ("fwd+bwd", "torch"): (theirs_setup, theirs_step),
        },
        tx,
        tdy,
    )


def _agreement(ours, theirs, x, dy, tx, tdy) -> float:
    """max |ours - torch| / max |torch| over y and dx: proof that both run the same layer."""
    y = asnumpy(ours(x))
    dx = asnumpy(ours.backward(dy))
    ty = theirs(tx)
    ty.backward(tdy)
    err = 0.0
    for a, b in ((y, ty.detach().cpu().numpy()), (dx, tx.grad.cpu().numpy())):
        if a.shape != b.shape:
            raise RuntimeError(f"shape mismatch: tinyfcn {a.shape} vs torch {b.shape}")
        err = max(err, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
    return err


# --- the benchmark ---------------------------------------------------------------------------


def bench_layers(
    rounds: int = 7,
    size: int = 224,
    batch: int = 1,
    device: str = "cpu",
    layers: list[str] | None = None,
    json_path: str | None = None,
    **options: Any,
) -> list[dict]:
    """One row per (layer, pass); ``options`` (warmup, min_block_s, gemm_size, quiet_wait_s,
    progress) and the timing method are described at ``run_benchmark`` (which adds the header)."""
    return run_benchmark(rounds, size, batch, device, layers, json_path, **options)[1]


def run_benchmark(
    rounds: int = 7,
    size: int = 224,
    batch: int = 1,
    device: str = "cpu",
    layers: list[str] | None = None,
    json_path: str | None = None,
    *,
    warmup: int = 2,
    min_block_s: float = 0.02,
    gemm_size: int = GEMM_SIZE,
    quiet_wait_s: float = 0.0,
    progress: bool = False,
) -> tuple[dict, list[dict]]:
    """(header, rows): each layer's fwd and fwd+bwd in tinyfcn and torch, a row per (layer, pass).

    Each timed block runs a layer ``number`` times back to back (enough calls to last
    ``min_block_s`` for the faster library, chosen in the last warm-up round; 1 for big layers)
    and records seconds per call. Rows carry medians, minima, maxima and every sample in ms.
    ``quiet_wait_s`` > 0 waits for other processes to go idle and re-runs disturbed rounds.
    """
    torch = _import_torch()
    check_device(device)
    if rounds < 1 or warmup < 1:
        raise ValueError(f"need rounds >= 1 and warmup >= 1, got rounds={rounds}, warmup={warmup}")
    specs = layer_specs(size)
    if layers is not None:
        known = {s.name: s for s in specs}
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; choose from {', '.join(known)}")
        specs = [s for s in specs if s.name in layers]
    if device == "cpu" and os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None:
        warnings.warn(
            "OPENBLAS_THREAD_TIMEOUT was not set before NumPy loaded: OpenBLAS's spinning threads "
            "slow PyTorch down and skew the ratios; run `python -m tinyfcn.bench` instead",
            RuntimeWarning,
            stacklevel=2,
        )
    torch.set_num_threads(_core_count())
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    sync = _synchronizer(device, torch)
    header = machine_header(torch, device)
    header.update(rounds=rounds, warmup=warmup, size=size, batch=batch, dtype="float32")
    header["busy_cores_before"] = busy_cores()
    gemm = GemmProbe(device, torch, sync, gemm_size)
    gemm.sample()  # warm-up, discarded
    gemm.samples = {lib: [] for lib in gemm.samples}
    gemm.sample(repeats=3)

    nn.manual_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    setups = []
    for spec in specs:
        ours, theirs = _make_pair(spec, torch)
        ours.to(device)
        theirs.to(device)
        x = to_device(
            rng.standard_normal((batch, spec.cin, spec.hw, spec.hw), dtype=np.float32), device
        )
        with nn.no_grad():
            out_shape = tuple(ours(x).shape)
        dy = to_device(rng.standard_normal(out_shape, dtype=np.float32), device)
        cases, tx, tdy = _cases(spec, ours, theirs, x, dy, torch, device)
        err = _agreement(ours, theirs, x, dy, tx, tdy)
        if err > 1e-3:
            raise RuntimeError(
                f"{spec.name}: tinyfcn and torch disagree (relative error {err:.2e})"
            )
        setups.append((spec, tuple(x.shape), out_shape, cases, err))

    times = {(s.name, p, lib): [] for s in specs for p in PASSES for lib in LIBS}
    number: dict[tuple[str, str], int] = {}
    quiet = QuietGate(quiet_wait_s)
    r = 0
    while r < warmup + rounds:
        quiet.wait()
        if progress:
            kind, i = ("warm-up", r + 1) if r < warmup else ("round", r - warmup + 1)
            print(f"  {kind} {i}", file=sys.stderr, flush=True)
        gc.collect()  # once a round: a collection costs ~70 ms with torch loaded
        load = OtherLoad().start()
        order = LIBS if r % 2 == 0 else LIBS[::-1]
        measured = {}
        gemm_round = gemm.measure() if r >= warmup else {}
        for spec, _, _, cases, _ in setups:
            for pss in PASSES:
                for lib in order:
                    setup, run = cases[(pss, lib)]
                    setup()
                    measured[(spec.name, pss, lib)] = _time_block(
                        run, number.get((spec.name, pss), 1), sync
                    )
        if quiet.disturbed(load):
            if progress:
                print("    disturbed by another process: again", file=sys.stderr, flush=True)
            continue
        for key, t in measured.items():
            times[key].append(t)
        for lib, gflops in gemm_round.items():
            gemm.samples[lib].append(gflops)
        if r == warmup - 1:  # calls per timed block, from the faster library's best warm-up
            for spec in specs:
                for pss in PASSES:
                    fastest = min(min(times[(spec.name, pss, lib)]) for lib in LIBS)
                    n = max(1, min(1000, math.ceil(min_block_s / fastest)))
                    number[(spec.name, pss)] = n
        r += 1
    gemm.sample(repeats=3)
    header["gemm"] = gemm.summary()
    header["quiet"] = quiet.summary()
    peak = header["gemm"]["numpy_gflops"]
    rows = []
    for spec, in_shape, out_shape, _, err in setups:
        for pss in PASSES:
            flops = spec.flops(batch) * (3 if pss == "fwd+bwd" else 1)
            row = {
                "layer": spec.name,
                "group": spec.group,
                "pass": pss,
                "input_shape": list(in_shape),
                "output_shape": list(out_shape),
                "flops": flops,
                "calls_per_block": number[(spec.name, pss)],
                "max_rel_err": err,
            }
            for lib in LIBS:
                ms = [1e3 * t for t in times[(spec.name, pss, lib)][warmup:]]
                row.update(
                    {
                        f"{lib}_ms": statistics.median(ms),
                        f"{lib}_min_ms": min(ms),
                        f"{lib}_max_ms": max(ms),
                        f"{lib}_samples_ms": ms,
                    }
                )
            row["ratio"] = row["tinyfcn_ms"] / row["torch_ms"]
            # the same round's times paired: steadier when the machine's speed drifts
            pairs = zip(row["tinyfcn_samples_ms"], row["torch_samples_ms"], strict=True)
            row["ratio_paired"] = statistics.median([a / b for a, b in pairs])
            gflops = flops / row["tinyfcn_ms"] / 1e6 if flops else None
            row["tinyfcn_gflops"] = gflops
            row["torch_gflops"] = flops / row["torch_ms"] / 1e6 if flops else None
            row["peak_fraction"] = gflops / peak if gflops else None
            row["gemm_peak_gflops"] = peak
            rows.append(row)
    if json_path is not None:
        with open(json_path, "w") as f:
            json.dump({"header": header, "rows": rows, "totals": totals(rows, peak)}, f, indent=1)
    return header, rows


def totals(rows: list[dict], peak: float | None = None) -> list[dict]:
    """Sums of medians per pass: TOTAL, then each group present (only groups with 2+ layers)."""
    out = []
    for pss in PASSES:
        mine = [r for r in rows if r["pass"] == pss]
        named = [("TOTAL", mine)] + [(g, [r for r in mine if r["group"] == g]) for g in GROUPS]
        for name, members in named:
            if not members or (name != "TOTAL" and len(members) < 2):
                continue
            t = {"layer": name, "pass": pss, "layers": len(members)}
            for key in ("flops", "tinyfcn_ms", "torch_ms"):
                t[key] = sum(r[key] for r in members)
            t["ratio"] = t["tinyfcn_ms"] / t["torch_ms"]
            t["tinyfcn_gflops"] = t["flops"] / t["tinyfcn_ms"] / 1e6 if t["flops"] else None
            t["peak_fraction"] = t["tinyfcn_gflops"] / peak if peak and t["flops"] else None
            out.append(t)
    return out


def format_header(header: dict) -> str:
    blas, gemm = header["numpy_blas"], header["gemm"]
    lines = [
        f"tinyfcn layer benchmark, {header['date']}, device {header['device']}"
        + (f" ({header['gpu']})" if "gpu" in header else ""),
        f"CPU: {header['cpu']}, {header['cores']} cores | Python {header['python']} | "
        f"numpy {header['numpy']} | torch {header['torch']}",
        f"numpy BLAS: {blas['name']} {blas['version']} [{blas['config']}], "
        f"{blas['threads']} threads, OPENBLAS_THREAD_TIMEOUT={header['OPENBLAS_THREAD_TIMEOUT']}",
        f"torch: {header['torch_threads']} threads, MKL {header['torch_mkl']}, "
        f"oneDNN {header['torch_mkldnn']}",
        f"GEMM peak ({gemm['n']}^3 float32, best of {len(gemm['numpy_samples_gflops'])} "
        f"spread over the run): numpy {gemm['numpy_gflops']:.1f} GFLOP/s (median "
        f"{gemm['numpy_median_gflops']:.1f}), torch {gemm['torch_gflops']:.1f} GFLOP/s "
        f"(median {gemm['torch_median_gflops']:.1f})",
        f"batch {header['batch']}, {header['size']}x{header['size']} input, "
        f"{header['dtype']}, {_plural(header['rounds'], 'round')} + {header['warmup']} warm-up, "
        "tinyfcn and torch alternated within each round",
    ]
    q = header["quiet"]
    loads = [x for x in q["round_loads"] if x is not None]
    line = f"other processes: {_num(header['busy_cores_before'], 0, 2)} cores busy before the run"
    if loads:
        line += f", {statistics.median(loads):.2f} median / {max(loads):.2f} max in a kept round"
    line += (
        f"; {_plural(q['rounds_rerun'], 'round')} re-run, {q['waited_s']:.0f} s waited for quiet"
    )
    if loads and max(loads) >= QuietGate.THRESHOLD:
        line += "\nWARNING: other processes ran during the timed rounds; the timings are unreliable"
    lines.append(line)
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """One section per pass: layer, input, GFLOP, medians (min-max) in ms, ratio, GFLOP/s."""
    peak = rows[0]["gemm_peak_gflops"] if rows else None
    head = (
        f"{'layer':<14}{'input':>16}{'GFLOP':>8}{'tinyfcn ms (min-max)':>24}"
        f"{'torch ms (min-max)':>24}{'ratio':>8}{'GFLOP/s':>9}{'of peak':>9}"
    )
    out = []
    flagged = False
    for pss in PASSES:
        title = "forward (no_grad)" if pss == "fwd" else "forward + backward (dx, dW, db)"
        out += ["", f"== {title} ==", head, "-" * len(head)]
        for r in rows:
            if r["pass"] != pss:
                continue
            flag = " "
            target = TARGETS.get(r["group"])
            if pss == "fwd+bwd" and target is not None and r["ratio"] > target:
                flag, flagged = "!", True
            out.append(
                f"{r['layer']:<14}{'x'.join(map(str, r['input_shape'])):>16}"
                f"{r['flops'] / 1e9:>8.3f}"
                f"{_ms(r['tinyfcn_ms'], r['tinyfcn_min_ms'], r['tinyfcn_max_ms']):>24}"
                f"{_ms(r['torch_ms'], r['torch_min_ms'], r['torch_max_ms']):>24}"
                f"{r['ratio']:>7.2f}{flag}{_num(r['tinyfcn_gflops'], 9, 1)}"
                f"{_num(r['peak_fraction'], 9, 2)}"
            )
        out.append("-" * len(head))
        for t in totals(rows, peak):
            if t["pass"] == pss:
                label = f"{t['layer']} ({t['layers']})"
                out.append(
                    f"{label:<30}{t['flops'] / 1e9:>8.3f}{t['tinyfcn_ms']:>24.2f}"
                    f"{t['torch_ms']:>24.2f}{t['ratio']:>7.2f} {_num(t['tinyfcn_gflops'], 9, 1)}"
                    f"{_num(t['peak_fraction'], 9, 2)}"
                )
    if flagged:
        targets = ", ".join(f"{g} {v}" for g, v in TARGETS.items())
        out.append(f"\n! fwd+bwd ratio above its target ({targets})")
    return "\n".join(out[1:])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _ms(median: float, lo: float, hi: float) -> str:
    return f"{median:.2f} ({lo:.2f}-{hi:.2f})"


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tinyfcn.bench", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    layers = sub.add_parser("layers", help="time every VGG16/FCN-8s layer, tinyfcn vs torch.nn")
    layers.add_argument("--rounds", type=int, help="timed rounds (default 7; --quick: 3)")
    layers.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds (default 2)")
    layers.add_argument("--size", type=int, help="input height and width (224; --quick: 112)")
    layers.add_argument("--batch", type=int, default=1, help="batch size (1)")
    layers.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    layers.add_argument("--only", help="comma-separated layer names, e.g. conv3_1,fc7")
    layers.add_argument("--json", dest="json_path", help="also write header and rows as JSON")
    layers.add_argument("--quick", action="store_true", help="smoke test: 3 rounds, size 112")
    layers.add_argument(
        "--quiet-wait",
        type=float,
        default=300.0,
        help="seconds to spend, in all, waiting for other processes to go idle before a round "
        "and re-running rounds they disturbed (default 300; 0: off)",
    )
    return parser


def _reexec_with_thread_timeout(argv: list[str]) -> None:
    """Start this benchmark afresh with OPENBLAS_THREAD_TIMEOUT set (NumPy is already loaded)."""
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT=THREAD_TIMEOUT)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tinyfcn.bench", *argv], env)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.device == "cpu" and os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None:
        _reexec_with_thread_timeout(argv)  # does not return
    quick = {"rounds": 3, "size": 112} if args.quick else {}
    for name, default in (("rounds", 7), ("size", 224)):
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, default))
    header, rows = run_benchmark(
        rounds=args.rounds,
        size=args.size,
        batch=args.batch,
        device=args.device,
        layers=args.only.split(",") if args.only else None,
        json_path=args.json_path,
        warmup=args.warmup,
        quiet_wait_s=args.quiet_wait,
        progress=True,
    )
    print(format_header(header))
    print()
    print(format_table(rows))
    if args.json_path:
        print(f"\nwrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
