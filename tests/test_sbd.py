"""SBD (benchmark_RELEASE/dataset: img/*.jpg, cls/*.mat, train.txt, val.txt), the training set of
pytorch-fcn, on a tree written here with scipy.io.savemat, read as a user runs the command."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from PIL import Image

from tests.cli_run import REPO, run_tinyfcn, tiny_checkpoint

scipy_io = pytest.importorskip("scipy.io")

SIZES = {"2008_000002": (37, 45), "2008_000003": (40, 33), "2008_000007": (29, 50)}


def _write_label(path, label):
    """As SBD stores it: a MATLAB struct GTcls with Segmentation, Boundaries, CategoriesPresent."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = np.zeros((1, 1), np.uint8)
    present = np.unique(label[(label > 0) & (label < 255)]).reshape(-1, 1).astype(np.uint8)
    gt = {"Segmentation": label, "Boundaries": boundaries, "CategoriesPresent": present}
    scipy_io.savemat(str(path), {"GTcls": gt})


@pytest.fixture(scope="module")
def sbd(tmp_path_factory):
    """benchmark_RELEASE/dataset with three images: two for train, one for val."""
    release = tmp_path_factory.mktemp("sbd") / "benchmark_RELEASE"
    root = release / "dataset"
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    rng = np.random.default_rng(0)
    labels = {}
    for name, (h, w) in SIZES.items():
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "img" / f"{name}.jpg", quality=95)
        label = rng.integers(0, 21, (h, w)).astype(np.uint8)
        label[0, :] = 255  # SBD has no borders, but the reader must keep 255 (ignore) intact
        _write_label(root / "cls" / f"{name}.mat", label)
        labels[name] = label
    (root / "train.txt").write_text("2008_000002\n2008_000003\n")
    (root / "val.txt").write_text("2008_000007\n")
    return release, root, labels


def test_savemat_of_a_struct_reads_back_as_sbd_files_do(sbd):
    _, root, labels = sbd
    mat = scipy_io.loadmat(str(root / "cls" / "2008_000002.mat"))
    assert mat["GTcls"].shape == (1, 1) and "Segmentation" in mat["GTcls"].dtype.names
    np.testing.assert_array_equal(mat["GTcls"][0]["Segmentation"][0], labels["2008_000002"])


def test_sbd_segmentation_reads_images_and_labels(sbd):
    from tinyfcn.data import SBDSegmentation, is_sbd_root, read_image

    release, root, labels = sbd
    assert is_sbd_root(release) and is_sbd_root(root) and not is_sbd_root(root / "img")
    train = SBDSegmentation(release, "train")  # benchmark_RELEASE itself is accepted
    assert len(train) == 2 and train.root == root
    image, label = train[1]
    assert image.shape == (3, 40, 33) and image.dtype == np.float32
    np.testing.assert_array_equal(image, read_image(root / "img" / "2008_000003.jpg"))
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, labels["2008_000003"])
    assert len(SBDSegmentation(root, "val")) == 1
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*'train', 'val'"):
        SBDSegmentation(root, "test")


def test_a_listed_file_that_is_missing_is_named(sbd, tmp_path):
    from tinyfcn.data import SBDSegmentation

    _, root, _ = sbd
    (tmp_path / "img").mkdir()
    (tmp_path / "cls").mkdir()
    (tmp_path / "train.txt").write_text("2008_000002\n")
    Image.open(root / "img" / "2008_000002.jpg").save(tmp_path / "img" / "2008_000002.jpg")
    with pytest.raises(FileNotFoundError, match=r"cls/2008_000002\.mat"):
        SBDSegmentation(tmp_path, "train")


def test_train_and_evaluate_take_an_sbd_folder(sbd, tmp_path):
    """train --data benchmark_RELEASE, then evaluate --data .../dataset: the metrics printed are
    those of the checkpoint's predictions against the .mat labels of val.txt."""
    from tinyfcn.data import SBDSegmentation
    from tinyfcn.experiment import model_from_checkpoint, predict_image
    from tinyfcn.metrics import ConfusionMatrix

    release, root, _ = sbd
    run = tmp_path / "run"
    trained = run_tinyfcn(
        "train", "--data", release, "--width", "0.0625", "--fc-channels", "8", "--size", "32",
        "--epochs", "1", "--batch", "2", "--out", run, "--no-progress",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = run_tinyfcn("evaluate", run / "checkpoint.npz", "--data", root)
    assert result.returncode == 0, result.stderr
    model, meta = model_from_checkpoint(run / "checkpoint.npz")
    cm = ConfusionMatrix(21)
    for image, label in SBDSegmentation(root, "val"):
        cm.update(label[None], predict_image(model, image, meta)[None])
    expected = cm.compute()
    printed = float(re.search(r"mean IU\s+([0-9.]+)", result.stdout).group(1))
    assert printed == pytest.approx(expected["mean_iou"], abs=6e-5)
    assert "aeroplane" in result.stdout and "tvmonitor" in result.stdout


def test_a_label_file_that_is_not_sbd_is_one_line_naming_it(sbd, tmp_path):
    _, root, _ = sbd
    bad = tmp_path / "dataset"
    for sub in ("img", "cls"):
        (bad / sub).mkdir(parents=True)
    Image.open(root / "img" / "2008_000007.jpg").save(bad / "img" / "x.jpg")
    scipy_io.savemat(str(bad / "cls" / "x.mat"), {"labels": np.zeros((3, 3), np.uint8)})
    (bad / "train.txt").write_text("x\n")
    (bad / "val.txt").write_text("x\n")
    ckpt = tiny_checkpoint(tmp_path / "ckpt.npz", classes=21)
    result = run_tinyfcn("evaluate", ckpt, "--data", bad)
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "x.mat" in err[0] and "GTcls" in err[0], result.stderr


def test_without_scipy_the_error_is_one_clear_line(sbd, tmp_path):
    import subprocess

    _, root, _ = sbd
    ckpt = tiny_checkpoint(tmp_path / "ckpt.npz", classes=21)
    code = (
        "import sys; sys.modules['scipy'] = None; sys.modules['scipy.io'] = None\n"
        "from tinyfcn.cli import main\n"
        f"sys.exit(main(['evaluate', {str(ckpt)!r}, '--data', {str(root)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "SciPy" in err[0] and "pip install" in err[0], result.stderr


def test_evaluate_help_names_sbd_and_shows_defaults():
    result = run_tinyfcn("evaluate", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for phrase in ("SBD folder", "benchmark_RELEASE/dataset", "(default: cpu)", "(default: None)"):
        assert phrase in text, phrase


def test_evaluate_names_a_split_that_is_not_there(sbd, tmp_path, capsys):
    from tinyfcn.cli import main

    _, root, _ = sbd
    ckpt = tiny_checkpoint(tmp_path / "ckpt.npz", classes=21)
    assert main(["evaluate", str(ckpt), "--data", str(root), "--split", "seg11valid"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seg11valid.txt" in err[0] and "'train', 'val'" in err[0], err
    shapes = tiny_checkpoint(tmp_path / "shapes.npz", classes=5)
    assert main(["evaluate", str(shapes), "--split", "test"]) == 1
    assert "--split test" in capsys.readouterr().err
