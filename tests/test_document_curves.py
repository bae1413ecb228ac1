"""Document learning curves: a document's loss at every checkpoint, exactly, and the steps that trained on it."""

import json

import numpy as np
import torch
from safetensors.torch import load_file

from data_index import StepIndex, TokenStore, builtin_corpus, step_sample_ids
from training.loop import index_path
from training.model import ModelConfig, Transformer, lm_loss
from zoo import publish
from zoo.analysis import document, local_run, open_runs
from zoo.cli import main
from zoo.replay.data import published_data


def _direct_loss(run_dir, step: int, sequence: list[int], n_ctx: int) -> float:
    """The loss of checkpoint `step`'s weights on `sequence` (EOS, then the document), window by window of
    n_ctx: each window's mean token loss, weighted by its tokens."""
    config = json.loads((run_dir / "config.json").read_text())
    model = Transformer(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(load_file(run_dir / "checkpoints" / f"step{step:08d}" / "model.safetensors"))
    tokens = torch.tensor(sequence)
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, n_ctx):
            window = tokens[start:start + n_ctx + 1][None]
            total += lm_loss(model(window[:, :-1]), window[:, 1:]).double() * (window.shape[1] - 1)
    return (total / (len(tokens) - 1)).item()


def _seen_document(store: TokenStore, index: StepIndex) -> int:
    return next(d for d in range(store.n_docs) if len(index.where_seen(d)) >= 2)


def test_a_document_curve_is_the_loss_of_every_checkpoint_and_marks_the_steps_that_trained_on_it(trained_tiny,
                                                                                                tmp_path):
    zoo_dir = trained_tiny / "tiny"
    store = TokenStore.open(zoo_dir / "data")
    indexes = {k: StepIndex.open(index_path(zoo_dir, k)) for k in (0, 1)}
    doc = _seen_document(store, indexes[0])
    runs = [local_run(zoo_dir / "runs" / f"gelu-1l-seed{k}") for k in (0, 1)]
    results = document.analyze(runs, doc, store, indexes, tmp_path)

    text = builtin_corpus("stories", n_docs=200)["text"][doc]  # the document as the corpus has it
    sequence = [store.eos_id, *store.tokenizer.encode(text, add_special_tokens=False).ids, store.eos_id]
    for k, (run, result) in enumerate(zip(runs, results)):
        run_dir = zoo_dir / "runs" / run.name
        assert [p.step for p in result.points] == run.steps
        assert [p.loss for p in result.points] == [_direct_loss(run_dir, s, sequence, 16) for s in run.steps]
        trained = sorted({step for step in range(1, 25)
                          for sample in step_sample_ids(step, batch_size=8, n_samples=store.n_samples, data_seed=k)
                          if doc in [span.doc for span in store.sample_documents(int(sample))]})
        assert result.trained_at == trained and result.held_out == []
    assert results[0].trained_at  # the document chosen was trained on
    written = json.loads((tmp_path / f"document{doc}.json").read_text())
    assert written["text"] == text and written["held_out"] is False
    assert [p["loss"] for p in written["runs"][0]["points"]] == [p.loss for p in results[0].points]
    assert (tmp_path / f"document{doc}.png").stat().st_size > 0


def test_a_published_zoo_gives_the_same_curve_fetching_only_the_chunks_of_the_document(trained_tiny, tmp_path,
                                                                                       capsys):
    zoo_dir = trained_tiny / "tiny"
    publish(zoo_dir, org="lab", root=tmp_path / "hub")
    store = TokenStore.open(zoo_dir / "data")
    local_index = StepIndex.open(index_path(zoo_dir, 0))
    doc = _seen_document(store, local_index)
    local = document.analyze([local_run(zoo_dir / "runs" / "solu-1l-seed0")], doc, store, {0: local_index},
                             tmp_path / "local")
    data = published_data("tiny", org="lab", data_seed=0, root=tmp_path / "hub")
    runs = [r for r in open_runs(["solu-1l"], org="lab", root=tmp_path / "hub", zoo="tiny") if r.seed == "0"]
    published = document.analyze(runs, doc, data.store, {0: data.index}, tmp_path / "published")
    assert published == local
    index_chunks = [p for p in data.fetched if p.startswith("index/")]
    assert index_chunks and all("/seen_" in p for p in index_chunks)  # the reverse map's chunks, no batch

    capsys.readouterr()
    assert main(["where-seen", str(zoo_dir), "--doc", str(doc)]) == 0  # zoo --help's two where-seen examples
    assert main(["where-seen", "tiny", "--org", "lab", "--root", str(tmp_path / "hub"), "--doc", str(doc)]) == 0
    local_out, published_out = capsys.readouterr().out.split(f"doc {doc}:")[1:]
    assert published_out == local_out and "seen" in local_out


def test_zoo_analyze_document_writes_the_figure_and_numbers(trained_tiny, tmp_path, capsys):
    zoo_dir = trained_tiny / "tiny"
    doc = _seen_document(TokenStore.open(zoo_dir / "data"), StepIndex.open(index_path(zoo_dir, 1)))
    assert main(["analyze", "document", str(doc), str(zoo_dir / "runs" / "attn-only-1l-seed1"),
                 "--out", str(tmp_path)]) == 0
    assert f"attn-only-1l-seed1: document {doc} loss" in capsys.readouterr().out
    assert np.isfinite([p["loss"] for p in json.loads((tmp_path / f"document{doc}.json").read_text())["runs"][0][
        "points"]]).all()
    assert main(["analyze", "document", "100000", str(zoo_dir / "runs" / "attn-only-1l-seed1")]) == 2
