"""A training run on disk, kept safe: a new run never replaces another one, a resumed run keeps
its own settings (and the BLAS thread count it was made with), and Ctrl-C saves the step reached.

Used by ``tinyfcn train`` and ``tinyfcn demo``; the training loop itself is ``tinyfcn.train``.
"""

from __future__ import annotations

import csv
import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import fast, io
from .blas import blas_threads, get_blas_threads
from .experiment import RunConfig, build_trainer
from .fast import plan
from .models.summary import summary_rows
from .train import Trainer

RUN_FILES = ("checkpoint.npz", "best.npz", "log.csv")
VALIDATIONS_PER_RUN = 6  # and once more at the end, whatever the length of the run
RESUME_MAY_CHANGE = ("epochs", "device")  # settings --resume accepts: how long, and where


@dataclass
class Run:
    """A trainer ready to ``fit(cfg.epochs)``, the BLAS threads to pin, what to tell the user."""

    trainer: Trainer
    cfg: RunConfig
    blas_threads: int
    notes: list[str] = field(default_factory=list)


# --- the output folder ---------------------------------------------------------------------------


def check_out_dir(out: str | Path, overwrite: bool = False) -> None:
    """Refuse to start a run in a folder that holds anything, in one line that says how to go on;
    with ``overwrite``, delete the earlier run's files (``RUN_FILES``) and start there."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    if overwrite:
        remove_run_files(out)
        return
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    resume = f"--resume {out / 'checkpoint.npz'}, " if "checkpoint.npz" in entries else ""
    raise FileExistsError(
        f"--out {out} is not empty ({shown}): to keep it, continue that run with {resume}or "
        "choose another --out; to replace it, pass --overwrite"
    )


def remove_run_files(out: str | Path) -> None:
    """Delete the checkpoints and log of a run in ``out`` (other files stay)."""
    for name in RUN_FILES:
        (Path(out) / name).unlink(missing_ok=True)


# --- a new run -----------------------------------------------------------------------------------


def new_run(cfg: RunConfig, out: str | Path, progress: bool = True) -> Run:
    """The Trainer of a fresh run of ``cfg`` into ``out``: validated (and checkpointed)
    ``VALIDATIONS_PER_RUN`` times over the run's real number of steps, and at its end."""
    trainer = build_trainer(cfg, out, progress)
    steps = cfg.epochs * len(trainer.train_loader)
    trainer.val_every = trainer.checkpoint_every = max(1, steps // VALIDATIONS_PER_RUN)
    threads = training_blas_threads(trainer.model, cfg)
    trainer.extra_meta["blas_threads"] = threads
    return Run(trainer, cfg, threads)


def training_blas_threads(model, cfg: RunConfig) -> int:
    """The BLAS threads a run pins (stored in its checkpoints, so that a resumed run computes
    exactly what the uninterrupted one would): the planner's choice for this network's size, or,
    under ``tinyfcn.fast.disabled()``, the count OpenBLAS has now."""
    current = get_blas_threads() or 1
    if not fast.is_enabled():
        return current
    image_flops = sum(row.flops for row in summary_rows(model, (cfg.size, cfg.size)))
    return plan.training_blas_threads(image_flops * cfg.batch_size / 1e9, current)


# --- resuming ------------------------------------------------------------------------------------


def read_meta(path: str | Path) -> dict:
    """The metadata of a checkpoint, without reading its arrays (errors name the file)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return json.loads(f[io.META_KEY].item())
    except Exception:  # noqa: BLE001 - load_checkpoint says what is wrong, naming the file
        return io.load_checkpoint(path)["meta"]


def run_config(meta: dict, path: str | Path) -> RunConfig:
    """The RunConfig a checkpoint was made with (its ``run`` metadata)."""
    run = meta.get("run")
    if not isinstance(run, dict):
        raise ValueError(f"{path} holds no run settings: it was not written by tinyfcn train")
    defaults = RunConfig()
    values = {}
    for f in fields(RunConfig):
        if f.name in run:
            value = run[f.name]  # JSON gave lists where the config holds tuples
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return replace(defaults, **values)


def resume_run(
    path: str | Path,
    given: dict[str, Any],
    flags: dict[str, str],
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Run:
    """Continue the run saved in ``path`` with its own settings (and BLAS thread count).

    ``given``: the run settings the user passed explicitly (RunConfig field -> value), ``flags``:
    how each is spelled on the command line. A setting that differs from the run's is refused,
    naming it, except ``RESUME_MAY_CHANGE``: ``device``, and ``epochs`` above the run's, which
    extends it: the learning-rate schedule is laid over the new length from the step reached
    (its lr jumps there; the note and log.csv's lr column say by how much). ``out``: default the
    checkpoint's folder; another folder must be empty (or ``overwrite``). ``data`` may name
    another VOC folder (a moved tree), never turn shapes into VOC or back.
    """
    path = Path(path)
    meta = read_meta(path)
    cfg = run_config(meta, path)
    step, done = int(meta.get("step", 0)), int(meta.get("epoch", 0))
    moved = "data" in given and "shapes" not in (given["data"], cfg.data)  # a VOC tree moved
    conflicts = [
        (name, value)
        for name, value in given.items()
        if name not in RESUME_MAY_CHANGE
        and value != getattr(cfg, name)
        and not (name == "data" and moved)
    ]
    if conflicts:
        ours = ", ".join(f"{flags.get(k, k)} {v}" for k, v in conflicts)
        theirs = ", ".join(f"{flags.get(k, k)} {getattr(cfg, k)}" for k, _ in conflicts)
        raise ValueError(
            f"{ours} would change the run in {path} (made with {theirs}): --resume continues a "
            f"run with its own settings; leave {'it' if len(conflicts) == 1 else 'them'} out, or "
            "start a new run with another --out"
        )
    notes, old_epochs = [], cfg.epochs
    epochs = int(given.get("epochs", cfg.epochs))
    if epochs < old_epochs:
        raise ValueError(
            f"--epochs {epochs} would shorten the run in {path}, made for {old_epochs} epochs, "
            "and change its learning-rate schedule: leave --epochs out (Ctrl-C stops a run and "
            "saves it)"
        )
    if epochs == old_epochs and done >= old_epochs:
        raise ValueError(
            f"{path} has finished its {old_epochs} epochs (step {step}): evaluate it with "
            f"`tinyfcn evaluate {path}`, or extend it with --epochs N (N > {old_epochs})"
        )
    cfg = replace(
        cfg,
        epochs=epochs,
        device=given.get("device", cfg.device),
        data=given["data"] if moved else cfg.data,
    )
    out = _resume_out_dir(path, step, out, overwrite)
    run = new_run(cfg, out, progress)
    trainer, blas = run.trainer, int(meta.get("blas_threads", 1))  # older runs: the demo's 1
    fresh_schedule = trainer.scheduler.state_dict() if trainer.scheduler is not None else None
    trainer.resume(path)
    trainer.extra_meta["blas_threads"] = blas
    if "extended" in meta:
        trainer.extra_meta["extended"] = list(meta["extended"])
    if epochs > old_epochs:
        notes.append(_extend(trainer, fresh_schedule, cfg, old_epochs))
        trainer.extra_meta.setdefault("extended", []).append(
            {"step": step, "from_epochs": old_epochs, "to_epochs": epochs}
        )
    _trim_log(Path(out) / "log.csv", step)
    return Run(trainer, cfg, blas, notes)


def _resume_out_dir(path: Path, step: int, out: str | Path | None, overwrite: bool) -> Path:
    """The checkpoint's own folder (where its checkpoint.npz must not be a later step than
    ``path``), or another one, which must be empty or ``overwrite``."""
    out = path.parent if out is None else Path(out)
    if out.resolve() != path.parent.resolve():
        check_out_dir(out, overwrite)
        return out
    latest = out / "checkpoint.npz"
    if latest.exists() and latest.resolve() != path.resolve():
        later = int(read_meta(latest).get("step", 0))
        if later > step:
            raise FileExistsError(
                f"{latest} is at step {later}, later than {path} (step {step}): resuming here "
                f"would replace it; resume {latest}, or pass another --out"
            )
    return out


def _extend(trainer: Trainer, fresh_schedule: dict | None, cfg: RunConfig, old: int) -> str:
    """Lay the schedule over the extended run; returns the line that says what changed."""
    step, before = trainer.state.step, trainer.optimizer.lr
    total = cfg.epochs * len(trainer.train_loader)
    if trainer.scheduler is not None and fresh_schedule is not None:
        state = trainer.scheduler.state_dict()
        for name in type(trainer.scheduler).HYPERPARAMETERS:
            state[name] = fresh_schedule[name]
        trainer.scheduler.load_state_dict(state)
    return (
        f"extending the run from {old} to {cfg.epochs} epochs ({total} steps): the "
        f"{cfg.schedule} learning-rate schedule now spans them all, so at step {step} the lr "
        f"goes from {before:.4g} to {trainer.optimizer.lr:.4g}"
    )


def _trim_log(path: Path, step: int) -> None:
    """Drop the log rows written after the checkpoint (a run killed between two saves)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [row for row in rows if row.get("step", "").isdigit() and int(row["step"]) <= step]
    if len(kept) == len(rows):
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


# --- running -------------------------------------------------------------------------------------


def fit_run(run: Run) -> tuple[dict, float]:
    """Train ``run`` to its last epoch with its BLAS threads pinned and Ctrl-C caught; returns
    (validation metrics, seconds). Ctrl-C raises ``tinyfcn.train.TrainingInterrupted`` after
    saving the step reached; a second Ctrl-C stops at once, without saving."""
    # float overflow warnings would come a line each; a NaN loss ends the run with one line
    quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore")
    with blas_threads(run.blas_threads), quiet:
        start = time.perf_counter()
        with stop_on_interrupt(run.trainer):
            run.trainer.fit(run.cfg.epochs)
        seconds = time.perf_counter() - start
        return run.trainer.evaluate(), seconds  # saved already: Ctrl-C here just stops


@contextmanager
def stop_on_interrupt(trainer: Trainer) -> Iterator[None]:
    """While the block runs, SIGINT (Ctrl-C) asks ``trainer`` to stop at the next step."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # e.g. a background shell job
    ):
        yield
        return

    def request_stop(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt  # the second Ctrl-C: the user will not wait
        trainer.stop_requested = True

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
