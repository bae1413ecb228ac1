"""Every rule the trainer enforces is checked when the spec is parsed (nothing written first), a run that
never completed an update starts again with a corrected spec, and a config that differs names its keys."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from helpers import cut_run_back, one_run_spec, tree_digest
from training import RunDirectoryConflictError, train_zoo
from zoo.cli import main
from zoo.launch import LaunchError, Resources, launch

RUN = "gelu-1l-seed0"
README = Path(__file__).resolve().parent.parent / "README.md"


def test_a_micro_batch_count_that_is_not_a_power_of_two_is_refused_at_parse_naming_key_line_and_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "twelve.toml"
    spec.write_text(one_run_spec("twelve", steps=4).replace("batch_size = 8\n", "batch_size = 12\n"))
    assert main(["train", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"{spec}, line 19, key 'training.micro_batch_size'" in error
    assert "12 / micro_batch_size 4 = 3 micro-batches" in error
    assert "use micro_batch_size 12, 6, 3, or batch_size 8 or 16" in error
    assert not (tmp_path / "out").exists()  # refused before a byte was written
    assert "power of two" in README.read_text().split("A zoo spec is a TOML file")[1].split("\n\n")[0]


def test_a_world_size_that_cannot_split_the_micro_batches_is_refused_before_submitting(tiny_spec,
                                                                                        tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"2 micro-batches cannot be split over 3 processes.*power of two up to 2"):
        launch(tiny_spec, tmp_path, executor="local", resources=Resources(tasks_per_node=3))
    assert not (tmp_path / "tiny").exists()


def _zoo_without_runs(trained_tiny: Path, out: Path) -> None:
    for folder in ("data", "index"):
        shutil.copytree(trained_tiny / "tiny" / folder, out / "tiny" / folder)


def test_a_run_that_never_completed_an_update_starts_again_with_a_corrected_spec(
        tiny_spec, trained_tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _zoo_without_runs(trained_tiny, tmp_path)
    wrong = dataclasses.replace(tiny_spec, optimizer=dataclasses.replace(tiny_spec.optimizer, lr=0.5),
                                training=dataclasses.replace(tiny_spec.training, steps=2))
    train_zoo(wrong, tmp_path, runs=RUN, progress=False)
    run = tmp_path / "tiny" / "runs" / RUN
    cut_run_back(run, keep=1)  # as if it had failed after writing step 0: no update completed

    with caplog.at_level(logging.WARNING):
        train_zoo(tiny_spec, tmp_path, runs=RUN, progress=False)

    assert "never completed an update" in caplog.text and "optimizer.lr is 0.5 there, 0.01 in the spec" in caplog.text
    assert tree_digest(run) == tree_digest(trained_tiny / "tiny" / "runs" / RUN)


def test_a_config_of_another_run_is_refused_naming_each_key_that_differs(tiny_spec, trained_tiny: Path,
                                                                         tmp_path: Path) -> None:
    _zoo_without_runs(trained_tiny, tmp_path)
    shutil.copytree(trained_tiny / "tiny" / "runs" / RUN, tmp_path / "tiny" / "runs" / RUN)
    before = tree_digest(tmp_path / "tiny" / "runs")
    two_layers = dataclasses.replace(tiny_spec.sizes["1l"], n_layers=2)
    changed = dataclasses.replace(tiny_spec, sizes={"1l": two_layers},
                                  optimizer=dataclasses.replace(tiny_spec.optimizer, lr=0.02),
                                  training=dataclasses.replace(tiny_spec.training, micro_batch_size=8))
    with pytest.raises(RunDirectoryConflictError) as error:
        train_zoo(changed, tmp_path, runs=RUN, progress=False)
    for difference in ("model.n_layers is 1 there, 2 in the spec", "optimizer.lr is 0.01 there, 0.02 in the spec",
                       "training.micro_batch_size is 4 there, 8 in the spec"):
        assert difference in str(error.value)
    assert tree_digest(tmp_path / "tiny" / "runs") == before
