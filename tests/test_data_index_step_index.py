"""The step index equals the stateless order at every step; where-seen equals brute force."""

import json

import numpy as np
import pytest

import data_index.step_index as step_index_module
from helpers import tree_digest
from data_index import (
    BadScheduleError,
    DataSpec,
    DocumentOutOfRangeError,
    FingerprintMismatchError,
    IncompleteStoreError,
    StepIndex,
    StepOutOfRangeError,
    StoreExistsError,
    batch,
    build_step_index,
    format_batch,
    format_where_seen,
    prepare_store,
    step_sample_ids,
    where_seen_text,
)

SPEC = DataSpec(corpus="stories", n_docs=300, vocab_size=400, n_ctx=32)
SEED, BATCH, STEPS = 5, 8, 500  # 4000 positions: ~2.5 epochs of the toy store, so batches straddle epochs


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("di_index")
    store = prepare_store(SPEC, root / "store", progress=False)
    index = build_step_index(store, root / "index", data_seed=SEED, batch_size=BATCH, n_steps=STEPS, progress=False)
    return store, index


def test_materialized_index_equals_the_stateless_order_at_every_step(toy):
    store, index = toy
    assert STEPS * BATCH > 2 * store.n_samples
    for step in range(1, STEPS + 1):
        expected = step_sample_ids(step, batch_size=BATCH, n_samples=store.n_samples, data_seed=SEED)
        assert np.array_equal(index.batch_ids(step), expected), step


def test_where_seen_equals_brute_force_for_every_document(toy):
    store, index = toy
    brute: dict[int, list[tuple[int, int]]] = {d: [] for d in range(store.n_docs)}
    for step in range(1, STEPS + 1):
        for row, sample in enumerate(index.batch_ids(step)):
            for span in store.sample_documents(int(sample)):
                brute[span.doc].append((step, row))
    for d in range(store.n_docs):
        assert index.where_seen(d) == brute[d], d
    assert sum(map(len, brute.values())) > STEPS * BATCH  # samples hold several documents


def test_where_seen_text_finds_every_document_containing_the_snippet(toy):
    store, index = toy
    snippet = "named Biscuit"
    hits = where_seen_text(store, index, snippet)
    assert hits and set(hits) == {d for d in range(store.n_docs) if snippet in store.document_text(d)}
    assert all(hits[d] == index.where_seen(d) for d in hits)
    assert "doc " in format_where_seen(hits) and format_where_seen({}) == "no document matched"


def test_batch_shows_ids_tokens_documents_and_text(toy):
    store, index = toy
    b = batch(store, index, 42)
    assert np.array_equal(b.sample_ids, index.batch_ids(42))
    assert np.array_equal(b.tokens, store.samples(b.sample_ids))
    assert b.documents[0] == store.sample_documents(int(b.sample_ids[0]))
    assert b.texts[3] == store.decode(b.tokens[3])
    shown = format_batch(b, decode=True)
    assert shown.startswith("step 42: 8 samples of 33 tokens") and repr(b.texts[0]) in shown
    assert repr(b.texts[0]) not in format_batch(b, decode=False)


def test_step_beyond_the_schedule_names_the_last_valid_step(toy):
    _, index = toy
    with pytest.raises(StepOutOfRangeError, match=f"the last valid step is {STEPS}"):
        index.batch_ids(STEPS + 1)
    with pytest.raises(StepOutOfRangeError):
        index.batch_ids(0)
    with pytest.raises(DocumentOutOfRangeError):
        index.where_seen(-1)


def test_an_index_built_in_many_small_passes_has_the_same_bytes(toy, tmp_path, monkeypatch):
    store, index = toy  # the reverse map built a few documents and positions at a time: bounded memory
    monkeypatch.setattr(step_index_module, "_POSITIONS_PER_PASS", 100)
    monkeypatch.setattr(step_index_module, "_DOCS_PER_PASS", 7)
    small = build_step_index(store, tmp_path / "i", data_seed=SEED, batch_size=BATCH, n_steps=STEPS, progress=False)
    assert tree_digest(small.path) == tree_digest(index.path)


def test_a_lookup_reads_only_the_chunks_holding_its_rows(toy):
    _, index = toy
    asked: list[str] = []
    lazy = StepIndex.open(index.path, fetch=asked.extend)
    assert lazy.where_seen(12) == index.where_seen(12)
    assert np.array_equal(lazy.batch_ids(77), index.batch_ids(77))
    chunks = [name for name in asked if "/c/" in name]
    assert sorted({name.split("/")[0] for name in chunks}) == ["batches", "seen_pos", "seen_ptr"]
    assert len(chunks) <= 4  # one chunk each (seen_pos: two when the document's positions straddle chunks)


def test_index_of_another_store_is_refused_by_batch(toy, tmp_path):
    store, index = toy
    other = prepare_store(
        DataSpec(corpus="modular", n_docs=30, vocab_size=300, n_ctx=8), tmp_path / "s", progress=False
    )
    with pytest.raises(FingerprintMismatchError, match="rebuild the index"):
        batch(other, index, 1)


def test_build_step_index_is_idempotent_and_refuses_another_schedule(toy):
    store, index = toy
    again = build_step_index(store, index.path, data_seed=SEED, batch_size=BATCH, n_steps=STEPS, progress=False)
    assert again.n_steps == STEPS
    with pytest.raises(StoreExistsError, match="data_seed: 5 there, 6 asked"):
        build_step_index(store, index.path, data_seed=6, batch_size=BATCH, n_steps=STEPS, progress=False)


def test_bad_schedules_write_nothing(toy, tmp_path):
    store, _ = toy
    for kw in (dict(batch_size=0, n_steps=3), dict(batch_size=4, n_steps=0)):
        with pytest.raises(BadScheduleError):
            build_step_index(store, tmp_path / "i", data_seed=0, progress=False, **kw)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_index_build_leaves_nothing_and_reruns(toy, tmp_path, monkeypatch):
    store, _ = toy

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(step_index_module, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        build_step_index(store, tmp_path / "i", data_seed=1, batch_size=4, n_steps=10, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    built = build_step_index(store, tmp_path / "i", data_seed=1, batch_size=4, n_steps=10, progress=False)
    (tmp_path / "i" / "index.json").unlink()
    with pytest.raises(IncompleteStoreError, match=r"rerun `zoo train SPEC` \(it indexes .* build_step_index"):
        StepIndex.open(tmp_path / "i")
    rebuilt = build_step_index(store, tmp_path / "i", data_seed=1, batch_size=4, n_steps=10, progress=False)
    assert np.array_equal(rebuilt.batch_ids(10), built.batch_ids(10))


def test_index_files_are_json_and_zarr_only(toy):
    _, index = toy
    for p in index.path.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if p.name.endswith(".json"):
                json.loads(data)
            else:
                assert data.startswith(b"\x28\xb5\x2f\xfd"), p  # zstd-compressed zarr chunk, never a pickle
