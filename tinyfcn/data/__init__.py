"""Data for tinyfcn: synthetic shapes, PASCAL VOC and SBD folders, paired transforms, batches."""

from .images import read_image
from .labels import load_label_png, save_label_png, voc_palette
from .loader import DataLoader, collate
from .sbd import SBDSegmentation, is_sbd_root
from .shapes import (
    DISC,
    RING,
    SHAPES_CLASSES,
    SQUARE,
    TRIANGLE,
    ShapesDataset,
    disc_mask,
    ring_mask,
    split_shapes,
    square_mask,
    triangle_mask,
)
from .transforms import (
    CAFFE_MEAN_BGR,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CaffeNormalize,
    CenterCrop,
    Compose,
    ImageNetNormalize,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    caffe_deprocess,
    caffe_preprocess,
)
from .voc import VOC_CLASSES, VOCSegmentation

__all__ = [
    "CAFFE_MEAN_BGR",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPES_CLASSES",
    "VOC_CLASSES",
    "DISC",
    "RING",
    "SQUARE",
    "TRIANGLE",
    "CaffeNormalize",
    "CenterCrop",
    "Compose",
    "DataLoader",
    "ImageNetNormalize",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "SBDSegmentation",
    "ShapesDataset",
    "VOCSegmentation",
    "caffe_deprocess",
    "caffe_preprocess",
    "collate",
    "disc_mask",
    "is_sbd_root",
    "ring_mask",
    "square_mask",
    "triangle_mask",
    "read_image",
    "load_label_png",
    "save_label_png",
    "split_shapes",
    "voc_palette",
]
