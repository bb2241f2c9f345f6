"""Memory the engine reuses: one shared im2col workspace per dtype, and each layer's spare matrix.

Layers run one after another, so all forward-only convolutions can share one block workspace (as
Caffe shares its column buffer), bounded by ``im2col_budget()``. A training convolution's im2col
matrix is dead once its backward has run; kept as that layer's spare, it becomes the next step's
matrix instead of a fresh allocation (and its page faults).
"""

from __future__ import annotations

import weakref
from typing import Any

_budget = {"bytes": 128 * 2**20}
_workspaces: dict = {}  # (array module, dtype, name) -> flat array, grown on demand
_spares: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> its last matrix


def im2col_budget() -> int:
    """Largest im2col block, in bytes, that a forward-only convolution builds at once."""
    return _budget["bytes"]


def set_im2col_budget(nbytes: int) -> None:
    """Set the im2col memory budget (default 128 MiB); small budgets trade speed for memory."""
    if nbytes < 1:
        raise ValueError(f"the im2col budget must be a positive number of bytes, got {nbytes}")
    _budget["bytes"] = int(nbytes)
    _workspaces.clear()


def workspace(xp: Any, dtype: Any, size: int, name: str = "cols", share: int = 0) -> Any:
    """A flat array of at least ``size`` elements, shared by every kernel that asks for ``name``
    (one layer runs at a time); each ``share`` of a layer's work (``shares.py``: the threads run
    at once) has its own."""
    key = (xp.__name__, str(dtype), name, share)
    buffer = _workspaces.get(key)
    if buffer is None or buffer.size < size:
        buffer = _workspaces[key] = xp.empty(size, dtype=dtype)
    return buffer


def workspace_array(xp: Any, dtype: Any, shape: tuple, name: str, share: int = 0) -> Any:
    """An array of ``shape`` at the start of the workspace ``name`` of ``share`` (contents
    undefined)."""
    size = 1
    for n in shape:
        size *= n
    return workspace(xp, dtype, size, name, share)[:size].reshape(shape)


def take_spare(owner: Any, shape: tuple, like: Any) -> Any:
    """``owner``'s spare matrix if it has this shape, dtype and array type (it is then handed
    out: nobody else gets it until ``keep_spare``), else None."""
    if owner is None:
        return None
    spare = _spares.pop(owner, None)
    if spare is None or type(spare) is not type(like) or spare.dtype != like.dtype:
        return None
    return spare if tuple(spare.shape) == tuple(shape) else None


def spare_of(owner: Any) -> Any:
    """``owner``'s spare matrix, or None (for tests and the curious; nothing is handed out)."""
    return _spares.get(owner)


def keep_spare(owner: Any, cols: Any) -> None:
    """Keep ``cols`` (a matrix whose contents are dead) as ``owner``'s spare. A view of another
    array (a pointwise conv's "matrix" is its input) is never kept: it is not ours to write."""
    if owner is not None and cols is not None and cols.base is None:
        _spares[owner] = cols
