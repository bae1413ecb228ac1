"""Tokenizer training is deterministic across processes; DataSpec validates before anything is written."""

import hashlib
import os
import subprocess
import sys

import pytest
from tokenizers import Tokenizer, models

from data_index import (
    EOS_TOKEN,
    BadContextLengthError,
    BadDataSpecError,
    DataSpec,
    TokenizerFileError,
    UnknownCorpusError,
    VocabTooSmallError,
    builtin_corpus,
    load_tokenizer,
    train_bpe_tokenizer,
)

_TRAIN_AND_PRINT = """
import hashlib
from data_index import builtin_corpus, train_bpe_tokenizer
texts = builtin_corpus("stories", n_docs=200)["text"]
print(hashlib.sha256(train_bpe_tokenizer(texts, 400).to_str().encode()).hexdigest())
"""


def test_same_corpus_and_vocab_give_the_same_tokenizer_json_bytes_in_another_process():
    texts = builtin_corpus("stories", n_docs=200)["text"]
    here = train_bpe_tokenizer(texts, 400).to_str()
    # Another process has other hash seeds and thread timings: the bytes must not care.
    env = {**os.environ, "PYTHONHASHSEED": "123", "RAYON_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _TRAIN_AND_PRINT], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == hashlib.sha256(here.encode()).hexdigest()
    assert train_bpe_tokenizer(texts, 400).to_str() == here


def test_eos_is_token_zero_and_decoding_gives_the_text_back():
    tok = train_bpe_tokenizer(builtin_corpus("stories", n_docs=100)["text"], 300)
    assert tok.token_to_id(EOS_TOKEN) == 0
    text = "Zoë's naïve café — 日本 ✓"  # bytes never seen in training still round-trip
    assert tok.decode(tok.encode(text).ids) == text


def test_vocab_smaller_than_the_byte_alphabet_is_refused():
    with pytest.raises(VocabTooSmallError, match="use vocab_size >= 257"):
        train_bpe_tokenizer(["abc"], 100)


def test_load_tokenizer_checks_the_file(tmp_path):
    with pytest.raises(TokenizerFileError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="not a valid tokenizer.json"):
        load_tokenizer(tmp_path / "bad.json")
    Tokenizer(models.BPE()).save(str(tmp_path / "no_eos.json"))
    with pytest.raises(TokenizerFileError, match="add_special_tokens"):
        load_tokenizer(tmp_path / "no_eos.json")
    good = train_bpe_tokenizer(["hello world"], 300)
    good.save(str(tmp_path / "good.json"))
    assert load_tokenizer(tmp_path / "good.json").to_str() == good.to_str()


def test_data_spec_round_trips_through_a_dict_with_the_version_resolved():
    spec = DataSpec(n_docs=50, n_ctx=16)
    assert spec.corpus_version == 1
    assert DataSpec.from_dict(spec.to_dict()) == spec
    files = DataSpec(files=["a.txt"], vocab_size=300)  # corpus left at its default: files win
    assert files.corpus is None and files.files == ("a.txt",)
    assert DataSpec.from_dict(files.to_dict()) == files


def test_data_spec_refuses_bad_input_with_the_fix():
    with pytest.raises(BadDataSpecError, match="unknown DataSpec key.*n_ctxx.*known keys"):
        DataSpec.from_dict({"n_ctxx": 5})
    with pytest.raises(BadContextLengthError, match="n_ctx must be >= 1"):
        DataSpec(n_ctx=0)
    with pytest.raises(VocabTooSmallError, match="257"):
        DataSpec(vocab_size=100)
    with pytest.raises(UnknownCorpusError, match="stories, induction"):
        DataSpec(corpus="wiki")
    with pytest.raises(UnknownCorpusError, match="no version 3"):
        DataSpec(corpus_version=3)
    with pytest.raises(BadDataSpecError, match="keep one"):
        DataSpec(corpus="modular", files=["a.txt"])
    with pytest.raises(BadDataSpecError, match="not both"):
        DataSpec(files=["a.txt"], hub_dataset="x/y")
    with pytest.raises(BadDataSpecError, match="no corpus"):
        DataSpec(corpus=None)
