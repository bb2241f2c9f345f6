"""Layer benchmark: every VGG16/FCN-8s layer, tinyfcn vs torch.nn with identical weights.

    python -m tinyfcn.bench layers [--rounds 7] [--size 224] [--width 1] [--only conv3_1,fc7]
                                   [--json PATH]

"fwd" is an inference forward (``no_grad`` in both); "fwd+bwd" is a training step: forward,
then backward with a random upstream gradient made once, computing dx, dW and db in both
(torch's input requires grad). A conv's FLOPs are 2*MACs forward and 3 times that
forward+backward. Each row names the kernel that computed tinyfcn's pass (the planner's words,
``fast.plan.describe_*``). PyTorch is imported only inside the benchmark functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fast, nn
from ..backend import asnumpy, to_device
from ..fast import plan
from .report import write_json
from .rounds import PASSES, Cases, run_rounds, start_session, summarise
from .specs import LayerSpec, layer_specs
from .timing import GEMM_SIZE


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


def _cases(name: str, ours, theirs, x, dy, tx, tdy, torch) -> Cases:
    """(setup, run) for each (pass, library); setup is untimed (fresh gradients, like a step)."""

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

    return {
        (name, "fwd", "tinyfcn"): (lambda: None, ours_fwd),
        (name, "fwd", "torch"): (lambda: None, theirs_fwd),
        (name, "fwd+bwd", "tinyfcn"): (ours.zero_grad, ours_step),
        (name, "fwd+bwd", "torch"): (theirs_setup, theirs_step),
    }


def _kernel(layer: nn.Module, x: Any, need_backward: bool) -> str:
    """What computes this layer's pass, in the planner's words ("textbook" with the engine off)."""
    if not fast.is_enabled():
        return "textbook"
    if isinstance(layer, nn.Conv2d):
        args = (layer.stride, layer.padding, layer.dilation)
        return plan.describe_conv2d(x, layer.weight.shape, *args, need_backward=need_backward)
    if isinstance(layer, nn.ConvTranspose2d):
        args = (layer.stride, layer.padding, layer.dilation, layer.method)
        return plan.describe_conv_transpose2d(
            x, layer.weight.shape, *args, need_backward=need_backward
        )
    return plan.describe_max_pool2d(layer.kernel_size, layer.stride, layer.dilation)


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


def bench_layers(
    rounds: int = 7,
    size: int = 224,
    batch: int = 1,
    device: str = "cpu",
    layers: list[str] | None = None,
    json_path: str | None = None,
    width: float = 1.0,
    **options: Any,
) -> list[dict]:
    """One row per (layer, pass); ``options`` (warmup, min_block_s, gemm_size, quiet_wait_s,
    progress) and the timing method are described at ``run_benchmark`` (which adds the header)."""
    return run_benchmark(rounds, size, batch, device, layers, json_path, width, **options)[1]


def run_benchmark(
    rounds: int = 7,
    size: int = 224,
    batch: int = 1,
    device: str = "cpu",
    layers: list[str] | None = None,
    json_path: str | None = None,
    width: float = 1.0,
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
    specs = layer_specs(size, width)
    if layers is not None:
        known = {s.name: s for s in specs}
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; choose from {', '.join(known)}")
        specs = [s for s in specs if s.name in layers]
    session = start_session(
        device, rounds, warmup, gemm_size, benchmark="layers", size=size, batch=batch, width=width
    )
    torch = session.torch

    nn.manual_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    setups, cases = [], {}
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
        tx = torch.from_numpy(np.array(asnumpy(x))).to(device).requires_grad_(True)
        tdy = torch.from_numpy(np.array(asnumpy(dy))).to(device)
        cases.update(_cases(spec.name, ours, theirs, x, dy, tx, tdy, torch))
        err = _agreement(ours, theirs, x, dy, tx, tdy)
        if err > 1e-3:
            raise RuntimeError(
                f"{spec.name}: tinyfcn and torch disagree (relative error {err:.2e})"
            )
        kernels = {pss: _kernel(ours, x, pss == "fwd+bwd") for pss in PASSES}
        setups.append((spec, tuple(x.shape), out_shape, err, kernels))

    times, number = run_rounds(
        session,
        cases,
        rounds,
        warmup,
        min_block_s=min_block_s,
        quiet_wait_s=quiet_wait_s,
        progress=progress,
    )
    header = session.header
    peak = header["gemm"]["numpy_gflops"]
    rows = []
    for spec, in_shape, out_shape, err, kernels in setups:
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
                "kernel": kernels[pss],
            }
            samples = {lib: times[(spec.name, pss, lib)] for lib in ("tinyfcn", "torch")}
            row.update(summarise(samples, flops, peak))
            rows.append(row)
    if json_path is not None:
        write_json(json_path, header, rows)
    return header, rows
