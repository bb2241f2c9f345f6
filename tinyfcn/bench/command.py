"""``python -m tinyfcn.bench layers|model|memory`` (and ``tinyfcn bench ...``): arguments."""

from __future__ import annotations

import argparse
import os
import sys

from ..models import MODELS
from .layers import run_benchmark
from .machine import REPO_ROOT
from .memory import format_memory_table, run_memory_benchmark
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
        "--textbook",
        action="store_true",
        help="run tinyfcn on its textbook functions alone (tinyfcn.fast disabled, as "
        "TINYFCN_FAST=0): what the engine's speed costs in clarity, and clarity in time",
    )
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
    layers.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1)")
    layers.add_argument("--only", help="comma-separated layer names, e.g. conv3_1,fc7")
    layers.add_argument("--quick", action="store_true", help="smoke test: 3 rounds, size 112")

    model = sub.add_parser("model", help="time a whole FCN, tinyfcn vs its PyTorch twin")
    _common(model)
    _model_args(model)
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

    memory = sub.add_parser(
        "memory",
        help="peak resident memory of one inference and one training step, tinyfcn vs torch",
        description="Each library and pass runs in a fresh process; the table gives the peak "
        "resident memory above what the weights, input and interpreter already hold (Linux).",
    )
    _model_args(memory, default_geometry="paper")
    memory.add_argument("--size", type=int, nargs="+", metavar="N", help="N, or H W (500)")
    memory.add_argument("--batch", type=int, default=1, help="batch size (1)")
    memory.add_argument("--repeats", type=int, default=3, help="fresh processes per case (3)")
    memory.add_argument("--inference-only", action="store_true", help="inference only")
    memory.add_argument("--json", dest="json_path", help="also write header and rows as JSON")
    return parser


def _model_args(p: argparse.ArgumentParser, default_geometry: str = "compact") -> None:
    p.add_argument("--model", choices=tuple(MODELS), default="fcn8s")
    p.add_argument("--geometry", choices=("compact", "paper"), default=default_geometry)
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1)")


def _size(parser: argparse.ArgumentParser, size: int | list[int]) -> tuple[int, int]:
    """--size N or --size H W as (H, W)."""
    size = [size] * 2 if isinstance(size, int) else list(size)
    if len(size) == 1:
        size = size * 2
    if len(size) != 2:
        parser.error(f"--size takes N or H W, got {len(size)} numbers")
    return tuple(size)


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
    if args.command == "memory":
        return _memory(parser, args)
    if args.textbook:
        os.environ["TINYFCN_FAST"] = "0"  # read at every layer call; inherited by a re-exec
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
        header, rows = run_benchmark(size=args.size, layers=only, width=args.width, **common)
        table = format_table(rows)
    else:
        header, rows = run_model_benchmark(
            args.model,
            args.geometry,
            args.width,
            _size(parser, args.size),
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


def _memory(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``tinyfcn bench memory``: the children time nothing, so no re-exec and no quiet gate."""
    header, rows = run_memory_benchmark(
        args.model,
        args.geometry,
        args.width,
        _size(parser, args.size or 500),
        batch=args.batch,
        repeats=args.repeats,
        inference_only=args.inference_only,
        json_path=args.json_path,
        progress=True,
    )
    print(format_memory_table(rows, header))
    if args.json_path:
        print(f"\nwrote {args.json_path}")
    return 0
