"""Trainer: it learns, it resumes bit-identically, it stops on divergence, it keeps checkpoints."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest

from tinyfcn import io
from tinyfcn.experiment import (
    RunConfig,
    build_trainer,
    model_from_checkpoint,
)
from tinyfcn.train import Trainer, TrainingDiverged

TINY = RunConfig(
    model="fcn8s",
    geometry="compact",
    width=1 / 16,
    fc_channels=16,
    size=32,
    train_images=24,
    val_images=8,
    epochs=2,
    batch_size=4,
    optimizer="adam",
    lr=3e-3,
    schedule="poly",
    seed=0,
)


def make_trainer(cfg: RunConfig, out_dir=None, **kwargs) -> Trainer:
    return build_trainer(cfg, out_dir, progress=False, **kwargs)


def test_training_reduces_the_loss(tmp_path):
    trainer = make_trainer(replace(TINY, epochs=3), tmp_path, log_every=1)
    first = trainer.evaluate()["val_loss"]
    trainer.fit(3)
    assert trainer.evaluate()["val_loss"] < first
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 3 * len(trainer.train_loader)
    assert rows[-1]["mean_iou"] != ""  # validated at the end of each epoch
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "best.npz").exists()


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    """Stop mid-epoch, resume in a fresh Trainer: the final weights equal the uninterrupted run's,
    bit for bit (data order, augmentation, dropout masks, optimizer and schedule restored)."""
    check_resume_is_bit_identical(tmp_path)


def test_resume_is_bit_identical_with_samples_shared_among_threads(tmp_path, monkeypatch):
    """The same with every convolution's samples shared out among two threads (shares.py)."""
    from tinyfcn.fast import plan, shares

    monkeypatch.setattr(plan, "get_blas_threads", lambda: 2)
    monkeypatch.setitem(plan.RULES, "shared_min_patch", 0)
    monkeypatch.setitem(plan.RULES, "shared_min_pixels", 0)
    threads = []
    sample_shares = shares.sample_shares
    monkeypatch.setattr(
        shares, "sample_shares", lambda n, t: threads.append(t) or sample_shares(n, t)
    )
    check_resume_is_bit_identical(tmp_path)
    assert max(threads) == 2


def check_resume_is_bit_identical(tmp_path):
    straight = make_trainer(TINY, tmp_path / "straight")
    straight.fit(TINY.epochs)

    first = make_trainer(TINY, tmp_path / "first")
    stop_at = 5  # mid-epoch: 6 batches per epoch
    first.fit(TINY.epochs, max_steps=stop_at)

    resumed = make_trainer(TINY, tmp_path / "resumed")
    state = resumed.resume(tmp_path / "first" / "checkpoint.npz")
    assert (state.step, state.epoch, state.batch) == (stop_at, 0, stop_at)
    resumed.fit(TINY.epochs)
    for (name, a), (_, b) in zip(
        straight.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    trainer = make_trainer(TINY, tmp_path, checkpoint_every=2)
    trainer.fit(1)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    trainer.optimizer.lr = 1e30  # an absurd learning rate makes the scores overflow
    with pytest.raises(TrainingDiverged, match="diverged"):
        trainer.fit(3)
    ckpt = io.load_checkpoint(tmp_path / "checkpoint.npz")
    assert all(np.isfinite(v).all() for v in ckpt["model"].values())
    assert ckpt["meta"]["step"] >= len(trainer.train_loader)
    del before


def test_model_from_checkpoint_rebuilds_the_network(tmp_path):
    trainer = make_trainer(replace(TINY, epochs=1), tmp_path)
    trainer.fit(1)
    model, meta = model_from_checkpoint(tmp_path / "checkpoint.npz")
    assert type(model) is type(trainer.model) and meta["class_names"][0] == "background"
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), trainer.model.predict(x))


def test_make_model_honours_every_model_setting_of_the_run():
    from tinyfcn.experiment import make_model

    cfg = replace(TINY, dropout=0.25, learnable_upsampling=True, fc6_kernel=1)
    model = make_model(cfg, 5)
    assert model.drop6.p == 0.25 and model.drop7.p == 0.25
    assert model.fc6.kernel_size == (1, 1)
    assert all(p.lr_mult == 1.0 for n, p in model.named_parameters() if n.startswith("upscore"))
    frozen = make_model(replace(TINY, learnable_upsampling=False), 5)
    assert all(p.lr_mult == 0.0 for n, p in frozen.named_parameters() if n.startswith("upscore"))
