"""Resume checks the platform: a run is continued on another platform only when asked, and then its
manifest says from which step, and replay compares each stretch with the platform it was trained on."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from checkpoints_manifest import KERNEL_ENVIRONMENT_VARIABLES, read_manifest, write_manifest
from helpers import cut_run_back, tree_digest
from zoo.cli import main
from zoo.replay import replay

REPO = Path(__file__).resolve().parent.parent
RUN = "gelu-1l-seed0"
ORG = "platform-org"


def _cut_copy(trained_tiny: Path, out: Path) -> Path:
    """The reference run copied with its data, as a crash after checkpoint 8 would leave it."""
    for part in ("data", "index", f"runs/{RUN}"):
        shutil.copytree(trained_tiny / "tiny" / part, out / "tiny" / part)
    run = out / "tiny" / "runs" / RUN
    cut_run_back(run, keep=5)  # 0, 1, 2, 4, 8
    return run


def test_resume_on_a_forged_platform_is_refused_naming_each_difference_unless_asked(trained_tiny, tmp_path,
                                                                                    capsys) -> None:
    run = _cut_copy(trained_tiny, tmp_path)
    manifest = read_manifest(run)
    forged = dataclasses.replace(manifest.environment, device="cuda", device_name="NVIDIA A100", torch="1.13.1")
    write_manifest(run, dataclasses.replace(manifest, environment=forged, code_version="0.0.9+gabc"))
    before = tree_digest(run)
    argv = ["train", "tiny", "--runs", RUN, "--out", str(tmp_path), "--resume", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    for difference in ("torch 2.13.0+cpu here vs 1.13.1 in the manifest", "device cpu here vs cuda in the manifest",
                       "code version ", "here vs 0.0.9+gabc in the manifest", "--allow-platform-change"):
        assert difference in err, err
    assert tree_digest(run) == before  # refused before anything was written

    assert main([*argv, "--allow-platform-change"]) == 0
    manifest = read_manifest(run)
    (change,) = manifest.platform_changes
    assert (change.step, change.environment.device, change.environment.torch) == (8, "cpu", "2.13.0+cpu")
    assert manifest.environment == forged and manifest.code_version == "0.0.9+gabc"  # the first stretch's, kept
    assert tree_digest(run / "checkpoints") == tree_digest(trained_tiny / "tiny" / "runs" / RUN / "checkpoints")


_RESUME_ELSEWHERE = f"""
import json
import zoo
from zoo.cli import main
from zoo.replay import replay
argv = ["train", "tiny", "--runs", "{RUN}", "--out", "out", "--resume", "--quiet"]
refused = main(argv)
allowed = main(argv + ["--allow-platform-change"])
zoo.publish("out/tiny", org="{ORG}", root="root")
stretch = replay("gelu-1l", seed=0, from_step=8, to_step=12, org="{ORG}", root="root").verdict()
print(json.dumps({{"refused": refused, "allowed": allowed, "stretch": stretch}}))
"""


def test_a_run_resumed_at_another_cpu_level_by_request_replays_each_stretch_on_its_own_platform(
        trained_tiny, tmp_path) -> None:
    run = _cut_copy(trained_tiny, tmp_path / "out")
    env = {**{k: v for k, v in os.environ.items() if k not in KERNEL_ENVIRONMENT_VARIABLES},
           "PYTHONPATH": str(REPO), "ATEN_CPU_CAPABILITY": "default"}  # another CPU, emulated from the start
    done = subprocess.run([sys.executable, "-c", _RESUME_ELSEWHERE], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["refused"] == 2 and "cpu_capability DEFAULT here vs" in done.stderr, done.stderr
    assert "ATEN_CPU_CAPABILITY default here vs unset in the manifest" in done.stderr
    assert found["allowed"] == 0
    (change,) = read_manifest(run).platform_changes
    assert change.step == 8 and change.environment.cpu_capability == "DEFAULT"
    # Each stretch replays bitwise on its own platform: 9-12 at the emulated level, 1-8 here.
    assert found["stretch"].startswith("BITWISE EQUAL"), found["stretch"]
    assert replay("gelu-1l", seed=0, from_step=4, to_step=8, org=ORG, root=tmp_path / "root").bitwise_equal
    here = replay("gelu-1l", seed=0, from_step=8, to_step=12, org=ORG, root=tmp_path / "root").verdict()
    assert here.startswith("DIVERGED") and "steps 9-12: cpu_capability" in here and "DEFAULT in the manifest" in here
    assert "real divergence" not in here
