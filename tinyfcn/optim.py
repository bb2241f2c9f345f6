"""Optimizers (SGD with momentum, Adam) with Caffe's per-parameter ``lr_mult`` / ``decay_mult``,
and learning-rate schedules (StepLR, PolyLR). The update rules are exactly ``torch.optim``'s.

Which learning rate? The FCN reference solvers (fcn.berkeleyvision.org) SUM the loss over pixels
(Caffe's ``SoftmaxWithLoss`` with ``normalize: false``, one ~500x500 image per batch) and so train
with tiny rates and high momentum: ``lr=1e-10, momentum=0.99, weight_decay=5e-4`` for FCN-32s and
for the at-once FCN-8s (whose pool4 / pool3 skips are scaled by 0.01 / 0.0001 to keep that rate
usable), 1e-12 for the staged FCN-16s and 1e-14 for the staged FCN-8s. tinyfcn's
``CrossEntropyLoss`` defaults to ``reduction="mean"``: its gradient is the summed loss's divided by
P, the number of non-ignored pixels in the batch, so SGD with ``lr`` on the summed loss equals SGD
with ``lr * P`` on the mean (and ``weight_decay / P``). 1e-10 on ~250,000 pixels is 2.5e-5 on the
mean loss, and momentum 0.99 makes the long-run step 100x the rate where 0.9 makes it 10x. With the
mean loss use ``SGD(lr=1e-3 .. 1e-2, momentum=0.9)`` or ``Adam(lr=1e-3)`` (Adam divides by the
gradient's own scale, so sum versus mean hardly matters to it; only ``eps`` and the weight decay
added to the gradient notice).

Per-parameter multipliers, as in Caffe: the effective rate is ``lr * p.lr_mult`` and the effective
decay ``weight_decay * p.decay_mult`` (FCN trains biases with ``lr_mult=2, decay_mult=0``). A
parameter with ``lr_mult=0`` (FCN's fixed bilinear upsampling) is never touched, not even by weight
decay, and keeps no optimizer state; one with ``requires_grad=False`` or ``grad=None`` is skipped.
In PyTorch the same thing takes one param group per (lr, weight_decay) pair.

Updates are in place on ``p.data``: each costs at most one temporary the size of the parameter
(two for Adam with weight decay), allocated per step; fc6's weight is 411 MB in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backend import asnumpy, device_of, get_array_module
from .nn.parameter import Parameter

# --- the update rules: pure functions on arrays, NumPy or CuPy ------------------------------------


def sgd_update(
    w: Any,
    g: Any,
    buf: Any,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> None:
    """One ``torch.optim.SGD`` step (dampening 0) on ``w`` in place; ``g`` is left unchanged.

        d   = g + weight_decay * w                  L2 decay folded into the gradient
        buf = momentum * buf + d                    buf starts at 0, so the first buf is d
        w  -= lr * (d + momentum * buf)             nesterov
        w  -= lr * buf                              plain momentum (w -= lr * d when momentum=0)

    ``buf``: the momentum buffer, same shape as ``w``, updated in place (None when momentum=0).
    Caffe writes ``V = momentum * V + lr * d; w -= V``: the same steps while ``lr`` is fixed.
    """
    xp = get_array_module(w, g, buf)
    tmp = xp.empty_like(w)  # the one scratch array, reused for every term
    if weight_decay:
        d = xp.multiply(w, weight_decay, out=tmp)
        d += g
    else:
        d = g
    if momentum:
        buf *= momentum
        buf += d
        if nesterov:
            w -= xp.multiply(d, lr, out=tmp)  # w -= lr * d
            w -= xp.multiply(buf, lr * momentum, out=tmp)  # w -= lr * momentum * buf
            return
        d = buf
    w -= xp.multiply(d, lr, out=tmp)


def adam_update(
    w: Any,
    g: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> None:
    """One ``torch.optim.Adam`` step (L2 decay added to the gradient, not AdamW) on ``w`` in place.

        d  = g + weight_decay * w
        m  = beta1 * m + (1 - beta1) * d            exp_avg, updated in place
        v  = beta2 * v + (1 - beta2) * d * d        exp_avg_sq, updated in place
        w -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``step``: t, counted from 1 (the bias corrections undo m's and v's start at zero).
    """
    xp = get_array_module(w, g, exp_avg, exp_avg_sq)
    tmp = xp.empty_like(w)
    if weight_decay:
        d = xp.multiply(w, weight_decay)  # a second temporary: d is needed twice below
        d += g
    else:
        d = g
    exp_avg *= beta1
    exp_avg += xp.multiply(d, 1 - beta1, out=tmp)
    exp_avg_sq *= beta2
    xp.multiply(d, d, out=tmp)
    tmp *= 1 - beta2
    exp_avg_sq += tmp
    del d
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = xp.sqrt(exp_avg_sq, out=tmp)
    denom /= math.sqrt(bias_correction2)
    denom += eps
    step_dir = xp.divide(exp_avg, denom, out=tmp)
    step_dir *= lr / bias_correction1
    w -= step_dir


# --- optimizers ----------------------------------------------------------------------------------


class Optimizer:
    """Holds the parameters, the learning rate ``lr`` and per-parameter state keyed by name.

    ``params``: Parameters (``model.parameters()``, keyed "0", "1", ...) or (name, Parameter)
    pairs (``model.named_parameters()``, keyed by name: checkpoints then read
    ``state/fc6.weight/momentum_buffer``). String keys let ``tinyfcn.io.save_checkpoint`` store
    ``optimizer.state_dict()`` as it is.
    """

    HYPERPARAMETERS: tuple[str, ...] = ()  # saved and restored by state_dict / load_state_dict

    def __init__(self, params: Iterable, lr: float) -> None:
        self.keys, self.params = _collect_params(type(self).__name__, params)
        self.lr = _check_nonnegative(type(self).__name__, "lr", lr)
        self.state: dict[str, dict[str, Any]] = {}
        self.step_count = 0

    def zero_grad(self) -> None:
        """Fill every gradient with zeros in place (``Parameter.zero_grad``)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Update each parameter with ``lr * lr_mult`` and ``weight_decay * decay_mult``;
        skip those with ``requires_grad=False``, ``grad=None`` or ``lr_mult=0``."""
        for key, p in zip(self.keys, self.params, strict=True):
            if not p.requires_grad or p.grad is None or p.lr_mult == 0:
                continue
            lr = self.lr * p.lr_mult
            weight_decay = self.weight_decay * p.decay_mult
            self._update(key, p, lr, weight_decay)
        self.step_count += 1

    def _update(self, key: str, p: Parameter, lr: float, weight_decay: float) -> None:
        raise NotImplementedError

    def _buffers(self, key: str, p: Parameter, names: tuple[str, ...]) -> dict[str, Any]:
        """This parameter's state, created as zeros on first use, checked to be on its device."""
        state = self.state.get(key)
        if state is None:
            xp = get_array_module(p.data)
            state = self.state[key] = {name: xp.zeros_like(p.data) for name in names}
        for name in names:
            buf = state[name]
            ours = (device_of(buf), tuple(buf.shape), buf.dtype)
            if ours != (p.device, p.shape, p.dtype):
                raise RuntimeError(
                    f"{type(self).__name__}: the {name} of parameter {key!r} is a {ours[0]} "
                    f"{ours[2]} array of shape {ours[1]}, the parameter a {p.device} {p.dtype} "
                    f"array of shape {p.shape}. Create the optimizer after model.to(...), or "
                    "move its state with optimizer.load_state_dict(optimizer.state_dict())."
                )
        return state

    # --- state dicts -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """``{"type", "lr", <hyperparameters>, "step_count", "param_keys", "state"}``.

        ``state``: ``{key: {buffer name: array}}`` for each parameter updated so far. The arrays
        are the live buffers, not copies (as ``Module.state_dict``): save them before stepping on.
        """
        return {
            "type": type(self).__name__,
            "lr": float(self.lr),
            **{name: getattr(self, name) for name in self.HYPERPARAMETERS},
            "step_count": int(self.step_count),
            "param_keys": list(self.keys),
            "state": {key: dict(state) for key, state in self.state.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore lr, hyperparameters, step counts and buffers (copied onto each parameter's
        device and dtype), so that training continues bit-identically. The parameters must be
        the same ones, in the same order, passed the same way (names or positions)."""
        name = type(self).__name__
        if state_dict.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: got the state of {state_dict.get('type')!r}")
        saved_keys = [str(k) for k in state_dict["param_keys"]]
        if saved_keys != self.keys:
            raise KeyError(
                f"{name}.load_state_dict: the saved optimizer had {len(saved_keys)} parameters "
                f"{_preview(saved_keys)}, this one has {len(self.keys)} {_preview(self.keys)}; "
                "build both from the same model, both with model.parameters() or both with "
                "model.named_parameters()"
            )
        params = dict(zip(self.keys, self.params, strict=True))
        new_state = {}
        for key, saved in state_dict["state"].items():
            if key not in params:
                raise KeyError(f"{name}.load_state_dict: state for unknown parameter {key!r}")
            p = params[key]
            state = {}
            for buf_name, value in saved.items():
                if buf_name == "step":
                    state[buf_name] = int(value)
                    continue
                if tuple(np.shape(value)) != p.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: {buf_name} of {key!r} has shape "
                        f"{tuple(np.shape(value))}, the parameter {p.shape}"
                    )
                state[buf_name] = _copy_like(value, p.data)
            new_state[key] = state
        for hyper in self.HYPERPARAMETERS:
            value = state_dict[hyper]
            setattr(self, hyper, tuple(value) if isinstance(value, list) else value)
        self.lr = float(state_dict["lr"])
        self.step_count = int(state_dict["step_count"])
        self.state = new_state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr", *self.HYPERPARAMETERS))
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    Per parameter (``sgd_update``): ``buf = momentum * buf + (g + wd * w); w -= lr * buf``, with
    ``lr = self.lr * p.lr_mult`` and ``wd = weight_decay * p.decay_mult`` (see the module
    docstring for how FCN's ``lr=1e-10, momentum=0.99`` on a summed loss maps onto the mean).
    """

    HYPERPARAMETERS = ("momentum", "weight_decay", "nesterov")

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_nonnegative("SGD", "momentum", momentum)
        self.weight_decay = _check_nonnegative("SGD", "weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)

    def _update(self, key: str, p: Parameter, lr: float, weight_decay: float) -> None:
        buf = None  # plain SGD keeps no state
        if self.momentum:
            buf = self._buffers(key, p, ("momentum_buffer",))["momentum_buffer"]
        sgd_update(p.data, p.grad, buf, lr, self.momentum, weight_decay, self.nesterov)


class Adam(Optimizer):
    """Adam (Kingma & Ba), exactly ``torch.optim.Adam``: bias-corrected moments, L2 weight decay
    added to the gradient (not AdamW's decoupled decay), one step count per parameter."""

    HYPERPARAMETERS = ("betas", "eps", "weight_decay")

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        beta1, beta2 = (float(b) for b in betas)
        for i, beta in enumerate((beta1, beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Adam: betas[{i}] must be in [0, 1), got {beta}")
        self.betas = (beta1, beta2)
        self.eps = _check_nonnegative("Adam", "eps", eps)
        self.weight_decay = _check_nonnegative("Adam", "weight_decay", weight_decay)

    def _update(self, key: str, p: Parameter, lr: float, weight_decay: float) -> None:
        state = self._buffers(key, p, ("exp_avg", "exp_avg_sq"))
        state["step"] = state.get("step", 0) + 1
        beta1, beta2 = self.betas
        adam_update(
            p.data,
            p.grad,
            state["exp_avg"],
            state["exp_avg_sq"],
            state["step"],
            lr,
            beta1,
            beta2,
            self.eps,
            weight_decay,
        )


# --- learning-rate schedules ---------------------------------------------------------------------


class LRScheduler:
    """Sets ``optimizer.lr = lr_at(last_epoch)`` after each ``step()``, from a closed form.

    ``last_epoch`` counts ``step()`` calls (torch's name; call ``step()`` once per epoch or once
    per iteration, whichever ``step_size`` / ``max_steps`` are counted in). The rate is computed
    from ``base_lr`` (the optimizer's lr at construction), so a value written to
    ``optimizer.lr`` by hand lasts only until the next ``step()``.
    """

    HYPERPARAMETERS: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> float:
        """The rate set by the last ``step()`` (torch returns a list, one per param group)."""
        return self.lr_at(self.last_epoch)

    def state_dict(self) -> dict:
        return {
            "type": type(self).__name__,
            "base_lr": self.base_lr,
            "last_epoch": self.last_epoch,
            **{name: getattr(self, name) for name in self.HYPERPARAMETERS},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore ``base_lr``, ``last_epoch`` and the hyperparameters; set the optimizer's lr."""
        name = type(self).__name__
        if state_dict.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: got the state of {state_dict.get('type')!r}")
        self.base_lr = float(state_dict["base_lr"])
        self.last_epoch = int(state_dict["last_epoch"])
        for hyper in self.HYPERPARAMETERS:
            setattr(self, hyper, state_dict[hyper])
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.HYPERPARAMETERS)
        state = f"base_lr={self.base_lr!r}, last_epoch={self.last_epoch}"
        return f"{type(self).__name__}({hyper}, {state})"


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (t // step_size)``: divide by 10 every ``step_size`` steps.

    torch's ``StepLR`` multiplies the current lr by gamma at each boundary; the closed form here
    gives the same rates up to rounding in the last bit.
    """

    HYPERPARAMETERS = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


class PolyLR(LRScheduler):
    """``lr = base_lr * (1 - min(t, max_steps) / max_steps) ** power``: the "poly" schedule of
    DeepLab and most segmentation code, reaching 0 at ``max_steps`` and staying there.

    Equal to ``torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max_steps,
    power=power)``, whose default power is 1.0 (linear) rather than 0.9; torch multiplies the
    current lr by a ratio each step, the closed form here agrees up to rounding in the last bits.
    """

    HYPERPARAMETERS = ("max_steps", "power")

    def __init__(self, optimizer: Optimizer, max_steps: int, power: float = 0.9) -> None:
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"PolyLR: max_steps must be a positive integer, got {max_steps!r}")
        if power < 0:
            raise ValueError(f"PolyLR: power must be >= 0, got {power!r}")
        self.max_steps, self.power = int(max_steps), float(power)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * (1.0 - min(t, self.max_steps) / self.max_steps) ** self.power


# --- helpers -------------------------------------------------------------------------------------


def _collect_params(owner: str, params: Iterable) -> tuple[list[str], list[Parameter]]:
    """(keys, parameters) from Parameters (keys "0", "1", ...) or (name, Parameter) pairs."""
    if isinstance(params, Parameter) or hasattr(params, "named_parameters"):
        raise TypeError(
            f"{owner} expects an iterable of Parameters, e.g. model.parameters() or "
            f"model.named_parameters(), got a {type(params).__name__}"
        )
    items = list(params)
    if not items:
        raise ValueError(f"{owner} got an empty parameter list")
    named = [isinstance(i, tuple) and len(i) == 2 and isinstance(i[1], Parameter) for i in items]
    plain = [isinstance(i, Parameter) for i in items]
    if all(named):
        keys, ps = [str(k) for k, _ in items], [p for _, p in items]
    elif all(plain):
        keys, ps = [str(i) for i in range(len(items))], items
    else:
        kind = named if named[0] else plain  # the first item sets the kind; find the odd one
        bad = kind.index(False)
        raise TypeError(
            f"{owner} expects all Parameters or all (name, Parameter) pairs, as given by "
            f"model.parameters() or model.named_parameters(); item {bad} is a "
            f"{type(items[bad]).__name__}"
        )
    if len(set(map(id, ps))) != len(ps):
        raise ValueError(f"{owner}: a parameter appears more than once in the list")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{owner}: two parameters share a name")
    return keys, ps


def _check_nonnegative(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return value


def _copy_like(value: Any, like: Any) -> Any:
    """A fresh copy of ``value`` on ``like``'s device with its dtype."""
    xp = get_array_module(like)
    if xp is np:
        return np.array(asnumpy(value), dtype=like.dtype, copy=True)
    return xp.array(value, dtype=like.dtype, copy=True)


def _preview(keys: list[str], n: int = 3) -> str:
    return "[" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + "]"
