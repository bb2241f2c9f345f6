"""Samples shared out among threads (tinyfcn.fast.shares): which samples each share gets, that
every share runs with one BLAS thread and all have finished before the call returns (also when
one fails), and that the shared kernels give the same numbers every run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tinyfcn.blas import blas_threads, get_blas_threads
from tinyfcn.fast.conv_blocked import conv2d_blocked_backward, conv2d_blocked_forward
from tinyfcn.fast.shares import run_shares, sample_shares
from tinyfcn.fast.winograd import winograd_weight_grad


def test_sample_shares_are_round_robin_and_never_empty():
    assert sample_shares(5, 2) == [range(0, 5, 2), range(1, 5, 2)]
    assert [list(r) for r in sample_shares(7, 3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert sample_shares(2, 8) == [range(0, 2, 2), range(1, 2, 2)]  # no more shares than samples
    assert sample_shares(3, 1) == sample_shares(3, 0) == [range(3)]


def test_run_shares_gives_results_in_share_order_each_on_one_blas_thread():
    seen = {}

    def work(share, samples):
        seen[share] = (threading.get_ident(), get_blas_threads())
        return share, list(samples)

    with blas_threads(2):
        before = get_blas_threads()
        assert run_shares(work, 5, 2) == [(0, [0, 2, 4]), (1, [1, 3])]
        assert get_blas_threads() == before  # restored
    assert seen[0][0] == threading.get_ident()  # share 0 ran here, share 1 elsewhere
    assert seen[1][0] != threading.get_ident()
    if before is not None:  # an OpenBLAS we can steer
        assert seen[0][1] == seen[1][1] == 1


def test_one_share_runs_here_and_leaves_blas_threads_alone():
    with blas_threads(2):
        before = get_blas_threads()
        shares = run_shares(lambda t, s: (threading.get_ident(), get_blas_threads()), 1, 4)
    assert shares == [(threading.get_ident(), before)]


def test_a_failing_share_is_raised_only_after_every_share_has_finished():
    finished = []

    def work(share, samples):
        if share == 0:
            raise ValueError("share 0 failed")
        time.sleep(0.2)  # still writing when share 0 fails
        finished.append(share)

    with pytest.raises(ValueError, match="share 0 failed"):
        run_shares(work, 4, 2)
    assert finished == [1]

    def fail_elsewhere(share, samples):
        if share == 1:
            raise RuntimeError("share 1 failed")

    with pytest.raises(RuntimeError, match="share 1 failed"):
        run_shares(fail_elsewhere, 4, 2)


def test_shared_blocked_conv_gives_the_same_numbers_every_run():
    """dW is summed over shares in share order: bit for bit the same each time (float32)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8, 12, 11)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 6, 12, 11)).astype(np.float32)
    args = ((3, 3), (1, 1), (1, 1), (1, 1))
    runs = []
    for _ in range(3):
        y, cache = conv2d_blocked_forward(x, w, None, *args, (12, 11), 2000, threads=2)
        runs.append((y,) + conv2d_blocked_backward(dy, cache, True, None)[:2])
    for later in runs[1:]:
        for a, b in zip(runs[0], later, strict=True):
            np.testing.assert_array_equal(a, b)


def test_shared_winograd_weight_grad_gives_the_same_numbers_every_run():
    """dU summed over the shares of blocks in share order, bit for bit each time (float32)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8, 13, 12)).astype(np.float32)
    dy = rng.standard_normal((3, 6, 13, 12)).astype(np.float32)
    runs = [winograd_weight_grad(x, dy, 1, 5000, 4, threads=2) for _ in range(3)]
    for later in runs[1:]:
        np.testing.assert_array_equal(runs[0], later)


def test_a_forked_child_makes_its_own_pool():
    """The parent's pool threads do not exist in a forked child: the child must not wait on them."""
    import multiprocessing

    run_shares(lambda t, s: None, 2, 2)  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(run_shares, (_share_and_samples, 4, 2))
        assert result.get(timeout=20) == [(0, [0, 2]), (1, [1, 3])]


def _share_and_samples(share, samples):
    return share, list(samples)
