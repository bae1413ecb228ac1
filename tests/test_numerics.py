"""The numerics path is part of a run: recorded in config.json, kept on resume, used by replay.

`fixtures/legacy-tiny` was trained and published by the code before the record existed, so its
config.json has no `numerics` table; today's code must resume and replay it on its own path.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from checkpoints_manifest import environment_record, read_manifest
from helpers import cut_run_back, tree_digest
from training import SpecError, load_spec, parse_spec, train_zoo
from training.loop import run_config, model_config
from training.numerics import CURRENT, LEGACY, numerics_from_table, numerics_record, recorded_numerics
from zoo.replay import replay

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-tiny"
RUN_REPO = FIXTURE / "legacy" / "tiny-gelu-1l-seed0"
DATA_REPO = FIXTURE / "datasets" / "legacy" / "tiny-data"


def _fixture_platform() -> bool:
    """Whether this machine is the platform the fixture was trained on (bitwise equality is per platform)."""
    recorded = read_manifest(RUN_REPO).environment
    here = environment_record("cpu")
    return (torch.backends.cpu.get_cpu_capability(), here.device_name, here.torch) == (
        "AVX2", recorded.device_name, recorded.torch)


def _legacy_zoo(out: Path) -> Path:
    """The fixture laid out as a trained zoo directory (out/tiny/{data,index/data0,runs/gelu-1l-seed0})."""
    zoo_dir = out / "tiny"
    shutil.copytree(DATA_REPO / "data", zoo_dir / "data")
    shutil.copytree(DATA_REPO / "index", zoo_dir / "index")
    run = zoo_dir / "runs" / "gelu-1l-seed0"
    shutil.copytree(RUN_REPO / "checkpoints", run / "checkpoints")
    for name in ("config.json", "manifest.json"):
        shutil.copy(RUN_REPO / name, run / name)
    return run


def test_the_fixture_predates_the_numerics_record() -> None:
    config = json.loads((RUN_REPO / "config.json").read_text())
    assert "numerics" not in config and recorded_numerics(config) == LEGACY


def test_a_run_trained_before_numerics_were_recorded_resumes_on_its_own_path(tmp_path: Path) -> None:
    run = _legacy_zoo(tmp_path)
    config_before = (run / "config.json").read_bytes()
    cut_run_back(run, keep=5)  # steps 0, 1, 2, 4, 8
    # Another code version trained it: resuming is a platform change, made by request and recorded.
    train_zoo(load_spec("tiny"), tmp_path, runs="gelu-1l-seed0", resume=True, progress=False,
              allow_platform_change=True)
    assert (run / "config.json").read_bytes() == config_before  # accepted as it is: no numerics table added
    assert [c.step for c in read_manifest(run).platform_changes] == [8]
    if not _fixture_platform():
        pytest.skip("the fixture's bytes belong to the platform it was trained on (AMD EPYC, AVX2)")
    published = tree_digest(RUN_REPO / "checkpoints")
    assert tree_digest(run / "checkpoints") == published


def test_a_run_trained_before_numerics_were_recorded_replays_bitwise(tmp_path: Path) -> None:
    if not _fixture_platform():
        pytest.skip("the fixture's bytes belong to the platform it was trained on (AMD EPYC, AVX2)")
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root)
    for start, stop in [(0, 4), (8, 16), (16, 24)]:
        result = replay("gelu-1l", seed=0, from_step=start, to_step=stop, org="legacy", root=root)
        assert result.bitwise_equal, result.verdict()


def test_a_config_records_every_path_but_the_legacy_one() -> None:
    assert numerics_record(LEGACY) is None
    other = dataclasses.replace(LEGACY, compile=True)
    assert numerics_record(other) == dataclasses.asdict(other)
    spec = load_spec("tiny")
    run = spec.runs()[0]
    config = run_config(dataclasses.replace(spec, numerics=LEGACY), run, model_config(spec, run, 300))
    assert "numerics" not in config
    assert recorded_numerics({"numerics": dataclasses.asdict(CURRENT)}) == CURRENT


def test_a_spec_names_a_path_key_by_key_and_an_unknown_one_is_refused_with_the_choices() -> None:
    text = (Path(__file__).parent.parent / "training" / "specs" / "tiny.toml").read_text()
    assert parse_spec(text).numerics is None  # names none: resolved per run (recorded, else CURRENT)
    assert parse_spec(text + '\n[numerics]\nattention = "explicit"\n').numerics == dataclasses.replace(
        CURRENT, attention="explicit")
    with pytest.raises(SpecError, match=r"numerics.attention = 'flash'.*'explicit'"):
        parse_spec(text + '\n[numerics]\nattention = "flash"\n', source="tiny.toml")
    with pytest.raises(SpecError, match="unknown numerics key"):
        parse_spec(text + "\n[numerics]\nkernels = 1\n")
    with pytest.raises(SpecError, match="lacks"):
        numerics_from_table({"attention": "explicit"}, where="config.json", complete=True)
