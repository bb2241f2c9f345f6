"""Net surgery: dense layers become convolutions, and upsampling starts as bilinear interpolation.

Convolutionalization (FCN section 3.1): a Linear layer reading a flattened (C, h, w) map computes,
for its one output position, exactly what a (C, h, w) convolution kernel computes at every position.
Reshaping the dense weight (out, C*h*w) to (out, C, h, w) gives a conv layer that equals the dense
one on an input of the original size and slides over a bigger one, producing a map of scores.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..backend import get_array_module


def linear_to_conv(linear: nn.Linear, in_shape: tuple[int, int, int]) -> nn.Conv2d:
    """A Conv2d computing ``linear`` on a (C, h, w) input: weight (out, C*h*w) -> (out, C, h, w).

    The flattening was C-major (torch.flatten / tinyfcn Flatten), so a plain reshape is exact.
    """
    C, h, w = in_shape
    if linear.in_features != C * h * w:
        raise ValueError(
            f"Linear with {linear.in_features} inputs cannot read a {in_shape} map "
            f"({C * h * w} values)"
        )
    conv = nn.Conv2d(
        C, linear.out_features, (h, w), bias=linear.bias is not None, dtype=linear.weight.dtype
    )
    xp = get_array_module(linear.weight.data)
    conv.weight.data = xp.array(linear.weight.data.reshape(linear.out_features, C, h, w))
    if linear.bias is not None:
        conv.bias.data = xp.array(linear.bias.data)
    return conv


def convolutionalize(vgg):
    """A fully convolutional copy of a dense VGG16 classifier (fc6 7x7, fc7 and fc8 1x1)."""
    from .vgg import VGG16

    if vgg.fully_conv:
        raise ValueError("this VGG16 is already fully convolutional")
    conv = VGG16(
        vgg.num_classes,
        vgg.width,
        vgg.fc_channels,
        vgg.conv1_1.in_channels,
        fully_conv=True,
        dropout=vgg.drop6.p,
    )
    conv.to(device=vgg.conv1_1.weight.device, dtype=vgg.conv1_1.weight.dtype)
    conv.load_state_dict(
        {k: v for k, v in vgg.state_dict().items() if k.startswith("conv")}, strict=False
    )
    c5 = vgg.pool_channels["pool5"]
    conv.fc6 = linear_to_conv(vgg.fc6, (c5, 7, 7))
    conv.fc7 = linear_to_conv(vgg.fc7, (vgg.fc_channels, 1, 1))
    conv.fc8 = linear_to_conv(vgg.fc8, (vgg.fc_channels, 1, 1))
    return conv.train(vgg.training)


def bilinear_kernel(channels: int, kernel_size: int, dtype=np.float32) -> np.ndarray:
    """Weights (C, C, k, k) of a transposed conv that upsamples each channel bilinearly.

    One 2-d tent per channel, on the diagonal (channel c only feeds channel c):
    ``f = (k+1)//2``, centre ``f-1`` (k odd) or ``f-1/2`` (k even), tap ``1 - |i - centre| / f``;
    for k = 4 (x2 upsampling) the taps are 0.25, 0.75, 0.75, 0.25.
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - np.abs(np.arange(kernel_size) - centre) / factor
    weight = np.zeros((channels, channels, kernel_size, kernel_size), dtype=dtype)
    weight[np.arange(channels), np.arange(channels)] = np.outer(taps, taps)
    return weight
