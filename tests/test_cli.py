"""The `tinyfcn` command: subcommands run and print what they promise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tinyfcn.cli import main
from tinyfcn.models import FCN8s
from tinyfcn.models.summary import summary_rows


def test_gradcheck_command_passes_and_prints_a_table(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "ConvTranspose2d k16 s8" in out and "all passed" in out


def test_gradcheck_command_fails_with_an_impossible_tolerance(capsys):
    assert main(["gradcheck", "--tol", "0"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_summary_command_shows_the_paper_geometry(capsys):
    assert main(["summary", "fcn8s", "--size", "500", "500", "--width", "0.0625"]) == 0
    out = capsys.readouterr().out
    assert "crop offsets: score_pool4 5, score_pool3 9, upscore8 31" in out
    assert "(21, 500, 500)" in out


def test_summary_rows_follow_500_to_16_and_back():
    rows = {r.name: r for r in summary_rows(FCN8s(width=1 / 32), (500, 500))}
    assert rows["conv1_1"].shape[1:] == (698, 698)  # padding 100
    assert rows["pool5"].shape[1:] == (22, 22)
    assert rows["fc6"].shape[1:] == (16, 16)
    assert rows["upscore8"].shape[1:] == (568, 568)
    assert rows["scores"].shape == (21, 500, 500)
    assert rows["pool5"].rf == 212 and str(rows["pool5"].scale) == "1/32"


def test_summary_flops_of_full_width_conv1_2():
    rows = {r.name: r for r in summary_rows(FCN8s(geometry="compact", width=1 / 32), (224, 224))}
    c = rows["conv1_2"].shape[0]
    assert rows["conv1_2"].flops == 2 * c * c * 9 * 224 * 224


def test_demo_runs_end_to_end_and_writes_metrics_and_figures(tmp_path, monkeypatch, capsys):
    """The main job, in its quick form (TINYFCN_QUICK=1: a few images, one epoch)."""
    import json

    from PIL import Image

    monkeypatch.setenv("TINYFCN_QUICK", "1")
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou", "iou"):
        assert key in metrics
    assert 0.0 <= metrics["mean_iou"] <= 1.0 and set(metrics["iou"]) >= {"background", "ring"}
    for png in ("predictions.png", "learning_curve.png"):
        with Image.open(tmp_path / png) as image:
            assert image.size[0] > 200
    assert (tmp_path / "checkpoint.npz").exists()
    assert "mean IU" in capsys.readouterr().out


def test_demo_takes_a_longer_run_from_the_command_line(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("TINYFCN_QUICK", "1")
    argv = ["demo", "--out", str(tmp_path), "--no-progress", "--train-images", "24"]
    assert main(argv + ["--batch", "4"]) == 0
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert (config["train_images"], config["batch_size"]) == (24, 4)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path), "--train-images", "0"])
    assert exit_info.value.code != 0
    assert "positive integer" in capsys.readouterr().err


def test_python_dash_m_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "tinyfcn", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("gradcheck", "bench", "summary", "demo"):
        assert command in out


@pytest.mark.parametrize("command", ["gradcheck", "summary", "demo", "bench"])
def test_each_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: tinyfcn" in capsys.readouterr().out


def test_train_evaluate_predict_round_trip(tmp_path, capsys):
    """train writes checkpoints; evaluate and predict rebuild the model from them."""
    from PIL import Image

    run = tmp_path / "run"
    base = ["train", "--width", "0.0625", "--fc-channels", "16", "--size", "32"]
    base += ["--train-images", "16", "--val-images", "8", "--batch", "4", "--out", str(run)]
    base += ["--no-progress"]
    assert main(base + ["--epochs", "1"]) == 0
    assert "mean IU" in capsys.readouterr().out
    assert main(["evaluate", str(run / "checkpoint.npz"), "--images", "8"]) == 0
    out = capsys.readouterr().out
    assert "pixel accuracy" in out and "ring" in out
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), np.uint8)).save(photo)
    assert main(["predict", str(run / "best.npz"), str(photo), "--out", str(tmp_path / "p")]) == 0
    labels = np.array(Image.open(tmp_path / "p" / "photo_labels.png"))
    assert labels.shape == (45, 70) and labels.max() < 5
    assert (tmp_path / "p" / "photo_overlay.png").exists()
    # resume continues the same run for one more epoch
    assert main(base + ["--epochs", "2", "--resume", str(run / "checkpoint.npz")]) == 0
    assert "resumed" in capsys.readouterr().out


def test_predict_names_a_missing_image(tmp_path, capsys):
    run = tmp_path / "run"
    main(
        [
            "train",
            "--width",
            "0.0625",
            "--fc-channels",
            "8",
            "--size",
            "32",
            "--train-images",
            "8",
            "--val-images",
            "4",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--out",
            str(run),
            "--no-progress",
        ]
    )
    assert main(["predict", str(run / "checkpoint.npz"), str(tmp_path / "nope.png")]) == 1
    err = capsys.readouterr().err
    assert "nope.png" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_input_is_one_line_and_a_non_zero_exit_not_a_traceback(tmp_path):
    """Run as a user would: a missing checkpoint and a corrupt one."""
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    for path in (tmp_path / "missing.npz", corrupt):
        result = subprocess.run(
            [sys.executable, "-m", "tinyfcn", "evaluate", str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, result.stderr
        assert path.name in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_debug_environment_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFCN_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        main(["evaluate", str(tmp_path / "missing.npz")])


def test_demo_compare_writes_the_side_by_side_table(tmp_path):
    from tinyfcn.demo import run_demo

    run_demo(tmp_path, compare=True, progress=False, quick=True)
    table = (tmp_path / "comparison.md").read_text()
    for name in ("FCN-32s", "FCN-16s", "FCN-8s"):
        assert name in table
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    assert (tmp_path / "fcn32s" / "checkpoint.npz").exists()
