"""A zoo's step index always holds the batches its runs trained on: a stale one is rebuilt or refused.

Train with batch 8, delete runs/, retrain with batch 16: the index of batch 8 must not survive to
make `zoo batch` print samples training never used, nor be published.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import zoo
from data_index import TokenStore, build_step_index
from helpers import one_run_spec
from training import parse_spec, train_zoo
from training.errors import StaleStepIndexError
from training.loop import batch_tokens, index_path
from zoo.cli import main

STEP = 3


def _spec(batch_size: int):
    return parse_spec(one_run_spec("stale", steps=6).replace("batch_size = 8", f"batch_size = {batch_size}"))


def _printed_ids(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"sample +(\d+)", out)]


def test_retraining_with_another_batch_size_rebuilds_the_index_and_zoo_batch_shows_the_loops_batch(
        tmp_path: Path, capsys) -> None:
    train_zoo(_spec(8), tmp_path, progress=False)
    shutil.rmtree(tmp_path / "stale" / "runs")
    spec = _spec(16)
    train_zoo(spec, tmp_path, progress=False)

    assert main(["batch", str(tmp_path / "stale"), "--step", str(STEP)]) == 0
    ids = _printed_ids(capsys.readouterr().out)
    store = TokenStore.open(tmp_path / "stale" / "data")
    loops_batch = batch_tokens(store, STEP, batch_size=16, data_seed=0, device="cpu").numpy()
    assert len(ids) == 16 and np.array_equal(store.samples(np.asarray(ids)), loops_batch)


def test_an_index_still_used_by_runs_of_another_batch_size_is_refused_and_never_shown_or_published(
        tmp_path: Path, capsys) -> None:
    train_zoo(_spec(16), tmp_path, progress=False)
    with pytest.raises(StaleStepIndexError, match=r"batch size 16 x 6 steps.*gelu-1l-seed0.*batch size 8 x 6"):
        train_zoo(_spec(8), tmp_path, progress=False)  # refused before anything is written

    # An index of batch 8 under runs of batch 16, as code before this check could leave it:
    path, store = index_path(tmp_path / "stale", 0), TokenStore.open(tmp_path / "stale" / "data")
    shutil.rmtree(path)
    build_step_index(store, path, data_seed=0, batch_size=8, n_steps=6, progress=False)
    assert main(["batch", str(tmp_path / "stale"), "--step", str(STEP)]) == 2
    err = capsys.readouterr().err
    assert "is stale" in err and "gelu-1l-seed0" in err and "zoo train" in err
    with pytest.raises(zoo.PublishError, match="nothing was published.*is stale"):
        zoo.publish(tmp_path / "stale", org="org", root=tmp_path / "hub")
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.safetensors"))
