"""Optimizers and schedules: parity with torch.optim (per-parameter multipliers as param groups),
frozen and gradient-less parameters, in-place updates, bit-identical resume, lr schedules."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from tests.helpers import assert_close, to_torch
from tinyfcn import io
from tinyfcn.backend import asnumpy
from tinyfcn.nn import Conv2d, Parameter
from tinyfcn.optim import SGD, Adam, PolyLR, StepLR

# name: (shape, lr_mult, decay_mult). FCN's roles: a weight, a bias (lr x2, no decay), an odd pair
# of multipliers that catches lr and decay swapped, and the frozen bilinear upsampling.
SPECS = {
    "conv.weight": ((4, 3, 3, 2), 1.0, 1.0),
    "conv.bias": ((4,), 2.0, 0.0),
    "score.weight": ((5, 4, 1, 1), 0.5, 3.0),
    "upscore.weight": ((5, 5, 4, 4), 0.0, 1.0),
}
STEPS = 5
LR_CHANGE = (3, 0.3)  # before step 3 the base lr is multiplied by 0.3, as a scheduler would

SGD_CASES = {
    "plain": dict(lr=0.1),
    "plain-weight-decay": dict(lr=0.1, weight_decay=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "momentum-weight-decay": dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "nesterov-weight-decay": dict(lr=0.05, momentum=0.8, weight_decay=5e-3, nesterov=True),
    "fcn-solver-momentum-0.99": dict(lr=1e-3, momentum=0.99, weight_decay=5e-4),
}
ADAM_CASES = {
    "defaults": dict(),
    "weight-decay": dict(lr=1e-2, weight_decay=1e-2),
    "betas-eps": dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    "betas-eps-weight-decay": dict(lr=3e-3, betas=(0.5, 0.9), eps=1e-4, weight_decay=0.1),
}
TORCH_OPTIM = {SGD: torch.optim.SGD, Adam: torch.optim.Adam}


def initial_data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) for name, (shape, _, _) in SPECS.items()}


def gradient_sequence(steps: int = STEPS, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {name: rng.standard_normal(shape) for name, (shape, _, _) in SPECS.items()}
        for _ in range(steps)
    ]


def make_params(xp, data: dict[str, np.ndarray]) -> dict[str, Parameter]:
    return {
        name: Parameter(xp.array(data[name]), lr_mult=lr_mult, decay_mult=decay_mult)
        for name, (_, lr_mult, decay_mult) in SPECS.items()
    }


def run_ours(xp, optimizer_class, kwargs, grads_seq, lr_change=LR_CHANGE):
    """Our parameters after each step (host copies), and the optimizer."""
    params = make_params(xp, initial_data())
    optimizer = optimizer_class(params.items(), **kwargs)
    history = []
    for step, grads in enumerate(grads_seq, start=1):
        if step == lr_change[0]:
            optimizer.lr *= lr_change[1]
        for name, p in params.items():
            p.grad = xp.array(grads[name])
        optimizer.step()
        history.append({name: asnumpy(p.data).copy() for name, p in params.items()})
    return history, optimizer, params


def run_torch(optimizer_class, kwargs, grads_seq, lr_change=LR_CHANGE):
    """torch's parameters after each step: one param group per parameter, lr * lr_mult and
    weight_decay * decay_mult (a frozen parameter is a group with lr 0)."""
    lr = kwargs.get("lr", 1e-3)
    tensors = {name: to_torch(a, requires_grad=True) for name, a in initial_data().items()}
    groups = [
        {
            "params": [tensors[name]],
            "lr": lr * lr_mult,
            "weight_decay": kwargs.get("weight_decay", 0.0) * decay_mult,
        }
        for name, (_, lr_mult, decay_mult) in SPECS.items()
    ]
    optimizer = TORCH_OPTIM[optimizer_class](groups, **kwargs)
    history = []
    for step, grads in enumerate(grads_seq, start=1):
        if step == lr_change[0]:
            for group in optimizer.param_groups:
                group["lr"] *= lr_change[1]
        for name, t in tensors.items():
            t.grad = torch.tensor(grads[name])
        optimizer.step()
        history.append({name: t.detach().numpy().copy() for name, t in tensors.items()})
    return history


def assert_same_trajectory(ours, theirs, label):
    for step, (o, t) in enumerate(zip(ours, theirs, strict=True), start=1):
        for name in SPECS:
            assert_close(o[name], t[name], f"{label}: {name} after step {step}", 1e-12, 1e-12)


@pytest.mark.parametrize(
    "optimizer_class,kwargs",
    [pytest.param(SGD, kw, id=f"SGD-{case}") for case, kw in SGD_CASES.items()]
    + [pytest.param(Adam, kw, id=f"Adam-{case}") for case, kw in ADAM_CASES.items()],
)
def test_matches_torch_optim_with_per_parameter_multipliers(xp, optimizer_class, kwargs):
    grads_seq = gradient_sequence()
    ours, optimizer, params = run_ours(xp, optimizer_class, kwargs, grads_seq)
    theirs = run_torch(optimizer_class, kwargs, grads_seq)
    assert_same_trajectory(ours, theirs, optimizer_class.__name__)

    frozen = ours[-1]["upscore.weight"]
    assert np.array_equal(frozen, initial_data()["upscore.weight"]), "lr_mult=0 moved"
    assert "upscore.weight" not in optimizer.state, "a frozen parameter keeps no state"
    assert optimizer.step_count == STEPS


@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
def test_updates_in_place_and_leaves_the_gradient_alone(xp, optimizer_class):
    params = make_params(xp, initial_data())
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)
    if optimizer_class is Adam:
        kwargs = dict(lr=0.1, weight_decay=0.1)
    optimizer = optimizer_class(params.values(), **kwargs)
    grads = gradient_sequence(1)[0]
    arrays = {}
    for name, p in params.items():
        p.grad = xp.array(grads[name])
        arrays[name] = p.data
    optimizer.step()
    for name, p in params.items():
        assert p.data is arrays[name], f"{name}: step() replaced the array instead of updating it"
        assert np.array_equal(asnumpy(p.grad), grads[name]), f"{name}: step() changed the grad"
    assert not np.array_equal(asnumpy(params["conv.weight"].data), initial_data()["conv.weight"])


@pytest.mark.parametrize(
    "optimizer_class,kwargs,temporaries",
    [
        (SGD, dict(lr=0.1), 1),
        (SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True), 1),
        (Adam, dict(), 1),
        (Adam, dict(weight_decay=1e-4), 2),
    ],
    ids=["SGD", "SGD-nesterov-weight-decay", "Adam", "Adam-weight-decay"],
)
def test_peak_memory_of_a_step(optimizer_class, kwargs, temporaries):
    """A step allocates at most ``temporaries`` arrays of the parameter's size (fc6: 411 MB)."""
    p = Parameter(np.ones(1_000_000))
    p.grad = np.full(p.shape, 0.5)
    optimizer = optimizer_class([p], **kwargs)
    optimizer.step()  # the first step allocates the state
    tracemalloc.start()
    try:
        optimizer.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (temporaries + 0.1) * p.data.nbytes, (
        f"peak {peak / p.data.nbytes:.2f} x the parameter's size, expected <= {temporaries}"
    )


@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
def test_skips_parameters_without_gradient_or_requires_grad(xp, optimizer_class):
    data = initial_data()
    params = make_params(xp, data)
    params["conv.bias"].requires_grad = False  # a gradient is there but must not be used
    optimizer = optimizer_class(params.items(), lr=0.1, weight_decay=0.5)
    grads = gradient_sequence(1)[0]
    for name, p in params.items():
        p.grad = None if name == "score.weight" else xp.array(grads[name])
    for _ in range(3):
        optimizer.step()
    for name in ("conv.bias", "score.weight", "upscore.weight"):
        assert np.array_equal(asnumpy(params[name].data), data[name]), f"{name} was updated"
        assert name not in optimizer.state, f"{name} got optimizer state"
    assert not np.array_equal(asnumpy(params["conv.weight"].data), data["conv.weight"])


def test_zero_grad_keeps_the_gradient_arrays():
    params = make_params(np, initial_data())
    for p in params.values():
        p.grad = np.ones(p.shape)
    grads = {name: p.grad for name, p in params.items()}
    SGD(params.values(), lr=0.1).zero_grad()
    for name, p in params.items():
        assert p.grad is grads[name] and not p.grad.any(), name


def test_named_parameters_of_a_module_key_the_state():
    conv = Conv2d(3, 2, (3, 2), dtype=np.float64)
    optimizer = SGD(conv.named_parameters(), lr=0.1, momentum=0.9)
    for p in conv.parameters():
        p.grad = np.ones(p.shape)
    optimizer.step()
    state = optimizer.state_dict()
    assert state["param_keys"] == ["weight", "bias"]
    assert sorted(state["state"]) == ["bias", "weight"]
    assert state["state"]["weight"]["momentum_buffer"].shape == (2, 3, 3, 2)
    positional = SGD(conv.parameters(), lr=0.1).state_dict()
    assert positional["param_keys"] == ["0", "1"]


# --- resume --------------------------------------------------------------------------------------

RESUME_CASES = {
    "SGD-nesterov-weight-decay-step": (SGD, SGD_CASES["nesterov-weight-decay"], "step"),
    "SGD-momentum-poly": (SGD, SGD_CASES["fcn-solver-momentum-0.99"], "poly"),
    "Adam-weight-decay-poly": (Adam, ADAM_CASES["weight-decay"], "poly"),
}


def make_scheduler(kind, optimizer):
    return StepLR(optimizer, step_size=2, gamma=0.5) if kind == "step" else PolyLR(optimizer, 6)


def train(xp, params, optimizer, scheduler, grads_seq):
    for grads in grads_seq:
        for name, p in params.items():
            p.grad = xp.array(grads[name])
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("through_file", [False, True], ids=["in-memory", "checkpoint-file"])
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_state_dict_resumes_bit_identically(xp, tmp_path, case, through_file):
    """3 steps, save, a new optimizer and scheduler, load, 3 more == 6 uninterrupted steps."""
    optimizer_class, kwargs, kind = RESUME_CASES[case]
    grads_seq = gradient_sequence(6)

    straight = make_params(xp, initial_data())
    optimizer = optimizer_class(straight.items(), **kwargs)
    train(xp, straight, optimizer, make_scheduler(kind, optimizer), grads_seq)

    resumed = make_params(xp, initial_data())
    optimizer = optimizer_class(resumed.items(), **kwargs)
    scheduler = make_scheduler(kind, optimizer)
    train(xp, resumed, optimizer, scheduler, grads_seq[:3])
    state = {"optim": optimizer.state_dict(), "sched": scheduler.state_dict()}
    weights = {name: asnumpy(p.data).copy() for name, p in resumed.items()}
    if through_file:
        io.save_checkpoint(tmp_path / "ckpt.npz", state=state)
        state = io.load_checkpoint(tmp_path / "ckpt.npz")["state"]

    resumed = make_params(xp, weights)
    optimizer = optimizer_class(resumed.items(), **{**kwargs, "lr": 123.0})  # lr comes from state
    scheduler = make_scheduler(kind, optimizer)
    optimizer.load_state_dict(state["optim"])
    scheduler.load_state_dict(state["sched"])
    assert scheduler.last_epoch == 3 and optimizer.step_count == 3
    train(xp, resumed, optimizer, scheduler, grads_seq[3:])

    for name in SPECS:
        ours, theirs = asnumpy(resumed[name].data), asnumpy(straight[name].data)
        assert np.array_equal(ours, theirs), (
            f"{name}: resumed vs uninterrupted differ by {np.abs(ours - theirs).max():.3e}"
        )


def test_load_state_dict_copies_and_checks():
    params = make_params(np, initial_data())
    optimizer = SGD(params.items(), lr=0.1, momentum=0.9)
    for name, p in params.items():
        p.grad = np.ones(p.shape) * (name != "upscore.weight")
    optimizer.step()
    state = optimizer.state_dict()

    other = SGD(make_params(np, initial_data()).items(), lr=0.1, momentum=0.9)
    other.load_state_dict(state)
    buf = state["state"]["conv.weight"]["momentum_buffer"]
    assert other.state["conv.weight"]["momentum_buffer"] is not buf, "loaded state aliases"
    assert np.array_equal(other.state["conv.weight"]["momentum_buffer"], buf)

    with pytest.raises(KeyError, match="named_parameters"):
        SGD(make_params(np, initial_data()).values(), lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="got the state of 'SGD'"):
        Adam(make_params(np, initial_data()).items()).load_state_dict(state)
    bad = {**state, "state": {"conv.weight": {"momentum_buffer": np.zeros(3)}}}
    with pytest.raises(ValueError, match=r"momentum_buffer of 'conv.weight' has shape \(3,\)"):
        other.load_state_dict(bad)


def test_state_on_another_dtype_is_an_error_until_moved():
    params = make_params(np, initial_data())
    optimizer = SGD(params.items(), lr=0.1, momentum=0.9)
    for p in params.values():
        p.grad = np.ones(p.shape)
    optimizer.step()
    for p in params.values():
        p.to(dtype=np.float32)
    with pytest.raises(RuntimeError, match="Create the optimizer after model.to"):
        optimizer.step()
    optimizer.load_state_dict(optimizer.state_dict())  # moves the state onto the parameters
    optimizer.step()
    assert optimizer.state["conv.weight"]["momentum_buffer"].dtype == np.float32


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda ps: SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda ps: SGD(Conv2d(1, 1, 1), lr=0.1), TypeError, "model.parameters()"),
        (lambda ps: SGD([ps[0], ("b", ps[1])], lr=0.1), TypeError, "item 1 is a tuple"),
        (lambda ps: SGD([ps[0], ps[0]], lr=0.1), ValueError, "more than once"),
        (lambda ps: SGD(ps, lr=-1.0), ValueError, "lr must be >= 0"),
        (lambda ps: SGD(ps, lr=0.1, nesterov=True), ValueError, "nesterov=True needs"),
        (lambda ps: Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        (lambda ps: StepLR(SGD(ps, lr=0.1), 0), ValueError, "step_size must be a positive"),
        (lambda ps: PolyLR(SGD(ps, lr=0.1), 0), ValueError, "max_steps must be a positive"),
    ],
    ids=[
        "empty",
        "module",
        "mixed-kinds",
        "duplicate",
        "negative-lr",
        "nesterov-no-momentum",
        "beta-1",
        "step-size-0",
        "max-steps-0",
    ],
)
def test_bad_arguments(make, error, match):
    params = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    with pytest.raises(error, match=match):
        make(params)


# --- schedules -----------------------------------------------------------------------------------


def lr_sequences(make_ours, make_theirs, steps, base_lr=0.1):
    """(ours, torch's) lr before the first step and after each scheduler step."""
    ours_opt = SGD([Parameter(np.zeros(1))], lr=base_lr)
    ours = make_ours(ours_opt)
    weight = torch.zeros(1, requires_grad=True)
    theirs_opt = torch.optim.SGD([weight], lr=base_lr)
    theirs = make_theirs(theirs_opt)
    ours_lrs, theirs_lrs = [ours_opt.lr], [theirs_opt.param_groups[0]["lr"]]
    for _ in range(steps):
        theirs_opt.step()  # torch warns when the scheduler steps before the optimizer
        theirs.step()
        ours.step()
        ours_lrs.append(ours_opt.lr)
        theirs_lrs.append(theirs_opt.param_groups[0]["lr"])
        assert ours.get_last_lr() == ours_opt.lr
    return np.array(ours_lrs), np.array(theirs_lrs)


@pytest.mark.parametrize("step_size,gamma", [(3, 0.1), (1, 0.5), (4, 0.9)])
def test_step_lr_matches_torch(step_size, gamma):
    ours, theirs = lr_sequences(
        lambda o: StepLR(o, step_size, gamma),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size, gamma),
        steps=13,
    )
    assert_close(ours, theirs, f"StepLR({step_size}, {gamma}) lr sequence", 1e-12, 0)


@pytest.mark.parametrize("power", [0.9, 1.0, 2.0])
def test_poly_lr_matches_torch_polynomial_lr(power):
    """PolyLR(max_steps, power) == PolynomialLR(total_iters=max_steps, power=power), zero after
    max_steps (torch's default power is 1.0, ours segmentation's customary 0.9)."""
    ours, theirs = lr_sequences(
        lambda o: PolyLR(o, 10, power),
        lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=10, power=power),
        steps=14,
    )
    assert_close(ours, theirs, f"PolyLR(10, {power}) lr sequence", 1e-12, 1e-18)
    assert ours[0] == 0.1 and np.all(ours[10:] == 0)
    expected = [0.1 * (1 - t / 10) ** power for t in range(11)]  # the formula, written out
    assert_close(ours[:11], np.array(expected), "PolyLR closed form", 1e-15, 0)


def test_scheduler_state_dict_and_multipliers():
    params = make_params(np, initial_data())
    optimizer = SGD(params.items(), lr=0.2)
    scheduler = StepLR(optimizer, step_size=2, gamma=0.1)
    for _ in range(5):
        scheduler.step()
    assert optimizer.lr == pytest.approx(0.2 * 0.1**2)

    fresh = SGD(make_params(np, initial_data()).items(), lr=0.2)
    restored = StepLR(fresh, step_size=7)
    restored.load_state_dict(scheduler.state_dict())
    assert (restored.step_size, restored.last_epoch, fresh.lr) == (2, 5, optimizer.lr)
    with pytest.raises(ValueError, match="got the state of 'StepLR'"):
        PolyLR(fresh, 10).load_state_dict(scheduler.state_dict())

    # the schedule scales the base lr; each parameter still multiplies it by its lr_mult
    for p in params.values():
        p.grad = np.ones(p.shape)
    before = {name: p.data.copy() for name, p in params.items()}
    optimizer.step()
    for name, (_, lr_mult, _) in SPECS.items():
        step = before[name] - params[name].data
        assert_close(step, np.full(step.shape, optimizer.lr * lr_mult), f"{name} step", 1e-12, 0)
