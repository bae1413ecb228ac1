"""Replay benchmark: replaying k updates costs about what training them costs, and nothing before c re-runs.

    .venv/bin/python -m benchmarks.replay       # writes benchmarks/results/replay.json

One run of a small zoo (2 layers, d_model 128, n_ctx 64, batch 16) is trained and
published to a directory root. Then, side by side and alternating (median of 3):
- training: the k updates c+1 … c+k through the trainer's loop (`run_steps`, store in RAM,
  state loaded from checkpoint c; no checkpoint writes);
- replay: `zoo.replay.replay(from_step=c, to_step=c+k)` end to end (fetch and verify the
  checkpoint, read the batches from the published index and store, train, compare byte for byte).
Target: replay ≤ 1.1× training. Every call to `train_step` is counted: replay from c runs
exactly k updates, the first being c+1.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import training.loop
import zoo
from benchmarks._provenance import measured_on
from checkpoints_manifest import atomic_write_json
from data_index import TokenStore
from training import checkpoint, parse_spec, train_zoo
from training.determinism import set_determinism
from training.loop import build_model, build_optimizer, run_path, run_steps, zoo_dir
from zoo.replay import replay

SPEC = """
name = "bench"
seeds = [0]
[data]
corpus = "stories"
corpus_seed = 0
n_docs = 400
vocab_size = 1000
n_ctx = 64
[sizes]
2l = { n_layers = 2, d_model = 128, n_heads = 4, d_head = 32, d_mlp = 512 }
[families]
gelu = ["2l"]
[training]
steps = 64
batch_size = 16
micro_batch_size = 8
[checkpoints]
log_until = 16
every = 16
"""
START, STOP, REPEATS = 16, 48, 3


def main() -> None:
    spec = parse_spec(SPEC)
    (run,) = spec.runs()
    with tempfile.TemporaryDirectory() as tmp:
        out, root = Path(tmp) / "out", Path(tmp) / "root"
        train_zoo(spec, out, progress=False)
        zoo.publish(run_path(out, spec, run), org="bench", root=root)
        store = TokenStore.open(zoo_dir(out, spec) / "data")

        def train_k() -> float:
            set_determinism("cpu", spec.training.cpu_threads)
            model = build_model(spec, run, store.vocab_size, "cpu")
            optimizer = build_optimizer(model, spec, "cpu")
            checkpoint.read(run_path(out, spec, run), START, model, optimizer)
            began = time.perf_counter()
            for _ in run_steps(spec, run, store, model, optimizer, start=START, stop=STOP, device="cpu"):
                pass
            return time.perf_counter() - began

        def replay_k() -> float:
            began = time.perf_counter()
            result = replay("gelu-2l", seed=0, from_step=START, to_step=STOP, org="bench", root=root)
            assert result.bitwise_equal, result.verdict()
            return time.perf_counter() - began

        replay_k()  # warm the import and kernel caches for both
        trained, replayed = [], []
        for _ in range(REPEATS):
            trained.append(train_k())
            replayed.append(replay_k())

        steps_run: list[int] = []
        original = training.loop.train_step

        def counting(*args, **kwargs):
            steps_run.append(len(steps_run))
            return original(*args, **kwargs)

        training.loop.train_step = counting
        try:
            counted = replay("gelu-2l", seed=0, from_step=START, to_step=STOP, org="bench", root=root)
        finally:
            training.loop.train_step = original

    t, r = statistics.median(trained), statistics.median(replayed)
    result = {
        "spec": "gelu-2l, d_model 128, n_ctx 64, batch 16 (micro 8), CPU",
        "from_step": START, "to_step": STOP, "k": STOP - START,
        "train_k_s": round(t, 4), "replay_k_s": round(r, 4), "ratio": round(r / t, 3), "target_ratio": 1.1,
        "train_runs_s": [round(x, 4) for x in trained], "replay_runs_s": [round(x, 4) for x in replayed],
        "train_step_calls_in_replay": len(steps_run),
        "replayed_steps": [counted.loss_records[0]["step"], counted.loss_records[-1]["step"]],
        "never_reruns_steps_before_c": len(steps_run) == STOP - START and counted.loss_records[0]["step"] == START + 1,
        "measured": measured_on("cpu", statistic=f"median of {REPEATS} interleaved rounds"),
    }
    path = Path("benchmarks/results/replay.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
