"""Smoke tests of the layer and model benchmarks: they run, and their rows say what they should
(never their timings or ratios)."""

from __future__ import annotations

import contextlib
import json
import math
import os

import pytest

from tinyfcn.bench import (
    bench_layers,
    format_header,
    format_model_table,
    format_table,
    layer_specs,
    main,
    run_model_benchmark,
    totals,
)
from tinyfcn.models import MODELS
from tinyfcn.models.summary import summary_rows

pytest.importorskip("torch")

LAYERS = ["conv3_1", "pool5", "score_pool4"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "layers.json"
    unset = os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None  # then the ratios are suspect
    with pytest.warns(RuntimeWarning, match="OPENBLAS") if unset else contextlib.nullcontext():
        out = bench_layers(
            rounds=1, size=32, layers=LAYERS, json_path=str(path), warmup=1, gemm_size=256
        )
    return out, path


def test_rows_have_positive_times_and_sane_keys(rows):
    out, _ = rows
    assert [(r["layer"], r["pass"]) for r in out] == [
        (name, p) for name in LAYERS for p in ("fwd", "fwd+bwd")
    ]
    for r in out:
        for lib in ("tinyfcn", "torch"):
            assert 0 < r[f"{lib}_min_ms"] <= r[f"{lib}_ms"] <= r[f"{lib}_max_ms"], r
            assert len(r[f"{lib}_samples_ms"]) == 1
        assert r["ratio"] > 0 and math.isfinite(r["ratio"])
        assert r["max_rel_err"] < 1e-3, f"{r['layer']}: tinyfcn and torch disagree"
        assert r["calls_per_block"] >= 1
    conv = {r["pass"]: r for r in out if r["layer"] == "conv3_1"}
    assert conv["fwd"]["input_shape"] == [1, 128, 8, 8]  # 32 -> conv3 at 32 / 4
    assert conv["fwd"]["output_shape"] == [1, 256, 8, 8]
    assert conv["fwd"]["flops"] == 2 * 256 * 128 * 9 * 8 * 8
    assert conv["fwd+bwd"]["flops"] == 3 * conv["fwd"]["flops"]
    assert conv["fwd"]["tinyfcn_gflops"] > 0 and conv["fwd"]["peak_fraction"] > 0
    pool = next(r for r in out if r["layer"] == "pool5")
    assert pool["flops"] == 0 and pool["tinyfcn_gflops"] is None
    kernels = {(r["layer"], r["pass"]): r["kernel"] for r in out}  # what the planner ran
    assert kernels[("conv3_1", "fwd")] == "chunked"  # 128 -> 256 channels on 8x8: no Winograd
    assert kernels[("conv3_1", "fwd+bwd")] == "kept"
    assert kernels[("pool5", "fwd")] == kernels[("pool5", "fwd+bwd")] == "pool2x2"


def test_json_and_table(rows):
    out, path = rows
    saved = json.loads(path.read_text())
    assert set(saved) == {"header", "rows", "totals"}
    assert saved["header"]["cores"] >= 1 and saved["header"]["gemm"]["numpy_gflops"] > 0
    assert [r["layer"] for r in saved["rows"]] == [r["layer"] for r in out]
    table = format_table(out)
    for name in LAYERS + ["TOTAL"]:
        assert name in table
    assert "tinyfcn kernel" in table and "pool2x2" in table
    assert saved["rows"][0]["kernel"] == out[0]["kernel"]
    total = next(t for t in totals(out) if t["layer"] == "TOTAL" and t["pass"] == "fwd")
    assert total["tinyfcn_ms"] == pytest.approx(
        sum(r["tinyfcn_ms"] for r in out if r["pass"] == "fwd")
    )


def test_layer_list_matches_fcn8s_at_224():
    specs = {s.name: s for s in layer_specs(224)}
    assert len(specs) == 26
    assert (specs["conv2_1"].hw, specs["conv5_3"].hw, specs["fc6"].hw) == (112, 14, 7)
    assert (specs["score_pool3"].hw, specs["upscore8"].hw) == (28, 28)


def test_layer_list_at_a_width_has_the_model_channels():
    from tinyfcn.models import FCN8s

    model = FCN8s(num_classes=21, width=0.25)
    modules = dict(model.named_modules())
    for spec in layer_specs(128, width=0.25):
        if spec.kind == "conv":
            weight = modules[spec.name].weight.data
            assert weight.shape == (spec.cout, spec.cin, spec.kernel, spec.kernel), spec.name
    specs = {s.name: s for s in layer_specs(128, width=0.25)}
    assert (specs["conv1_2"].cin, specs["fc7"].cout, specs["pool4"].cin) == (16, 1024, 128)


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="conv9_9"):
        bench_layers(rounds=1, size=32, layers=["conv9_9"])


def test_main_runs_without_reexec(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")  # present: main must not re-exec
    argv = "layers --quick --rounds 1 --warmup 1 --size 32 --quiet-wait 0 --only score_fr".split()
    assert main(argv + ["--json", str(tmp_path / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert "GEMM peak" in printed and "score_fr" in printed


# --- the model benchmark ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "model.json"
    unset = os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None
    with pytest.warns(RuntimeWarning, match="OPENBLAS") if unset else contextlib.nullcontext():
        header, out = run_model_benchmark(
            "fcn8s", "compact", 1 / 16, 32, rounds=1, json_path=str(path), warmup=1, gemm_size=256
        )
    return header, out, path


def test_model_rows_have_positive_times_and_sane_keys(model_run):
    header, out, _ = model_run
    assert [r["pass"] for r in out] == ["fwd", "fwd+bwd"]
    for r in out:
        for lib in ("tinyfcn", "torch"):
            assert 0 < r[f"{lib}_min_ms"] <= r[f"{lib}_ms"] <= r[f"{lib}_max_ms"], r
            assert len(r[f"{lib}_samples_ms"]) == 1
        assert r["ratio"] > 0 and math.isfinite(r["ratio"])
        assert r["tinyfcn_gflops"] > 0 and r["peak_fraction"] > 0
    model = MODELS["fcn8s"](geometry="compact", width=1 / 16)
    flops = sum(row.flops for row in summary_rows(model, (32, 32)))
    assert out[0]["flops"] == header["flops_forward"] == flops
    assert out[1]["flops"] == 3 * flops
    err = header["max_rel_err"]
    assert err["float64"]["scores"] < 1e-10 and err["float64"]["input_grad"] < 1e-10
    assert err["float32"]["scores"] < 1e-3 and err["float32"]["input_grad"] is not None
    assert (header["model"], header["size"], header["dropout"]) == ("fcn8s", [32, 32], 0.5)
    assert "commit" in header["git"]


def test_model_json_and_table(model_run):
    header, out, path = model_run
    saved = json.loads(path.read_text())
    assert set(saved) == {"header", "rows"}
    assert [r["pass"] for r in saved["rows"]] == ["fwd", "fwd+bwd"]
    table = format_model_table(out, header)
    assert "training step" in table and "set_to_none=True" in table
    assert "fcn8s (compact geometry, width 0.0625)" in format_header(header)


def test_model_inference_only_times_the_forward_alone():
    unset = os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None
    with pytest.warns(RuntimeWarning, match="OPENBLAS") if unset else contextlib.nullcontext():
        header, out = run_model_benchmark(
            "fcn32s", "paper", 1 / 16, (32, 24), rounds=1, inference_only=True, gemm_size=256
        )
    assert [r["pass"] for r in out] == ["fwd"] and out[0]["tinyfcn_ms"] > 0
    err = header["max_rel_err"]
    assert err["float64"]["input_grad"] is None and err["float64"]["scores"] < 1e-10
    assert "input gradient -" in format_model_table(out, header)


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="fcn4s"):
        run_model_benchmark("fcn4s")


def test_main_runs_the_model_benchmark(monkeypatch, capsys):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")
    argv = "model --quick --rounds 1 --warmup 1 --size 32 40 --width 0.0625 --quiet-wait 0"
    assert main(argv.split()) == 0
    printed = capsys.readouterr().out
    assert "32x40 input" in printed and "training step" in printed and "commit" in printed


def test_header_names_the_blas_kernel_and_warns_when_the_environment_forces_it(
    model_run, monkeypatch
):
    header, _, _ = model_run
    blas = dict(header["numpy_blas"])
    if blas.get("kernel") is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that names its kernel")
    blas["forced"] = {}
    quiet = format_header({**header, "numpy_blas": blas})
    assert f"kernel {blas['kernel']}" in quiet and "forces OpenBLAS" not in quiet
    blas["forced"] = {"OPENBLAS_CORETYPE": "Haswell"}
    loud = format_header({**header, "numpy_blas": blas})
    assert "WARNING: OPENBLAS_CORETYPE=Haswell forces OpenBLAS's" in loud
    assert "env -u OPENBLAS_CORETYPE tinyfcn bench" in loud
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    from tinyfcn.bench.machine import numpy_blas_info

    assert numpy_blas_info()["forced"] == {"OPENBLAS_CORETYPE": "Haswell"}


def test_main_textbook_runs_tinyfcn_without_its_engine(monkeypatch, capsys):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")
    monkeypatch.setenv("TINYFCN_FAST", "1")  # recorded: restored after the test, whatever main sets
    argv = "model --quick --rounds 1 --warmup 1 --size 32 --width 0.0625 --quiet-wait 0"
    assert main(argv.split() + ["--textbook"]) == 0
    assert os.environ["TINYFCN_FAST"] == "0"  # main set it for its own run
    assert "tinyfcn engine (tinyfcn.fast): off: the textbook alone" in capsys.readouterr().out


def test_layer_rows_say_textbook_with_the_engine_off():
    from tinyfcn import fast

    unset = os.environ.get("OPENBLAS_THREAD_TIMEOUT") is None
    with pytest.warns(RuntimeWarning, match="OPENBLAS") if unset else contextlib.nullcontext():
        with fast.disabled():
            out = bench_layers(
                rounds=1, size=32, layers=["conv3_1", "pool5"], warmup=1, gemm_size=64
            )
    assert {r["kernel"] for r in out} == {"textbook"}
