"""The token store: reproducible fingerprints, honest maps, and builds that are complete or absent."""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import data_index.store as store_module
from data_index import (
    EOS_TOKEN,
    BadContextLengthError,
    BadCorpusError,
    CorpusFileNotFoundError,
    DataSpec,
    DocSpan,
    DocumentOutOfRangeError,
    EmptyCorpusError,
    FingerprintMismatchError,
    IncompleteStoreError,
    SampleOutOfRangeError,
    StoreExistsError,
    StoreNotFoundError,
    TokenStore,
    build_token_store,
    builtin_corpus,
    file_corpus,
    prepare_store,
    train_bpe_tokenizer,
)

SPEC = DataSpec(corpus="stories", n_docs=300, vocab_size=400, n_ctx=32)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TokenStore:
    return prepare_store(SPEC, tmp_path_factory.mktemp("di_store") / "store", progress=False)


def _small(n_docs: int = 40, seed: int = 0) -> DataSpec:
    return DataSpec(corpus="stories", corpus_seed=seed, n_docs=n_docs, vocab_size=300, n_ctx=16)


def _recomputed_fingerprint(path: Path) -> str:
    """The fingerprint from the data itself, independently of the store's own bookkeeping."""
    group = zarr.open_group(str(path), mode="r")
    tokens, offsets = group["tokens"][:], group["doc_offsets"][:]
    parts = {
        "tokens": {
            "dtype": tokens.dtype.str,
            "shape": list(tokens.shape),
            "sha256": hashlib.sha256(tokens.tobytes()).hexdigest(),
        },
        "doc_offsets": {
            "dtype": offsets.dtype.str,
            "shape": list(offsets.shape),
            "sha256": hashlib.sha256(offsets.tobytes()).hexdigest(),
        },
        "tokenizer.json": {"sha256": hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_fingerprint_is_sha256_over_tokens_offsets_and_tokenizer(store):
    assert store.fingerprint == _recomputed_fingerprint(store.path)


def test_building_twice_and_with_two_workers_gives_identical_fingerprints(store, tmp_path):
    again = prepare_store(SPEC, tmp_path / "again", progress=False)
    two_workers = prepare_store(SPEC, tmp_path / "two", workers=2, progress=False)
    assert again.fingerprint == two_workers.fingerprint == store.fingerprint


def test_a_changed_corpus_byte_changes_the_fingerprint(tmp_path):
    texts = list(builtin_corpus("stories", n_docs=40)["text"])
    tokenizer = train_bpe_tokenizer(texts, 300)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    texts[17] = texts[17].replace("a", "b", 1)
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    a = build_token_store(file_corpus([tmp_path / "a.jsonl"]), tokenizer, tmp_path / "sa", n_ctx=16, progress=False)
    b = build_token_store(file_corpus([tmp_path / "b.jsonl"]), tokenizer, tmp_path / "sb", n_ctx=16, progress=False)
    assert a.fingerprint != b.fingerprint


def test_samples_pack_every_document_followed_by_eos(store):
    texts = builtin_corpus("stories", n_docs=SPEC.n_docs)["text"]
    stream = store.samples(np.arange(store.n_samples)).reshape(-1)
    expected = np.concatenate([np.array(store.tokenizer.encode(t).ids + [store.eos_id]) for t in texts])
    assert np.array_equal(stream, expected[: len(stream)])  # only the tail shorter than a sample is dropped
    assert len(expected) - len(stream) < SPEC.n_ctx + 1
    assert store.eos_id == store.tokenizer.token_to_id(EOS_TOKEN)
    assert store.document_text(5) == texts[5]  # byte-level BPE: the stored text is the original


def test_samples_come_in_the_order_asked_with_repeats(store):
    ids = np.array([7, 3, 7, store.n_samples - 1])
    got = store.samples(ids)
    assert got.shape == (4, SPEC.n_ctx + 1) and got.dtype == np.int64
    assert np.array_equal(got[0], got[2])
    assert np.array_equal(got[1], store.samples(np.array([3]))[0])


def test_a_store_too_big_for_memory_reads_the_same_samples_from_zarr(store, monkeypatch):
    monkeypatch.setattr(store_module, "_IN_MEMORY_MAX_BYTES", 0)
    on_disk = TokenStore.open(store.path)
    ids = np.array([9, 2, 9, 400, 0])
    assert np.array_equal(on_disk.samples(ids), store.samples(ids))
    assert on_disk.document_text(11) == store.document_text(11)
    assert on_disk._loaded is None  # never read whole


def test_a_store_is_read_into_memory_only_when_samples_are_first_asked_for(store):
    opened = TokenStore.open(store.path)
    opened.document_samples(11), opened.sample_documents(3)  # lookups read offsets only
    assert opened._loaded is None
    opened.samples(np.array([0]))
    assert opened._loaded is not None and len(opened._loaded) == opened.n_samples


def test_a_sample_read_touches_one_chunk(store):
    tokens = zarr.open_group(str(store.path), mode="r")["tokens"]
    assert tokens.chunks[1] == SPEC.n_ctx + 1  # chunks hold whole rows: sample i is in chunk i // rows


def test_sample_and_document_maps_agree_with_each_other(store):
    length = SPEC.n_ctx + 1
    for s in range(store.n_samples):
        spans = store.sample_documents(s)
        assert spans[0].start == 0 and spans[-1].end == length
        assert all(a.end == b.start and a.doc + 1 == b.doc for a, b in zip(spans, spans[1:]))
        for span in spans:
            assert s in store.document_samples(span.doc)
    for d in range(store.n_docs):
        for s in store.document_samples(d):
            assert d in [span.doc for span in store.sample_documents(int(s))]


def test_spans_mark_document_boundaries_at_eos(store):
    for s in range(50):
        row = store.samples(np.array([s]))[0]
        for span in store.sample_documents(s)[:-1]:  # every span but the last ends with its EOS
            assert row[span.end - 1] == store.eos_id
    assert store.sample_documents(0)[0] == DocSpan(doc=0, start=0, end=store.sample_documents(0)[0].end)


def test_out_of_range_ids_are_clear_errors(store):
    with pytest.raises(SampleOutOfRangeError, match=f"0..{store.n_samples - 1}"):
        store.sample_documents(store.n_samples)
    with pytest.raises(SampleOutOfRangeError):
        store.samples(np.array([-1]))
    with pytest.raises(DocumentOutOfRangeError, match=f"0..{store.n_docs - 1}"):
        store.document_samples(store.n_docs)


def test_opening_with_the_wrong_fingerprint_names_both_and_the_store(store):
    assert TokenStore.open(store.path, expected_fingerprint=store.fingerprint).n_samples == store.n_samples
    with pytest.raises(FingerprintMismatchError, match=rf"{store.path}.*{store.fingerprint}, expected 0000"):
        TokenStore.open(store.path, expected_fingerprint="0000")


def test_prepare_store_is_idempotent_and_refuses_another_spec(store):
    before = sorted((p, p.stat().st_mtime_ns) for p in store.path.rglob("*"))
    assert prepare_store(SPEC, store.path, progress=False).fingerprint == store.fingerprint
    assert sorted((p, p.stat().st_mtime_ns) for p in store.path.rglob("*")) == before  # opened, not rebuilt
    other = DataSpec(corpus="stories", n_docs=300, vocab_size=400, n_ctx=16)
    with pytest.raises(StoreExistsError, match="differs in: n_ctx"):
        prepare_store(other, store.path, progress=False)


def test_prepare_store_notices_a_changed_input_file(tmp_path):
    (tmp_path / "a.txt").write_text("one two three " * 20, encoding="utf-8")
    spec = DataSpec(files=[str(tmp_path / "a.txt")], vocab_size=300, n_ctx=8)
    prepare_store(spec, tmp_path / "s", progress=False)
    (tmp_path / "a.txt").write_text("one two three " * 21, encoding="utf-8")
    with pytest.raises(StoreExistsError, match="contents of its input files"):
        prepare_store(spec, tmp_path / "s", progress=False)


def test_bad_input_fails_before_anything_is_written(tmp_path):
    tok = train_bpe_tokenizer(["a b c"], 300)
    cases = [
        (BadContextLengthError, lambda out: build_token_store(builtin_corpus("modular", n_docs=3), tok, out, n_ctx=0)),
        (EmptyCorpusError, lambda out: build_token_store(_empty(), tok, out, n_ctx=4)),
        (EmptyCorpusError, lambda out: build_token_store(builtin_corpus("modular", n_docs=1), tok, out, n_ctx=10_000)),
        (BadCorpusError, lambda out: build_token_store(_empty().rename_column("text", "body"), tok, out, n_ctx=4)),
        (CorpusFileNotFoundError, lambda out: prepare_store(DataSpec(files=[str(tmp_path / "missing.txt")]), out)),
    ]
    for error, build in cases:
        out = tmp_path / "out"
        with pytest.raises(error):
            build(out)
        assert list(tmp_path.iterdir()) == [], error  # no store, no temp dir left behind


def _empty():
    import datasets

    return datasets.Dataset.from_dict({"text": []})


def test_too_few_tokens_for_one_sample_says_what_to_change(tmp_path):
    tok = train_bpe_tokenizer(["a b c"], 300)
    with pytest.raises(EmptyCorpusError, match="fewer than one sample.*smaller n_ctx"):
        build_token_store(builtin_corpus("modular", n_docs=1), tok, tmp_path / "s", n_ctx=10_000, progress=False)


def test_build_token_store_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.txt").write_text("keep me", encoding="utf-8")
    tok = train_bpe_tokenizer(["a b c"], 300)
    with pytest.raises(StoreExistsError, match="not empty"):
        build_token_store(builtin_corpus("modular", n_docs=3), tok, tmp_path / "s", n_ctx=4, progress=False)
    with pytest.raises(StoreExistsError, match="not a token store"):
        prepare_store(_small(), tmp_path / "s", progress=False)
    assert (tmp_path / "s" / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_a_build_interrupted_before_its_marker_leaves_no_store(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user hit ctrl-C after the arrays were written

    monkeypatch.setattr(store_module, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(_small(), tmp_path / "s", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [".s.build"]  # no store; the finished shards, for the rerun
    monkeypatch.undo()
    assert prepare_store(_small(), tmp_path / "s", progress=False).n_samples > 0
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


_KILLED_BUILD = """
import os, signal, sys
import data_index.store as m
from data_index import DataSpec, prepare_store
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)  # a crash between writing the arrays and the marker
m.atomic_write_json = die
prepare_store(DataSpec(corpus="stories", n_docs=40, vocab_size=300, n_ctx=16), sys.argv[1], progress=False)
"""


def test_a_killed_build_never_looks_complete_and_a_rerun_finishes_it(tmp_path):
    out = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(out)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert not out.exists() and len(leftovers) == 2 and ".s.partial-" in leftovers[1]
    assert leftovers[0] == ".s.build"  # the finished shards, kept for the rerun
    with pytest.raises(StoreNotFoundError, match="prepare_store"):
        TokenStore.open(out)
    built = prepare_store(_small(), out, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # the dead build's temp dir is cleaned up
    assert built.fingerprint == _recomputed_fingerprint(out)


def test_a_store_dir_without_its_marker_is_incomplete_and_gets_rebuilt(tmp_path):
    good = prepare_store(_small(), tmp_path / "s", progress=False)
    (tmp_path / "s" / "store.json").unlink()  # e.g. a copy that stopped half-way
    with pytest.raises(IncompleteStoreError, match="did not finish.*rerun"):
        TokenStore.open(tmp_path / "s")
    assert prepare_store(_small(), tmp_path / "s", progress=False).fingerprint == good.fingerprint


def test_nothing_written_is_a_pickle(store):
    for p in store.path.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if p.name.endswith(".json"):
                json.loads(data)
            else:  # zarr chunks: zstd frames of raw array bytes
                assert data.startswith(ZSTD_MAGIC), p
            assert not data.startswith(b"\x80"), p  # the pickle protocol header


def test_progress_bar_is_shown_on_build(tmp_path, capsys):
    prepare_store(_small(n_docs=20), tmp_path / "s", progress=True)
    assert "tokenize" in capsys.readouterr().err


def test_every_builtin_corpus_builds_a_store(tmp_path):
    for name in ("induction", "modular", "shakespeare"):
        spec = DataSpec(corpus=name, n_docs=20, vocab_size=300, n_ctx=16)
        s = prepare_store(spec, tmp_path / name, progress=False)
        assert s.n_samples > 0 and s.document_text(0) == builtin_corpus(name, n_docs=1)["text"][0]


def test_a_pretrained_tokenizer_file_is_used_as_is(tmp_path):
    tok = train_bpe_tokenizer(builtin_corpus("modular", n_docs=50)["text"], 280)
    tok.save(str(tmp_path / "tok.json"))
    spec = DataSpec(corpus="modular", n_docs=30, tokenizer_file=str(tmp_path / "tok.json"), n_ctx=16)
    s = prepare_store(spec, tmp_path / "s", progress=False)
    assert s.tokenizer.to_str() == tok.to_str() and s.vocab_size == tok.get_vocab_size()


def test_an_eos_string_inside_a_document_is_text_not_a_boundary(tmp_path):
    tok = train_bpe_tokenizer(["plain words"], 300)
    ds = __import__("datasets").Dataset.from_dict({"text": [f"before {EOS_TOKEN} after " * 4] * 3})
    s = build_token_store(ds, tok, tmp_path / "s", n_ctx=8, progress=False)
    stream = s.samples(np.arange(s.n_samples)).reshape(-1)
    assert (stream == s.eos_id).sum() <= 3  # only the packer's separators
    assert s.document_text(0) == f"before {EOS_TOKEN} after " * 4
    assert os.listdir(tmp_path) == ["s"]
