"""A held-out split: documents never in the training order, recorded in the store, its fingerprint and the index."""

import json

import numpy as np
import pytest

from data_index import DataSpec, build_step_index, builtin_corpus, prepare_store
from data_index.store import held_out_ids

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
