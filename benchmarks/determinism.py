"""Determinism check on any device: train twice, and once killed with SIGKILL and resumed; compare bytes.

    .venv/bin/python -m benchmarks.determinism [--spec tiny] [--runs '*'] [--device cuda]
    python3 -m benchmarks.determinism --spec research-local --steps 240 --runs solu-2l-seed0 --device cuda

Each selected run is trained (a) from scratch and (b) from scratch again into another directory,
both in this process; (c) in a separate process that is killed with SIGKILL as soon as its
manifest lists a checkpoint past half the run, then resumed to the end by another process (a new
process compiles and initializes everything anew, as a crashed job's restart does). All three
run directories must hold identical bytes (sha256 of every file). `--spec research-local` is the
research zoo on local text (benchmarks/_research.py); `--smoke` shrinks it to seconds on a CPU.
Writes benchmarks/results/determinism-{device}.json (or --out), rewritten after each phase, with
where and how it was measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from benchmarks._provenance import measured_on
from benchmarks._research import research_on_local_text
from checkpoints_manifest import MANIFEST_NAME
from training import ZooSpec, load_spec, train_zoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import tree_digest  # noqa: E402  (the tests' own tool: one copy)


def chosen_spec(args: argparse.Namespace) -> ZooSpec:
    if args.spec == "research-local":
        return research_on_local_text(steps=args.steps or 240, smoke=args.smoke)
    spec = load_spec(args.spec)
    if args.steps:
        spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training, steps=args.steps))
    return spec


def killed_and_resumed(args: argparse.Namespace, spec: ZooSpec, run: str, root: Path) -> dict:
    """Train `run` into `root` in a child process, SIGKILL it once a checkpoint past half the run is
    listed, then finish it in another child process. Returns what happened."""
    command = [sys.executable, "-m", "benchmarks.determinism", *args.spec_args, "--runs", run,
               "--train-into", str(root)]
    manifest = root / spec.name / "runs" / run / MANIFEST_NAME
    began = time.perf_counter()
    child = subprocess.Popen(command)
    listed: list[int] = []
    while child.poll() is None and time.perf_counter() - began < args.timeout:
        listed = _listed(manifest)
        if listed and listed[-1] >= spec.training.steps // 2:
            break
        time.sleep(0.05)
    landed = child.poll() is None
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = _listed(manifest)
    subprocess.run(command, check=True, timeout=max(1.0, args.timeout - (time.perf_counter() - began)))
    return {"kill_landed": landed, "listed_when_killed": killed_at[-1] if killed_at else None,
            "seconds_killed_and_resumed": time.perf_counter() - began}


def _listed(manifest: Path) -> list[int]:
    try:
        return json.loads(manifest.read_text())["checkpoints"]
    except (OSError, ValueError, KeyError):
        return []  # not written yet (the manifest is replaced atomically: never half a file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="tiny", help="a built-in spec, or research-local")
    parser.add_argument("--steps", type=int, default=None, help="cut each run to this many updates")
    parser.add_argument("--smoke", action="store_true", help="research-local shrunk to seconds on a CPU")
    parser.add_argument("--runs", default=None)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the killed-and-resumed run")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--train-into", type=Path, help=argparse.SUPPRESS)  # the child process of (c)
    args = parser.parse_args()
    args.spec_args = ["--spec", args.spec, "--device", args.device, *(["--steps", str(args.steps)] if args.steps else
                                                                      []), *(["--smoke"] if args.smoke else [])]
    spec = chosen_spec(args)
    if args.train_into:
        train_zoo(spec, args.train_into, runs=args.runs, resume=True, device=args.device, progress=False)
        return

    out_json = args.out or Path(f"benchmarks/results/determinism-{args.device}.json")
    result = {"seconds_per_training": [], "runs": []}

    def save() -> None:  # provenance taken after training has pinned the spec's thread count
        result["measured"] = measured_on(args.device, spec=args.spec, steps=spec.training.steps, smoke=args.smoke)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        roots = [Path(tmp) / name for name in ("a", "b", "killed")]
        for root in roots[:2]:
            began = time.perf_counter()
            results = train_zoo(spec, root, runs=args.runs, device=args.device, progress=False)
            result["seconds_per_training"].append(time.perf_counter() - began)
            print(f"trained {', '.join(r.run for r in results)} into {root.name} in "
                  f"{result['seconds_per_training'][-1]:.1f} s", flush=True)
            save()
        for r in results:
            row = {"run": r.run, "final_loss": r.final_loss, **killed_and_resumed(args, spec, r.run, roots[2])}
            a, b, c = (tree_digest(root / spec.name / "runs" / r.run) for root in roots)
            row.update(files=len(a), twice_identical=a == b, resume_identical=a == c)
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
            save()
    result["all_identical"] = bool(result["runs"]) and all(
        r["twice_identical"] and r["resume_identical"] for r in result["runs"])
    save()
    print(f"all bitwise identical: {result['all_identical']} -> {out_json}")
    if not result["all_identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
