"""Determinism check on any device: train twice, and once with a resume halfway; compare bytes.

    .venv/bin/python -m benchmarks.determinism [--spec tiny] [--runs '*'] [--device cuda]

Each selected run is trained (a) from scratch, (b) from scratch again into another
directory, (c) cut back to half its checkpoints (as a crash would) and resumed. All
three run directories must hold identical bytes (sha256 of every file). Writes
benchmarks/results/determinism-{device}.json with the per-run verdicts and timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from checkpoints_manifest import read_manifest
from training import load_spec, train_zoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import cut_run_back, tree_digest  # noqa: E402  (the tests' own tools: one copy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="tiny")
    parser.add_argument("--runs", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = load_spec(args.spec)
    out_json = args.out or Path(f"benchmarks/results/determinism-{args.device}.json")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = [Path(tmp) / name for name in ("a", "b", "resumed")]
        timings = []
        for root in roots[:2]:
            began = time.perf_counter()
            results = train_zoo(spec, root, runs=args.runs, device=args.device, progress=False)
            timings.append(time.perf_counter() - began)
        for r in results:
            src = roots[0] / spec.name / "runs" / r.run
            dst = roots[2] / spec.name / "runs" / r.run
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst)
            cut_run_back(dst, keep=len(read_manifest(dst).checkpoints) // 2)
            resumed_from = read_manifest(dst).checkpoints[-1]
            train_zoo(spec, roots[2], runs=r.run, resume=True, device=args.device, progress=False)
            a, b, c = (tree_digest(root / spec.name / "runs" / r.run) for root in roots)
            row = {"run": r.run, "files": len(a), "final_loss": r.final_loss,
                   "twice_identical": a == b, "resumed_from": resumed_from, "resume_identical": a == c}
            rows.append(row)
            print(json.dumps(row))
    result = {"device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else
              "cpu", "torch": torch.__version__, "spec": args.spec, "seconds_per_training": timings,
              "all_identical": all(r["twice_identical"] and r["resume_identical"] for r in rows), "runs": rows}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"all bitwise identical: {result['all_identical']} -> {out_json}")


if __name__ == "__main__":
    main()
