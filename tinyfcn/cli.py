"""The ``tinyfcn`` command: ``tinyfcn <subcommand> --help`` describes each one."""

from __future__ import annotations

import argparse
import sys


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    from .layer_checks import run_layer_checks

    rows = run_layer_checks(tol=args.tol)
    print(f"{'layer':<40s} {'tensor':>8s} {'rel. error':>11s}  {'time':>6s}")
    failed = 0
    for name, result, seconds in rows:
        for i, (tensor, err) in enumerate(result.errors.items()):
            verdict = "ok" if err <= args.tol else "FAIL"
            failed += err > args.tol
            label, t = (name, f"{seconds:5.2f}s") if i == 0 else ("", "")
            print(f"{label:<40s} {tensor:>8s} {err:11.2e}  {t:>6s}  {verdict}")
    print(
        f"\n{len(rows)} layers checked in float64 (central differences, random upstream "
        f"gradient, tolerance {args.tol:.0e}): {'all passed' if not failed else f'{failed} FAILED'}"
    )
    return 1 if failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench  # its main() re-executes itself with OPENBLAS_THREAD_TIMEOUT set

    return bench.main(args.bench_args) or 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .models import MODELS

    model = MODELS[args.model](
        num_classes=args.classes,
        geometry=args.geometry,
        width=args.width,
        fc6_kernel=args.fc6_kernel,
    )
    model.summary(tuple(args.size))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    print(
        "tinyfcn demo does not exist yet: it arrives with the training issue (a small FCN-8s "
        "trained on the synthetic shapes set). Today you can run `tinyfcn gradcheck` and "
        "`tinyfcn bench layers`.",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyfcn",
        description="Fully Convolutional Networks from scratch on NumPy/CuPy.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "gradcheck",
        help="numerical gradient check of every layer (float64)",
        description="Central-difference gradient checks of every layer in "
        "float64 against its hand-written backward; prints a table.",
    )
    p.add_argument("--tol", type=float, default=1e-6, help="relative error tolerance")
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser(
        "bench",
        help="benchmarks side by side with PyTorch",
        description="Benchmarks against PyTorch in one process; "
        "`tinyfcn bench layers --help` for the options.",
    )
    p.add_argument(
        "bench_args", nargs=argparse.REMAINDER, help="e.g. `layers --rounds 7 --json out.json`"
    )
    p.set_defaults(func=_cmd_bench)

    from .models import MODELS

    p = sub.add_parser(
        "summary",
        help="table of every layer of an FCN: shapes, FLOPs, strides",
        description="Print every layer of an FCN for a given input size: output "
        "shape, parameters, FLOPs, effective stride, receptive field "
        "and crop offsets. Computed from the size formulas; instant.",
    )
    p.add_argument("model", choices=sorted(MODELS), help="which network")
    p.add_argument("--size", type=int, nargs=2, default=(500, 500), metavar=("H", "W"))
    p.add_argument("--geometry", choices=("paper", "compact"), default="paper")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--classes", type=int, default=21, help="number of classes")
    p.add_argument("--fc6-kernel", type=int, choices=(7, 1), default=7)
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("demo", help="the main job (arrives with the training issue)")
    p.add_argument("--out", default="tinyfcn-demo", help="output directory")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
