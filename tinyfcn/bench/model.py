"""Model benchmark: a whole FCN in tinyfcn against its PyTorch twin, holding the same weights.

    python -m tinyfcn.bench model [--model fcn8s] [--geometry compact] [--width 1] [--size 224]

"fwd" is inference: eval mode, inside ``no_grad`` in both. "fwd+bwd" is a training step in
train mode (dropout with the same p in both): tinyfcn ``zero_grad(); y = model(x);
model.backward(dy)``; torch ``zero_grad(set_to_none=True)`` (torch's default since 2.0, what
``optimizer.zero_grad()`` does); ``twin(x).backward(dy)``, with ``dy`` random and made once.
The torch input requires grad, because tinyfcn's backward always returns dx. The model's FLOPs
are the sum over its convs and transposed convs from ``summary_rows`` (3x for fwd+bwd).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import nn
from ..backend import asnumpy, to_device
from ..models import MODELS
from ..models.summary import summary_rows
from ..torch_twin import build_torch_twin
from .report import write_json
from .rounds import PASSES, Cases, run_rounds, start_session, summarise
from .timing import GEMM_SIZE


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-scaled random weights and small random biases in every Conv2d; the bilinear kernels
    of the transposed convs are kept. FCN's score layers start at zero, which would leave the
    skip branches and most gradients at zero and hide a wrong one."""
    rng = np.random.default_rng(seed)
    for _, layer in model.named_modules():
        if isinstance(layer, nn.Conv2d):
            w = layer.weight
            std = math.sqrt(2.0 / (w.size // w.shape[0]))
            w.data[...] = (std * rng.standard_normal(w.shape)).astype(w.dtype)
            if layer.bias is not None:
                b = layer.bias
                b.data[...] = (0.01 * rng.standard_normal(b.shape)).astype(b.dtype)
    return model


def _relative(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (b is torch's)."""
    a, b = asnumpy(a), b.detach().cpu().numpy()
    if a.shape != b.shape:
        raise RuntimeError(f"shape mismatch: tinyfcn {a.shape} vs torch {b.shape}")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _errors(model, twin, x_host, dy_host, device, torch, with_grad: bool) -> dict:
    """Relative errors of the scores and the input gradient in eval mode, at the model's dtype
    (``input_grad`` None: not computed)."""
    dtype = model.conv1_1.weight.dtype
    x, dy = (to_device(a.astype(dtype), device) for a in (x_host, dy_host))
    tx = torch.from_numpy(x_host.astype(dtype)).to(device).requires_grad_(with_grad)
    model.eval()
    twin.eval()
    if not with_grad:
        with nn.no_grad():
            y = model(x)
        with torch.no_grad():
            return {"scores": _relative(y, twin(tx)), "input_grad": None}
    y = model(x)
    model.zero_grad()
    dx = model.backward(dy)
    ty = twin(tx)
    ty.backward(torch.from_numpy(dy_host.astype(dtype)).to(device))
    return {"scores": _relative(y, ty), "input_grad": _relative(dx, tx.grad)}


def _agreement(model, x_host, dy_host, device, torch, with_grad: bool) -> dict:
    """{"float64": errors, "float32": errors}: proof that tinyfcn and the twin are one network.

    The float64 figures are the check (a wrong crop or a permuted reshape gives errors near 1,
    float64 rounding ~1e-14). In float32 the scores agree to ~1e-6, but the input gradient of a
    deep ReLU/max-pool net at full size need not: where a pre-activation sits within rounding of
    0, or two values of a pooling window within rounding of each other, the two libraries may
    take different branches and route a gradient elsewhere (measured at FCN-8s width 1, 224x224:
    float32 dx off by up to 5e-2 of its maximum in 22 of 150,528 elements; float64 2e-15).
    """
    err = {}
    for dtype in (np.float64, np.float32):
        model.to(dtype=dtype)
        twin = build_torch_twin(model, device=device)
        err[np.dtype(dtype).name] = _errors(model, twin, x_host, dy_host, device, torch, with_grad)
        del twin
    return err


def _cases(model, twin, x, dy, tx, tdy, torch, inference_only: bool) -> Cases:
    """(setup, run) per (pass, library); setup (untimed) switches eval/train mode."""

    def evaluate():
        model.eval()
        twin.eval()

    def train():
        model.train()
        twin.train()

    def ours_fwd():
        with nn.no_grad():
            model(x)

    def theirs_fwd():
        with torch.no_grad():
            twin(tx)

    def ours_step():
        model.zero_grad()
        model(x)
        model.backward(dy)

    def theirs_step():
        twin.zero_grad(set_to_none=True)
        tx.grad = None
        twin(tx).backward(tdy)

    cases = {
        ("model", "fwd", "tinyfcn"): (evaluate, ours_fwd),
        ("model", "fwd", "torch"): (evaluate, theirs_fwd),
    }
    if not inference_only:
        cases[("model", "fwd+bwd", "tinyfcn")] = (train, ours_step)
        cases[("model", "fwd+bwd", "torch")] = (train, theirs_step)
    return cases


def bench_model(model: str = "fcn8s", **options: Any) -> list[dict]:
    """One row per pass; the options and the method are described at ``run_model_benchmark``."""
    return run_model_benchmark(model, **options)[1]


def run_model_benchmark(
    model: str = "fcn8s",
    geometry: str = "compact",
    width: float = 1.0,
    size: int | tuple[int, int] = 224,
    batch: int = 1,
    rounds: int = 7,
    device: str = "cpu",
    json_path: str | None = None,
    *,
    inference_only: bool = False,
    num_classes: int = 21,
    warmup: int = 2,
    min_block_s: float = 0.02,
    gemm_size: int = GEMM_SIZE,
    quiet_wait_s: float = 0.0,
    progress: bool = False,
) -> tuple[dict, list[dict]]:
    """(header, rows): the whole model's fwd (and fwd+bwd) in tinyfcn and torch, a row per pass.

    Builds ``MODELS[model]`` with random weights (``randomise``) and its twin, checks they agree
    in eval mode (``_agreement``: scores and input gradient in float64, scores in float32, all
    within 1e-3 relative; no gradient with ``inference_only``), then times both in float32 in
    alternating rounds like the layer benchmark.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    H, W = (size, size) if isinstance(size, int) else tuple(size)
    session = start_session(
        device,
        rounds,
        warmup,
        gemm_size,
        benchmark="model",
        model=model,
        geometry=geometry,
        width=width,
        size=[H, W],
        batch=batch,
        inference_only=inference_only,
    )
    torch = session.torch
    nn.manual_seed(0)
    torch.manual_seed(0)
    net = randomise(MODELS[model](num_classes=num_classes, geometry=geometry, width=width))
    net.to(device)
    rng = np.random.default_rng(1)
    x_host = rng.standard_normal((batch, 3, H, W), dtype=np.float32)
    dy_host = rng.standard_normal((batch, num_classes, H, W), dtype=np.float32)
    err = _agreement(net, x_host, dy_host, device, torch, with_grad=not inference_only)
    checked = [err["float64"]["scores"], err["float64"]["input_grad"], err["float32"]["scores"]]
    if max(e for e in checked if e is not None) > 1e-3:
        raise RuntimeError(f"{model}: tinyfcn and its torch twin disagree: {err}")
    twin = build_torch_twin(net, device=device)
    x, dy = to_device(x_host, device), to_device(dy_host, device)
    tx = torch.from_numpy(x_host).to(device).requires_grad_(not inference_only)
    tdy = torch.from_numpy(dy_host).to(device)

    flops = batch * sum(r.flops for r in summary_rows(net, (H, W)))
    header = session.header
    header.update(
        dropout=net.drop6.p,
        flops_forward=flops,
        max_rel_err=err,
        torch_zero_grad="set_to_none=True",
    )
    cases = _cases(net, twin, x, dy, tx, tdy, torch, inference_only)
    times, number = run_rounds(
        session,
        cases,
        rounds,
        warmup,
        min_block_s=min_block_s,
        quiet_wait_s=quiet_wait_s,
        progress=progress,
    )
    peak = header["gemm"]["numpy_gflops"]
    rows = []
    for pss in PASSES[:1] if inference_only else PASSES:
        row: dict[str, Any] = {
            "pass": pss,
            "flops": flops * (3 if pss == "fwd+bwd" else 1),
            "calls_per_block": number[("model", pss)],
        }
        samples = {lib: times[("model", pss, lib)] for lib in ("tinyfcn", "torch")}
        row.update(summarise(samples, row["flops"], peak))
        rows.append(row)
    if json_path is not None:
        write_json(json_path, header, rows)
    return header, rows
