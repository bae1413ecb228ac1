"""The research zoo on local text: what the GPU check and the benchmarks train (no network there)."""

from __future__ import annotations

import dataclasses

from data_index import DataSpec
from training import ZooSpec, load_spec
from training.spec import SizeSpec

# The built-in Shakespeare (775 scenes, 1.35M tokens at this vocabulary: ~1,300 samples of n_ctx 1,024),
# tokenized with the research zoo's vocabulary size, in place of its Hub corpus.
LOCAL_TEXT = DataSpec(corpus="shakespeare", n_docs=775, vocab_size=32768, n_ctx=1024)
SMOKE_TEXT = DataSpec(corpus="shakespeare", n_docs=60, vocab_size=512, n_ctx=64)
SMOKE_SIZE = SizeSpec(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64)


def research_on_local_text(*, steps: int, smoke: bool = False) -> ZooSpec:
    """The `research` spec, its corpus swapped for LOCAL_TEXT and its run cut to `steps` updates.

    `smoke` shrinks it to seconds on a CPU (every size to SMOKE_SIZE's widths, SMOKE_TEXT, batch 4 in
    micro-batches of 2, float32, eager), to prove the scripts that use it, not to measure anything."""
    spec = load_spec("research")
    spec = dataclasses.replace(spec, data=LOCAL_TEXT, training=dataclasses.replace(spec.training, steps=steps))
    if not smoke:
        return spec
    return dataclasses.replace(
        spec, data=SMOKE_TEXT,
        sizes={name: dataclasses.replace(SMOKE_SIZE, n_layers=size.n_layers) for name, size in spec.sizes.items()},
        training=dataclasses.replace(spec.training, batch_size=4, micro_batch_size=2, precision="float32"),
        numerics=dataclasses.replace(spec.numerics, compile=False))
