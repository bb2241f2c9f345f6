"""Memory benchmark: the peak resident memory of an inference and a training step, tinyfcn vs torch.

    python -m tinyfcn.bench memory [--model fcn8s] [--geometry paper] [--width 1] [--size 500]

Each (library, pass) runs in a fresh child process, one after the other, so that neither library's
allocations, nor its allocator's cache, count against the other. The child builds the model (random
weights, ``model.randomise``), its input and upstream gradient, and records its resident set
(VmRSS: interpreter, libraries, weights, input). It then resets the kernel's high-water mark
(writing 5 to ``/proc/self/clear_refs``), runs the pass twice (buffers kept from one step to the
next count) and reads the high-water mark (VmHWM). The figure compared is the peak *above* that
baseline: the memory the pass itself needs (activations, im2col matrices, gradients).

Linux only (``/proc``); where the high-water mark cannot be reset the child says so and the row
reports the process's lifetime peak instead (``reset`` false in the JSON).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
from typing import Any

import numpy as np

from .machine import REPO_ROOT, machine_header

MIB = 2**20
LIBRARIES = ("tinyfcn", "torch")
PASSES = ("fwd", "fwd+bwd")


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS: resident now; VmHWM: resident peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current VmRSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(spec: dict) -> dict:
    """Run in the child: build, baseline, reset the peak, run the pass twice, read the peak."""
    from .. import nn
    from ..models import MODELS
    from .model import randomise

    H, W = spec["size"]
    nn.manual_seed(0)
    net = randomise(MODELS[spec["model"]](geometry=spec["geometry"], width=spec["width"]))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((spec["batch"], 3, H, W), dtype=np.float32)
    dy = rng.standard_normal((spec["batch"], net.num_classes, H, W), dtype=np.float32)
    train = spec["pass"] == "fwd+bwd"
    weights = sum(p.data.nbytes for p in net.parameters())

    if spec["library"] == "tinyfcn":
        net.train(train)

        def run() -> None:
            if train:
                net.zero_grad()
                net(x)
                net.backward(dy)
            else:
                with nn.no_grad():
                    net(x)

    else:
        import torch

        from ..torch_twin import build_torch_twin

        twin = build_torch_twin(net).train(train)
        del net
        tx = torch.from_numpy(x).requires_grad_(train)
        tdy = torch.from_numpy(dy)

        def run() -> None:
            if train:
                twin.zero_grad(set_to_none=True)
                tx.grad = None
                twin(tx).backward(tdy)
            else:
                with torch.no_grad():
                    twin(tx)

    gc.collect()
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    for _ in range(2):
        run()
    peak = _status_kib("VmHWM")
    return {
        "baseline_mib": baseline / 1024,
        "peak_mib": peak / 1024,
        "above_mib": (peak - baseline) / 1024,
        "weights_mib": weights / MIB,
        "reset": reset,
    }


def _child(spec: dict) -> dict:
    """``measure(spec)`` in a fresh interpreter, OpenBLAS threads set as in the timing runs."""
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT="4")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "tinyfcn.bench.memory", json.dumps(spec)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"memory child for {spec['library']} {spec['pass']} failed:\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_memory_benchmark(
    model: str = "fcn8s",
    geometry: str = "paper",
    width: float = 1.0,
    size: tuple[int, int] = (500, 500),
    batch: int = 1,
    repeats: int = 3,
    inference_only: bool = False,
    json_path: str | None = None,
    progress: bool = False,
) -> tuple[dict, list[dict]]:
    """(header, rows): one row per pass, the peak above baseline of both libraries (median over
    ``repeats`` fresh processes, min and max) and their ratio tinyfcn / torch."""
    if not sys.platform.startswith("linux"):
        raise RuntimeError("tinyfcn bench memory reads /proc/self/status: Linux only")
    import torch

    header = machine_header(torch, "cpu")
    header.update(
        benchmark="memory",
        model=model,
        geometry=geometry,
        width=width,
        size=list(size),
        batch=batch,
        repeats=repeats,
    )
    rows = []
    for pss in PASSES[:1] if inference_only else PASSES:
        row: dict[str, Any] = {"pass": pss}
        for lib in LIBRARIES:
            spec = dict(model=model, geometry=geometry, width=width, size=list(size), batch=batch)
            spec.update(library=lib, **{"pass": pss})
            samples = []
            for i in range(repeats):
                if progress:
                    print(f"  {pss:8s} {lib:8s} run {i + 1}/{repeats}", file=sys.stderr, flush=True)
                samples.append(_child(spec))
            above = [s["above_mib"] for s in samples]
            row[f"{lib}_above_mib"] = statistics.median(above)
            row[f"{lib}_above_range"] = [min(above), max(above)]
            row[f"{lib}_baseline_mib"] = statistics.median(s["baseline_mib"] for s in samples)
            row[f"{lib}_reset"] = all(s["reset"] for s in samples)
            row["weights_mib"] = samples[0]["weights_mib"]
        row["ratio"] = row["tinyfcn_above_mib"] / max(row["torch_above_mib"], 1e-9)
        rows.append(row)
    if json_path is not None:
        with open(json_path, "w") as f:
            json.dump({"header": header, "rows": rows}, f, indent=1)
    return header, rows


def format_memory_table(rows: list[dict], header: dict) -> str:
    """Peak resident memory above the baseline, MiB: median (min-max) of each library, ratio."""
    H, W = header["size"]
    lines = [
        f"peak resident memory above the baseline (weights, input, interpreter), MiB, median of "
        f"{header['repeats']} fresh processes: {header['model']} ({header['geometry']} geometry, "
        f"width {header['width']:g}), batch {header['batch']}, {H}x{W}, float32",
        f"weights: {rows[0]['weights_mib']:.0f} MiB" if rows else "",
        f"{'pass':<36}{'tinyfcn (min-max)':>22}{'torch (min-max)':>22}{'ratio':>8}",
    ]
    titles = {"fwd": "inference (no_grad)", "fwd+bwd": "training step (forward + backward)"}
    for r in rows:
        cells = []
        for lib in LIBRARIES:
            lo, hi = r[f"{lib}_above_range"]
            star = "" if r[f"{lib}_reset"] else "*"
            cells.append(f"{r[f'{lib}_above_mib']:.0f}{star} ({lo:.0f}-{hi:.0f})".rjust(22))
        lines.append(f"{titles[r['pass']]:<36}{''.join(cells)}{r['ratio']:>8.2f}")
    if any(not r[f"{lib}_reset"] for r in rows for lib in LIBRARIES):
        lines.append("* the kernel refused to reset the peak: lifetime peak minus baseline")
    return "\n".join(line for line in lines if line)


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
