"""Printing and saving results: the header, the layer and model tables, totals, JSON."""

from __future__ import annotations

import json
import statistics

from .quiet import QuietGate
from .rounds import PASSES
from .specs import GROUPS, TARGETS

_TITLES = {"layers": "layer", "model": "model"}
PASS_TITLES = {"fwd": "forward (no_grad)", "fwd+bwd": "forward + backward (dx, dW, db)"}


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


def write_json(path: str, header: dict, rows: list[dict]) -> None:
    """Header and rows (and, for the layer benchmark, its totals) as one JSON document."""
    doc = {"header": header, "rows": rows}
    if header.get("benchmark") == "layers":
        doc["totals"] = totals(rows, header["gemm"]["numpy_gflops"])
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def _workload(header: dict) -> str:
    """What was timed: the layers' input size, or the model, its geometry and input size."""
    if header.get("benchmark") != "model":
        width = header.get("width", 1.0)
        scaled = f"FCN-8s layers at width {width:g}, " if width != 1.0 else ""
        return f"{scaled}batch {header['batch']}, {header['size']}x{header['size']} input"
    H, W = header["size"]
    return (
        f"{header['model']} ({header['geometry']} geometry, width {header['width']:g}), "
        f"batch {header['batch']}, {H}x{W} input"
    )


def format_header(header: dict) -> str:
    blas, gemm, git = header["numpy_blas"], header["gemm"], header.get("git") or {}
    commit = f", commit {git.get('commit')}" if git else ""
    if git.get("uncommitted"):
        commit += f" + uncommitted changes to {', '.join(git['uncommitted'])}"
    title = _TITLES[header.get("benchmark", "layers")]
    lines = [
        f"tinyfcn {title} benchmark, {header['date']}{commit}, "
        f"device {header['device']}" + (f" ({header['gpu']})" if "gpu" in header else ""),
        f"CPU: {header['cpu']}, {header['cores']} cores | Python {header['python']} | "
        f"numpy {header['numpy']} | torch {header['torch']}",
        f"numpy BLAS: {blas['name']} {blas['version']} [{blas['config']}], kernel "
        f"{blas.get('kernel')}, {blas['threads']} threads, "
        f"OPENBLAS_THREAD_TIMEOUT={header['OPENBLAS_THREAD_TIMEOUT']}",
        f"torch: {header['torch_threads']} threads, MKL {header['torch_mkl']}, "
        f"oneDNN {header['torch_mkldnn']} | tinyfcn engine (tinyfcn.fast): "
        f"{header.get('tinyfcn_engine', 'on')}",
        f"GEMM peak ({gemm['n']}^3 float32, best of {len(gemm['numpy_samples_gflops'])} "
        f"spread over the run): numpy {gemm['numpy_gflops']:.1f} GFLOP/s (median "
        f"{gemm['numpy_median_gflops']:.1f}), torch {gemm['torch_gflops']:.1f} GFLOP/s "
        f"(median {gemm['torch_median_gflops']:.1f})",
        f"{_workload(header)}, {header['dtype']}, {_plural(header['rounds'], 'round')} + "
        f"{header['warmup']} warm-up, tinyfcn and torch alternated within each round",
    ]
    forced = blas.get("forced") or {}
    if forced:
        setting = " ".join(f"{k}={v}" for k, v in forced.items())
        unset = " ".join(f"-u {k}" for k in forced)
        lines.append(
            f"WARNING: {setting} forces OpenBLAS's {blas.get('kernel')} kernel, which may be "
            f"older than this CPU's best: numpy's timings and ratios are not comparable with a "
            f"run without it (benchmark with `env {unset} tinyfcn bench ...`)"
        )
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
    """One section per pass: layer, input, GFLOP, medians (min-max) in ms, ratio, GFLOP/s, and
    the kernel that ran tinyfcn's pass."""
    peak = rows[0]["gemm_peak_gflops"] if rows else None
    head = (
        f"{'layer':<14}{'input':>16}{'GFLOP':>8}{'tinyfcn ms (min-max)':>24}"
        f"{'torch ms (min-max)':>24}{'ratio':>8}{'GFLOP/s':>9}{'of peak':>9}  tinyfcn kernel"
    )
    out = []
    flagged = False
    for pss in PASSES:
        out += ["", f"== {PASS_TITLES[pss]} ==", head, "-" * len(head)]
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
                f"{_num(r['peak_fraction'], 9, 2)}  {r.get('kernel', '-')}"
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


def format_model_table(rows: list[dict], header: dict) -> str:
    """One line per pass: GFLOP, medians (min-max) in ms, ratios, GFLOP/s of both, peak share."""
    head = (
        f"{'pass':<34}{'GFLOP':>9}{'tinyfcn ms (min-max)':>27}{'torch ms (min-max)':>27}"
        f"{'ratio':>7}{'paired':>8}{'GFLOP/s':>9}{'of peak':>9}{'torch GFLOP/s':>15}"
    )
    titles = {
        "fwd": "forward (eval, no_grad)",
        "fwd+bwd": "training step (train, fwd+bwd)",
    }
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(
            f"{titles[r['pass']]:<34}{r['flops'] / 1e9:>9.2f}"
            f"{_ms(r['tinyfcn_ms'], r['tinyfcn_min_ms'], r['tinyfcn_max_ms']):>27}"
            f"{_ms(r['torch_ms'], r['torch_min_ms'], r['torch_max_ms']):>27}"
            f"{r['ratio']:>7.2f}{r['ratio_paired']:>8.2f}{_num(r['tinyfcn_gflops'], 9, 1)}"
            f"{_num(r['peak_fraction'], 9, 2)}{_num(r['torch_gflops'], 15, 1)}"
        )
    out += ["-" * len(head), _notes(header), _agreement(header["max_rel_err"])]
    if any(r["pass"] == "fwd+bwd" for r in rows):
        out.append(
            f"training step: zero_grad + forward + backward with dropout p={header['dropout']} "
            f"in both; torch zero_grad(set_to_none=True), its input requires grad (tinyfcn "
            f"always computes dx)"
        )
    return "\n".join(out)


def _notes(header: dict) -> str:
    return (
        "ratio: tinyfcn median / torch median; paired: median of the per-round ratios. FLOPs: "
        "2*MACs of every conv and transposed conv, 3x for fwd+bwd; peak: the numpy GEMM peak "
        f"above ({header['gemm']['numpy_gflops']:.1f} GFLOP/s)"
    )


def _agreement(err: dict) -> str:
    """The agreement check's figures: max |tinyfcn - torch| / max |torch| in eval mode."""

    def pair(e: dict) -> str:
        grad = "-" if e["input_grad"] is None else f"{e['input_grad']:.1e}"
        return f"scores {e['scores']:.1e}, input gradient {grad}"

    return (
        f"agreement before timing (eval mode, max |tinyfcn - torch| / max |torch|): float64 "
        f"{pair(err['float64'])}; float32 {pair(err['float32'])} (float32 input gradient not "
        "checked: near-ties in ReLU/max-pool may take different branches)"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _ms(median: float, lo: float, hi: float) -> str:
    return f"{median:.2f} ({lo:.2f}-{hi:.2f})"


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
