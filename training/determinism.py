"""The one place that turns determinism on, and the one way to make a generator."""

from __future__ import annotations

import functools
import hashlib
import os
import sys

import torch

from training.errors import CpuLevelNotSetError, PlatformError

# The CPU levels a spec may pin (`[training] cpu_level`): the environment that makes torch, MKL and
# oneDNN run one instruction set's kernels whatever the machine's own, and the capability torch then
# reports. "native" pins nothing: the run's bytes belong to CPUs like the one it was trained on.
CPU_LEVELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
_CAPABILITY = {"avx2": "AVX2"}

# The process-wide settings that change the bits of matmuls (the PRECISION_SETTINGS that checkpoints_manifest
# records), as set_determinism leaves them: exact float32 matmuls on every backend (no TF32, no bf16), torch's
# defaults otherwise, whatever a notebook set before.
_FLAGS: dict[str, str | bool] = {
    "mkldnn.enabled": True, "cuda.matmul.allow_bf16_reduced_precision_reduction": True,
    "cuda.matmul.allow_fp16_reduced_precision_reduction": True, "cuda.preferred_blas_library": "cublas",
    "cudnn.benchmark": False,
}
PRECISION: dict[str, str | bool] = {**_FLAGS, "mkldnn.matmul.fp32_precision": "ieee", "cuda.matmul.fp32_precision": "ieee"}


def set_determinism(device: str, cpu_threads: int, cpu_level: str = "native") -> None:
    """Make every torch op used in training deterministic on `device`, or fail loudly.

    CPU kernels split their reductions by thread count and pick their instructions by the
    CPU level, so both change the bits: they are part of the spec (`training.cpu_threads`,
    `training.cpu_level`) and pinned here, never left to the machine (the level is checked: it
    can only be set before the process starts). So are the process-wide precision settings.
    cuBLAS needs its workspace configured before it initializes. In this mode the flash and
    memory-efficient attention kernels run their deterministic backward and torch.compile skips
    autotuning that changes numerics; cuDNN attention has no deterministic backward, so it is
    never a candidate.
    """
    pin_cpu_level(cpu_level)
    if device == "cpu":
        torch.set_num_threads(cpu_threads)
    if device == "cuda":
        if problem := cublas_workspace_problem(torch.cuda.is_initialized()):
            raise PlatformError(problem)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.enable_cudnn_sdp(False)
    # Through the API that keeps torch's legacy allow_tf32 flags consistent with the per-backend values.
    torch.set_float32_matmul_precision("highest")
    for name, value in _FLAGS.items():
        _set_torch_setting(name, value)
    torch.use_deterministic_algorithms(True)


def pin_cpu_level(level: str) -> None:
    """Check that this process computes at CPU `level` (a key of CPU_LEVELS), or raise.

    torch, MKL and oneDNN each read their level from the environment once, at their first
    computation: so the level must be in the environment from the start of the process
    (CpuLevelNotSetError otherwise, which zoo commands answer with `restart_with_cpu_level`),
    and torch must then report it (PlatformError when this CPU lacks it).
    """
    wanted = CPU_LEVELS[level]
    if missing := {k: v for k, v in wanted.items() if os.environ.get(k) != v}:
        raise CpuLevelNotSetError(level, missing)
    found = torch.backends.cpu.get_cpu_capability()
    if wanted and found != _CAPABILITY[level]:
        raise PlatformError(f"the run pins CPU level {level!r}, but torch computes with {found} kernels here: this "
                            f"CPU lacks {_CAPABILITY[level]}, so the run cannot be trained or replayed bitwise on it")


def restart_with_cpu_level(level: str) -> None:
    """Re-execute this process (same interpreter, same arguments) with CPU `level`'s environment, unless it
    has it already: then torch, MKL and oneDNN read the level before their first computation. For entry
    points only (the zoo command, a launched job, the benchmarks), never inside a library call."""
    wanted = CPU_LEVELS[level]
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **wanted})


def cublas_workspace_problem(cuda_initialized: bool) -> str | None:
    """Why cuBLAS cannot be made deterministic in this process, or None.

    cuBLAS reads CUBLAS_WORKSPACE_CONFIG once, when it initializes: if CUDA is already up and
    the variable was never set, its workspace is the default one, whatever is set now.
    """
    if cuda_initialized and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        return ("CUDA was initialized in this process before zoo could set CUBLAS_WORKSPACE_CONFIG, which cuBLAS "
                "reads once: its matmuls would not be deterministic. Start the process with "
                "CUBLAS_WORKSPACE_CONFIG=:4096:8, or train in a fresh one (a zoo command)")
    return None


def _set_torch_setting(name: str, value: str | bool) -> None:
    if name == "cuda.preferred_blas_library":
        torch.backends.cuda.preferred_blas_library(value)
        return
    *path, last = name.split(".")
    setattr(functools.reduce(getattr, path, torch.backends), last, value)


def generator_for(seed: int, purpose: str, device: str = "cpu") -> torch.Generator:
    """An explicit generator keyed by (seed, purpose), so draws for one purpose never shift another's."""
    digest = hashlib.sha256(f"zoo:{purpose}:{seed}".encode()).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return generator
