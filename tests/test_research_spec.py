"""The built-in `research` zoo: Nanda-sized families on a pinned real-text Hub corpus, for a GPU.

Its corpus needs the network and its bf16 steps a GPU, so the training test swaps in a local
corpus and shrinks what a 2-core CPU cannot do in seconds; it keeps the widths, the depth, the
architecture, the accumulation and the numerics path but compile (tested in test_fast_path.py).
"""

from __future__ import annotations

import dataclasses
import json
import re

from checkpoints_manifest import read_manifest, verify
from data_index import DataSpec, builtin_corpus
from training import checkpoint_steps, load_spec, train_zoo
from training.numerics import CURRENT


def test_the_research_spec_is_three_architectures_at_four_nanda_sizes_five_seeds_on_a_pinned_corpus():
    spec = load_spec("research")
    assert {run.architecture for run in spec.runs()} == {"attn-only", "gelu", "solu"}
    assert sorted({run.size.n_layers for run in spec.runs()}) == [1, 2, 3, 4]
    assert {(s.d_model, s.d_head, s.d_mlp) for s in spec.sizes.values()} == {(512, 64, 2048)}
    assert len(spec.runs()) == 3 * 4 * 5 and sorted({run.init_seed for run in spec.runs()}) == [0, 1, 2, 3, 4]
    assert spec.data.n_ctx == 1024 and spec.training.precision == "bfloat16"
    assert spec.data.hub_dataset and re.fullmatch(r"[0-9a-f]{40}", spec.data.revision)
    assert 150 <= len(checkpoint_steps(spec.checkpoints, spec.training.steps)) <= 250
    assert spec.numerics.attention == "sdpa" and spec.numerics.adamw == "fused" and spec.numerics.compile


def test_the_research_spec_trains_with_a_local_corpus_in_a_few_steps(tmp_path):
    """Shrunk: the corpus (Hub → Shakespeare scenes in a local .jsonl, vocab 512), n_ctx 1024 → 256,
    20,000 steps of 64 (micro 32) → 4 steps of 4 (micro 2), bf16 → float32, compile → off."""
    corpus = tmp_path / "scenes.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in builtin_corpus("shakespeare", n_docs=60)["text"]))
    spec = load_spec("research")
    spec = dataclasses.replace(
        spec, data=DataSpec(files=(str(corpus),), vocab_size=512, n_ctx=256),
        training=dataclasses.replace(spec.training, steps=4, batch_size=4, micro_batch_size=2, precision="float32"),
        numerics=dataclasses.replace(spec.numerics, compile=False))
    (result,) = train_zoo(spec, tmp_path / "out", runs="solu-2l-seed0", progress=False)
    run = tmp_path / "out" / "research" / "runs" / "solu-2l-seed0"
    assert read_manifest(run).checkpoints == [0, 1, 2, 4] and verify(run) == []
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["d_model"] == 512 and config["model"]["n_layers"] == 2
    assert config["numerics"] == {**dataclasses.asdict(CURRENT), "compile": False}  # the spec's path, recorded
    assert 0 < result.final_loss < 7  # ln(512) = 6.24 at the start
