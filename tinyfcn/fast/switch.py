"""The one switch between engine and textbook: ``disabled()``, ``is_enabled()``, TINYFCN_FAST.

With the engine off, every layer calls the textbook functions of ``tinyfcn.functional`` and
nothing else: the code a student reads is the code that runs. The default is on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

ENV = "TINYFCN_FAST"
_OFF, _ON = ("0", "false", "no", "off"), ("", "1", "true", "yes", "on")
_override: list[bool] = []  # innermost disabled()/enabled() last; empty: the environment decides


def is_enabled() -> bool:
    """True when the layers run the engine (the default); False under ``disabled()`` or with
    the environment variable ``TINYFCN_FAST=0``."""
    if _override:
        return _override[-1]
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(f"{ENV} must be 0 (textbook only) or 1 (the engine, default), got {value!r}")


@contextmanager
def _forced(value: bool) -> Iterator[None]:
    _override.append(value)
    try:
        yield
    finally:
        _override.pop()


def disabled() -> AbstractContextManager[None]:
    """Run everything inside on the textbook functions alone (``tinyfcn.functional``)."""
    return _forced(False)


def enabled() -> AbstractContextManager[None]:
    """Run everything inside on the engine, whatever ``TINYFCN_FAST`` says."""
    return _forced(True)
