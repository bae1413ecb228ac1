"""The main job on the built-in default, end to end: train → publish → load → replay, bitwise.

`zoo demo` trains the 1-layer seed-0 runs of the toy zoo (one per architecture),
publishes the zoo to a directory root laid out like the Hub (`OUT/hub`), loads a
model back through the same verified loader that downloads from the Hub use,
checks that its weights equal the local checkpoint bit for bit, and replays the
last stretch of training from the published artifacts alone, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from training import RunResult, load_spec, train_zoo
from training.checkpoint import checkpoint_dir_name
from training.loop import zoo_dir
from zoo.hub import load, publish
from zoo.replay import replay

DEMO_RUNS = "*-1l-seed0"
DEMO_ORG = "demo"


@dataclass(frozen=True)
class DemoReport:
    results: list[RunResult]
    hub_root: Path
    loaded: str  # "solu-1l seed 0 step 600"
    bitwise_equal: bool
    replay_verdict: str
    replay_bitwise_equal: bool


def run_demo(out: Path, *, progress: bool = True) -> DemoReport:
    spec = load_spec("toy")
    results = train_zoo(spec, out, runs=DEMO_RUNS, resume=True, progress=progress)
    hub_root = out / "hub"
    publish(zoo_dir(out, spec), org=DEMO_ORG, root=hub_root)
    loaded = load("solu-1l", seed=0, step="final", org=DEMO_ORG, zoo=spec.name, root=hub_root)
    local = load_file(zoo_dir(out, spec) / "runs" / "solu-1l-seed0" / "checkpoints"
                      / checkpoint_dir_name(loaded.step) / "model.safetensors")
    published = loaded.model.state_dict()
    equal = local.keys() == published.keys() and all(torch.equal(local[k], published[k]) for k in local)
    before_last = loaded.manifest.checkpoints[-2]
    replayed = replay("solu-1l", seed=0, from_step=before_last, to_step=loaded.step, org=DEMO_ORG, zoo=spec.name,
                      root=hub_root, progress=progress)
    return DemoReport(results, hub_root, f"solu-1l seed 0 step {loaded.step}", equal, replayed.verdict(),
                      bool(replayed.bitwise_equal))
