"""Kill a real `zoo train` with SIGKILL at every phase of a checkpoint commit, then resume.

Run as `python -m faults.crash_server SPEC REF_OUT KILL_OUT RESULT_JSON RUN ZOO` (tests/ and the
repo root on PYTHONPATH). Importing torch and zoo costs seconds, so this process
imports once and forks one child per kill: each child is a separate process that
runs `zoo.cli.main(["train", ..., "--resume"])` and sends itself SIGKILL when the
chosen I/O call is entered. The probes are wrappers installed here, in the test
harness; product code knows nothing of them.

1. A traced, uninterrupted child trains REF_OUT and records every probed call.
2. The calls of one checkpoint commit (checkpoint.write … manifest rename) become
   the kill points, plus points in a run's first writes and in debris cleanup.
3. Each kill point gets its own child on KILL_OUT, resuming whatever the previous
   one left; a commit-phase kill lands in the child's second commit, so a manifest
   that already lists checkpoints is being replaced. After each kill this process records the manifest, `verify`, and the
   unlisted debris, which it then corrupts so that a resume that trusted it would
   end with different bytes. A last child resumes to the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import torch._inductor  # noqa: F401  (torch.use_deterministic_algorithms imports it: ~5 s, once, not per child)

import checkpoints_manifest._atomic as atomic_module
import training.checkpoint as checkpoint_module
import training.run_dir as run_dir_module
from checkpoints_manifest import ManifestNotFoundError, read_manifest, verify
from zoo.cli import main as zoo_main

_events: list[str] = []
_tracing = False
_kill: dict | None = None  # {"mode": "commit", "at": p} or {"mode": "label", "label": L, "nth": k}
_since_commit: int | None = None  # events since this child's second checkpoint.write
_writes = 0
_label_counts: dict[str, int] = {}


def _normalize(name: str) -> str:
    name = re.sub(r"\.[0-9a-f]{16}\.tmp\b", ".*.tmp", name)
    return re.sub(r"step\d{8}", "stepN", name)


def _event(label: str) -> None:
    """Record a probed call; die here if it is the armed kill point."""
    global _since_commit, _writes
    label = _normalize(label)
    if _tracing:
        _events.append(label)
    if _kill is None:
        return
    _writes += label == "write:"
    if _since_commit is not None:
        _since_commit += 1
    elif _writes == 2:  # the first commit of a resumed child completes: the kill lands on a later one
        _since_commit = 0
    _label_counts[label] = _label_counts.get(label, 0) + 1
    if _kill["mode"] == "commit" and _since_commit == _kill["at"]:
        _die(label)
    if _kill["mode"] == "label" and label == _kill["label"] and _label_counts[label] == _kill["nth"]:
        _die(label)


def _die(label: str) -> None:
    Path(os.environ["CRASH_LABEL_FILE"]).write_text(label)  # harness bookkeeping, outside the run dir
    os.kill(os.getpid(), signal.SIGKILL)


def _probe(module, attr: str, name_of) -> None:
    real = getattr(module, attr)

    def probed(*args, **kwargs):
        _event(f"{attr}:{name_of(*args, **kwargs)}")
        return real(*args, **kwargs)

    setattr(module, attr, probed)


def _returned(module, attr: str) -> None:
    """Also probe the moment right after `attr` returns."""
    real = getattr(module, attr)

    def probed(*args, **kwargs):
        result = real(*args, **kwargs)
        _event(f"{attr}:returned")
        return result

    setattr(module, attr, probed)


def _install_probes() -> None:
    base = lambda p, *a, **k: Path(p).name  # noqa: E731
    _returned(checkpoint_module, "write")
    _returned(run_dir_module, "write_manifest")
    _probe(checkpoint_module, "write", lambda run_dir, snapshot: "")
    _probe(run_dir_module, "write_manifest", lambda run_dir, manifest: "")
    _probe(run_dir_module, "file_entry", lambda run_dir, rel: rel)
    _probe(checkpoint_module, "save_file", lambda tensors, path: Path(path).name)
    _probe(pathlib.Path, "write_bytes", base)
    _probe(pathlib.Path, "mkdir", base)
    _probe(atomic_module, "fsync_path", base)
    _probe(checkpoint_module, "fsync_path", base)
    _probe(shutil, "rmtree", base)
    _probe(os, "replace", lambda src, dst: f"{Path(src).name}->{Path(dst).name}")


def _run_child(spec: str, out: Path, kill: dict | None, trace_file: Path | None) -> tuple[str, str | None]:
    """Fork a trainer; returns ("killed", label) or ("exited", rc)."""
    label_file = out.parent / "crash-label.txt"
    label_file.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:
        global _kill, _tracing
        code = 1
        try:
            os.environ["CRASH_LABEL_FILE"] = str(label_file)
            _kill, _tracing = kill, trace_file is not None
            code = zoo_main(["train", spec, "--out", str(out), "--quiet", "--resume"])
            if trace_file is not None:
                trace_file.write_text(json.dumps(_events))
        except BaseException as e:  # noqa: BLE001  (report, then leave the forked child without cleanup)
            print(f"child failed: {e!r}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed", label_file.read_text()
    return "exited", str(os.waitstatus_to_exitcode(status))


def _inspect_and_corrupt(run: Path) -> dict:
    """The run dir right after a kill: is what the manifest lists intact; what debris is there."""
    try:
        listed = read_manifest(run).checkpoints
        mismatches = [str(m) for m in verify(run)]
    except ManifestNotFoundError:
        listed, mismatches = None, []
    keep = {f"step{s:08d}" for s in listed or []}
    folder = run / "checkpoints"
    debris = sorted(p.name for p in folder.iterdir() if p.name not in keep) if folder.is_dir() else []
    for name in debris:  # a resume that trusted debris would now end with different bytes
        for f in (folder / name).rglob("*"):
            if f.is_file():
                f.write_bytes(b"corrupted by the crash harness")
    stray = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp")) if run.is_dir() else []
    return {"listed": listed, "verify": mismatches, "debris": debris, "stray_temp_files": stray,
            "missing_listed_dirs": [s for s in keep if not (folder / s).is_dir()]}


def _commit_window(events: list[str]) -> list[str]:
    """The probed calls of one whole commit: the second checkpoint.write up to the third."""
    starts = [i for i, e in enumerate(events) if e == "write:"]
    return events[starts[1]:starts[2]]


def main(spec: str, ref_out: Path, kill_out: Path, result_path: Path, run_name: str, zoo_name: str) -> None:
    _install_probes()
    trace = result_path.with_suffix(".trace.json")
    began = time.perf_counter()
    outcome = _run_child(spec, ref_out, None, trace)
    assert outcome == ("exited", "0"), outcome
    reference_seconds = time.perf_counter() - began
    window = _commit_window(json.loads(trace.read_text()))
    (kill_out / zoo_name).mkdir(parents=True)
    for part in ("data", "index"):  # same dataset; saves the tokenizer and index builds
        shutil.copytree(ref_out / zoo_name / part, kill_out / zoo_name / part)
    run = kill_out / zoo_name / "runs" / run_name
    # A run's first writes, then every phase of a commit, then cleanup of the debris a kill left.
    plan = [{"mode": "label", "label": "write_bytes:.config.json.*.tmp", "nth": 1},
            {"mode": "label", "label": "replace:.config.json.*.tmp->config.json", "nth": 1},
            {"mode": "label", "label": "write_manifest:", "nth": 1}]
    plan += [{"mode": "commit", "at": p} for p in range(len(window))]
    plan += [{"mode": "label", "label": "fsync_path:checkpoints", "nth": 1},  # renamed, not yet listed: debris
             {"mode": "label", "label": "rmtree:stepN", "nth": 1},  # open_run discarding that debris
             {"mode": "label", "label": "replace:.manifest.json.*.tmp->manifest.json", "nth": 3}]
    kills = []
    for kill in plan:
        expected = window[kill["at"]] if kill["mode"] == "commit" else kill["label"]
        began = time.perf_counter()
        how, detail = _run_child(spec, kill_out, kill, None)
        kills.append({"point": expected, "how": how, "detail": detail, "seconds": time.perf_counter() - began,
                      **_inspect_and_corrupt(run)})
    final = _run_child(spec, kill_out, None, None)
    result_path.write_text(json.dumps({"reference_seconds": reference_seconds, "commit_window": window, "kills": kills, "final": list(final)}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], sys.argv[6])
