"""Benchmarks against PyTorch in one process: every VGG16/FCN-8s layer, or a whole FCN.

    python -m tinyfcn.bench layers [--rounds 7] [--size 224] [--only conv3_1,fc7] [--json PATH]
    python -m tinyfcn.bench model [--model fcn8s] [--geometry compact] [--width 1] [--size 224]

Both libraries run in one process, alternating within each round (the order flips every round),
after untimed warm-up rounds; PyTorch is imported only inside the benchmark functions.

Fair timing on a small shared machine takes three precautions: OpenBLAS's idle threads spin and
starve PyTorch's unless ``OPENBLAS_THREAD_TIMEOUT`` is set before NumPy loads (``main``
re-executes itself with it set); PyTorch's OpenMP threads spin for 5-10 ms after each call, so
every timed block starts after a 20 ms pause (``timing.time_block``); and rounds that another
process disturbed are run again (``--quiet-wait``, ``quiet.QuietGate``).

Files: ``machine`` (header: CPU, BLAS, commit), ``quiet`` (other processes), ``timing`` (a timed
block, the GEMM peak), ``rounds`` (alternating rounds), ``specs`` and ``layers`` (the layer
benchmark), ``model`` (the model benchmark), ``report`` (tables, JSON), ``command`` (``main``).
"""

from .command import build_parser, main
from .layers import bench_layers, run_benchmark
from .machine import machine_header, numpy_blas_info
from .model import bench_model, randomise, run_model_benchmark
from .quiet import OtherLoad, QuietGate, busy_cores
from .report import format_header, format_model_table, format_table, totals
from .specs import LayerSpec, layer_specs
from .timing import GemmProbe

__all__ = [
    "GemmProbe",
    "LayerSpec",
    "OtherLoad",
    "QuietGate",
    "bench_layers",
    "bench_model",
    "build_parser",
    "busy_cores",
    "format_header",
    "format_model_table",
    "format_table",
    "layer_specs",
    "machine_header",
    "main",
    "numpy_blas_info",
    "randomise",
    "run_benchmark",
    "run_model_benchmark",
    "totals",
]
