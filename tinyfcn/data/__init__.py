"""Data for tinyfcn: synthetic shapes, PASCAL VOC and SBD folders, paired transforms, batches."""

from .images import read_image
from .labels import load_label_png, save_label_png, voc_palette
from .loader import DataLoader, collate
from .sbd import SBDSegmentation, is_sbd_root
from .shapes import SHAPES_CLASSES, ShapesDataset, split_shapes
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
    "is_sbd_root",
    "read_image",
    "load_label_png",
    "save_label_png",
    "split_shapes",
    "voc_palette",
]
