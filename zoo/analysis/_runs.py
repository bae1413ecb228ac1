"""Where an analysis gets its models: a local run directory, or a published zoo through `zoo.load`.

Both give a `RunCheckpoints`: the run's config, the checkpoint steps it has, the steps its
dense schedule promises, and a way to build the model of any of them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch

from checkpoints_manifest import read_manifest
from training.checkpoint import EVAL_NAME, checkpoint_dir_name, read_evaluations, read_loss_stretch
from training.model import ModelConfig, Transformer
from training.schedule import checkpoint_steps
from training.spec import CheckpointSpec, seeds_label
import zoo.hub as hub
from zoo.analysis._errors import MissingCheckpointsError, RunNotFoundError


@dataclass(frozen=True)
class RunCheckpoints:
    """One run's checkpoints, however they are stored."""

    name: str  # e.g. "attn-only-2l-seed0"
    config: dict[str, Any]  # the run's config.json
    steps: list[int]  # checkpoint steps present, ascending
    load: Callable[[int], Transformer]  # step -> model with that checkpoint's weights
    last_losses: Callable[[], list[float]]  # losses of the updates logged in the last checkpoint
    held_out: Callable[[], dict[int, float]]  # step -> held-out loss, every checkpoint ({} without a split)

    @property
    def model_name(self) -> str:
        return self.config["run"]["model"]

    @property
    def seed(self) -> str:
        return seeds_label(self.config["run"]["init_seed"], self.config["run"]["data_seed"])

    @property
    def expected_steps(self) -> list[int]:
        """Every step the run's checkpoint schedule promises."""
        c = self.config["checkpoints"]
        spec = CheckpointSpec(c["log_until"], c["every"], tuple(c["extra_steps"]))
        return checkpoint_steps(spec, self.config["training"]["steps"])

    def missing_steps(self) -> list[int]:
        """Scheduled steps with no checkpoint: an analysis reports these and breaks its lines there."""
        have = set(self.steps)
        return [s for s in self.expected_steps if s not in have]


def local_run(path: str | Path) -> RunCheckpoints:
    """A trained run directory (`out/ZOO/runs/RUN`): its manifest's checkpoints whose weights are on disk."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunNotFoundError(f"{path} is not a run directory (no config.json); give out/ZOO/runs/RUN")
    config = json.loads((path / "config.json").read_text())
    weights = lambda s: path / "checkpoints" / checkpoint_dir_name(s) / "model.safetensors"  # noqa: E731
    steps = [s for s in read_manifest(path).checkpoints if weights(s).is_file()]

    def load(step: int) -> Transformer:
        model = Transformer(ModelConfig.from_dict(config["model"]))
        model.load_state_dict(safetensors.torch.load_file(weights(step)), assign=True)
        return model.eval()

    return RunCheckpoints(config["run"]["name"], config, steps, load, lambda: _losses(path, steps[-1]),
                          lambda: _held_out(path, steps))


def published_runs(pattern: str, *, org: str, root: str | Path | None = None,
                   zoo: str | None = None) -> list[RunCheckpoints]:
    """Every published run whose model matches `pattern` (glob, e.g. "*-2l"), each seed its own run."""
    listing = hub.list_models(org=org, root=root)
    if listing.unreadable:  # one of them may be a seed of this model: statistics without it would mislead
        raise RunNotFoundError(f"published runs under org {org!r} cannot be read: "
                               f"{'; '.join(f'{repo}: {why}' for repo, why in listing.unreadable.items())}")
    infos = [r for r in listing if fnmatch.fnmatchcase(r.model, pattern) and zoo in (None, r.zoo)]
    if not infos:
        raise RunNotFoundError(f"no published model matches {pattern!r} under org {org!r}"
                               f"{f' in zoo {zoo!r}' if zoo else ''}; `zoo list --org {org}` shows what exists")
    runs = []
    for info in infos:
        def load(step: int, info: hub.RunInfo = info) -> Transformer:
            return hub.load(info.model, org=org, init_seed=info.init_seed, data_seed=info.data_seed,
                            zoo=info.zoo, root=root, step=step).model.eval()
        first = hub.load(info.model, org=org, init_seed=info.init_seed, data_seed=info.data_seed, zoo=info.zoo,
                         root=root, step=info.steps[0])
        def fetched(steps: list[int], name: str, info: hub.RunInfo = info) -> Path:
            return hub.download(info.model, org=org, init_seed=info.init_seed, data_seed=info.data_seed,
                                zoo=info.zoo, root=root, steps=steps, names=[name])

        def last_losses(info: hub.RunInfo = info) -> list[float]:
            return _losses(fetched([info.steps[-1]], "loss.jsonl", info), info.steps[-1])

        def held_out(info: hub.RunInfo = info) -> dict[int, float]:
            return _held_out(fetched(list(info.steps), EVAL_NAME, info), list(info.steps))

        runs.append(RunCheckpoints(first.config["run"]["name"], first.config, list(info.steps), load, last_losses,
                                   held_out))
    return runs


def open_runs(targets: list[str], *, org: str | None = None, root: str | Path | None = None,
              zoo: str | None = None) -> list[RunCheckpoints]:
    """Each target is a run directory, a zoo directory (all its runs), or a published model pattern (needs org)."""
    runs: list[RunCheckpoints] = []
    for target in targets:
        path = Path(target)
        if (path / "config.json").is_file():
            runs.append(local_run(path))
        elif (path / "runs").is_dir():
            runs.extend(local_run(p) for p in sorted((path / "runs").iterdir()) if (p / "config.json").is_file())
        elif org is not None:
            runs.extend(published_runs(target, org=org, root=root, zoo=zoo))
        else:
            raise RunNotFoundError(f"{target!r} is not a run or zoo directory; for a published model pass "
                                   f"--org (and --root or HF_ENDPOINT)")
    return runs


def _held_out(run_dir: Path, steps: list[int]) -> dict[int, float]:
    return {e["step"]: e["held_out_loss"] for e in read_evaluations(run_dir, steps)}


def _losses(run_dir: Path, step: int) -> list[float]:
    return [r["loss"] for r in read_loss_stretch(run_dir / "checkpoints" / checkpoint_dir_name(step) / "loss.jsonl")]


def require_steps(run: RunCheckpoints, steps: list[int]) -> None:
    """Fail naming the steps of `steps` that `run` has no checkpoint for."""
    missing = sorted(set(steps) - set(run.steps))
    if missing:
        raise MissingCheckpointsError(f"{run.name} has no checkpoint at steps {missing}; it has {run.steps}")
