"""What the help says works as written: every local example of `zoo --help` runs (those of a published
zoo, --org, are run by the tests of the Hub), the run layout it
describes is the real one, and errors name the command that fixes them (not a Python function)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

import zoo
from data_index import StepIndex, TokenStore
from zoo.cli import DESCRIPTION, main
from zoo.hub import IntegrityError

LOCAL_COMMANDS = ("batch", "where-seen", "verify")


@pytest.fixture
def toy_dir(trained_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The trained tiny zoo as out/toy under the working directory, where the help's examples point."""
    shutil.copytree(trained_tiny / "tiny", tmp_path / "out" / "toy")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "out" / "toy"


def test_every_local_example_in_zoo_help_works_as_written(toy_dir: Path, capsys: pytest.CaptureFixture) -> None:
    examples = [shlex.split(line.strip().split("   ")[0]) for line in DESCRIPTION.splitlines()
                if line.strip().startswith(tuple(f"zoo {c} " for c in LOCAL_COMMANDS)) and "--org" not in line]
    assert sorted({argv[1] for argv in examples}) == sorted(LOCAL_COMMANDS)
    for argv in examples:
        assert main(argv[1:]) == 0, (argv, capsys.readouterr().err)
    out = capsys.readouterr().out
    assert "step 5: 8 samples" in out and "doc 17: seen" in out and ": OK" in out


def test_the_run_layout_the_help_describes_is_the_real_one(toy_dir: Path) -> None:
    run = toy_dir / "runs" / "solu-1l-seed0"
    layout = " ".join(DESCRIPTION.split())
    assert re.search(r"holds config\.json, a dense set of full-state checkpoints \(checkpoints/stepNNNNNNNN/: "
                     r"[^)]*loss\.jsonl[^)]*\) and manifest\.json", layout)
    assert {p.name for p in run.iterdir()} == {"config.json", "checkpoints", "manifest.json", ".lock"}
    assert all((step / "loss.jsonl").is_file() for step in (run / "checkpoints").iterdir())


def test_data_errors_name_the_command_that_fixes_them(toy_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["batch", "out/toy/data", "--step", "5"]) == 2  # what the help used to say
    assert "out/toy/data looks like the data folder itself, give its parent out/toy" in capsys.readouterr().err
    assert main(["where-seen", "elsewhere", "--doc", "1"]) == 2
    assert "train the zoo first: zoo train SPEC" in capsys.readouterr().err
    for open_missing in (lambda: TokenStore.open(tmp_path / "none"), lambda: StepIndex.open(tmp_path / "none")):
        with pytest.raises(Exception, match=r"build one with `zoo train SPEC`"):
            open_missing()


def test_a_data_seed_the_zoo_lacks_is_an_error_listing_the_ones_it_has(toy_dir: Path, capsys) -> None:
    shutil.rmtree(toy_dir / "index" / "data0")
    assert main(["batch", "out/toy", "--step", "5"]) == 2  # the default --data-seed 0
    assert "has no step index for data seed 0: it has the data seeds 1 (pass --data-seed 1)" in \
        capsys.readouterr().err
    assert main(["batch", "out/toy", "--step", "5", "--data-seed", "1"]) == 0


def test_a_damaged_file_in_a_directory_root_is_not_said_to_be_removed_from_a_cache(trained_tiny: Path,
                                                                                   tmp_path: Path) -> None:
    root = tmp_path / "root"
    zoo.publish(trained_tiny / "tiny" / "runs" / "gelu-1l-seed1", org="me", root=root)
    weights = root / "me" / "tiny-gelu-1l-seed1" / "checkpoints" / "step00000004" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as error:
        zoo.load("gelu-1l", seed=1, step=4, org="me", root=root)
    assert "The file in the directory root is damaged" in str(error.value)
    assert "removed from the cache" not in str(error.value)
