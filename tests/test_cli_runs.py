"""`tinyfcn train` as a user runs it (a subprocess, no terminal): runs are never replaced by
accident, resume keeps the run's own settings and ends bit-identical, Ctrl-C saves, errors are
one line naming what to change, and progress in a log stays short (issue 12)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyfcn import io
from tinyfcn.data import save_label_png

ROOT = Path(__file__).resolve().parents[1]
# a tiny network on 32x32 shapes: a step takes a few milliseconds
TINY = ["--width", "0.0625", "--fc-channels", "16", "--size", "32", "--val-images", "8"]


def tinyfcn(*args: str, env: dict | None = None, timeout: float = 120):
    """``python -m tinyfcn ARGS`` with stdin closed and output captured (so no TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "tinyfcn", *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(env),
    )


def _env(extra: dict | None = None) -> dict:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OPENBLAS_THREAD_TIMEOUT": "4", **(extra or {})}


def one_error_line(result, *names: str) -> str:
    """The run failed with exactly one line on stderr, and that line names each of ``names``."""
    assert result.returncode not in (0, None), result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def model_bytes(path: Path) -> dict[str, bytes]:
    with np.load(path) as f:
        return {k: f[k].tobytes() for k in f.files if k.startswith("model/")}


def small_run(out: Path, *extra: str, images: int = 8, batch: int = 4) -> None:
    args = ["train", *TINY, "--train-images", images, "--batch", batch, "--epochs", "1"]
    result = tinyfcn(*args, "--out", out, "--no-progress", *extra)
    assert result.returncode == 0, result.stderr


# --- 1. an earlier run is never replaced by accident ---------------------------------------------


def test_train_refuses_a_folder_that_holds_a_run_until_told(tmp_path):
    run = tmp_path / "run"
    small_run(run)
    before = {name: (run / name).read_bytes() for name in ("checkpoint.npz", "best.npz", "log.csv")}
    args = ["train", *TINY, "--train-images", "8", "--batch", "4", "--epochs", "1"]
    refused = tinyfcn(*args, "--out", run, "--no-progress", "--lr", "0.002")
    line = one_error_line(refused, str(run), "--resume", "--out", "--overwrite")
    assert "not empty" in line
    assert {name: (run / name).read_bytes() for name in before} == before  # untouched

    replaced = tinyfcn(*args, "--out", run, "--no-progress", "--lr", "0.002", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2"]  # a fresh log, not appended to the old one
    assert io.load_checkpoint(run / "checkpoint.npz")["meta"]["run"]["lr"] == 0.002


# --- 2. --resume takes the run's settings from the checkpoint -------------------------------------


def test_resume_alone_keeps_the_runs_settings_and_refuses_changes(tmp_path):
    run = tmp_path / "run"
    small_run(run, "--lr", "0.002")  # a finished run of 2 steps at width 1/16
    ckpt = run / "checkpoint.npz"
    saved = ckpt.read_bytes()

    finished = tinyfcn("train", "--resume", ckpt, "--no-progress")
    one_error_line(finished, str(ckpt), "finished", "--epochs")
    changed = tinyfcn("train", "--resume", ckpt, "--lr", "5", "--batch", "2", "--no-progress")
    one_error_line(changed, "--lr 5.0", "--lr 0.002", "--batch 2", "--batch 4", str(ckpt))
    same = tinyfcn("train", "--resume", ckpt, "--epochs", "1", "--no-progress")
    one_error_line(same, "finished")
    assert ckpt.read_bytes() == saved  # nothing was written by the refusals

    # extending is defined: the schedule is laid over 2 epochs and the log shows the lr jump
    extended = tinyfcn("train", "--resume", ckpt, "--epochs", "2", "--no-progress")
    assert extended.returncode == 0, extended.stderr
    assert (
        "resumed" in extended.stdout and "extending the run from 1 to 2 epochs" in extended.stdout
    )
    meta = io.load_checkpoint(ckpt)["meta"]
    assert meta["run"]["width"] == 0.0625 and meta["run"]["lr"] == 0.002
    assert meta["run"]["epochs"] == 2 and meta["step"] == 4
    assert meta["extended"] == [{"step": 2, "from_epochs": 1, "to_epochs": 2}]
    lrs = {int(r["step"]): float(r["lr"]) for r in csv.DictReader(open(run / "log.csv"))}
    assert lrs[2] == 0.0 and lrs[4] == 0.0  # the end of each schedule
    assert 0 < lrs[3] < 0.002  # trained, not at lr 0


def test_resume_pins_the_blas_threads_the_run_was_made_with(tmp_path, monkeypatch):
    from tinyfcn import blas
    from tinyfcn.cli import main
    from tinyfcn.train import Trainer

    if blas.get_blas_threads() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS found at run time")
    run = tmp_path / "run"
    small_run(run)
    assert io.load_checkpoint(run / "checkpoint.npz")["meta"]["blas_threads"] == 1
    seen = []
    fit = Trainer.fit

    def spying_fit(self, *args, **kwargs):
        seen.append(blas.get_blas_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spying_fit)
    before = blas.get_blas_threads()
    blas.set_blas_threads(2)
    try:
        ckpt = str(run / "checkpoint.npz")
        assert main(["train", "--resume", ckpt, "--epochs", "2", "--no-progress"]) == 0
        assert blas.get_blas_threads() == 2  # restored afterwards
    finally:
        blas.set_blas_threads(before)
    assert seen == [1]


# --- 4. Ctrl-C saves the step reached; resume ends bit-identical ----------------------------------


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    args = ["train", *TINY, "--train-images", "240", "--batch", "2", "--epochs", "1"]
    straight = tinyfcn(*args, "--out", tmp_path / "straight", "--no-progress")
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "tinyfcn", *map(str, args), "--out", str(run), "--no-progress"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 60
    while not (run / "log.csv").exists():  # the first log row: it is stepping
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, (out, err)
    line = one_error_line(
        subprocess.CompletedProcess([], 130, out, err), "interrupted at step", "--resume"
    )
    step = io.load_checkpoint(run / "checkpoint.npz")["meta"]["step"]
    assert 10 <= step < 120 and f"step {step}" in line and str(run / "checkpoint.npz") in line
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    # resume as the line says, under another BLAS thread setting of the shell
    resumed = tinyfcn(
        "train", "--resume", run / "checkpoint.npz", env={"OPENBLAS_NUM_THREADS": "2"}
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {step}" in resumed.stdout
    ours, theirs = (
        model_bytes(run / "checkpoint.npz"),
        model_bytes(tmp_path / "straight" / "checkpoint.npz"),
    )
    assert ours.keys() == theirs.keys() and len(ours) > 10
    assert [k for k in ours if ours[k] != theirs[k]] == []
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == 120  # no step logged twice
    # the log too, all but the timings: the row after the stop averages the losses of its whole
    # window, those before the stop included (kept in the checkpoint)
    timing = ("images_per_s", "seconds")

    def rows(path):
        return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(open(path))]

    assert rows(run / "log.csv") == rows(tmp_path / "straight" / "log.csv")


def test_a_killed_write_leaves_no_temporary_file_after_the_next_one(tmp_path):
    run = tmp_path / "run"
    small_run(run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs
    stale = run / f".checkpoint.npz.{dead.pid}.x1y2z3.tmp"
    stale.write_bytes(b"half a checkpoint")
    alive = run / f".checkpoint.npz.{os.getppid()}.abcdef.tmp"  # a live writer's file stays
    alive.write_bytes(b"being written")
    resumed = tinyfcn("train", "--resume", run / "checkpoint.npz", "--epochs", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert not stale.exists() and alive.exists()


# --- 5. a VOC run validates on its own cadence; divergence names no phantom file ------------------


def write_voc(root: Path, train: dict, val: dict, bad: str | None = None) -> Path:
    """A tiny VOC tree: ``{id: (H, W)}`` for each split; ``bad``: an id whose mask holds 30."""
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, (h, w) in {**train, **val}.items():
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{name}.jpg")
        label = rng.integers(0, 21, (h, w))
        if name == bad:
            label[3:5, 3:5] = 30  # four pixels of a class VOC does not have
        save_label_png(label, root / "SegmentationClass" / f"{name}.png")
    for split, ids in (("train", train), ("val", val)):
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text(
            "".join(i + "\n" for i in ids)
        )
    return root


def test_a_small_voc_run_writes_its_log_and_best_checkpoint(tmp_path):
    voc = write_voc(tmp_path / "voc", {f"t{i}": (40, 36) for i in range(4)}, {"v0": (30, 40)})
    run = tmp_path / "run"
    result = tinyfcn(
        "train",
        *TINY,
        "--data",
        voc,
        "--batch",
        "2",
        "--epochs",
        "1",
        "--out",
        run,
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert rows and rows[-1]["step"] == "2" and rows[-1]["mean_iou"] != ""
    evaluated = tinyfcn("evaluate", run / "best.npz")  # as the README says
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mean IU" in evaluated.stdout


def test_divergence_at_the_first_steps_names_no_checkpoint_that_does_not_exist(tmp_path):
    run = tmp_path / "run"
    args = ["train", *TINY, "--train-images", "24", "--batch", "4", "--epochs", "1"]
    result = tinyfcn(*args, "--optimizer", "sgd", "--lr", "1e30", "--out", run, "--no-progress")
    line = one_error_line(result, "diverged", "at step")
    assert "no checkpoint was written" in line or str(run / "checkpoint.npz") in line
    if "checkpoint.npz" in line:
        assert (run / "checkpoint.npz").exists()


def test_a_loss_that_diverges_before_any_checkpoint_says_so(tmp_path):
    from dataclasses import replace

    from tinyfcn.experiment import RunConfig, build_trainer
    from tinyfcn.train import TrainingDiverged

    cfg = RunConfig(width=1 / 16, fc_channels=16, size=32, train_images=24, val_images=4)
    trainer = build_trainer(replace(cfg, batch_size=4), tmp_path, progress=False)
    trainer.optimizer.lr = 1e30  # the scores overflow after the first step
    with pytest.raises(TrainingDiverged, match="no checkpoint was written") as info:
        trainer.fit(1)
    assert "at step" in str(info.value) and not (tmp_path / "checkpoint.npz").exists()


# --- 9. every error is one line naming the flag, file or number at fault --------------------------


@pytest.mark.parametrize(
    "args, names",
    [
        (["--train-images", "2", "--batch", "4"], ["--train-images 2", "--batch 4"]),
        (["--batch", "0"], ["--batch", "0"]),
        (["--width", "0"], ["--width", "0"]),
        (["--val-images", "0"], ["--val-images", "0"]),
        (["--epochs", "0"], ["--epochs", "0"]),
    ],
    ids=["split-smaller-than-a-batch", "batch-0", "width-0", "val-images-0", "epochs-0"],
)
def test_bad_train_settings_are_one_line_naming_the_flag(tmp_path, args, names):
    result = tinyfcn("train", *TINY, *args, "--out", tmp_path / "run", "--no-progress")
    one_error_line(result, *names)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_bad_voc_trees_are_one_line_naming_the_file(tmp_path):
    train = {f"t{i}": (40, 36) for i in range(3)}
    base = ["train", *TINY, "--batch", "2", "--epochs", "1", "--no-progress"]
    empty_val = write_voc(tmp_path / "a", train, {})
    result = tinyfcn(*base, "--data", empty_val, "--out", tmp_path / "ra")
    one_error_line(result, str(empty_val / "ImageSets" / "Segmentation" / "val.txt"))
    one_image = write_voc(tmp_path / "b", {"t0": (40, 36)}, {"v0": (30, 30)})
    result = tinyfcn(*base, "--data", one_image, "--out", tmp_path / "rb")
    one_error_line(result, "train.txt", "--batch 2")
    four = {f"t{i}": (40, 36) for i in range(4)}  # two batches of 2: every mask is read
    label_30 = write_voc(tmp_path / "c", four, {"v0": (30, 30)}, bad="t1")
    result = tinyfcn(*base, "--data", label_30, "--out", tmp_path / "rc")
    one_error_line(result, str(label_30 / "SegmentationClass" / "t1.png"), "[30]")


def test_evaluating_a_checkpoint_on_data_with_other_classes_is_one_line(tmp_path):
    run = tmp_path / "run"
    small_run(run)  # shapes: 5 classes
    voc = write_voc(tmp_path / "voc", {"t0": (40, 36)}, {"v0": (30, 30)})
    result = tinyfcn("evaluate", run / "best.npz", "--data", voc)
    one_error_line(result, str(run / "best.npz"), "5 classes", "21")


def test_models_refuse_sizes_that_build_no_network():
    from tinyfcn.models import VGG16, FCN8s

    for build, name in (
        (lambda: FCN8s(num_classes=0), "num_classes"),
        (lambda: FCN8s(width=0), "width"),
        (lambda: VGG16(num_classes=0), "num_classes"),
        (lambda: VGG16(width=0.0), "width"),
        (lambda: FCN8s(fc_channels=0), "fc_channels"),
    ):
        with pytest.raises(ValueError, match=name):
            build()


# --- 10. progress in a log stays short; --help says what each flag does ---------------------------


def test_progress_without_a_terminal_is_a_few_lines_not_one_per_step(tmp_path):
    args = ["train", *TINY, "--train-images", "100", "--batch", "2", "--epochs", "1"]
    result = tinyfcn(*args, "--out", tmp_path / "run")  # progress on, stderr is a pipe
    assert result.returncode == 0, result.stderr
    updates = [part for part in result.stderr.replace("\r", "\n").splitlines() if part.strip()]
    assert 1 <= len(updates) <= 3, result.stderr  # the old bar drew more than one per step
    assert "50/50" in updates[-1]


def test_train_help_shows_each_flags_purpose_and_default():
    from tinyfcn.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("train", "evaluate", "demo"):
        for action in sub[command]._actions:
            assert action.help, f"tinyfcn {command} {action.option_strings or action.dest}"
    out = tinyfcn("train", "--help").stdout
    for text in ("--batch N", "(default: 16)", "(default: 0.125)", "--overwrite", "--resume"):
        assert text in out, text


def test_a_stop_during_validation_saves_the_step_and_resumes_bit_identically(tmp_path):
    """Ctrl-C while the validation set is being scored: the step is done, so it is saved."""
    from dataclasses import replace

    from tinyfcn.experiment import RunConfig, build_trainer
    from tinyfcn.train import TrainingInterrupted

    cfg = RunConfig(width=1 / 16, fc_channels=16, size=32, train_images=24, val_images=8)
    cfg = replace(cfg, batch_size=4, epochs=2)
    straight = build_trainer(cfg, tmp_path / "straight", progress=False)
    straight.fit(cfg.epochs)

    stopped = build_trainer(cfg, tmp_path / "run", progress=False)
    val_epoch = stopped.val_loader.epoch

    def epoch_then_ctrl_c(*args, **kwargs):
        stopped.stop_requested = True  # as the SIGINT handler of tinyfcn.runs does
        return val_epoch(*args, **kwargs)

    stopped.val_loader.epoch = epoch_then_ctrl_c
    with pytest.raises(TrainingInterrupted) as info:
        stopped.fit(cfg.epochs)
    assert info.value.step == len(stopped.train_loader)  # the first validation, end of epoch 1
    resumed = build_trainer(cfg, tmp_path / "run", progress=False)
    resumed.resume(info.value.checkpoint)
    resumed.fit(cfg.epochs)
    for (name, a), (_, b) in zip(
        straight.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        assert a.data.tobytes() == b.data.tobytes(), name
    # the interrupted step's row is logged by the resumed run, its validation done then
    timing = ("images_per_s", "seconds")

    def rows(path):
        return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(open(path))]

    assert rows(tmp_path / "run" / "log.csv") == rows(tmp_path / "straight" / "log.csv")
    assert [r["mean_iou"] != "" for r in rows(tmp_path / "run" / "log.csv")].count(True) >= 2


def test_progress_on_a_terminal_is_a_live_bar(tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    args = ["train", *TINY, "--train-images", "100", "--batch", "2", "--epochs", "1"]
    child = subprocess.Popen(
        [sys.executable, "-m", "tinyfcn", *args, "--out", str(tmp_path / "run")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=_env(),
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert child.wait(timeout=60) == 0
    drawn = b"".join(chunks).decode(errors="replace")
    assert drawn.count("\r") >= 2 and "50/50" in drawn  # redrawn in place: a live tqdm bar
