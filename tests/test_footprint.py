"""Absurd sizes are refused before anything is allocated: a run's memory and disk are estimated from its
shape (one estimator, training/footprint.py) by training, and by `zoo.load` and replay for a downloaded
config.json. Each refusal states the estimate and the limit, within seconds and a bounded RSS."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

import zoo
from checkpoints_manifest import sha256_bytes
from helpers import one_run_spec
from measure import measured
from training import ResourceError, load_spec, train_zoo
from training.footprint import footprint, memory_limit
from training.loop import model_config

ORG = "zoo-org"
RUN = "gelu-1l-seed1"
LIMIT_S, LIMIT_RSS_MB = 5.0, 1024


def _wide(tmp_path: Path, d_model: int) -> Path:
    """A one-run spec, tiny but for its width."""
    spec = tmp_path / "wide.toml"
    spec.write_text(one_run_spec("wide", steps=24).replace("d_model = 16,", f"d_model = {d_model},"))
    return spec


def test_a_spec_with_an_absurd_width_is_refused_before_allocating_naming_the_estimate_and_the_limit(
        tmp_path: Path) -> None:
    spec = _wide(tmp_path, 10_000_000)  # the case: 7e9 parameters, ~156 GiB to train
    absurd = load_spec(spec)
    assert footprint(model_config(absurd, absurd.runs()[0], 280), 4).training > memory_limit("cpu"), \
        "this machine has more memory than the test's absurd spec needs"
    run = measured(f"assert main(['train', {str(spec)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet']) == 2")
    assert run.error is None, run.traceback
    assert run.seconds < LIMIT_S and run.rss_mb < LIMIT_RSS_MB, run
    assert re.search(r"zoo: error: run wide-gelu-1l-seed0: training needs about \d+\.\d [GT]iB of cpu memory "
                     r"\(7,\d{3},\d{3},\d{3} parameters: .*\), but this machine has \d+\.\d GiB", run.stderr)
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()  # refused before the data was prepared: nothing written


def test_a_checkpoint_schedule_larger_than_the_disk_is_refused_naming_the_estimate_and_the_space(
        tmp_path: Path) -> None:
    spec = load_spec(_wide(tmp_path, 10_000))
    dense = dataclasses.replace(spec, training=dataclasses.replace(spec.training, steps=100_000),
                                checkpoints=dataclasses.replace(spec.checkpoints, every=1))
    need = footprint(model_config(dense, dense.runs()[0], dense.data.vocab_size)).checkpoint * 100_000
    assert need > shutil.disk_usage(tmp_path).total, "this machine's disk is too large for the test"
    with pytest.raises(ResourceError, match=r"its 100001 checkpoints need about 7.\d TiB of disk \(81.5 MiB each\), "
                                            r"but the filesystem of .* holds .* in all \(.* free\)\. Thin the "
                                            r"schedule"):
        train_zoo(dense, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_estimate_covers_weights_gradients_moments_and_activations() -> None:
    spec = load_spec("tiny")
    cfg = model_config(spec, spec.runs()[0], 300)
    est = footprint(cfg, micro_batch_size=4)
    assert est.parameters == cfg.n_params() and est.weights == 4 * cfg.n_params()
    assert est.training_state == 4 * est.weights  # two gradient buffers, two AdamW moments
    assert est.activations > 4 * 16 * 300 * 4  # at least the logits of a micro-batch
    assert est.training < memory_limit("cpu")


@pytest.fixture(scope="module")
def published(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    zoo.publish(trained_tiny / "tiny", org=ORG, root=root)
    return root


def test_a_hostile_config_json_is_refused_by_load_and_replay_before_allocating(published: Path,
                                                                               tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(published, root)
    repo = root / ORG / f"tiny-{RUN}"
    config = json.loads((repo / "config.json").read_text())
    config["model"]["d_model"] = 10_000_000
    data = json.dumps(config).encode()
    (repo / "config.json").write_bytes(data)
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"size": len(data), "sha256": sha256_bytes(data), "commit": None}
    (repo / "manifest.json").write_text(json.dumps(manifest))

    env = {"HF_HUB_CACHE": str(tmp_path / "hf")}
    load = measured(f"zoo.load('gelu-1l', seed=1, org={ORG!r}, root={str(root)!r})", env=env)
    replay = measured(f"assert main(['replay', 'gelu-1l', '--seed', '1', '--from', '4', '--to', '8', '--org', "
                      f"{ORG!r}, '--root', {str(root)!r}, '--quiet']) == 2", env=env)
    assert re.match(r"UnsafeArtifactError: .*config.json: a model of 7.\d+e\+09 parameters needs about \d+\.\d "
                    r"GiB of cpu memory for its weights alone, but this machine has", load.error), load.error
    assert replay.error is None, replay.traceback
    assert "config.json: a model of 7." in replay.stderr and "but this machine has" in replay.stderr
    assert "Traceback" not in replay.stderr
    for run in (load, replay):
        assert run.seconds < LIMIT_S and run.rss_mb < LIMIT_RSS_MB, run
