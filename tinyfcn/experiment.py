"""The pieces a training run is assembled from: data, model, optimizer, and back from a checkpoint.

Used by ``tinyfcn train / evaluate / predict / demo`` and by the notebooks, so that a run on the
command line and a run in a notebook are built the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import io, models, optim
from .backend import to_device
from .data import (
    DataLoader,
    SBDSegmentation,
    ShapesDataset,
    VOCSegmentation,
    is_sbd_root,
    transforms,
)
from .nn import manual_seed

SHAPES_NORMALIZE = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
IMAGENET_NORMALIZE = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@dataclass
class RunConfig:
    """Everything that defines a training run (saved in every checkpoint's metadata)."""

    model: str = "fcn8s"
    geometry: str = "compact"
    width: float = 0.125
    fc_channels: int | None = None
    fc6_kernel: int = 7
    dropout: float = 0.5
    learnable_upsampling: bool = False
    data: str = "shapes"  # "shapes", the root of a PASCAL VOC tree, or SBD's dataset folder
    class_colours: bool = True  # shapes: each class has a typical hue (see ShapesDataset)
    ring_width: tuple[float, float] = (2.0, 4.0)  # shapes: width range of the rings, pixels
    object_scale: tuple[float, float] = (0.12, 0.45)  # shapes: object extent / image side
    size: int = 64  # shapes: image side; VOC: training crop side
    train_images: int = 2000
    val_images: int = 200
    epochs: int = 10
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "poly"  # "poly", "step" or "none"
    seed: int = 0
    device: str = "cpu"


def make_datasets(
    cfg: RunConfig, train: bool = True, val_split: str = "val"
) -> tuple[Any, Any, tuple[str, ...]]:
    """(train set, validation set, class names) for ``cfg.data``; the train set is None when
    ``train`` is False (``evaluate`` needs only the validation split to exist). ``val_split``
    names a folder's split file (VOC's ``ImageSets/Segmentation/<split>.txt``, SBD's
    ``<split>.txt``); shapes has only its held-out "val"."""
    if cfg.data == "shapes":
        if val_split != "val":
            raise ValueError(f"--split {val_split}: the shapes data has only the split 'val'")
        kw = dict(
            size=cfg.size,
            class_colours=cfg.class_colours,
            ring_width=cfg.ring_width,
            object_scale=cfg.object_scale,
        )
        val = ShapesDataset(cfg.val_images, seed=(cfg.seed, 1), **kw)  # held out
        train_set = ShapesDataset(cfg.train_images, seed=(cfg.seed, 0), **kw) if train else None
        return train_set, val, tuple(val.class_names)
    root = Path(cfg.data)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--data must be 'shapes', a PASCAL VOC folder or an SBD folder; {root} is none of them"
        )
    # SBD's train.txt / val.txt (pytorch-fcn's training set), else VOC's ImageSets/Segmentation
    cls = SBDSegmentation if is_sbd_root(root) else VOCSegmentation
    return cls(root, "train") if train else None, cls(root, val_split), tuple(cls.class_names)


def normalization(cfg: RunConfig) -> dict:
    return SHAPES_NORMALIZE if cfg.data == "shapes" else IMAGENET_NORMALIZE


def make_loaders(cfg: RunConfig, train, val) -> tuple[DataLoader, DataLoader]:
    norm = transforms.Normalize(**normalization(cfg))
    if cfg.data == "shapes":
        train_t = transforms.Compose([transforms.RandomHorizontalFlip(), norm])
        val_t = norm
        val_batch = max(cfg.batch_size, 16)  # evaluation needs no small batches
    else:  # VOC images differ in size: random crops for training, one image at a time to test
        train_t = transforms.Compose(
            [
                transforms.RandomScale(0.75, 1.25),
                transforms.RandomCrop(cfg.size),
                transforms.RandomHorizontalFlip(),
                norm,
            ]
        )
        val_t, val_batch = norm, 1
    return (
        DataLoader(
            train, cfg.batch_size, shuffle=True, seed=cfg.seed, transform=train_t, drop_last=True
        ),
        DataLoader(val, val_batch, shuffle=False, seed=cfg.seed, transform=val_t),
    )


def check_splits(cfg: RunConfig, train_loader: DataLoader, val_loader: DataLoader) -> None:
    """Refuse, before any training, a split too small to give one training batch or an empty
    validation split, naming the setting or file to change."""
    shapes = cfg.data == "shapes"
    sets = Path(cfg.data) / "ImageSets" / "Segmentation"
    n, batch = len(train_loader.dataset), cfg.batch_size
    if len(train_loader) == 0:
        where = f"--train-images {n}" if shapes else f"{sets / 'train.txt'} lists {n} images"
        raise ValueError(
            f"the training split holds {n} images, fewer than one batch of {batch} ({where}, "
            f"--batch {batch}): give it at least {batch} images or lower --batch"
        )
    if len(val_loader.dataset) == 0:
        where = "--val-images 0" if shapes else f"{sets / 'val.txt'} lists no images"
        raise ValueError(f"the validation split is empty ({where}): it needs at least one image")


def make_model(cfg: RunConfig, num_classes: int):
    """The network of ``cfg``, initialised from ``cfg.seed`` (weights and dropout generators)."""
    manual_seed(cfg.seed)
    cls = models.MODELS[cfg.model]
    return cls(
        num_classes=num_classes,
        geometry=cfg.geometry,
        width=cfg.width,
        fc_channels=cfg.fc_channels,
        fc6_kernel=cfg.fc6_kernel,
        dropout=cfg.dropout,
        learnable_upsampling=cfg.learnable_upsampling,
    )


def make_optimizer(cfg: RunConfig, model, steps: int):
    params = model.named_parameters()
    if cfg.optimizer == "sgd":
        opt = optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")
    if cfg.schedule == "poly":
        return opt, optim.PolyLR(opt, max_steps=steps, power=0.9)
    if cfg.schedule == "step":
        return opt, optim.StepLR(opt, step_size=max(1, steps // 3), gamma=0.1)
    return opt, None


def run_meta(cfg: RunConfig, class_names) -> dict:
    """What ``evaluate``/``predict`` need besides the weights: the run and the preprocessing."""
    return {
        "run": asdict(cfg),
        "class_names": list(class_names),
        "normalize": {k: list(v) for k, v in normalization(cfg).items()},
    }


def build_trainer(cfg: RunConfig, out_dir=None, progress: bool = True, **kwargs):
    """A Trainer for ``cfg``: data, loaders, seeded model, optimizer and schedule, wired up."""
    from .train import Trainer

    train_set, val_set, class_names = make_datasets(cfg)
    train_loader, val_loader = make_loaders(cfg, train_set, val_set)
    check_splits(cfg, train_loader, val_loader)
    model = make_model(cfg, len(class_names))
    optimizer, scheduler = make_optimizer(cfg, model, cfg.epochs * len(train_loader))
    return Trainer(
        model,
        train_loader,
        optimizer,
        val_loader=val_loader,
        scheduler=scheduler,
        out_dir=out_dir,
        device=cfg.device,
        progress=progress,
        extra_meta=run_meta(cfg, class_names),
        **kwargs,
    )


def model_from_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, meta): rebuild the network a checkpoint was saved from and load its weights."""
    if str(path).endswith((".pth", ".pt")) and Path(path).is_file():
        raise ValueError(
            f"{path} is a PyTorch file, not a tinyfcn checkpoint; for pytorch-fcn's weights: "
            f"tinyfcn import-weights {path} --from pytorch-fcn --out {Path(path).stem}.npz"
        )
    ckpt = io.load_checkpoint(path)
    meta = ckpt["meta"]
    name = meta.get("model_class")
    classes = {cls.__name__: cls for cls in models.MODELS.values()}
    if name not in classes or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path} is not a tinyfcn FCN checkpoint (model class {name!r})")
    source = meta.get("preprocess", {}).get("source")
    if source == "pytorch-fcn" and meta["config"].get("geometry") != "paper":
        from .pytorch_fcn import GEOMETRY_REASON

        raise ValueError(f"{path} holds pytorch-fcn weights in another geometry: {GEOMETRY_REASON}")
    model = classes[name](**meta["config"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), meta


def preprocess(image: np.ndarray, meta: dict) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> the batch (1, 3, H, W) float32 the model expects: the
    checkpoint's preprocessing (``data/preprocessing.py``; shapes normalisation if it has none)."""
    from .data.preprocessing import apply_preprocess, preprocess_spec

    return apply_preprocess(image, preprocess_spec(meta, SHAPES_NORMALIZE))[None]


def load_image(path: str | Path) -> np.ndarray:
    """An image file as (3, H, W) float32 in [0, 1], upright (see ``data.images.read_image``)."""
    from .data.images import read_image

    return read_image(path)


def predict_image(model, image: np.ndarray, meta: dict, device: str = "cpu") -> np.ndarray:
    """The label map (H, W) of one (3, H, W) image in [0, 1]."""
    from .backend import asnumpy

    return asnumpy(model.predict(to_device(preprocess(image, meta), device)))[0]
