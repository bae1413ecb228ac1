"""A held-out split: documents never in the training order, recorded in the store, its fingerprint and the index."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from checkpoints_manifest import read_manifest, verify
from data_index import DataSpec, StepIndex, TokenStore, build_step_index, builtin_corpus, prepare_store
from data_index.store import held_out_ids
from helpers import cut_run_back, tree_digest
from training import parse_spec, train_zoo
from training.checkpoint import read_evaluations, read_loss_log
from training.loop import index_path
from training.model import ModelConfig, Transformer, lm_loss
from training.numerics import recorded_numerics
from zoo.analysis import compare, document, open_runs
from zoo.hub.card import loss_png, model_card
from zoo.replay import replay

SPEC = DataSpec(corpus="stories", n_docs=300, vocab_size=400, n_ctx=32, held_out_docs=12)


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    root = tmp_path_factory.mktemp("held_out")
    store = prepare_store(SPEC, root / "store", progress=False)
    index = build_step_index(store, root / "index", data_seed=3, batch_size=8, n_steps=200, progress=False)
    return store, index


def test_held_out_documents_are_evenly_spaced_and_packed_apart(held):
    store, _ = held
    assert store.held_out_docs.tolist() == held_out_ids(300, 12).tolist() == list(range(12, 300, 25))
    texts = builtin_corpus("stories", n_docs=300)["text"]
    for doc in store.held_out_docs.tolist():
        assert store.document_samples(doc).size == 0  # no training sample holds any of its tokens
        assert store.document_text(doc) == texts[doc] or doc == store.held_out_docs[-1]  # the last: tail cut
        assert texts[doc].startswith(store.document_text(doc))
    stream = np.concatenate([store.document_tokens(int(d)) for d in store.held_out_docs])
    rows = store.held_out_samples()
    assert rows.shape[1] == 33 and np.array_equal(rows.reshape(-1), stream[: rows.size])
    training = store.samples(np.arange(store.n_samples)).reshape(-1)
    kept = [d for d in range(300) if not store.is_held_out(d)]
    expected = np.concatenate([store.document_tokens(d) for d in kept])
    assert np.array_equal(training, expected[: training.size])
    assert store.document_text(13) == texts[13]


def test_no_step_trains_on_a_held_out_document(held):
    store, index = held
    held_docs = set(store.held_out_docs.tolist())
    for step in range(1, index.n_steps + 1):
        for sample in index.batch_ids(step):
            assert not held_docs & {span.doc for span in store.sample_documents(int(sample))}
    assert all(index.where_seen(d) == [] and index.is_held_out(d) for d in held_docs)
    assert index.where_seen(13) and not index.is_held_out(13)


def test_the_split_is_in_the_fingerprint_the_format_and_the_index(held, tmp_path):
    store, index = held
    meta = json.loads((store.path / "store.json").read_text())
    assert meta["format_version"] == 2 and meta["n_held_out_docs"] == 12
    assert {"held_out_docs", "held_out_tokens", "held_out_doc_offsets"} <= set(meta["parts"])
    plain = prepare_store(DataSpec(corpus="stories", n_docs=300, vocab_size=400, n_ctx=32), tmp_path / "s",
                          progress=False)
    assert json.loads((plain.path / "store.json").read_text())["format_version"] == 1
    assert plain.fingerprint != store.fingerprint and plain.tokenizer.to_str() == store.tokenizer.to_str()
    assert json.loads((index.path / "index.json").read_text())["n_held_out_docs"] == 12
    assert index.held_out_docs.tolist() == store.held_out_docs.tolist()


def test_holding_out_every_document_or_too_few_tokens_is_refused_writing_nothing(tmp_path):
    with pytest.raises(ValueError, match="held_out_docs = 300 leaves no document"):
        DataSpec(corpus="stories", n_docs=300, held_out_docs=300)
    with pytest.raises(ValueError, match="held-out documents hold .* fewer than one sample"):
        prepare_store(DataSpec(corpus="modular", n_docs=40, vocab_size=300, n_ctx=2000, held_out_docs=1),
                      tmp_path / "s", progress=False)
    assert list(tmp_path.iterdir()) == []


RUN_SPEC = """
name = "held"
seeds = [0]

[data]
corpus = "stories"
n_docs = 200
vocab_size = 300
n_ctx = 16
held_out_docs = 20

[sizes]
1l = { n_layers = 1, d_model = 16, n_heads = 2, d_head = 8, d_mlp = 32 }

[families]
gelu = ["1l"]
solu = ["1l"]

[training]
steps = 12
batch_size = 8
micro_batch_size = 4

[checkpoints]
log_until = 4
every = 4
"""


def _recomputed(run_dir, step: int, rows: torch.Tensor) -> float:
    """The held-out loss of checkpoint `step`'s weights, by its definition: the mean token loss over every
    held-out row, in the run's micro-batches of 4, with the run's attention kernel."""
    config = json.loads((run_dir / "config.json").read_text())
    model = Transformer(ModelConfig.from_dict(config["model"]),
                        fused_attention=recorded_numerics(config).attention == "sdpa")
    model.load_state_dict(load_file(run_dir / "checkpoints" / f"step{step:08d}" / "model.safetensors"))
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for micro in rows.split(4):
            total += lm_loss(model(micro[:, :-1]), micro[:, 1:]).double() * len(micro)
    return (total / len(rows)).item()


@pytest.fixture(scope="module")
def held_zoo(tmp_path_factory):
    """RUN_SPEC trained with evaluation (gelu and solu, seed 0), uninterrupted."""
    out = tmp_path_factory.mktemp("held_zoo")
    train_zoo(parse_spec(RUN_SPEC), out, progress=False)
    return out / "held"


def test_held_out_loss_is_stored_with_every_checkpoint_and_never_changes_the_training_bits(held_zoo, tmp_path):
    spec = parse_spec(RUN_SPEC)
    train_zoo(spec, tmp_path / "off", runs="gelu-*", progress=False, evaluate_held_out=False)
    on, off = held_zoo / "runs" / "gelu-1l-seed0", tmp_path / "off" / "held" / "runs" / "gelu-1l-seed0"
    manifest = read_manifest(on)
    rows = torch.from_numpy(TokenStore.open(held_zoo / "data").held_out_samples())
    for step in manifest.checkpoints:
        record = json.loads((on / "checkpoints" / f"step{step:08d}" / "eval.json").read_text())
        assert f"checkpoints/step{step:08d}/eval.json" in manifest.files
        assert record == {"step": step, "held_out_loss": _recomputed(on, step, rows),
                          "held_out_tokens": rows.shape[0] * 16}
    evaluated = tree_digest(on / "checkpoints")
    assert {k: v for k, v in evaluated.items() if not k.endswith("eval.json")} == tree_digest(off / "checkpoints")
    assert verify(on) == []

    shutil.copytree(held_zoo, tmp_path / "copy" / "held")
    copy = tmp_path / "copy" / "held" / "runs" / "gelu-1l-seed0"
    cut_run_back(copy, keep=3)  # crashed after step 2: the resumed run evaluates the rest the same way
    train_zoo(spec, tmp_path / "copy", runs="gelu-*", resume=True, progress=False)
    assert tree_digest(copy / "checkpoints") == evaluated
    zoo.publish(tmp_path / "copy" / "held", org="me", root=tmp_path / "hub")
    replayed = replay("gelu-1l", seed=0, from_step=4, to_step=12, org="me", root=tmp_path / "hub")
    assert replayed.bitwise_equal, replayed.verdict()
    card = (tmp_path / "hub" / "me" / "held-gelu-1l-seed0" / "README.md").read_text()
    final = json.loads((on / "checkpoints" / "step00000012" / "eval.json").read_text())["held_out_loss"]
    assert f"Held-out loss (the dashed line): {final:.4f} at step 12, on 20 documents never trained on" in card
    curve = (tmp_path / "hub" / "me" / "held-gelu-1l-seed0" / "loss.png").read_bytes()
    assert curve != loss_png(read_loss_log(on, manifest.checkpoints), manifest.run)  # the held-out line is drawn


def test_compare_ranks_by_the_held_out_loss_and_reports_the_training_loss_beside_it(held_zoo, tmp_path):
    runs = open_runs([str(held_zoo)])
    stats = compare.analyze(runs, "gelu", "solu", tmp_path)
    for s, run in zip(stats, sorted(runs, key=lambda r: r.model_name)):
        last = json.loads((held_zoo / "runs" / run.name / "checkpoints" / "step00000012" / "eval.json").read_text())
        assert s.metric == compare.HELD_OUT and s.losses == {"0": last["held_out_loss"]}
        assert s.training_losses == {"0": compare.final_loss(run)}
    assert json.loads((tmp_path / "compare.json").read_text())["metric"] == compare.HELD_OUT
    shown = compare.table(stats)
    assert shown.splitlines()[0].endswith("final training loss") and f"{stats[1].mean:.4f}" in shown


def test_a_run_trained_before_held_out_splits_publishes_the_card_and_curve_it_always_had():
    run = Path(__file__).parent / "fixtures" / "legacy-tiny" / "legacy" / "tiny-gelu-1l-seed0"
    manifest, config = read_manifest(run), json.loads((run / "config.json").read_text())
    evaluations = read_evaluations(run, manifest.checkpoints)
    assert evaluations == []
    assert model_card("legacy", config, manifest, data_repo="legacy/tiny-data",
                      evaluations=evaluations) == (run / "README.md").read_text()
    assert loss_png(read_loss_log(run, manifest.checkpoints), manifest.run, evaluations) == (
        run / "loss.png").read_bytes()


def test_a_held_out_documents_curve_was_never_trained_on_and_has_the_held_out_loss_beside_it(held_zoo, tmp_path):
    store = TokenStore.open(held_zoo / "data")
    doc = int(store.held_out_docs[0])
    runs = open_runs([str(held_zoo / "runs" / "gelu-1l-seed0")])
    [curve] = document.analyze(runs, doc, store, {0: StepIndex.open(index_path(held_zoo, 0))}, tmp_path)
    assert curve.seen == [] and curve.trained_at == []
    evaluations = read_evaluations(held_zoo / "runs" / "gelu-1l-seed0", runs[0].steps)
    assert [(p.step, p.loss) for p in curve.held_out] == [(e["step"], e["held_out_loss"]) for e in evaluations]
    assert json.loads((tmp_path / f"document{doc}.json").read_text())["held_out"] is True
