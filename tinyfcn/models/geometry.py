"""Where does a score-map pixel sit in the image? Coordinate maps, and FCN's crop offsets from them.

Each layer maps a coordinate of its input to a coordinate of its output by an affine map
``out = a * in + b`` (the centre of a window, in fractional pixels):

    conv / pool, kernel K, stride S, padding P:   out = (in + P - (K-1)/2) / S
    transposed conv (the inverse map):             out = S * in + (K-1)/2 - P
    crop at offset c:                              out = in - c

Composing the maps along a path gives ``blob = a * image + b`` for every blob of the network. Two
blobs can be summed after cropping the bigger one when their scales ``a`` agree; the crop offset is
the difference of their ``b``, which must be a whole number of pixels. For the paper's FCN (conv1_1
padding 100) this gives 19 (FCN-32s), 5 and 27 (FCN-16s), 5, 9 and 31 (FCN-8s): the numbers of the
reference Caffe models, derived here rather than typed in. Sizes follow the output-size formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..functional.conv import conv_output_size
from ..functional.conv_transpose import conv_transpose_output_size
from ..functional.pool import pool_output_size
from ..nn import Conv2d, ConvTranspose2d, MaxPool2d


@dataclass(frozen=True)
class CoordMap:
    """``out = scale * in + offset`` along one axis (exact fractions)."""

    scale: Fraction = Fraction(1)
    offset: Fraction = Fraction(0)

    def then(self, other: CoordMap) -> CoordMap:
        """This map followed by ``other``."""
        return CoordMap(other.scale * self.scale, other.scale * self.offset + other.offset)

    def __str__(self) -> str:
        return f"{self.scale} * x + {self.offset}"


def layer_map(layer, axis: int = 0) -> CoordMap:
    """The coordinate map of one layer along ``axis`` (0 = rows, 1 = columns)."""
    if isinstance(layer, (Conv2d, MaxPool2d)):
        k, s, p = layer.kernel_size[axis], layer.stride[axis], layer.padding[axis]
        d = layer.dilation[axis]
        centre = Fraction(d * (k - 1), 2)
        return CoordMap(Fraction(1, s), (p - centre) / s)
    if isinstance(layer, ConvTranspose2d):
        k, s, p = layer.kernel_size[axis], layer.stride[axis], layer.padding[axis]
        d = layer.dilation[axis]
        return CoordMap(Fraction(s), Fraction(d * (k - 1), 2) - p)
    return CoordMap()  # element-wise layers: ReLU, Dropout, scaling


def path_map(layers, axis: int = 0) -> CoordMap:
    """Compose the maps of a sequence of layers (image -> last layer's output)."""
    m = CoordMap()
    for layer in layers:
        m = m.then(layer_map(layer, axis))
    return m


def crop_offset(big: CoordMap, reference: CoordMap) -> int:
    """The offset at which to crop blob ``big`` so that it lines up with ``reference``."""
    if big.scale != reference.scale:
        raise ValueError(f"cannot align blobs of different scales: {big} vs {reference}")
    offset = big.offset - reference.offset
    if offset.denominator != 1 or offset < 0:
        raise ValueError(f"blobs {big} and {reference} are misaligned by {offset} pixels")
    return int(offset)


def layer_output_size(layer, size: int, axis: int = 0) -> int:
    """The output length of ``layer`` along ``axis`` for an input of length ``size``."""
    if isinstance(layer, Conv2d):
        return conv_output_size(
            size,
            layer.kernel_size[axis],
            layer.stride[axis],
            layer.padding[axis],
            layer.dilation[axis],
        )
    if isinstance(layer, MaxPool2d):
        return pool_output_size(
            size,
            layer.kernel_size[axis],
            layer.stride[axis],
            layer.padding[axis],
            layer.dilation[axis],
            layer.ceil_mode,
        )
    if isinstance(layer, ConvTranspose2d):
        return conv_transpose_output_size(
            size,
            layer.kernel_size[axis],
            layer.stride[axis],
            layer.padding[axis],
            layer.output_padding[axis],
            layer.dilation[axis],
        )
    return size


def receptive_field(layers, axis: int = 0) -> tuple[int, int]:
    """(effective stride, receptive field) of the last layer's output, in input pixels.

    Only for conv and pool layers: rf grows by (K-1)*D times the stride so far.
    """
    stride, rf = 1, 1
    for layer in layers:
        if isinstance(layer, (Conv2d, MaxPool2d)):
            k, s, d = layer.kernel_size[axis], layer.stride[axis], layer.dilation[axis]
            rf += (k - 1) * d * stride
            stride *= s
    return stride, rf
