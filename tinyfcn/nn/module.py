"""Module and Sequential: parameters by name, train/eval, devices, state dicts, explicit backward.

A Module's ``forward`` keeps what its ``backward`` needs; ``backward(dy)`` returns dx and adds
parameter gradients into each ``Parameter.grad``. There is no autograd graph: a model that
composes layers writes its backward out, mirroring its forward.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backend import asnumpy, check_device, get_array_module
from .grad_mode import is_grad_enabled
from .parameter import Parameter


class Module:
    """Base class of every layer and model (names and behaviour follow ``torch.nn.Module``)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        # A reassigned name keeps its place in the order (as in torch); None unregisters it.
        for registry, kind in ((self._parameters, Parameter), (self._modules, Module)):
            if name in registry and value is not None and not isinstance(value, kind):
                raise TypeError(
                    f"cannot assign {type(value).__name__} to {name!r}: it is a registered "
                    f"{kind.__name__} of {type(self).__name__} ({kind.__name__} or None expected; "
                    f"to change the values, assign to {name}.data)"
                )
        if not isinstance(value, Parameter):
            self._parameters.pop(name, None)
        if not isinstance(value, Module):
            self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # --- the computation ---------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _save(self, cache: Any) -> None:
        """Keep ``cache`` for backward. Inside ``no_grad()`` nothing is kept and an earlier
        forward's cache is left as it was (its backward stays valid, as in PyTorch)."""
        if is_grad_enabled():
            object.__setattr__(self, "_cache", cache)

    def _take_cache(self) -> Any:
        """The cache of the last forward; backward consumes it (one backward per forward)."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called without a preceding forward() "
                "(or the forward ran inside no_grad(), or backward already ran)"
            )
        object.__setattr__(self, "_cache", None)
        return cache

    # --- parameters and submodules -----------------------------------------------------------

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(prefix + name + ".")

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(prefix + ("." if prefix else "") + name)

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    # --- modes and devices -------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str | None = None, dtype: Any = None) -> Module:
        """Move every parameter to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy) and/or cast it."""
        if device is not None:
            check_device(device)
        for m in self.modules():
            object.__setattr__(m, "_cache", None)
            m._on_to(device, dtype)
        for p in self.parameters():
            p.to(device, dtype)
        return self

    def _on_to(self, device: str | None, dtype: Any) -> None:
        """Hook for modules that hold device arrays besides parameters (e.g. scratch buffers)."""

    def double(self) -> Module:
        return self.to(dtype=np.float64)

    def float(self) -> Module:
        return self.to(dtype=np.float32)

    # --- state dicts -------------------------------------------------------------------------

    def state_dict(self) -> OrderedDict:
        """``{name: array}`` for every parameter, by PyTorch's dotted names (not copied)."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Copy arrays in by name, onto each parameter's device and dtype.

        Every missing, unexpected or mis-shaped key is listed in one error; with
        ``strict=False`` missing and unexpected keys are skipped (shapes must still match).
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [
            f"{k}: checkpoint {tuple(np.shape(state_dict[k]))} vs model {own[k].shape}"
            for k in own
            if k in state_dict and tuple(np.shape(state_dict[k])) != own[k].shape
        ]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched))
        if problems:
            raise KeyError(
                f"cannot load state dict into {type(self).__name__}: " + " | ".join(problems)
            )
        for name, p in own.items():
            if name in state_dict:
                xp = get_array_module(p.data)
                value = state_dict[name]
                value = xp.asarray(asnumpy(value) if xp is np else value, dtype=p.dtype)
                p.data[...] = value

    # --- printing ----------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                child = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


class Sequential(Module):
    """Layers applied in order; backward applies their backward passes in reverse order."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x: Any) -> Any:
        for layer in self:
            x = layer(x)
        return x

    def backward(self, dy: Any) -> Any:
        for layer in reversed(list(self)):
            dy = layer.backward(dy)
        return dy
