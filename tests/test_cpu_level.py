"""CPU levels: every setting that picks CPU kernels is recorded and compared, and a spec may pin one.

Other CPUs are emulated with the environment variables that torch, MKL and oneDNN read when they first
compute. A run trained natively and replayed under each of them is BITWISE EQUAL or names the setting
that differs; a run that pins `cpu_level = "avx2"` trains and replays to the same bytes whatever the
environment says, in every process the project starts (the `zoo` script, `python -m zoo.cli`, a
launched job), each of which starts again with the level when it was started without it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
from checkpoints_manifest import KERNEL_ENVIRONMENT_VARIABLES, environment_record, read_manifest
from helpers import one_run_spec, tree_digest
from training import load_spec, parse_spec, train_zoo
from training.determinism import CPU_LEVELS
from zoo.launch import launch, status

REPO = Path(__file__).resolve().parent.parent
ORG = "cpu-org"
RUN = "gelu-1l-seed0"
# Each changes the bytes of these runs on some x86 CPU (ATEN_CPU_CAPABILITY=default on every one).
EMULATED = [{"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2"}, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
            {"MKL_CBWR": "COMPATIBLE"}, {"ONEDNN_MAX_CPU_ISA": "AVX"}]
HOSTILE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
           "ONEDNN_MAX_CPU_ISA": "SSE41"}  # all at once: what a pinned level must override

# One process imports zoo without computing, then forks a child per emulated environment: each child
# sets its variables before torch, MKL or oneDNN first compute, as a process started with them would.
_REPLAY_UNDER_EACH = f"""
import json, os, sys
from training import TrainingError
from zoo.replay import replay

def verdict(zoo_name):
    try:
        return replay("gelu-1l", seed=0, zoo=zoo_name, from_step=2, to_step=4, org="{ORG}", root="root").verdict()
    except TrainingError as error:
        return f"refused: {{error}}"

results = []
for emulated in json.loads(sys.argv[1]):
    read, write = os.pipe()
    if os.fork() == 0:
        os.environ.update(emulated)
        found = {{name: verdict(name) for name in ("cpufp32", "cpubf16", "pinfp32")}}
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    results.append(json.loads(os.fdopen(read).read()))
    os.wait()
print(json.dumps(results))
"""


def _spec_text(name: str, *, bf16: bool = False, pinned: bool = False) -> str:
    extra = ('\nprecision = "bfloat16"' if bf16 else "") + ('\ncpu_level = "avx2"' if pinned else "")
    return one_run_spec(name, steps=6).replace("micro_batch_size = 4", "micro_batch_size = 4" + extra)


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENVIRONMENT_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), **settings}


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def zoos(tmp_path_factory) -> Path:
    """Native fp32 and bf16 runs (trained here) and the same pinned to avx2 (trained in a process started
    with that level), all published to one directory root."""
    work = tmp_path_factory.mktemp("cpu-levels")
    for name, bf16 in (("cpufp32", False), ("cpubf16", True)):
        train_zoo(parse_spec(_spec_text(name, bf16=bf16)), work / "native", progress=False)
        zoo.publish(work / "native" / name, org=ORG, root=work / "root")
    for name, bf16 in (("pinfp32", False), ("pinbf16", True)):
        (work / f"{name}.toml").write_text(_spec_text(name, bf16=bf16, pinned=True))
    _run([sys.executable, "-c", "import zoo\n"
                                "for name in ('pinfp32', 'pinbf16'):\n"
                                "    zoo.train(f'{name}.toml', out='pinned', progress=False)\n"
                                f"    zoo.publish(f'pinned/{{name}}', org='{ORG}', root='root')\n"],
         _env(**CPU_LEVELS["avx2"]), work)
    return work


def test_every_setting_that_picks_cpu_kernels_is_recorded_and_a_difference_is_named(monkeypatch) -> None:
    here = environment_record()
    assert here.cpu_capability == torch.backends.cpu.get_cpu_capability() and here.cpu_vendor
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    emulated = environment_record()
    assert emulated.kernel_environment["MKL_CBWR"] == "COMPATIBLE"
    assert emulated.bitwise_comparable(here) == ["MKL_CBWR COMPATIBLE here vs unset in the manifest",
                                                 "ONEDNN_MAX_CPU_ISA AVX512_CORE_BF16 here vs unset in the manifest"]
    other_cpu = dataclasses.replace(here, cpu_capability="AVX512", cpu_vendor="GenuineIntel")
    assert here.bitwise_comparable(other_cpu) == [
        f"cpu_capability {here.cpu_capability} here vs AVX512 in the manifest",
        f"cpu_vendor {here.cpu_vendor} here vs GenuineIntel in the manifest"]
    # A run recorded before these fields existed: nothing to compare, and replay says so.
    older = dataclasses.replace(here, cpu_capability=None, cpu_vendor=None, kernel_environment=None, precision=None)
    assert here.bitwise_comparable(older) == []
    assert here.unrecorded_in(older) == ["cpu_vendor", "cpu_capability", "kernel_environment", "precision"]


def test_a_native_run_replayed_under_other_cpu_levels_is_equal_or_names_the_level(zoos: Path) -> None:
    results = json.loads(_run([sys.executable, "-c", _REPLAY_UNDER_EACH, json.dumps(EMULATED)], _env(), zoos))
    for emulated, verdicts in zip(EMULATED, results):
        (name, value), = emulated.items()
        for zoo_name in ("cpufp32", "cpubf16"):
            verdict = verdicts[zoo_name]
            assert "real divergence" not in verdict, (emulated, verdict)
            assert verdict.startswith("BITWISE EQUAL") or (
                verdict.startswith("DIVERGED") and f"{name} {value} here vs unset in the manifest" in verdict), verdict
            if name == "ATEN_CPU_CAPABILITY" and value == "default":  # other kernels on every CPU with AVX2 or more
                assert verdict.startswith("DIVERGED") and "cpu_capability DEFAULT here vs" in verdict, verdict
        # The run pinned to avx2 is never replayed at another level: the process was not started with it.
        assert verdicts["pinfp32"].startswith("refused: the run pins CPU level 'avx2'"), verdicts["pinfp32"]


def test_a_pinned_level_holds_in_every_process_the_project_starts_whatever_the_environment(
        zoos: Path, tmp_path: Path, monkeypatch) -> None:
    reference = {name: tree_digest(zoos / "pinned" / name / "runs") for name in ("pinfp32", "pinbf16")}
    hostile = _env(**HOSTILE)
    # The `zoo` console script, where every variable asks for other kernels (without the level, the
    # step-0 weights alone would differ): the same bytes, the same record.
    zoo_script = Path(sys.executable).with_name("zoo")
    _run([str(zoo_script), "train", str(zoos / "pinfp32.toml"), "--out", "cli", "--quiet"], hostile, tmp_path)
    assert tree_digest(tmp_path / "cli" / "pinfp32" / "runs") == reference["pinfp32"]  # the manifest too
    environment = read_manifest(tmp_path / "cli" / "pinfp32" / "runs" / RUN).environment
    assert environment.cpu_capability == "AVX2" and environment.kernel_environment["MKL_CBWR"] == "AVX2"
    # `python -m zoo.cli replay` of the bf16 run, in the same environment:
    out = _run([sys.executable, "-m", "zoo.cli", "replay", "gelu-1l", "--seed", "0", "--zoo", "pinbf16", "--from", "0",
                "--to", "6", "--org", ORG, "--root", str(zoos / "root"), "--quiet"], hostile, tmp_path)
    assert out.splitlines()[-1].startswith("BITWISE EQUAL"), out
    # A launched job (submitit's local executor; a Slurm job runs the same TrainJob) inherits the environment:
    for key, value in HOSTILE.items():
        monkeypatch.setenv(key, value)
    spec = load_spec(zoos / "pinfp32.toml")
    launch(spec, tmp_path / "launched", executor="local")
    deadline = time.monotonic() + 240
    while (row := status(spec, tmp_path / "launched")[0]).state not in ("done", "failed"):
        assert time.monotonic() < deadline, row
        time.sleep(0.5)
    assert row.state == "done", row
    assert tree_digest(tmp_path / "launched" / "pinfp32" / "runs") == reference["pinfp32"]
