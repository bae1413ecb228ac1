"""A run that reaches NaN: its loss log is valid JSON for every parser, and it replays BITWISE EQUAL.

Records and tensors are compared by their bytes, so a NaN equals itself. Runs trained before
(numerics.loss_log "python-json", bare NaN in loss.jsonl) still read, resume and replay as they were.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

import zoo
from helpers import one_run_spec
from training import parse_spec, train_zoo
from training.checkpoint import loss_lines, read_loss_stretch
from training.numerics import LEGACY
from zoo.replay import replay

ORG = "nan-org"


def _strict(text: str) -> list[dict]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


@pytest.fixture(scope="module")
def nan_zoo(tmp_path_factory) -> tuple[Path, Path]:
    """The same diverging run (lr 1e30, no clipping: NaN from step 2) on the CURRENT and the LEGACY path, published."""
    text = one_run_spec("nan", steps=8).replace("[checkpoints]\nlog_until = 4\nevery = 1",
                                                "[optimizer]\nlr = 1e30\nschedule = \"constant\"\ngrad_clip = 0.0\n\n"
                                                "[checkpoints]\nlog_until = 4\nevery = 4")
    spec = parse_spec(text)
    out, root = tmp_path_factory.mktemp("nan-out"), tmp_path_factory.mktemp("nan-root")
    train_zoo(spec, out, progress=False)
    train_zoo(dataclasses.replace(spec, name="nanold", numerics=LEGACY), out, progress=False)
    for name in ("nan", "nanold"):
        zoo.publish(out / name, org=ORG, root=root)
    return out, root


def test_a_nan_loss_log_is_strict_json_and_round_trips_exactly(nan_zoo):
    out, _ = nan_zoo
    folder = out / "nan" / "runs" / "gelu-1l-seed0" / "checkpoints" / "step00000004"
    text = (folder / "loss.jsonl").read_text()
    records = _strict(text)  # every JSON parser reads it
    assert records[-1]["loss"] == "NaN" and records[-1]["grad_norm"] == "NaN"
    read = read_loss_stretch(folder / "loss.jsonl")
    assert math.isnan(read[-1]["loss"]) and read[-1]["step"] == 4
    assert loss_lines(read, "strict-json") == text.encode()


def test_a_loss_log_written_before_with_bare_nan_still_reads_and_round_trips(nan_zoo):
    out, _ = nan_zoo
    path = out / "nanold" / "runs" / "gelu-1l-seed0" / "checkpoints" / "step00000004" / "loss.jsonl"
    assert '"loss": NaN' in path.read_text()
    read = read_loss_stretch(path)
    assert math.isnan(read[-1]["loss"])
    assert loss_lines(read, "python-json") == path.read_bytes()


@pytest.mark.parametrize("zoo_name", ["nan", "nanold"])
def test_a_run_that_reached_nan_replays_bitwise_equal(nan_zoo, zoo_name):
    _, root = nan_zoo
    result = replay("gelu-1l", seed=0, from_step=0, to_step=8, zoo=zoo_name, org=ORG, root=root)
    assert math.isnan(result.loss_records[-1]["loss"])
    assert result.bitwise_equal, result.verdict()
    assert result.first_loss_difference is None
    assert set(result.weight_max_abs_diff.values()) == {0.0}
    assert result.verdict().startswith("BITWISE EQUAL")
