"""The analyses on real (tiny) runs: numbers, JSON + PNG written, missing checkpoints named, zoo.load path."""

import json
import shutil
import statistics

import numpy as np
import pytest
import torch

import zoo
from data_index import DataSpec, TokenStore, prepare_store
from training.model import ModelConfig, Transformer, init_weights
from zoo import publish
from zoo.analysis import AnalysisError, local_run, open_runs
from zoo.analysis import compare, grokking, induction
from zoo.analysis._plots import segments


def test_repeated_tokens_are_two_equal_halves_from_the_vocabulary_and_fixed():
    vocabulary = torch.tensor([3, 5, 7, 11])
    tokens = induction.repeated_tokens(vocabulary, 8, batch=4)
    assert tokens.shape == (4, 16)
    assert torch.equal(tokens[:, :8], tokens[:, 8:]) and set(tokens.unique().tolist()) <= {3, 5, 7, 11}
    assert torch.equal(tokens, induction.repeated_tokens(vocabulary, 8, batch=4))


def test_probe_tokens_are_the_ones_the_data_uses_often_never_eos_or_unused_bytes(trained_tiny):
    store = TokenStore.open(trained_tiny / "tiny" / "data")
    counts = np.bincount(store.samples(np.arange(store.n_samples)).ravel(), minlength=store.vocab_size)
    counts[store.eos_id] = 0
    expected = np.flatnonzero(counts >= 0.1 * counts[counts > 0].mean())
    vocabulary = induction.probe_vocabulary(store)
    assert vocabulary.tolist() == expected.tolist()
    assert store.eos_id not in vocabulary.tolist() and 0 < len(vocabulary) < store.vocab_size


def test_a_hand_built_induction_pattern_scores_one():
    cfg = ModelConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, d_mlp=0, n_ctx=8, d_vocab=20,
                      architecture="attn-only")
    model = Transformer(cfg)
    init_weights(model, torch.Generator().manual_seed(0))
    tokens = induction.repeated_tokens(torch.arange(1, 20), 4, batch=2)
    target = torch.zeros(2, 1, 8, 8)
    for i in range(8):
        target[:, :, i, i - 4 + 1 if i >= 4 else 0] = 1.0
    with model.hooks([("blocks.0.attn.hook_pattern", lambda p, hook: target)]):
        point = induction.measure(model, tokens)
    assert point.head_scores == [[1.0]]


def _points(icl: list[float], head: list[float]) -> list[induction.InductionPoint]:
    return [induction.InductionPoint(100 * k, 5.0, 5.0 - x, x, [[0.0, h]]) for k, (x, h) in enumerate(zip(icl, head))]


def test_a_bump_is_a_quick_jump_of_the_icl_score_with_an_induction_head_after_it():
    config = {"training": {"steps": 2000}}  # windows of 200 steps: two checkpoints apart
    late_gains = _points([0, 0, -0.5, 0, 2.5, 3, 3.5, 4, 4.5, 5, 5.5] + [6] * 10, [0.02] * 3 + [0.6] * 18)
    bump = induction.find_bump(late_gains, config)
    assert (bump.start, bump.end, bump.jump, bump.rise) == (200, 400, 3.0, 6.0)
    assert bump.has_bump and bump.best_head == "L0H1" and bump.max_head_score == 0.6
    slow = _points([0.3 * k for k in range(21)], [0.6] * 21)  # 6 nats, but never 1 nat within 200 steps
    assert not induction.find_bump(slow, config).has_bump
    no_head = _points([0] * 5 + [4] * 16, [0.3] * 21)
    assert not induction.find_bump(no_head, config).has_bump


def _store(trained_tiny) -> TokenStore:
    return TokenStore.open(trained_tiny / "tiny" / "data")


def test_segments_break_lines_only_where_checkpoints_are_missing():
    assert segments([0, 1, 2, 4], []) == [slice(0, 4)]
    assert segments([0, 1, 2, 8, 12], [4]) == [slice(0, 3), slice(3, 5)]


def test_induction_analysis_writes_json_and_png_for_every_checkpoint(trained_tiny, tmp_path):
    runs = open_runs([str(trained_tiny / "tiny")])
    results = induction.analyze(runs, _store(trained_tiny), tmp_path)
    saved = json.loads((tmp_path / "induction.json").read_text())
    assert (tmp_path / "induction.png").stat().st_size > 0
    assert [r["run"] for r in saved["runs"]] == [r.name for r in runs]
    for run, result in zip(runs, results):
        assert [p.step for p in result.points] == run.steps and result.missing_steps == []
        assert len(result.points[0].head_scores) == run.config["model"]["n_layers"]


def test_a_run_missing_checkpoints_names_the_steps(trained_tiny, tmp_path):
    src = trained_tiny / "tiny" / "runs" / "gelu-1l-seed0"
    run_dir = tmp_path / "gelu-1l-seed0"
    shutil.copytree(src, run_dir)
    for step in (8, 12):
        (run_dir / "checkpoints" / f"step{step:08d}" / "model.safetensors").unlink()
    result = induction.analyze([local_run(run_dir)], _store(trained_tiny), tmp_path / "out")[0]
    assert result.missing_steps == [8, 12]
    saved = json.loads((tmp_path / "out" / "induction.json").read_text())
    assert saved["runs"][0]["missing_steps"] == [8, 12]


def test_published_zoo_gives_the_same_numbers_as_local_runs(trained_tiny, tmp_path):
    publish(trained_tiny / "tiny", org="lab", root=tmp_path / "hub")
    published = open_runs(["attn-only-1l"], org="lab", root=tmp_path / "hub", zoo="tiny")
    local = [local_run(trained_tiny / "tiny" / "runs" / f"attn-only-1l-seed{k}") for k in (0, 1)]
    assert [r.name for r in published] == [r.name for r in local]
    store = TokenStore.open(zoo.download_data("tiny", org="lab", root=tmp_path / "hub") / "data")
    assert induction.analyze(published, store, tmp_path / "a") == induction.analyze(local, _store(trained_tiny),
                                                                                    tmp_path / "b")
    assert compare.final_loss(published[0]) == compare.final_loss(local[0])


def test_compare_gives_mean_and_std_of_final_losses_across_seeds(trained_tiny, tmp_path):
    runs = open_runs([str(trained_tiny / "tiny")])
    stats = compare.analyze(runs, "gelu", "solu", tmp_path)
    assert [(s.family, s.size, s.n_seeds) for s in stats] == [("gelu", "1l", 2), ("solu", "1l", 2)]
    gelu = [compare.final_loss(r) for r in runs if r.model_name == "gelu-1l"]
    assert stats[0].mean == statistics.fmean(gelu) and stats[0].std == statistics.stdev(gelu)
    assert (tmp_path / "compare.png").is_file() and "gelu" in compare.table(stats)
    with pytest.raises(AnalysisError, match="no run of family 'mamba'"):
        compare.compare(runs, "gelu", "mamba")


def test_grokking_split_is_read_off_the_token_store(tmp_path):
    store = prepare_store(DataSpec(corpus="grokking", n_docs=1500, vocab_size=512, n_ctx=5), tmp_path / "data",
                          progress=False)
    split = grokking.split(store)
    assert split.p == 59 and split.inputs.shape == (59 * 59, 4)
    assert 0 < int(split.train.sum()) <= 1500
    text = store.tokenizer.decode(split.inputs[0].tolist() + [int(split.answers[0])])
    assert text == "0 + 0 = 0"


def test_grokking_refuses_a_store_of_another_corpus(tmp_path):
    store = prepare_store(DataSpec(corpus="stories", n_docs=20, vocab_size=300, n_ctx=8), tmp_path / "data",
                          progress=False)
    with pytest.raises(AnalysisError, match="not an equation"):
        grokking.split(store)
