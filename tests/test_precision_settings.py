"""Process-wide precision settings cannot change a run's bits: set_determinism sets every one, the
manifest records them, and the environment variables that change GEMM kernels are recorded and compared."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from checkpoints_manifest import PRECISION_SETTINGS, environment_record, read_manifest
from helpers import tree_digest
from training import train_zoo
from training.determinism import PRECISION, cublas_workspace_problem

RUN = "gelu-1l-seed0"


def test_precision_settings_made_before_training_change_nothing_and_are_recorded(tiny_spec, trained_tiny,
                                                                                   tmp_path: Path) -> None:
    # What a notebook or a Lightning script may have done first; mkldnn off alone changes this run's bytes.
    torch.set_float32_matmul_precision("medium")
    torch.backends.mkldnn.enabled = False
    torch.backends.cudnn.benchmark = True
    try:
        train_zoo(tiny_spec, tmp_path, runs=RUN, progress=False)
    finally:
        torch.backends.mkldnn.enabled = True
    run = tmp_path / "tiny" / "runs" / RUN
    assert tree_digest(run / "checkpoints") == tree_digest(trained_tiny / "tiny" / "runs" / RUN / "checkpoints")
    assert read_manifest(run).environment.precision == PRECISION
    assert PRECISION["mkldnn.matmul.fp32_precision"] == "ieee" and PRECISION["cuda.matmul.fp32_precision"] == "ieee"


def test_environment_variables_that_change_gemm_kernels_are_recorded_and_named(monkeypatch) -> None:
    before = environment_record()
    monkeypatch.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")
    monkeypatch.setenv("TORCH_BLAS_PREFER_CUBLASLT", "1")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    after = environment_record()
    assert after.kernel_environment["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] == "1"
    assert after.cublas_workspace_config == ":16:8"
    assert after.bitwise_comparable(before) == [
        "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE 1 here vs unset in the manifest",
        "TORCH_BLAS_PREFER_CUBLASLT 1 here vs unset in the manifest",
    ]
    gpu = dataclasses.replace(after, device="cuda")
    assert f"cublas_workspace_config :16:8 here vs {before.cublas_workspace_config or 'unset'} in the manifest" in \
        gpu.bitwise_comparable(dataclasses.replace(before, device="cuda"))


def test_cublas_initialized_before_its_workspace_was_configured_is_refused(monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert cublas_workspace_problem(cuda_initialized=False) is None  # set_determinism sets it in time
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8" in cublas_workspace_problem(cuda_initialized=True)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # set before the process started: cuBLAS read it
    assert cublas_workspace_problem(cuda_initialized=True) is None


def test_set_determinism_pins_every_precision_setting_the_manifest_records() -> None:
    assert PRECISION.keys() == set(PRECISION_SETTINGS)
