"""Trainer: the training loop, validation with the paper's metrics, checkpoints and exact resume.

One step: ``scores = model(images)``, ``loss = criterion(scores, labels)``, ``model.backward(
criterion.backward())``, ``optimizer.step()``. Every ``val_every`` steps (default: each epoch) the
model is evaluated on the validation loader with one confusion matrix over the whole split.

Nothing is lost: ``checkpoint.npz`` (the latest state) and ``best.npz`` (best mean IU) are written
atomically (``tinyfcn.io``); ``Trainer.resume(path)`` restores weights, optimizer buffers, the
schedule, the dropout generators and the position in the data, so that a resumed run ends
bit-identical to an uninterrupted one with the same seed. A non-finite loss stops training with
``TrainingDiverged`` and leaves the last good checkpoint in place. Setting ``stop_requested``
(``tinyfcn.runs`` does on Ctrl-C) ends ``fit`` at the next step boundary with a checkpoint of that
step and ``TrainingInterrupted``.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import io, nn
from .backend import asnumpy, to_device
from .metrics import ConfusionMatrix

LOG_FIELDS = (
    "step",
    "epoch",
    "train_loss",
    "lr",
    "images_per_s",
    "val_loss",
    "pixel_accuracy",
    "mean_accuracy",
    "mean_iou",
    "fw_iou",
    "seconds",
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` stopped on request (Ctrl-C) after saving the step it had reached."""

    def __init__(self, step: int, epoch: int, checkpoint: Path | None):
        super().__init__(f"interrupted at step {step} (epoch {epoch})")
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint


class _Stop(Exception):
    """Raised inside ``fit`` (also from a validation pass) once ``stop_requested`` is set."""


@dataclass
class TrainState:
    """Where training stands: enough, with the weights and buffers, to resume exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within ``epoch``
    best_mean_iou: float = -1.0
    history: list[dict] = field(default_factory=list)
    loss_window: list[float] = field(default_factory=list)  # losses since the last log row
    pending_row: dict | None = None  # a log row whose validation a stop interrupted


def _dropout_layers(model: nn.Module) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Dropout)]


class Trainer:
    """Train ``model`` on ``train_loader`` (a ``tinyfcn.data.DataLoader``).

    ``optimizer``: a ``tinyfcn.optim`` optimizer over ``model.named_parameters()``;
    ``scheduler``: optional, stepped once per training step; ``out_dir``: where ``log.csv``,
    ``checkpoint.npz`` and ``best.npz`` go (None: nothing is written);
    ``extra_meta``: JSON-serialisable facts saved with every checkpoint (e.g. normalisation).
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader,
        optimizer,
        *,
        val_loader=None,
        num_classes: int | None = None,
        criterion: nn.CrossEntropyLoss | None = None,
        scheduler=None,
        out_dir: str | Path | None = None,
        device: str = "cpu",
        val_every: int | None = None,
        checkpoint_every: int | None = None,
        log_every: int = 10,
        progress: bool = True,
        extra_meta: dict | None = None,
    ):
        self.model = model.to(device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.optimizer, self.scheduler = optimizer, scheduler
        self.criterion = criterion or nn.CrossEntropyLoss()
        self.num_classes = num_classes or getattr(model, "num_classes", None)
        self.device = device
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.val_every = val_every or len(train_loader)
        self.checkpoint_every = checkpoint_every or self.val_every
        self.log_every, self.progress = log_every, progress
        self.extra_meta = dict(extra_meta or {})
        self.state = TrainState()
        self.stop_requested = False  # set from a signal handler; fit stops at a step boundary
        self._saved_step: int | None = None  # the step of the last checkpoint.npz written
        self._fitting = False
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    # --- one step ----------------------------------------------------------------------------

    def train_step(self, images: Any, labels: Any) -> float:
        """Forward, loss, backward, update. Returns the loss; raises TrainingDiverged."""
        self.model.train()
        self.model.zero_grad()
        scores = self.model(to_device(images, self.device))
        try:
            loss = float(self.criterion(scores, to_device(labels, self.device)))
        except ValueError as error:
            if "NaN or inf" not in str(error):
                raise
            loss = math.nan
        if not math.isfinite(loss):
            raise TrainingDiverged(self._diverged(f"the loss is {loss}"))
        self.model.backward(self.criterion.backward())
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    def _diverged(self, what: str) -> str:
        """One line: where training diverged, and which checkpoint (if any) is good."""
        if self._saved_step is not None:
            kept = f"the last good checkpoint is {self.out_dir / 'checkpoint.npz'} (step "
            kept += f"{self._saved_step})"
        else:
            kept = "no checkpoint was written before it"
        return (
            f"{what} at step {self.state.step} (epoch {self.state.epoch}): training diverged; "
            f"lower the learning rate ({kept})"
        )

    # --- evaluation --------------------------------------------------------------------------

    def evaluate(self, loader=None) -> dict:
        """Mean loss and the four FCN metrics over a whole loader (one confusion matrix)."""
        loader = loader or self.val_loader
        confusion = ConfusionMatrix(self.num_classes, ignore_index=self.criterion.ignore_index)
        was_training = self.model.training
        self.model.eval()
        losses, weights = [], []
        with nn.no_grad():
            for images, labels in loader.epoch(0):
                if self.stop_requested and self._fitting:
                    self.model.train(was_training)
                    raise _Stop
                scores = self.model(to_device(images, self.device))
                labels_d = to_device(labels, self.device)
                losses.append(float(self.criterion(scores, labels_d)))
                weights.append(int((asnumpy(labels) != self.criterion.ignore_index).sum()))
                confusion.update(labels, asnumpy(scores.argmax(axis=1)))
        self.model.train(was_training)
        result = confusion.compute()
        result["val_loss"] = float(np.average(losses, weights=np.maximum(weights, 1)))
        return result

    # --- the loop ----------------------------------------------------------------------------

    def fit(self, epochs: int, max_steps: int | None = None) -> list[dict]:
        """Train until ``epochs`` epochs are done (counting those before a resume), or until
        ``max_steps`` steps in all; a checkpoint is written at the end either way. The last
        step of the last epoch is always validated (so a short run too has ``best.npz``).
        Raises ``TrainingInterrupted`` (after saving) once ``stop_requested`` is set."""
        bar = self._progress_bar(epochs)
        self._fitting = True
        try:
            self._loop(epochs, max_steps, bar)
        except _Stop:
            pass
        finally:
            self._fitting = False
            if bar is not None:
                bar.leave = not self.stop_requested  # stopped: one line says where, not two
                bar.close()
        s = self.state
        if self.stop_requested:
            raise TrainingInterrupted(s.step, s.epoch, self.save_checkpoint())
        self.save_checkpoint()
        return s.history

    def _loop(self, epochs: int, max_steps: int | None, bar) -> None:
        seen, started = 0, time.perf_counter()
        s = self.state
        window = s.loss_window  # kept in checkpoints: a resumed run logs the same mean
        if s.pending_row is not None:  # stopped while validating: validate that step now
            self._validate_and_log(dict(s.pending_row), bar)
        while s.epoch < epochs and (max_steps is None or s.step < max_steps):
            for images, labels in self.train_loader.epoch(s.epoch, start_batch=s.batch):
                t0 = time.perf_counter()
                loss = self.train_step(images, labels)
                s.step, s.batch = s.step + 1, s.batch + 1
                window.append(loss)
                seen += len(images)
                rate = len(images) / max(time.perf_counter() - t0, 1e-9)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}", refresh=False)
                    bar.update(1)  # redraws at most every mininterval seconds
                if s.batch == len(self.train_loader):
                    s.epoch, s.batch = s.epoch + 1, 0
                validate = self.val_loader is not None and (
                    s.step % self.val_every == 0 or s.epoch >= epochs  # and at the very end
                )
                if s.step % self.log_every == 0 or validate:
                    row = {
                        "step": s.step,
                        "epoch": round(s.step / len(self.train_loader), 3),
                        "train_loss": float(np.mean(window)),
                        "lr": self.optimizer.lr,
                        "images_per_s": seen / (time.perf_counter() - started),
                        "seconds": time.perf_counter() - started,
                    }
                    window.clear()
                    seen, started = 0, time.perf_counter()
                    if validate:
                        self._validate_and_log(row, bar)
                    else:
                        self._log(row)
                if s.step % self.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.stop_requested:
                    raise _Stop
                if s.step == max_steps:
                    break

    def _validate_and_log(self, row: dict, bar) -> None:
        """Validate, then log ``row`` with the metrics; a stop during validation leaves the row
        pending in the state (and so in the checkpoint) for the resumed run to finish."""
        self.state.pending_row = row
        row.update(self._validate(bar))
        self.state.pending_row = None
        self._log(row)

    def _validate(self, bar) -> dict:
        try:
            metrics = self.evaluate()
        except ValueError as error:
            if "NaN or inf" not in str(error):
                raise
            raise TrainingDiverged(self._diverged("the validation scores are NaN or inf")) from None
        row = {
            k: metrics[k]
            for k in ("val_loss", "pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou")
        }
        line = (
            f"step {self.state.step}: val loss {row['val_loss']:.4f}, mean IU "
            f"{row['mean_iou']:.4f}, pixel acc {row['pixel_accuracy']:.4f}"
        )
        if bar is not None:
            bar.write(line)
        elif self.progress:
            print(line)
        if row["mean_iou"] > self.state.best_mean_iou:
            self.state.best_mean_iou = row["mean_iou"]
            if self.out_dir is not None:
                self._write(self.out_dir / "best.npz", metrics=row)
        return row

    def _log(self, row: dict) -> None:
        self.state.history.append(row)
        if self.out_dir is None:
            return
        path = self.out_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})

    def _progress_bar(self, epochs: int):
        if not self.progress:
            return None
        from .progress import progress_bar

        total = epochs * len(self.train_loader)
        return progress_bar(total, min(self.state.step, total), type(self.model).__name__)

    # --- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the whole training state (atomically) to ``path`` or ``out_dir/checkpoint.npz``."""
        if path is None and self.out_dir is None:
            return None
        written = self._write(Path(path) if path else self.out_dir / "checkpoint.npz")
        if path is None:
            self._saved_step = self.state.step
        return written

    def _write(self, path: Path, **meta: Any) -> Path:
        s = self.state
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        dropout = {name: m.rng.bit_generator.state for name, m in _dropout_layers(self.model)}
        io.save_checkpoint(
            path,
            self.model,
            state=state,
            step=s.step,
            epoch=s.epoch,
            batch=s.batch,
            best_mean_iou=s.best_mean_iou,
            history=s.history,
            loss_window=s.loss_window,
            pending_row=s.pending_row,
            dropout_rngs=_jsonable(dropout),
            **self.extra_meta,
            **meta,
        )
        return path

    def resume(self, path: str | Path) -> TrainState:
        """Restore everything ``save_checkpoint`` wrote; ``fit`` then continues where it was."""
        ckpt = io.load_checkpoint(path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["state"]["optimizer"])
        if self.scheduler is not None and "scheduler" in ckpt["state"]:
            self.scheduler.load_state_dict(ckpt["state"]["scheduler"])
        meta = ckpt["meta"]
        for name, m in _dropout_layers(self.model):
            if name in meta.get("dropout_rngs", {}):
                m.rng.bit_generator.state = _from_jsonable(meta["dropout_rngs"][name])
        self.state = TrainState(
            meta["step"],
            meta["epoch"],
            meta["batch"],
            meta["best_mean_iou"],
            list(meta.get("history", [])),
            [float(v) for v in meta.get("loss_window", [])],  # absent before 2026-12-06
            meta.get("pending_row"),
        )
        own = self.out_dir is not None and self.out_dir / "checkpoint.npz"
        if own and Path(path).resolve() == own.resolve():
            self._saved_step = self.state.step
        return self.state


def _jsonable(value: Any) -> Any:
    """Generator states hold Python ints beyond 64 bits: keep them as strings for JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"__int__": str(value)}
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__int__"}:
            return int(value["__int__"])
        return {k: _from_jsonable(v) for k, v in value.items()}
    return value
