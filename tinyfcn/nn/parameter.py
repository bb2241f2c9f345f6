"""Parameter: a learnable array, its gradient, and the per-parameter knobs FCN's solver uses."""

from __future__ import annotations

from typing import Any

from ..backend import device_of, get_array_module, to_device


class Parameter:
    """A learnable array with its accumulated gradient.

    ``data``: the array (NumPy or CuPy); ``grad``: None until a backward pass accumulates into it;
    ``lr_mult`` / ``decay_mult``: multipliers of the learning rate and weight decay for this
    parameter (Caffe's names: FCN trains biases at twice the rate with no decay, and keeps its
    bilinear upsampling frozen with ``lr_mult=0``); ``requires_grad``: False skips the gradient.
    """

    def __init__(
        self, data: Any, requires_grad: bool = True, lr_mult: float = 1.0, decay_mult: float = 1.0
    ):
        self.data = data
        self._grad = None
        self._grad_is_zero = False  # True right after zero_grad(): see writable_grad()
        self._stale = False  # _grad's memory is logically zero but not yet filled: see zero_grad()
        self.requires_grad = requires_grad
        self.lr_mult = lr_mult
        self.decay_mult = decay_mult

    @property
    def grad(self) -> Any:
        """The accumulated gradient, or None (zeros are filled in here if zero_grad() deferred
        them and no backward pass has overwritten them since)."""
        if self._stale:
            self._grad.fill(0)
            self._stale = False
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad, self._stale, self._grad_is_zero = value, False, False

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return device_of(self.data)

    @property
    def size(self) -> int:
        return int(self.data.size)

    def accumulate(self, grad: Any) -> None:
        """``self.grad += grad`` (allocated on first use; reused after ``zero_grad``).

        ``grad`` may be ``writable_grad()`` itself, already written in place: then nothing moves.
        """
        if not self.requires_grad:
            return
        if tuple(grad.shape) != self.shape:
            raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter {self.shape}")
        if grad is self._grad:
            pass  # written in place into writable_grad()
        elif self._grad is None:
            self._grad = get_array_module(grad).array(grad, dtype=self.data.dtype, copy=True)
        elif self._stale:
            self._grad[...] = grad  # zero + grad, without filling the zeros first
        else:
            self._grad += grad
        self._stale = self._grad_is_zero = False

    def zero_grad(self) -> None:
        """Set the gradient to zero, keeping its memory (fc6's is 411 MB at full width).

        The zeros are not written now: the next backward pass overwrites the array (or reading
        ``grad`` first fills it), which spares a pass over every gradient each step.
        ``torch``'s ``set_to_none`` has the same aim.
        """
        if self._grad is not None:
            self._stale = self._grad_is_zero = True

    def writable_grad(self) -> Any:
        """The gradient array if it is logically zero (right after ``zero_grad``), else None.

        A layer may then write its next gradient straight into it (e.g. as the ``out`` of the
        weight-gradient GEMM) and must pass that same array to ``accumulate``: no temporary
        array, no extra addition, and no zeros written first. Its contents until then are
        undefined.
        """
        if self.requires_grad and self._grad_is_zero:
            return self._grad
        return None

    def to(self, device: str | None = None, dtype: Any = None) -> Parameter:
        """Move (and/or cast) data and grad in place; returns self."""
        for name in ("data", "grad"):
            value = getattr(self, name)
            if value is None:
                continue
            if device is not None:
                value = to_device(value, device)
            if dtype is not None:
                value = value.astype(dtype, copy=False)
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        extra = "" if self.requires_grad else ", requires_grad=False"
        if self.lr_mult != 1 or self.decay_mult != 1:
            extra += f", lr_mult={self.lr_mult}, decay_mult={self.decay_mult}"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device={self.device!r}{extra})"
