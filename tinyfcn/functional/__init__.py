"""The textbook: pure forward/backward functions on NumPy or CuPy arrays, wrapped by ``tinyfcn.nn``.

Under ``tinyfcn.fast.disabled()`` (or TINYFCN_FAST=0) these functions are all that runs; the engine
in ``tinyfcn.fast`` computes the same numbers faster and may call them, never the other way round.

Each op comes as ``op_forward(...) -> (y, cache)`` and ``op_backward(dy, cache) -> grads``, plus a
forward-only ``op(...)`` named as in ``torch.nn.functional``.
"""

from .activation import (
    dropout2d_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)
from .conv import (
    col2im,
    conv2d,
    conv2d_backward,
    conv2d_forward,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv_output_size,
    flip_transpose,
    im2col,
)
from .conv_transpose import (
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose_output_size,
    insert_zeros,
    pad_or_crop,
)
from .crop import crop_backward, crop_forward
from .loss import cross_entropy, cross_entropy_backward, cross_entropy_forward
from .pool import max_pool2d, max_pool2d_backward, max_pool2d_forward, pool_output_size

__all__ = [
    "col2im",
    "conv2d",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_output_size",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose_output_size",
    "crop_backward",
    "crop_forward",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout2d_forward",
    "dropout_backward",
    "dropout_forward",
    "flip_transpose",
    "im2col",
    "insert_zeros",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "pad_or_crop",
    "pool_output_size",
    "relu_backward",
    "relu_forward",
]
