"""The main job (`zoo demo`): the toy zoo trains, every architecture learns far more than
unigram statistics, and a published model loads back bit for bit."""

import numpy as np
import pytest

from checkpoints_manifest import verify
from data_index import TokenStore
from zoo.cli.demo import run_demo


def unigram_entropy_nats(store: TokenStore) -> float:
    """Entropy of the corpus's token frequencies: the loss of the best context-free model."""
    tokens = store.samples(np.arange(store.n_samples))[:, 1:]
    counts = np.bincount(tokens.ravel(), minlength=store.vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
def test_demo_trains_every_architecture_below_unigram_entropy_and_loads_back_bitwise(tmp_path):
    report = run_demo(tmp_path, progress=False)
    assert report.bitwise_equal, report.loaded
    assert report.replay_bitwise_equal, report.replay_verdict
    results = report.results
    entropy = unigram_entropy_nats(TokenStore.open(tmp_path / "toy" / "data"))
    assert {r.run for r in results} == {"attn-only-1l-seed0", "gelu-1l-seed0", "solu-1l-seed0"}
    for r in results:
        assert verify(r.path) == []
        print(f"{r.run}: final loss {r.final_loss:.3f} nats vs unigram entropy {entropy:.3f}")
        assert r.final_loss < 0.6 * entropy, (r.run, r.final_loss, entropy)
