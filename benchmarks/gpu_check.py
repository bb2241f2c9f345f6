"""The GPU checks that need more than pytest: NumPy vs CuPy agreement per layer, and a notebook
run without Jupyter. Called by ``benchmarks/gpu_check.sh``; run from the repository root.

    python benchmarks/gpu_check.py agreement OUT.json     # every layer and a small FCN-8s
    python benchmarks/gpu_check.py notebook NB.ipynb OUTDIR   # its code cells, figures saved

Agreement: each layer's forward, input gradient and parameter gradients computed on the CPU
(NumPy) and on the GPU (CuPy) from the same arrays, engine on and off; float64 must agree to
1e-12 (relative to the largest entry), float32 to 1e-5.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

TOL = {"float64": 1e-12, "float32": 1e-5}


def _layers():
    from tinyfcn import nn
    from tinyfcn.models import FCN8s

    yield "Conv2d 3x3 p1", lambda: nn.Conv2d(8, 16, 3, padding=1), (2, 8, 33, 31)
    yield "Conv2d 3x3 thin, big map", lambda: nn.Conv2d(4, 4, 3, padding=1), (4, 4, 96, 96)
    yield "Conv2d 7x7 s2 dil", lambda: nn.Conv2d(3, 5, 7, stride=2, padding=3), (2, 3, 30, 28)
    yield "Conv2d 1x1", lambda: nn.Conv2d(16, 21, 1), (2, 16, 9, 7)
    for method in ("auto", "adjoint", "zero_insertion", "subpixel"):
        yield (
            f"ConvTranspose2d x2 {method}",
            lambda m=method: nn.ConvTranspose2d(6, 6, 4, stride=2, padding=1, method=m),
            (2, 6, 9, 8),
        )
    yield "MaxPool2d 2x2 ceil", lambda: nn.MaxPool2d(2, 2, ceil_mode=True), (2, 8, 17, 15)
    yield "MaxPool2d 3x3 s2 p1", lambda: nn.MaxPool2d(3, 2, 1), (2, 8, 17, 15)
    yield "ReLU", nn.ReLU, (2, 8, 17, 15)
    yield (
        "FCN8s compact w1/16",
        lambda: FCN8s(num_classes=5, geometry="compact", width=1 / 16, fc_channels=16, dropout=0),
        (2, 3, 64, 48),
    )


def _run(make, shape, dtype, device, seed=0):
    """(output, dx, {name: grad}) as NumPy arrays."""
    from tinyfcn import asnumpy, nn, to_device

    nn.manual_seed(seed)
    layer = make()
    for p in layer.parameters():
        p.data = p.data.astype(dtype)
    layer.to(device)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer(to_device(x, device))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(to_device(dy, device))
    grads = {n: asnumpy(p.grad) for n, p in layer.named_parameters() if p.grad is not None}
    return asnumpy(y), asnumpy(dx), grads


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-300))


def agreement(path: str) -> int:
    from tinyfcn import fast

    rows, failed = [], 0
    for name, make, shape in _layers():
        for dtype in ("float64", "float32"):
            for engine in (True, False):
                with fast.enabled() if engine else fast.disabled():
                    start = time.perf_counter()
                    cpu = _run(make, shape, dtype, "cpu")
                    gpu = _run(make, shape, dtype, "cuda")
                errors = {"output": _rel(gpu[0], cpu[0]), "dx": _rel(gpu[1], cpu[1])}
                errors.update({f"d{k}": _rel(gpu[2][k], v) for k, v in cpu[2].items()})
                worst = max(errors.values())
                ok = worst <= TOL[dtype]
                failed += not ok
                rows.append(
                    dict(layer=name, dtype=dtype, engine=engine, worst=worst, ok=ok, **errors)
                )
                mode = "on " if engine else "off"
                print(
                    f"{'ok  ' if ok else 'FAIL'} {name:<30} {dtype} engine {mode} worst rel. "
                    f"error {worst:.1e} ({time.perf_counter() - start:.1f} s)"
                )
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"{len(rows) - failed} of {len(rows)} agree within {TOL}; wrote {path}")
    return 1 if failed else 0


def notebook(path: str, out_dir: str) -> int:
    """Execute the code cells of ``path`` in one namespace, in its folder, each figure shown
    saved as OUT_DIR/figure_N.png (no Jupyter needed); stops at the first failing cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    out_dir = os.path.abspath(out_dir)
    shown = []

    def show(*args, **kwargs):
        for number in plt.get_fignums():
            name = os.path.join(out_dir, f"figure_{len(shown) + 1}.png")
            plt.figure(number).savefig(name, dpi=90)
            shown.append(name)
        plt.close("all")

    plt.show = show
    with open(path) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    os.chdir(os.path.dirname(os.path.abspath(path)))
    namespace = {"__name__": "__main__", "display": print}
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        print(f"--- cell {i} ---", flush=True)
        try:
            exec(compile("\n".join(lines), f"{path} cell {i}", "exec"), namespace)
        except Exception as error:
            print(f"cell {i} failed: {type(error).__name__}: {error}")
            return 1
        show()
    print(f"ran {len(cells)} code cells; figures: {', '.join(shown) or 'none'}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["agreement"] and len(argv) == 2:
        return agreement(argv[1])
    if argv[:1] == ["notebook"] and len(argv) == 3:
        return notebook(argv[1], argv[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
