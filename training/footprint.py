"""How much memory and disk a run or a model needs, estimated from its shape before anything is allocated.

One estimate serves every entry point: `zoo train` and `zoo launch` check a run before
building it (a `d_model` with a few zeros too many would otherwise grow to tens of GB
before anything stops it), and `zoo.load` and replay check the model a downloaded
config.json describes before building it. The estimate is arithmetic on the shape, so a
refusal costs nothing; it errs on the generous side, to refuse the absurd, not the tight.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from training.errors import ResourceError
from training.model import ModelConfig

_FLOAT32 = 4  # weights, gradients and moments are float32 (bfloat16 runs autocast, keeping float32 state)
_CHECKPOINT_EXTRA = 1 << 16  # headers, state.json, loss.jsonl


@dataclass(frozen=True)
class Footprint:
    """Bytes a model needs: its weights, and for training its gradients, AdamW moments and activations."""

    parameters: int
    weights: int
    training_state: int  # gradients (the summed one and one being added) + both AdamW moments
    activations: int  # one micro-batch's forward and backward

    @property
    def training(self) -> int:
        return self.weights + self.training_state + self.activations

    @property
    def checkpoint(self) -> int:
        """One full-state checkpoint on disk: weights and both moments."""
        return 3 * self.weights + _CHECKPOINT_EXTRA


def footprint(cfg: ModelConfig, micro_batch_size: int = 1) -> Footprint:
    """The estimate for a model of shape `cfg`, trained on micro-batches of `micro_batch_size` samples."""
    n = cfg.n_params()
    d, h, dh, m, t = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp if cfg.has_mlp else 0, cfg.n_ctx
    # What autograd keeps per token: residuals and norms, q/k/v/z, attention scores and pattern,
    # MLP pre/post (three copies), the logits with their log-softmax and gradient.
    per_token = cfg.n_layers * (8 * d + 4 * h * dh + 3 * h * t + 3 * m) + 3 * cfg.d_vocab + 2 * d
    return Footprint(parameters=n, weights=n * _FLOAT32, training_state=4 * n * _FLOAT32,
                     activations=micro_batch_size * t * per_token * _FLOAT32)


def check_training(cfg: ModelConfig, *, micro_batch_size: int, device: str, what: str,
                   checkpoints: int = 0, out: Path | None = None) -> Footprint:
    """Refuse (ResourceError, with the numbers) a training of `cfg` that needs more memory than `device` has,
    or whose `checkpoints` checkpoints need more than the whole filesystem under `out` holds (space that is
    merely taken now may be freed while the run trains: a disk that fills up mid-run is an error that
    names the fix, and resume goes on once there is room)."""
    need = footprint(cfg, micro_batch_size)
    limit = memory_limit(device)
    if need.training > limit:
        raise ResourceError(
            f"{what}: training needs about {_size(need.training)} of {device} memory ({need.parameters:,} "
            f"parameters: weights {_size(need.weights)}, gradients and AdamW moments {_size(need.training_state)}, "
            f"activations of a {micro_batch_size}-sample micro-batch {_size(need.activations)}), but this "
            f"{_machine(device)} has {_size(limit)}. Check the sizes for a typo, or use a smaller model or "
            f"micro_batch_size; nothing was allocated")
    if out is not None and checkpoints:
        place = existing_ancestor(out)
        disk = shutil.disk_usage(place)
        if checkpoints * need.checkpoint > disk.total:
            raise ResourceError(
                f"{what}: its {checkpoints} checkpoints need about {_size(checkpoints * need.checkpoint)} of disk "
                f"({_size(need.checkpoint)} each), but the filesystem of {place} holds {_size(disk.total)} in all "
                f"({_size(disk.free)} free). Thin the schedule ([checkpoints] log_until, every) or train onto a "
                f"larger disk (--out); nothing was written")
    return need


def check_model(cfg: ModelConfig, *, device: str, what: str) -> Footprint:
    """Refuse (ResourceError, with the numbers) building a model of `cfg` whose weights alone exceed the memory
    of `device`."""
    need = footprint(cfg)
    limit = memory_limit(device)
    if need.weights > limit:
        raise ResourceError(f"{what}: a model of {need.parameters:.3g} parameters needs about {_size(need.weights)} "
                            f"of {device} memory for its weights alone, but this {_machine(device)} has "
                            f"{_size(limit)}; nothing was allocated")
    return need


def memory_limit(device: str) -> int:
    """The memory of `device`: the GPU's, or this machine's RAM (or its cgroup's limit, when lower)."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            total = min(total, int(raw))
    return total


def existing_ancestor(out: Path) -> Path:
    """`out`, or its nearest existing ancestor: where its filesystem can be asked about."""
    place = Path(out).absolute()
    while not place.exists():
        place = place.parent
    return place


def _machine(device: str) -> str:
    return "GPU" if device == "cuda" else "machine"


def _size(n: int) -> str:
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    exponent = min(int(math.log(n, 1 << 10)), 5)
    return f"{n / (1 << (10 * exponent)):.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'][exponent]}"
