"""zoo: seeded, exactly reproducible model families for mechanistic interpretability.

The Python API mirrors the CLI: `zoo.train("toy", runs="solu-*")` is `zoo train toy --runs 'solu-*'`.
One package per job: `zoo.hub` (publish, list, load, download), `zoo.replay` (replay a published
run, `zoo.replay.replay`), `zoo.launch` (Slurm jobs, `zoo.launch.launch`), `zoo.hf` (zoo models in
transformers, registered with its Auto classes on import when transformers is installed),
`zoo.analysis`, `zoo.cli`.
`zoo.replay` and `zoo.launch` name those packages only; their functions are imported from them.
"""

from pathlib import Path

from training import RunResult, load_spec, train_zoo
from zoo.hub import (
    HubError,
    HubUnavailableError,
    IntegrityError,
    PublishError,
    UnknownModelError,
    UnsafeArtifactError,
    download,
    download_data,
    list_models,
    load,
    publish,
)
from zoo.hf import register_when_transformers_loads
from zoo.launch import (
    ClusterResourceError,
    LaunchConflictError,
    Launched,
    LaunchError,
    Resources,
    RunStatus,
    status,
)

register_when_transformers_loads()  # the `hf` extra: zoo models in transformers' Auto classes


def train(spec: str | Path, *, runs: str | None = None, out: str | Path = "out", resume: bool = False,
          device: str = "cpu", progress: bool = True, allow_platform_change: bool = False) -> list[RunResult]:
    """Train the runs of a zoo spec (a built-in name or a TOML path); see `zoo train --help`."""
    return train_zoo(load_spec(spec), Path(out), runs=runs, resume=resume, device=device, progress=progress,
                     allow_platform_change=allow_platform_change)


__all__ = [
    "HubError", "HubUnavailableError", "IntegrityError", "PublishError", "UnknownModelError", "UnsafeArtifactError",
    "ClusterResourceError", "LaunchConflictError", "LaunchError", "Launched", "Resources", "RunStatus",
    "download", "download_data", "list_models", "load", "publish", "status", "train",
]
