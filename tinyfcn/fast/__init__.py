"""The engine: every kernel that exists for speed, behind one planner and one switch.

``tinyfcn.functional`` is the textbook; this package computes the same numbers faster (blocked
im2col, reused buffers, dX as a convolution, the dW GEMM order, Winograd, subpixel upsampling,
the 2x2 pool, work shared out among CPU threads).
``plan.py`` alone decides which kernel runs; its docstring is the table. ``disabled()`` (or
``TINYFCN_FAST=0``) runs everything on the textbook alone::

    with tinyfcn.fast.disabled():
        loss = train_step(model, images, labels)     # functional/ only, not one engine call
"""

from .switch import disabled, enabled, is_enabled
from .workspace import im2col_budget, set_im2col_budget

__all__ = ["disabled", "enabled", "im2col_budget", "is_enabled", "set_im2col_budget"]
