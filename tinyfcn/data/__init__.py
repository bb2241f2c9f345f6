"""Data for tinyfcn: synthetic shapes, PASCAL VOC folders, paired transforms and batching."""

from .labels import load_label_png, save_label_png, voc_palette
from .loader import DataLoader, collate
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
from .voc import VOC_CLASSES, VOCSegmentation, read_image

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
    "ShapesDataset",
    "VOCSegmentation",
    "caffe_deprocess",
    "caffe_preprocess",
    "collate",
    "read_image",
    "load_label_png",
    "save_label_png",
    "split_shapes",
    "voc_palette",
]
