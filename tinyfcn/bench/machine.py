"""What a timing means nothing without: CPU, cores, versions, NumPy's BLAS, the git commit."""

from __future__ import annotations

import ctypes
import datetime
import os
import platform
import subprocess
from typing import Any

import numpy as np

from .. import fast
from ..blas import openblas_function

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# environment variables that make OpenBLAS run an older kernel than the CPU could (this machine
# may set them: numpy's GEMM peak then halves, and every ratio to PyTorch moves)
FORCING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def numpy_blas_info() -> dict:
    """NumPy's BLAS: name, version, the kernel it runs (OpenBLAS's core name), whether the
    environment forces that kernel (OPENBLAS_CORETYPE), thread count (None where unknown)."""
    info: dict[str, Any] = {"name": None, "version": None, "config": None, "threads": None}
    info["kernel"] = None
    info["forced"] = {k: os.environ[k] for k in FORCING if k in os.environ}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=blas.get("name"), version=blas.get("version"))
    except Exception:
        pass
    for key, stem, restype in (
        ("config", "get_config", ctypes.c_char_p),
        ("kernel", "get_corename", ctypes.c_char_p),
        ("threads", "get_num_threads", ctypes.c_int),
    ):
        fn = openblas_function(stem, restype)
        if fn is not None:
            value = fn()
            info[key] = value.decode() if isinstance(value, bytes) else value
    return info


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the repository holding tinyfcn, or None."""
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"),  # never touch the index
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict:
    """The commit the library was run at, and library files changed since (the benchmark's own
    files excluded): kernels edited during a series of runs show up here."""
    commit = _git("log", "-1", "--format=%h")
    mine = (":(exclude)tinyfcn/bench", ":(exclude)tinyfcn/bench.py")
    changed = _git("diff", "--name-only", "HEAD", "--", "tinyfcn", *mine)
    return {"commit": commit, "uncommitted": changed.split() if changed else []}


def machine_header(torch, device: str) -> dict:
    """CPU, versions, BLAS threads, the commit and the date."""
    header = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "cpu": cpu_model(),
        "cores": core_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numpy_blas": numpy_blas_info(),
        "torch_threads": torch.get_num_threads(),
        "torch_mkl": bool(torch.backends.mkl.is_available()),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "tinyfcn_engine": "on" if fast.is_enabled() else "off: the textbook alone",
        "git": git_state(),
    }
    if device == "cuda":
        header["gpu"] = torch.cuda.get_device_name()
    return header
