"""``python -m tinyfcn.bench layers|model ...`` (and ``tinyfcn bench ...``): arguments, re-exec."""

from __future__ import annotations

import argparse
import os
import sys

from ..models import MODELS
from .layers import run_benchmark
from .machine import REPO_ROOT
from .model import run_model_benchmark
from .report import format_header, format_model_table, format_table

THREAD_TIMEOUT = "4"  # OpenBLAS idle threads sleep after 2**4 spin cycles


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, help="timed rounds (default 7; --quick: 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds (default 2)")
    p.add_argument("--batch", type=int, default=1, help="batch size (1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", dest="json_path", help="also write header and rows as JSON")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=300.0,
        help="seconds to spend, in all, waiting for other processes to go idle before a round "
        "and re-running rounds they disturbed (default 300; 0: off)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tinyfcn.bench",
        description="tinyfcn against PyTorch in one process: every layer, or a whole FCN.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    layers = sub.add_parser("layers", help="time every VGG16/FCN-8s layer, tinyfcn vs torch.nn")
    _common(layers)
    layers.add_argument("--size", type=int, help="input height and width (224; --quick: 112)")
    layers.add_argument("--only", help="comma-separated layer names, e.g. conv3_1,fc7")
    layers.add_argument("--quick", action="store_true", help="smoke test: 3 rounds, size 112")

    model = sub.add_parser("model", help="time a whole FCN, tinyfcn vs its PyTorch twin")
    _common(model)
    model.add_argument("--model", choices=tuple(MODELS), default="fcn8s")
    model.add_argument("--geometry", choices=("compact", "paper"), default="compact")
    model.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1)")
    model.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="N",
        help="input size: N, or H W (224; --quick: 112)",
    )
    model.add_argument(
        "--inference-only", action="store_true", help="time the forward pass only (no training)"
    )
    model.add_argument("--quick", action="store_true", help="smoke test: 3 rounds, size 112")
    return parser


def _reexec_with_thread_timeout(argv: list[str]) -> None:
    """Start this benchmark afresh with OPENBLAS_THREAD_TIMEOUT set (NumPy is already loaded)."""
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT=THREAD_TIMEOUT)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tinyfcn.bench", *argv], env)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cpu" and os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None:
        _reexec_with_thread_timeout(argv)  # does not return
    quick = {"rounds": 3, "size": 112} if args.quick else {}
    for name, default in (("rounds", 7), ("size", 224)):
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, default))
    common = dict(
        rounds=args.rounds,
        batch=args.batch,
        device=args.device,
        json_path=args.json_path,
        warmup=args.warmup,
        quiet_wait_s=args.quiet_wait,
        progress=True,
    )
    if args.command == "layers":
        only = args.only.split(",") if args.only else None
        header, rows = run_benchmark(size=args.size, layers=only, **common)
        table = format_table(rows)
    else:
        size = [args.size] * 2 if isinstance(args.size, int) else args.size
        if len(size) == 1:
            size = size * 2
        if len(size) != 2:
            parser.error(f"--size takes N or H W, got {len(size)} numbers")
        header, rows = run_model_benchmark(
            args.model,
            args.geometry,
            args.width,
            tuple(size),
            inference_only=args.inference_only,
            **common,
        )
        table = format_model_table(rows, header)
    print(format_header(header))
    print()
    print(table)
    if args.json_path:
        print(f"\nwrote {args.json_path}")
    return 0
