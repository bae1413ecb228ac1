"""Training from a Hub dataset, streamed by the real `datasets` client from the localhost Hub-API server."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

import data_index._shards as shards_module
import data_index.store as store_module
import zoo
from data_index import (
    BadCorpusError,
    DataSpec,
    EmptyCorpusError,
    HubCorpusError,
    RevisionMovedError,
    TokenStore,
    builtin_corpus,
    prepare_store,
)
from training import RunDirectoryConflictError, parse_spec, train_zoo
from zoo.replay import replay

REPO = "corpora/stories"
DOCS = builtin_corpus("stories", n_docs=240)["text"]
SPEC = f"""
name = "hubzoo"
seeds = [0]

[data]
hub_dataset = "{REPO}"
text_column = "body"
revision = "main"
vocab_size = 300
n_ctx = 16

[sizes]
1l = {{ n_layers = 1, d_model = 16, n_heads = 2, d_head = 8, d_mlp = 32 }}

[families]
gelu = ["1l"]

[training]
steps = 12
batch_size = 8
micro_batch_size = 4

[checkpoints]
log_until = 4
every = 4
"""


def _push(tmp: Path, files: dict[str, list[str]], repo: str = REPO) -> str:
    """Commit parquet files (path in repo -> documents, in a `body` column beside an `id`); the new commit."""
    api = HfApi()
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    operations = []
    for path, texts in files.items():
        local = tmp / path.replace("/", "_")
        pq.write_table(pa.table({"body": pa.array(texts, pa.string()), "id": list(range(len(texts)))}), local)
        operations.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local)))
    return api.create_commit(repo, operations, commit_message="corpus", repo_type="dataset").oid


def _empty(tmp: Path, repo: str) -> None:
    """A dataset repo whose train split holds no record (a JSON-lines file without lines)."""
    (tmp / "empty.jsonl").write_text("")
    HfApi().create_repo(repo, repo_type="dataset")
    HfApi().upload_file(path_or_fileobj=str(tmp / "empty.jsonl"), path_in_repo="data/train.jsonl", repo_id=repo,
                        repo_type="dataset")


def _corpus(tmp: Path, docs: list[str] = DOCS) -> str:
    """The corpus repo: train split in two parquet shards, a test split beside it."""
    return _push(tmp, {"data/train-00000-of-00002.parquet": docs[:150], "data/train-00001-of-00002.parquet": docs[150:],
                       "data/test-00000-of-00001.parquet": ["a test document"] * 5})


def test_a_zoo_trains_from_a_hub_dataset_replays_bitwise_and_refuses_the_corpus_changed_under_its_revision(
        hub_server, tmp_path):
    first = _corpus(tmp_path)
    spec = parse_spec(SPEC)
    train_zoo(spec, tmp_path / "out", progress=False)
    store = TokenStore.open(tmp_path / "out" / "hubzoo" / "data")
    meta = json.loads((store.path / "store.json").read_text())
    assert meta["source"]["hub_commit"] == meta["parts"]["hub_source"]["commit"] == first  # pinned, fingerprinted
    assert [store.document_text(d) for d in (0, 149, 150, 200)] == [DOCS[d] for d in (0, 149, 150, 200)]
    zoo.publish(tmp_path / "out" / "hubzoo", org="me")
    result = replay("gelu-1l", seed=0, from_step=4, to_step=12, org="me")
    assert result.bitwise_equal, result.verdict()

    edited = list(DOCS)
    edited[7] = edited[7].replace("the", "a", 1)
    moved = _corpus(tmp_path, edited)  # main now points at another corpus
    for folder in ("data", "index"):
        shutil.rmtree(tmp_path / "out" / "hubzoo" / folder)
    with pytest.raises(RunDirectoryConflictError, match="trained on dataset .* fingerprint"):
        train_zoo(spec, tmp_path / "out", resume=True, progress=False)
    rebuilt = TokenStore.open(tmp_path / "out" / "hubzoo" / "data")
    assert json.loads((rebuilt.path / "store.json").read_text())["source"]["hub_commit"] == moved
    assert rebuilt.fingerprint != store.fingerprint


def test_bad_hub_corpora_are_named_with_the_fix_and_leave_nothing_behind(hub_server, tmp_path):
    _corpus(tmp_path / "..")
    _empty(tmp_path / "..", "corpora/empty")
    base = DataSpec(hub_dataset=REPO, text_column="body", vocab_size=300, n_ctx=16)
    cases = [
        (dataclasses.replace(base, text_column="text"), BadCorpusError,
         r"'corpora/stories', split 'train' has no column 'text' \(columns: body, id\); set text_column"),
        (dataclasses.replace(base, split="validation"), BadCorpusError,
         r"'corpora/stories' has no split 'validation' .*'train', 'test'.*set split"),
        (dataclasses.replace(base, revision="v9"), HubCorpusError, r"'corpora/stories' has no revision 'v9'"),
        (dataclasses.replace(base, hub_dataset="corpora/nothing"), HubCorpusError, "'corpora/nothing' does not exist"),
        (dataclasses.replace(base, hub_dataset="corpora/empty"), EmptyCorpusError,
         "Hub dataset 'corpora/empty', split 'train' has no documents"),
    ]
    for spec, error, match in cases:
        with pytest.raises(error, match=match):
            prepare_store(spec, tmp_path / "s", progress=False)
        assert list(tmp_path.iterdir()) == [], spec  # no store, no temp dir, no shards


def test_a_build_resumed_after_its_revision_moved_is_refused_and_pinning_the_old_commit_finishes_it(
        hub_server, tmp_path, monkeypatch):
    first = _corpus(tmp_path)
    spec = DataSpec(hub_dataset=REPO, text_column="body", revision="main", vocab_size=300, n_ctx=16)
    out = tmp_path / "s"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after every shard is tokenized, before the store is packed

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):  # the fixture's patches stay
        patch.setattr(store_module, "build_dir", killed)
        prepare_store(spec, out, progress=False)
    moved = _corpus(tmp_path, DOCS[::-1])
    with pytest.raises(RevisionMovedError, match=rf"revision 'main' now points at commit {moved}, .* of commit "
                                                 rf"{first}: the corpus changed .* Pin revision = '{first}'"):
        prepare_store(spec, out, progress=False)
    assert not out.exists()

    tokenized = []
    monkeypatch.setattr(shards_module, "_write_shard", lambda *a: tokenized.append(a) or None)
    pinned = prepare_store(dataclasses.replace(spec, revision=first), out, progress=False)
    assert tokenized == []  # finished from the kept shards: none tokenized again
    assert pinned.document_text(3) == DOCS[3]
    assert json.loads((out / "store.json").read_text())["source"]["hub_commit"] == first
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".parquet")) == ["s"]
