"""The ``tinyfcn`` command: ``tinyfcn <subcommand> --help`` describes each one."""

from __future__ import annotations

import argparse
import os
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to each option's help, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (the full usage is in --help) and every
    subcommand's help showing the defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    metrics = run_demo(
        args.out,
        compare=args.compare,
        progress=not args.no_progress,
        train_images=args.train_images,
        batch_size=args.batch_size,
        textbook=args.textbook,
    )
    print(
        f"mean IU {metrics['mean_iou']:.4f}, pixel accuracy {metrics['pixel_accuracy']:.4f}, "
        f"mean accuracy {metrics['mean_accuracy']:.4f}, f.w. IU {metrics['fw_iou']:.4f} "
        f"(trained in {metrics['train_seconds']:.0f} s); wrote {args.out}/metrics.json and "
        "figures"
    )
    return 0


def _run_config(args: argparse.Namespace):
    from .experiment import RunConfig

    fields = RunConfig.__dataclass_fields__
    return RunConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})


def _cmd_train(args: argparse.Namespace) -> int:
    from . import runs
    from .experiment import RunConfig

    progress = not args.no_progress
    if args.resume:
        given = {k: getattr(args, k) for k in args.given if k in RunConfig.__dataclass_fields__}
        out = args.out if "out" in args.given else None
        run = runs.resume_run(args.resume, given, args.flags, out, args.overwrite, progress)
        state = run.trainer.state
        print(f"resumed {args.resume} at step {state.step} (epoch {state.epoch})")
        for note in run.notes:
            print(note)
    else:
        runs.check_out_dir(args.out, args.overwrite)
        run = runs.new_run(_run_config(args), args.out, progress)
    metrics, _ = runs.fit_run(run)
    print(trainer_summary(metrics, run.trainer.extra_meta["class_names"]))
    return 0


def trainer_summary(metrics: dict, class_names) -> str:
    """The four metrics of the FCN paper and the IU of every class, as a small table."""
    lines = [
        f"{name:<16s} IU {iou:.4f}" for name, iou in zip(class_names, metrics["iou"], strict=True)
    ]
    for key, label in (
        ("pixel_accuracy", "pixel accuracy"),
        ("mean_accuracy", "mean accuracy"),
        ("mean_iou", "mean IU"),
        ("fw_iou", "f.w. IU"),
    ):
        lines.append(f"{label:<16s} {metrics[key]:.4f}")
    return "\n".join(lines)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data.preprocessing import Preprocess, preprocess_spec
    from .experiment import RunConfig, make_datasets, make_loaders, model_from_checkpoint
    from .train import Trainer

    model, meta = model_from_checkpoint(args.checkpoint, args.device)
    if "run" not in meta and args.data is None:
        raise ValueError(
            f"{args.checkpoint} holds no training run to take the data from (imported weights?): "
            "name the data with --data (a VOC or SBD folder)"
        )
    run = dict(meta.get("run", {}))
    run.update(
        {
            k: v
            for k, v in (("data", args.data), ("size", args.size), ("val_images", args.images))
            if v is not None
        }
    )
    cfg = RunConfig(**{**run, "device": args.device})
    _, val_set, names = make_datasets(cfg, train=False, val_split=args.split)
    if model.num_classes != len(names):
        theirs = ", ".join(meta.get("class_names") or []) or "?"
        raise ValueError(
            f"{args.checkpoint} predicts {model.num_classes} classes ({theirs}) but --data "
            f"{cfg.data} has {len(names)}: evaluate it on the kind of data it was trained on"
        )
    _, val_loader = make_loaders(cfg, val_set, val_set)
    spec = preprocess_spec(meta)
    if spec is not None:  # the network's own preprocessing, whatever the data set's kind
        val_loader.transform = Preprocess(spec)
    trainer = Trainer(
        model, val_loader, optimizer=None, val_loader=val_loader, device=args.device, progress=False
    )
    print(trainer_summary(trainer.evaluate(), names))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .experiment import model_from_checkpoint
    from .predict import predict_files

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f"--out {args.out} is a file; predict writes into a folder")
    model, meta = model_from_checkpoint(args.checkpoint, args.device)
    failures = predict_files(model, meta, args.images, args.out, args.device)
    if failures:
        total = len(set(map(os.path.abspath, args.images)))
        raise RuntimeError(
            f"{len(failures)} of {total} images failed (nothing written for them): "
            + "; ".join(failures)
        )
    return 0


def _cmd_import_weights(args: argparse.Namespace) -> int:
    from . import io
    from .pytorch_fcn import describe, import_pytorch_fcn

    if os.path.exists(args.out) and not args.force:
        raise FileExistsError(f"--out {args.out} exists; pass --force to replace it")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out {args.out}: the folder {folder} does not exist")
    model, meta = import_pytorch_fcn(args.weights, model=args.model, geometry=args.geometry)
    io.save_checkpoint(args.out, model, **meta)
    print(f"{args.weights} -> {args.out}: {describe(model, meta)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        help="benchmarks side by side with PyTorch: layers, model, memory",
        description="Benchmarks against PyTorch: `tinyfcn bench layers --help` (every layer), "
        "`tinyfcn bench model --help` (a whole network, time) and `tinyfcn bench memory --help` "
        "(a whole network, peak resident memory) for the options.",
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

    p = sub.add_parser(
        "demo",
        help="the main job: train a small FCN-8s on synthetic shapes",
        description="Train a small FCN-8s (compact geometry, width 1/8) on the "
        "synthetic shapes data set on the CPU, evaluate it on a "
        "held-out split, and write metrics.json, predictions.png, "
        "learning_curve.png and the checkpoint to --out.",
    )
    p.add_argument("--out", default="tinyfcn-demo", help="output directory")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also train FCN-32s and FCN-16s and write a side-by-side comparison",
    )
    p.add_argument(
        "--train-images",
        dest="train_images",
        type=_positive_int,
        help="training images, each seen once (18000: under 3 minutes here; 192000 with "
        "--batch 4 reached mean IU 0.88 in 22 minutes)",
    )
    p.add_argument("--batch", dest="batch_size", type=_positive_int, help="batch size (2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--textbook",
        action="store_true",
        help="train and evaluate on the textbook functions alone (tinyfcn.functional; the "
        "engine tinyfcn.fast off, as TINYFCN_FAST=0): the same recipe, slower",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "train",
        help="train an FCN on shapes or a PASCAL VOC folder",
        description="Train an FCN; writes log.csv, checkpoint.npz and best.npz to --out, which "
        "must be new or empty (or --overwrite). --resume RUN/checkpoint.npz continues a run "
        "exactly, with the settings it was made with; Ctrl-C saves the step reached and says "
        "how to resume.",
    )
    p.add_argument("--model", choices=sorted(MODELS), default="fcn8s", help="which network")
    p.add_argument(
        "--geometry",
        choices=("paper", "compact"),
        default="compact",
        help="'paper': the reference network (padding 100, crops); 'compact': padding 1, no crops",
    )
    p.add_argument(
        "--width",
        type=_positive_float,
        default=0.125,
        help="channel width multiplier (1.0: VGG16's 64 ... 512 channels)",
    )
    p.add_argument(
        "--fc-channels",
        dest="fc_channels",
        type=_positive_int,
        default=None,
        help="channels of fc6 and fc7 (default: 4096 times --width)",
    )
    p.add_argument(
        "--dropout", type=_non_negative_float, default=0.5, help="dropout after fc6 and fc7"
    )
    p.add_argument(
        "--learnable-upsampling",
        dest="learnable_upsampling",
        action="store_true",
        help="train the transposed convs (otherwise fixed bilinear, as the paper)",
    )
    p.add_argument("--data", default="shapes", help="'shapes' or the root of a VOC tree")
    p.add_argument(
        "--size",
        type=_positive_int,
        default=64,
        help="image side (shapes) or training crop side (VOC), pixels",
    )
    p.add_argument(
        "--train-images",
        dest="train_images",
        type=_positive_int,
        default=2000,
        help="training images (shapes; a VOC tree uses its train.txt)",
    )
    p.add_argument(
        "--val-images",
        dest="val_images",
        type=_positive_int,
        default=200,
        help="validation images (shapes; a VOC tree uses its val.txt)",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=10,
        help="passes over the training images; with --resume, more than the run's extends it "
        "(its learning-rate schedule is laid over the longer run)",
    )
    p.add_argument(
        "--batch",
        dest="batch_size",
        type=_positive_int,
        default=16,
        metavar="N",
        help="images per step",
    )
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="base learning rate")
    p.add_argument("--momentum", type=_non_negative_float, default=0.9, help="SGD momentum")
    p.add_argument(
        "--weight-decay",
        dest="weight_decay",
        type=_non_negative_float,
        default=5e-4,
        help="L2 weight decay",
    )
    p.add_argument(
        "--schedule",
        choices=("poly", "step", "none"),
        default="poly",
        help="learning rate over the run: poly (to 0 at the end), step (/10 at each third) or "
        "constant",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, data and dropout")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to train (a resumed run may move)",
    )
    p.add_argument(
        "--out",
        default="tinyfcn-run",
        help="output folder, new or empty (with --resume: the checkpoint's folder unless given)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run saved in this checkpoint.npz, with its own settings: other run "
        "flags are refused where they differ, except --epochs (to extend) and --device",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run files (checkpoint.npz, best.npz, log.csv) already in --out",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (on a terminal a live bar; in a log a line every 30 s)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="the four FCN metrics of a checkpoint on a data set",
        description="Pixel accuracy, mean accuracy, mean IU, frequency-weighted IU and "
        "per-class IU of a checkpoint on a validation set (--split), each image preprocessed "
        "as the checkpoint says (trained: its normalisation; imported from pytorch-fcn: BGR, "
        "0-255, mean subtracted).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="a tinyfcn .npz checkpoint (train, or import-weights)")
    p.add_argument(
        "--data",
        default=None,
        help="'shapes', a PASCAL VOC folder (VOCdevkit/VOC2012) or an SBD folder "
        "(benchmark_RELEASE/dataset: img/, cls/*.mat, needs SciPy); None: the run's own data",
    )
    p.add_argument(
        "--split",
        default="val",
        help="the images to evaluate on: VOC's ImageSets/Segmentation/SPLIT.txt or SBD's "
        "SPLIT.txt (pytorch-fcn reports VOC2011 seg11valid: put its seg11valid.txt there)",
    )
    p.add_argument(
        "--size", type=_positive_int, default=None, help="shapes image side; None: the run's own"
    )
    p.add_argument(
        "--images",
        type=_positive_int,
        default=None,
        help="number of shapes images; None: the run's own",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="label maps and overlays for image files",
        description="Predict every pixel of each image (any size, read upright: EXIF orientation "
        "applied, 16-bit grey scaled to its full range) with the preprocessing stored in the "
        "checkpoint. Writes OUT/NAME_labels.png (palette PNG: pixel value = class index) and "
        "OUT/NAME_overlay.png per image. NAME is the image's path relative to the deepest folder "
        "holding all the images, without its extension: `a/x.png b/x.png` give a/x_labels.png "
        "and b/x_labels.png; images that differ only in their extension keep it "
        "(x.jpg_labels.png). A file that cannot be read is skipped and the others go on; the "
        "failures are listed at the end and the exit status is then 1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="a tinyfcn .npz checkpoint (train, or import-weights)")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--out", default="predictions", help="output folder (created if needed)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "import-weights",
        help="a pytorch-fcn .pth as a checkpoint, with the preprocessing it expects",
        description="Turn the weights of the PyTorch port of FCN (wkentaro/pytorch-fcn: "
        "fcn32s/fcn16s/fcn8s/fcn8s-atonce .pth, a state dict or its trainer's checkpoint) into a "
        "tinyfcn checkpoint that predict and evaluate run as the port does: the paper geometry, "
        "and inputs preprocessed as the port's (BGR, 0-255, mean BGR 104.00698793, 116.66876762, "
        "122.67891434 subtracted), stored in the checkpoint's metadata. The network, classes "
        "and width are read from the weights' shapes. Needs PyTorch to read the file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("weights", help="the .pth file")
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        default=argparse.SUPPRESS,  # required: no default to show
        choices=("pytorch-fcn",),
        help="whose weights these are (it decides the preprocessing and the geometry)",
    )
    p.add_argument(
        "--out",
        required=True,
        default=argparse.SUPPRESS,
        help="the tinyfcn .npz checkpoint to write",
    )
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default=None,
        help="which network; None: from the keys (upscore: fcn32s, upscore16: fcn16s, "
        "upscore8: fcn8s-atonce if the file name says 'atonce', else fcn8s)",
    )
    p.add_argument(
        "--geometry",
        choices=("paper", "compact"),
        default="paper",
        help="the port's networks are 'paper'; 'compact' is refused (the same weights compute "
        "another function there)",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_import_weights)
    return parser


def _given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[set, dict]:
    """(the dests of the options written on the command line, dest -> option string) of the
    train subcommand: parsed once more with every default suppressed, so abbreviations and
    ``--opt=value`` count."""
    train = next(
        a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)
    ).choices["train"]
    saved = [(action, action.default) for action in train._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        given = vars(parser.parse_args(argv))
    finally:
        for action, default in saved:
            action.default = default
    flags = {a.dest: a.option_strings[0] for a in train._actions if a.option_strings}
    return set(given) - {"command", "func"}, flags


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Bad input (a missing or corrupt file, a checkpoint of another model, a
    label out of range, ...) ends with one line on stderr naming the problem and exit status 1;
    ``TINYFCN_DEBUG=1`` shows the traceback instead."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "train":
        args.given, args.flags = _given_flags(parser, argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as stop:  # Ctrl-C; a Trainer stopped this way saved a checkpoint
        checkpoint = getattr(stop, "checkpoint", None)
        line = f"tinyfcn {args.command}: {stop or 'interrupted'}"
        if checkpoint is not None:
            line += f"; saved {checkpoint}; continue with: tinyfcn train --resume {checkpoint}"
        print(line, file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the command line shows one line, not a traceback
        if os.environ.get("TINYFCN_DEBUG", "") not in ("", "0"):
            raise
        message = str(error) or type(error).__name__
        print(f"tinyfcn {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
