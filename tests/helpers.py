"""Small helpers shared by tests."""

import dataclasses
import hashlib
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from checkpoints_manifest import read_manifest, write_manifest
from training.model import ModelConfig, Transformer, init_weights


def small_model(arch: str) -> Transformer:
    """A 2-layer model of `arch` (d_model 16, n_ctx 12, d_vocab 50), seeded: for export parity tests."""
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=0 if arch == "attn-only" else 32,
                      n_ctx=12, d_vocab=50, architecture=arch)
    model = Transformer(cfg)
    init_weights(model, torch.Generator().manual_seed(3))
    return model


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every regular file under `root` (relative path → digest), lock files excluded."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def cut_run_back(run_dir: Path, *, keep: int) -> None:
    """Make a finished run look like one that crashed after its first `keep` checkpoints.

    Later checkpoint directories stay on disk, unlisted, as a crash between a
    checkpoint's rename and the manifest update would leave them.
    """
    manifest = read_manifest(run_dir)
    steps = manifest.checkpoints[:keep]
    listed = {f"checkpoints/step{s:08d}/" for s in steps}
    files = {p: e for p, e in manifest.files.items()
             if not p.startswith("checkpoints/") or p[: len("checkpoints/step00000000/")] in listed}
    write_manifest(run_dir, dataclasses.replace(manifest, checkpoints=steps, files=files))


def one_run_spec(name: str, *, steps: int) -> str:
    """A zoo spec of one tiny GELU run with a checkpoint every step: for kill and lock tests."""
    return f"""\
name = "{name}"
seeds = [0]

[data]
corpus = "stories"
n_docs = 120
vocab_size = 280
n_ctx = 16

[sizes]
1l = {{ n_layers = 1, d_model = 16, n_heads = 2, d_head = 8, d_mlp = 32 }}

[families]
gelu = ["1l"]

[training]
steps = {steps}
batch_size = 8
micro_batch_size = 4

[checkpoints]
log_until = 4
every = 1
"""


@contextmanager
def tmpfs(where: Path, size_kib: int):
    """A real, small tmpfs at `where` (needs root); skipped outside CI when mounting is not allowed."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to mount a tmpfs (run as root): {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); CI runs this as root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def leave_room(disk: Path, size_kib: int) -> None:
    """Make the tmpfs `disk` behave like one of `size_kib`: a filler file takes the rest. (The tmpfs itself is large
    enough for the run's whole checkpoint schedule, which training checks before it starts.)"""
    filler = disk / ".filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(disk)
    filler.write_bytes(b"\0" * ((st.f_blocks * st.f_frsize // 1024 - size_kib) * 1024))
