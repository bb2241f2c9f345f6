"""``tinyfcn demo``: train a small FCN-8s on the synthetic shapes, evaluate it, draw what it sees.

Writes to ``out_dir``: ``metrics.json`` (the four FCN metrics and per-class IU on a held-out
split), ``predictions.png`` (image | ground truth | prediction), ``learning_curve.png``,
``log.csv`` and the checkpoints. ``compare=True`` trains FCN-32s, FCN-16s and FCN-8s the same way
and adds ``comparison.png`` (side by side) and ``comparison.md`` (the metrics table): the effect
of the skip connections, largest on the thin rings.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import fast, viz
from .backend import asnumpy, to_device
from .experiment import RunConfig, run_meta
from .fast import plan
from .runs import fit_run, new_run, remove_run_files

# Sized for a 2-core laptop CPU: width 1/8, a 1x1 fc6 (on a 2x2 pool5 map a 7x7 fc6 costs 3/4 of
# the weights and time for no gain), 64x64 images, 9000 steps of 2, every image new; the tuning
# runs behind these choices are in docs/performance.md.
DEMO = RunConfig(
    model="fcn8s",
    geometry="compact",
    width=0.125,
    fc6_kernel=1,
    size=64,
    train_images=18000,
    val_images=200,
    epochs=1,
    batch_size=2,
    optimizer="adam",
    lr=1.5e-3,
    weight_decay=1e-5,
    schedule="poly",
    seed=0,
    dropout=0.0,
    learnable_upsampling=True,
    ring_width=(3.0, 5.0),
)
DEMO_BLAS_THREADS = plan.RULES["small_network_blas_threads"]  # what the planner gives this network
# Under CI (or TINYFCN_QUICK=1) the demo only proves it runs end to end.
QUICK = replace(DEMO, train_images=64, val_images=16, epochs=1, batch_size=8)
NAMES = {"fcn32s": "FCN-32s", "fcn16s": "FCN-16s", "fcn8s": "FCN-8s"}


def quick_mode() -> bool:
    return os.environ.get("TINYFCN_QUICK", "") not in ("", "0")


def train_one(cfg: RunConfig, out_dir: Path, progress: bool = True) -> tuple:
    """Train ``cfg`` into ``out_dir``; returns (trainer, validation metrics, seconds)."""
    run = new_run(cfg, out_dir, progress)
    metrics, seconds = fit_run(run)
    return run.trainer, metrics, seconds


def _predictions(trainer, val_loader, count: int = 8):
    """(images in [0, 1], labels, predictions) for the first ``count`` validation images."""
    dataset = val_loader.dataset
    images = np.stack([dataset[i][0] for i in range(count)])
    labels = np.stack([dataset[i][1] for i in range(count)])
    batch = np.stack(
        [
            val_loader.transform(img, lab, np.random.default_rng(0))[0]
            for img, lab in zip(images, labels, strict=True)
        ]
    )
    preds = asnumpy(trainer.model.predict(to_device(batch, trainer.device)))
    return images, labels, preds


def run_demo(
    out_dir: str | Path = "tinyfcn-demo",
    compare: bool = False,
    progress: bool = True,
    quick: bool | None = None,
    train_images: int | None = None,
    batch_size: int | None = None,
    textbook: bool = False,
) -> dict:
    """Train, evaluate and draw; returns the metrics written to ``metrics.json``.

    ``train_images`` / ``batch_size`` replace the demo's 18000 images in batches of 2 (the
    learning-rate schedule stretches over the longer run). ``textbook``: everything on
    ``tinyfcn.functional`` alone (``tinyfcn.fast.disabled()``)."""
    engine = "textbook" if textbook else "engine"
    with fast.disabled() if textbook else contextlib.nullcontext():
        return _run_demo(out_dir, compare, progress, quick, train_images, batch_size, engine)


def _run_demo(out_dir, compare, progress, quick, train_images, batch_size, engine) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = QUICK if (quick_mode() if quick is None else quick) else DEMO
    if train_images is not None:
        cfg = replace(cfg, train_images=train_images)
    if batch_size is not None:
        cfg = replace(cfg, batch_size=batch_size)
    if cfg.train_images < cfg.batch_size:
        raise ValueError(
            f"demo: {cfg.train_images} training images do not fill one batch of {cfg.batch_size}"
        )
    variants = ("fcn32s", "fcn16s", "fcn8s") if compare else ("fcn8s",)
    results, predictions = {}, {}
    for name in variants:
        run_dir = out if name == "fcn8s" else out / name
        remove_run_files(run_dir)  # the demo replaces its earlier output, log.csv included
        trainer, metrics, seconds = train_one(replace(cfg, model=name), run_dir, progress)
        results[name] = {**_summary(metrics, trainer), "train_seconds": round(seconds, 1)}
        images, labels, predictions[NAMES[name]] = _predictions(trainer, trainer.val_loader)
        if name == "fcn8s":
            viz.prediction_grid(
                images,
                labels,
                {"FCN-8s": predictions["FCN-8s"]},
                out / "predictions.png",
                class_names=trainer.extra_meta["class_names"],
                title="FCN-8s on held-out shapes",
            )
            viz.plot_learning_curves(out / "log.csv", out / "learning_curve.png")
    config = run_meta(cfg, [])["run"]
    metrics = {**results["fcn8s"], "model": "fcn8s", "engine": engine, "config": config}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if compare:
        viz.prediction_grid(
            images,
            labels,
            predictions,
            out / "comparison.png",
            class_names=trainer.extra_meta["class_names"],
            title="FCN-32s vs 16s vs 8s: the skips refine the boundaries",
        )
        four = ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou")
        bars = {NAMES[k]: {m: v[m] for m in four} for k, v in results.items()}
        viz.metrics_bar_chart(bars, out / "comparison_metrics.png")
        (out / "comparison.md").write_text(_table(results, trainer.extra_meta["class_names"]))
        (out / "comparison.json").write_text(json.dumps(results, indent=2) + "\n")
    return metrics


def _summary(metrics: dict, trainer) -> dict:
    names = trainer.extra_meta["class_names"]
    iou = [None if v is None or np.isnan(v) else round(float(v), 4) for v in metrics["iou"]]
    return {
        "mean_iou": round(float(metrics["mean_iou"]), 4),
        "pixel_accuracy": round(float(metrics["pixel_accuracy"]), 4),
        "mean_accuracy": round(float(metrics["mean_accuracy"]), 4),
        "fw_iou": round(float(metrics["fw_iou"]), 4),
        "iou": dict(zip(names, iou, strict=True)),
    }


def _table(results: dict, class_names) -> str:
    head = ["model", "mean IU", "pixel acc.", "mean acc.", "f.w. IU", *class_names, "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [
            NAMES[name],
            r["mean_iou"],
            r["pixel_accuracy"],
            r["mean_accuracy"],
            r["fw_iou"],
            *(r["iou"][c] for c in class_names),
            r["train_seconds"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
