"""Checkpoints and weight import: tinyfcn ``.npz`` files, PyTorch ``.pth`` state dicts, and
torchvision's ImageNet VGG16 (the weights FCN starts from), convolutionalized on the way in.

A checkpoint is one ``.npz`` file: ``model/<name>`` for each parameter (``model/conv1_1.weight``),
``state/<path>`` for each array of the extra state (``state/optim/momentum/fc6.weight``) and
``__meta__``, a 0-d string array holding JSON (model class, ``model.config``, step, epoch, ...).
It is written to a temporary file beside the target and then renamed over it, so a crash mid-save
never leaves half a checkpoint. PyTorch is imported only inside the functions that read or write
``.pth`` files; tinyfcn does not depend on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .backend import asnumpy, is_cupy_array
from .models.torchvision_vgg16 import vgg16_state_from_torchvision

FORMAT, FORMAT_VERSION = "tinyfcn-checkpoint", 1
META_KEY = "__meta__"
RESERVED_META = ("format", "format_version", "tinyfcn_version", "model_class", "config")


# --- tinyfcn checkpoints -------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike, model: Any = None, state: dict | None = None, **extra: Any
) -> None:
    """Write ``model``'s weights, ``state`` and the JSON values ``extra`` to one ``.npz`` file.

    ``state``: a dict (nested dicts and lists allowed, string keys) whose array leaves are stored
    as arrays and whose other leaves as JSON, e.g. ``{"optim": optimizer.state_dict()}``.
    ``extra``: JSON-serialisable values kept in the metadata (``step=1000, epoch=3``).
    Atomic: the file at ``path`` is either the old checkpoint or the complete new one.
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tinyfcn_version": _version(),
    }
    if model is not None:
        meta["model_class"] = type(model).__name__
        meta["config"] = _encode(getattr(model, "config", None), "model.config")
        for name, value in model.state_dict().items():
            arrays[f"model/{name}"] = asnumpy(value)
    if state is not None:
        meta["state_layout"] = _encode(state, "state", arrays)
    for key, value in extra.items():
        if key in RESERVED_META or key == "state_layout":
            raise ValueError(f"save_checkpoint: {key!r} is reserved for the checkpoint's metadata")
        meta[key] = _encode(value, key)
    arrays[META_KEY] = np.array(json.dumps(meta))
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by ``save_checkpoint``.

    Returns ``{"model": {name: array} or None, "state": the saved state or None, "meta": {...}}``;
    ``meta`` holds format, tinyfcn_version, model_class, config and every ``extra`` value (JSON
    turns tuples into lists). Raises FileNotFoundError or ValueError naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if META_KEY not in f.files:
                raise ValueError(
                    f"no {META_KEY!r} entry: not a tinyfcn checkpoint (for a PyTorch .pth use "
                    "load_torch_state_dict or load_model_weights)"
                )
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(arrays.pop(META_KEY).item())
    except Exception as e:  # BadZipFile (truncated or corrupt), ValueError, OSError, ...
        raise ValueError(
            f"{path!r} is not a readable tinyfcn checkpoint: {type(e).__name__}: {e}"
        ) from e
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path!r}: unsupported checkpoint format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r} (this tinyfcn reads {FORMAT!r} <= {FORMAT_VERSION})"
        )
    model = None
    if "model_class" in meta:
        prefix = "model/"
        model = OrderedDict(
            (k[len(prefix) :], v) for k, v in arrays.items() if k.startswith(prefix)
        )
    state = _decode(meta.pop("state_layout"), arrays, path) if "state_layout" in meta else None
    return {"model": model, "state": state, "meta": meta}


def load_model_weights(model: Any, path: str | os.PathLike, strict: bool = True) -> Any:
    """Load weights into ``model`` (returned) from a tinyfcn ``.npz`` checkpoint, a PyTorch
    ``.pth`` (state dict or training checkpoint, pytorch-fcn's key names), or torchvision's VGG16
    ImageNet weights (``features.N`` / ``classifier.N`` keys, see ``load_vgg16_torchvision``).

    ``strict`` as in ``Module.load_state_dict``; torchvision weights are always checked in full.
    """
    path = os.fspath(path)
    if _is_tinyfcn_checkpoint(path):
        checkpoint = load_checkpoint(path)
        if checkpoint["model"] is None:
            raise ValueError(f"{path!r} holds no model weights (saved without model=)")
        _warn_if_different(model, checkpoint["meta"], path)
        state_dict = checkpoint["model"]
    else:
        state_dict = load_torch_state_dict(path)
        if "features.0.weight" in state_dict and "conv1_1.weight" not in state_dict:
            return load_vgg16_torchvision(model, state_dict)
    try:
        model.load_state_dict(state_dict, strict=strict)
    except KeyError as e:
        raise KeyError(f"{path!r}: {e.args[0]}") from e
    return model


def _encode(value: Any, where: str, arrays: dict | None = None) -> Any:
    """``value`` as JSON; with ``arrays`` given, each array leaf goes there under its path and is
    replaced by ``{"__array__": path}``. Raises TypeError naming what cannot be stored."""
    if isinstance(value, np.ndarray) or is_cupy_array(value):
        if arrays is None:
            raise TypeError(f"{where} is an array: pass arrays in state=, not as metadata")
        if where in arrays:
            raise ValueError(f"two state entries are both stored as {where!r}")
        if value.dtype == object:
            raise TypeError(f"{where} is an object array: it would need pickle to load")
        arrays[where] = asnumpy(value)
        return {"__array__": where}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"{where} has the key {k!r}: checkpoint keys must be strings")
        return {k: _encode(v, f"{where}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}/{i}", arrays) for i, v in enumerate(value)]
    raise TypeError(f"{where} ({type(value).__name__}) cannot be stored in a checkpoint")


def _decode(layout: Any, arrays: dict, path: str) -> Any:
    if isinstance(layout, dict) and set(layout) == {"__array__"}:
        if layout["__array__"] not in arrays:
            raise ValueError(f"{path!r} is missing the state array {layout['__array__']!r}")
        return arrays[layout["__array__"]]
    if isinstance(layout, dict):
        return {k: _decode(v, arrays, path) for k, v in layout.items()}
    if isinstance(layout, list):
        return [_decode(v, arrays, path) for v in layout]
    return layout


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync it, rename it over ``path``.

    ``os.replace`` is atomic (POSIX and Windows): readers see the old file or the complete new
    one. On any failure, Ctrl-C included, the temporary file is removed and the old one stays.
    A kill that allows no clean-up (SIGKILL, power loss) leaves ``.<name>.<pid>.<random>.tmp``;
    the next write of the same file removes those whose process is gone.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    prefix = f".{os.path.basename(path)}."
    _remove_stale_temporaries(directory, prefix)
    tmp = tempfile.NamedTemporaryFile(
        delete=False, dir=directory, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp"
    )
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp.name, mode)  # NamedTemporaryFile makes 0600 files
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX only)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temporaries(directory: str, prefix: str) -> None:
    """Delete ``<prefix><pid>.<random>.tmp`` files left by processes that no longer run."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split(".", 1)[0]
        if not (name.startswith(prefix) and name.endswith(".tmp") and pid.isdigit()):
            continue
        if int(pid) != os.getpid() and not _process_exists(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: keep the file
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def _file_mode(path: str) -> int:
    """Permission bits for the new file: the old file's, else what ``open`` would give."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _is_tinyfcn_checkpoint(path: str) -> bool:
    """By name (``.npz``) or by content (a zip holding ``__meta__.npy``); ``.pth`` files are zips
    too, since PyTorch 1.6."""
    if path.endswith(".npz"):
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return f"{META_KEY}.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _warn_if_different(model: Any, meta: dict, path: str) -> None:
    """Same keys and shapes do not make the same network (FCN8s vs FCN8sAtOnce, paper vs compact
    geometry): say so when the checkpoint came from another class or configuration."""
    config = getattr(model, "config", None)
    config = json.loads(json.dumps(_encode(config, "model.config")))
    ours, theirs = (type(model).__name__, config), (meta.get("model_class"), meta.get("config"))
    if ours != theirs:
        warnings.warn(
            f"{path!r} was saved from {theirs[0]} {theirs[1]}, loading into {ours[0]} {ours[1]}",
            stacklevel=3,
        )


def _version() -> str:
    from . import __version__  # at call time: tinyfcn/__init__ may import this module

    return __version__


# --- PyTorch state dicts -------------------------------------------------------------------------


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "reading or writing PyTorch .pth files needs PyTorch, which tinyfcn does not "
            "otherwise depend on: pip install torch (the CPU build is enough)"
        ) from e
    return torch


def load_torch_state_dict(path_or_dict: str | os.PathLike | Mapping) -> OrderedDict:
    """``{name: np.ndarray}`` from a PyTorch ``.pth`` file or an in-memory dict of tensors.

    Accepts a plain state dict or a training checkpoint keeping it under ``model_state_dict``
    (pytorch-fcn's trainer), ``state_dict`` or ``model``; strips DataParallel's ``module.``
    prefix. Files are read with ``torch.load(map_location="cpu", weights_only=True)``, which
    never runs pickled code. Arrays may share memory with the tensors of a dict passed in.
    """
    if isinstance(path_or_dict, Mapping):
        obj, source = path_or_dict, "the given dict"
    else:
        source = repr(os.fspath(path_or_dict))
        if not os.path.exists(os.fspath(path_or_dict)):
            raise FileNotFoundError(f"PyTorch file {source} does not exist")
        torch = _import_torch()
        try:
            obj = torch.load(os.fspath(path_or_dict), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"cannot read {source} with torch.load(weights_only=True): {type(e).__name__}: {e}"
            ) from e
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a state dict")
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    out = OrderedDict()
    for key, value in obj.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name in out:
            raise ValueError(f"{source}: {key!r} and {name!r} name the same parameter")
        out[name] = _tensor_to_numpy(value, key, source, list(obj))
    return out


def _tensor_to_numpy(value: Any, key: str, source: str, keys: list) -> np.ndarray:
    if isinstance(value, np.ndarray) or is_cupy_array(value):
        return asnumpy(value)
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        if tensor.dtype == _import_torch().bfloat16:  # NumPy has no bfloat16; float32 is exact
            tensor = tensor.float()
        return tensor.numpy()
    raise ValueError(
        f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor, so this is not a "
        f"state dict (keys: {keys[:8]}); a training checkpoint should keep the weights under "
        "'model_state_dict' or 'state_dict'"
    )


def save_torch_state_dict(model: Any, path: str | os.PathLike) -> None:
    """Export ``model``'s weights as a PyTorch state dict (``torch.save``, atomic), by
    PyTorch's names and layouts: loadable into the pytorch-fcn models with ``load_state_dict``."""
    torch = _import_torch()
    state_dict = OrderedDict(
        (name, torch.from_numpy(np.ascontiguousarray(asnumpy(value))))
        for name, value in model.state_dict().items()
    )
    _atomic_write(path, lambda f: torch.save(state_dict, f))


# --- torchvision's ImageNet VGG16 ----------------------------------------------------------------


def load_vgg16_torchvision(model: Any, state_dict_or_path: str | os.PathLike | Mapping) -> Any:
    """Load torchvision's VGG16 ImageNet weights (``vgg16-397923af.pth``) into ``model`` (a VGG16
    or an FCN; the names and the convolutionalization: ``models.torchvision_vgg16``). Returns it.
    """
    source = (
        "the given dict"
        if isinstance(state_dict_or_path, Mapping)
        else repr(os.fspath(state_dict_or_path))
    )
    weights = load_torch_state_dict(state_dict_or_path)
    model.load_state_dict(vgg16_state_from_torchvision(model, weights, source), strict=False)
    return model
