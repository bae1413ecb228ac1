"""Tokenization on every core, in shards that survive a crash: the same bytes for any worker count and any kill."""

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import data_index._shards as shards_module
from data_index import DataSpec, TokenStore, builtin_corpus, prepare_store, train_bpe_tokenizer
from helpers import tree_digest

SPEC = DataSpec(corpus="stories", n_docs=1500, vocab_size=400, n_ctx=32)
FIXTURE_STORE = Path(__file__).parent / "fixtures/legacy-tiny/datasets/legacy/tiny-data/data"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """SPEC built in one process, uninterrupted, with the shard size the kill test uses."""
    out = tmp_path_factory.mktemp("sharded") / "reference"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shards_module, "SHARD_DOCS", 100)
        prepare_store(SPEC, out, workers=1, progress=False)
    return out


def test_store_bytes_do_not_depend_on_the_number_of_workers(reference, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_module, "SHARD_DOCS", 100)  # 15 shards, spread over the workers
    for workers in sorted({2, os.cpu_count() or 1}):
        prepare_store(SPEC, tmp_path / f"w{workers}", workers=workers, progress=False)
        assert tree_digest(tmp_path / f"w{workers}") == tree_digest(reference), workers
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"w{w}" for w in {2, os.cpu_count() or 1})


def test_a_store_built_before_shards_existed_keeps_its_fingerprint(tmp_path):
    tiny = DataSpec.from_dict(json.loads((FIXTURE_STORE / "store.json").read_text())["source"]["spec"])
    built = prepare_store(tiny, tmp_path / "s", workers=2, progress=False)
    assert built.fingerprint == TokenStore.open(FIXTURE_STORE).fingerprint  # the published legacy store's


_BUILD = """
import sys
import data_index._shards as shards
from data_index import DataSpec, prepare_store
shards.SHARD_DOCS = 20  # 75 shards (the bytes do not depend on where shards end: the reference has 100 a shard)
prepare_store(DataSpec(corpus="stories", n_docs=1500, vocab_size=400, n_ctx=32), sys.argv[1], workers=2,
              progress=False)
"""


def _shard_stamps(work: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (work / "shards").glob("*.safetensors")}


@pytest.mark.slow
def test_a_build_killed_at_random_moments_keeps_its_finished_shards_and_ends_byte_identical(reference, tmp_path):
    out, work = tmp_path / "s", tmp_path / ".s.build"
    rng = random.Random(14)
    kept: dict[str, tuple[int, int]] = {}
    resumed = 0  # kills of a rerun that had kept shards and finished more
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _BUILD, str(out)])
        began = time.monotonic()
        # The first kill lands anywhere (imports, BPE training, spawning workers); the later ones
        # once the rerun has tokenized a random number of shards beyond those it keeps.
        delay, more = rng.uniform(0.2, 3.0), rng.randint(1, 12)
        while proc.poll() is None and (time.monotonic() - began < delay if attempt == 0
                                       else len(_shard_stamps(work)) < len(kept) + more):
            time.sleep(0.005)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "store.json").is_file()
        now = _shard_stamps(work) if (work / "shards").is_dir() else {}
        assert all(now[name] == stamp for name, stamp in kept.items()), "a finished shard was redone or lost"
        resumed += bool(kept) and len(now) > len(kept)
        kept = now
    assert resumed >= 1
    subprocess.run([sys.executable, "-c", _BUILD, str(out)], check=True)
    assert tree_digest(out) == tree_digest(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # the work directory is gone, and any temp dir


def test_the_bpe_trains_on_a_seeded_sample_and_on_all_of_a_corpus_no_larger_than_it(tmp_path):
    spec = DataSpec(corpus="stories", n_docs=300, vocab_size=400, n_ctx=32)
    whole = prepare_store(spec, tmp_path / "whole", progress=False)
    covering = prepare_store(dataclasses.replace(spec, bpe_sample_docs=300), tmp_path / "covering",
                             progress=False)
    assert covering.tokenizer.to_str() == whole.tokenizer.to_str()
    assert covering.fingerprint == whole.fingerprint
    small = dataclasses.replace(spec, bpe_sample_docs=40)
    a = prepare_store(small, tmp_path / "a", progress=False)
    b = prepare_store(small, tmp_path / "b", workers=2, progress=False)
    assert a.tokenizer.to_str() == b.tokenizer.to_str() != whole.tokenizer.to_str()
    texts = builtin_corpus("stories", n_docs=300)["text"]
    assert a.document_text(17) == texts[17]  # every document is still tokenized, whatever the BPE saw


def test_the_progress_bar_shows_documents_tokens_per_second_and_eta(tmp_path, capsys):
    prepare_store(DataSpec(corpus="stories", n_docs=60, vocab_size=300, n_ctx=16), tmp_path / "s", progress=True)
    err = capsys.readouterr().err
    assert "tokenize" in err and "60/60" in err and "doc/s" in err and "tok_s=" in err and "<00:00" in err


def test_a_tokenizer_from_a_file_skips_the_bpe_pass_and_reads_the_corpus_once(tmp_path):
    tokenizer = train_bpe_tokenizer(builtin_corpus("modular", n_docs=50)["text"], 280)
    tokenizer.save(str(tmp_path / "tok.json"))
    docs = [{"text": t} for t in builtin_corpus("modular", n_docs=120)["text"]]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    spec = DataSpec(files=[str(tmp_path / "*.jsonl")], tokenizer_file=str(tmp_path / "tok.json"), n_ctx=16)
    store = prepare_store(spec, tmp_path / "s", workers=2, progress=False)
    assert store.n_docs == 120 and store.document_text(119) == docs[119]["text"]
    stream = store.samples(np.arange(store.n_samples)).reshape(-1)
    assert (stream == store.eos_id).sum() >= 119
