"""The `zoo` command: help that teaches, clear errors with exit code 2, the train path."""

import subprocess
import sys

import pytest

from training import BUILTIN_SPECS
from zoo.cli import main


def test_help_teaches_the_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for word in ("train", "demo", "batch", "where-seen", "verify", "--resume", "seed"):
        assert word in out


@pytest.mark.parametrize("command", [[], ["train"], ["launch"]])
def test_help_names_every_built_in_spec(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in BUILTIN_SPECS:
        assert name in out


def test_unknown_spec_is_a_clear_error_with_exit_code_2(capsys, tmp_path):
    assert main(["train", "nonexistent", "--out", str(tmp_path)]) == 2
    assert "built-in specs are: toy, tiny" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_train_then_verify_then_inspect_a_batch(tmp_path, capsys):
    assert main(["train", "tiny", "--runs", "gelu-1l-seed0", "--out", str(tmp_path), "--quiet"]) == 0
    run = tmp_path / "tiny" / "runs" / "gelu-1l-seed0"
    assert main(["verify", str(run)]) == 0
    assert "OK" in capsys.readouterr().out
    (run / "checkpoints" / "step00000004" / "state.json").write_text("{}")
    assert main(["verify", str(run)]) == 1
    assert "step00000004/state.json" in capsys.readouterr().out
    assert main(["batch", str(tmp_path / "tiny"), "--step", "3", "--decode"]) == 0
    assert main(["batch", str(tmp_path / "tiny"), "--step", "9999"]) == 2
    assert "24" in capsys.readouterr().err  # names the last valid step
    assert main(["where-seen", str(tmp_path / "tiny"), "--doc", "0"]) == 0


def test_console_script_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "zoo" in out.stdout
