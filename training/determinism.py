"""The one place that turns determinism on, and the one way to make a generator."""

from __future__ import annotations

import hashlib
import os

import torch


def set_determinism(device: str, cpu_threads: int) -> None:
    """Make every torch op used in training deterministic on `device`, or fail loudly.

    CPU kernels split their reductions by thread count, so the count changes the bits:
    it is part of the spec (`training.cpu_threads`) and pinned here, never left to the
    machine. cuBLAS needs its workspace configured before CUDA initializes. In this mode
    the flash and memory-efficient attention kernels run their deterministic backward
    and torch.compile skips autotuning that changes numerics; cuDNN attention has no
    deterministic backward, so it is never a candidate.
    """
    if device == "cpu":
        torch.set_num_threads(cpu_threads)
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.enable_cudnn_sdp(False)
    torch.use_deterministic_algorithms(True)


def generator_for(seed: int, purpose: str, device: str = "cpu") -> torch.Generator:
    """An explicit generator keyed by (seed, purpose), so draws for one purpose never shift another's."""
    digest = hashlib.sha256(f"zoo:{purpose}:{seed}".encode()).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return generator
