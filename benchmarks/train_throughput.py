"""Tokens/s of our deterministic trainer versus a plain PyTorch loop, side by side in one run.

    .venv/bin/python -m benchmarks.train_throughput [--steps 60] [--rounds 3] [--device cpu]
    .venv/bin/python -m benchmarks.train_throughput --compare-cpu-levels native,avx2 [--steps 60] [--rounds 3]

For each size: (a) a plain loop — same model, same batches, torch's default AdamW,
no determinism flags, no checkpoints; (b) our loop without checkpoints
(`run_steps`); (c) our full `train_run` with a dense checkpoint schedule: by default
the spec default (every power of two up to 512, then every 100 steps), or with
`--every K` one checkpoint every K steps (the toy zoo uses 4). The three alternate round by round
(the machine is noisy) and the median of each is kept. Model FLOPs utilization is
against a measured fp32 matmul peak. Writes benchmarks/results/train_throughput.json.

With --compare-cpu-levels, the same measurement runs once per CPU level and round, each in a
process of its own (a level is read once per process), the levels alternating; it reports our
loop's tokens/s and the matmul peak at each level side by side, as ratios to the first, in
benchmarks/results/train_throughput-cpu-levels.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from data_index import prepare_store
from training import build_model, build_optimizer, checkpoint_steps, load_spec, lm_loss, train_run
from checkpoints_manifest import KERNEL_ENVIRONMENT_VARIABLES
from training.determinism import CPU_LEVELS, restart_with_cpu_level, set_determinism
from training.loop import batch_tokens, run_steps
from training.spec import CheckpointSpec, SizeSpec

SIZES = {
    "1l-64": SizeSpec(n_layers=1, d_model=64, n_heads=4, d_head=16, d_mlp=256),
    "2l-64": SizeSpec(n_layers=2, d_model=64, n_heads=4, d_head=16, d_mlp=256),
    "4l-256": SizeSpec(n_layers=4, d_model=256, n_heads=8, d_head=32, d_mlp=1024),
}


def matmul_peak(device: str, n: int = 1024, seconds: float = 2.0) -> float:
    """Measured fp32 matmul FLOP/s of this machine (the MFU denominator)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        count += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * count / (time.perf_counter() - began)


def flops_per_token(cfg) -> float:
    """6N for the weights (forward + backward) plus attention's 6 * n_layers * n_ctx * d_model (PaLM's count)."""
    n_params = cfg.n_params() - cfg.d_vocab * cfg.d_model - cfg.n_ctx * cfg.d_model  # embeddings are lookups
    return 6 * n_params + 6 * cfg.n_layers * cfg.n_ctx * cfg.n_heads * cfg.d_head


def plain_loop(spec, run, store, steps: int, device: str) -> float:
    """Seconds for `steps` updates of an ordinary PyTorch loop on the same batches."""
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(spec.training.cpu_threads)  # the same threads as ours: only the loop differs
    model = build_model(spec, run, store.vocab_size, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.optimizer.lr,
                                  weight_decay=spec.optimizer.weight_decay)
    batches = [batch_tokens(store, s, batch_size=spec.training.batch_size, data_seed=0, device=device)
               for s in range(1, steps + 1)]
    began = time.perf_counter()
    for tokens in batches:
        loss = lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
    return time.perf_counter() - began


def our_loop(spec, run, store, steps: int, device: str) -> float:
    set_determinism(device, spec.training.cpu_threads, spec.training.cpu_level)
    model = build_model(spec, run, store.vocab_size, device)
    optimizer = build_optimizer(model, spec, device)
    began = time.perf_counter()
    for _ in run_steps(spec, run, store, model, optimizer, start=0, stop=steps, device=device):
        pass
    return time.perf_counter() - began


def our_training_with_checkpoints(spec, run, store, steps: int, device: str) -> float:
    """Whole `train_run` (model build and the step-0 checkpoint included) with the dense schedule."""
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        train_run(spec, run, store, Path(out), device=device, progress=False)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu-threads", type=int, default=None, help="threads for both loops (default: the spec's)")
    parser.add_argument("--every", type=int, default=None,
                        help="a checkpoint every K steps instead of the default dense schedule")
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of: {', '.join(SIZES)}")
    parser.add_argument("--cpu-level", choices=CPU_LEVELS, default="native",
                        help="the CPU level every loop runs at (this process restarts with it)")
    parser.add_argument("--compare-cpu-levels", metavar="LEVELS",
                        help=f"comma-separated, of: {', '.join(CPU_LEVELS)}; our loop at each, side by side")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/train_throughput.json "
                                                 "(-cpu-levels.json with --compare-cpu-levels)")
    args = parser.parse_args()
    if args.compare_cpu_levels:
        compare_cpu_levels(args)
        return
    restart_with_cpu_level(args.cpu_level)  # before the first tensor operation

    toy = load_spec("toy")
    threads = args.cpu_threads or toy.training.cpu_threads
    toy = dataclasses.replace(toy, training=dataclasses.replace(toy.training, steps=args.steps, cpu_threads=threads,
                                                                cpu_level=args.cpu_level),
                              checkpoints=CheckpointSpec(log_until=0, every=args.every) if args.every
                              else CheckpointSpec())
    with tempfile.TemporaryDirectory() as data_dir:
        store = prepare_store(toy.data, Path(data_dir), progress=False)
        peak = matmul_peak(args.device)
        print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {args.device}")
        rows = []
        for size_name in args.sizes.split(","):
            size = SIZES[size_name]
            spec = dataclasses.replace(toy, sizes={size_name: size}, families={"gelu": (size_name,)})
            run = spec.runs()[0]
            tokens = args.steps * spec.training.batch_size * spec.data.n_ctx
            times = {"plain": [], "ours": [], "ours_ckpt": []}
            our_loop(spec, run, store, 3, args.device)  # warm up allocator and kernels
            for _ in range(args.rounds):
                times["plain"].append(plain_loop(spec, run, store, args.steps, args.device))
                times["ours"].append(our_loop(spec, run, store, args.steps, args.device))
                times["ours_ckpt"].append(our_training_with_checkpoints(spec, run, store, args.steps, args.device))
            tok_s = {k: tokens / statistics.median(v) for k, v in times.items()}
            cfg = build_model(spec, run, store.vocab_size, "cpu").cfg
            row = {
                "size": size_name, "params": cfg.n_params(), "steps": args.steps,
                "checkpoints_in_dense_run": len(checkpoint_steps(spec.checkpoints, args.steps)),
                "tokens_per_s": tok_s,
                "ratio_no_checkpoints": tok_s["ours"] / tok_s["plain"],
                "ratio_dense_checkpoints": tok_s["ours_ckpt"] / tok_s["plain"],
                "mfu_ours": tok_s["ours"] * flops_per_token(cfg) / peak,
            }
            rows.append(row)
            print(f"{size_name:>7}: plain {tok_s['plain']:>9,.0f} tok/s | ours {tok_s['ours']:>9,.0f} "
                  f"({row['ratio_no_checkpoints']:.3f}x) | ours+dense ckpts {tok_s['ours_ckpt']:>9,.0f} "
                  f"({row['ratio_dense_checkpoints']:.3f}x) | MFU {row['mfu_ours']:.1%}")
    out = args.out or Path("benchmarks/results/train_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": args.device, "torch": torch.__version__, "cpu_threads": threads,
              "cpu_level": args.cpu_level, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "matmul_peak_flops": peak, "rows": rows}
    if args.device == "cuda":
        result["device_name"] = torch.cuda.get_device_name()
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def compare_cpu_levels(args: argparse.Namespace) -> None:
    """Our loop and the matmul peak at each CPU level, each level in a fresh process per round."""
    levels = args.compare_cpu_levels.split(",")
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENVIRONMENT_VARIABLES}  # "native" is native
    passed = ["--steps", str(args.steps), "--device", args.device, "--sizes", args.sizes,
              *(["--cpu-threads", str(args.cpu_threads)] if args.cpu_threads else []),
              *(["--every", str(args.every)] if args.every else [])]
    results: dict[str, list[dict]] = {level: [] for level in levels}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for level in levels:
                out = Path(tmp) / f"{level}-{round_}.json"
                subprocess.run([sys.executable, "-m", "benchmarks.train_throughput", "--cpu-level", level,
                                "--rounds", "1", "--out", str(out), *passed], env=env, check=True)
                results[level].append(json.loads(out.read_text()))
    first = levels[0]

    def median(level: str, pick) -> float:
        return statistics.median(pick(r) for r in results[level])

    rows = []
    for size in args.sizes.split(","):
        def tok_s(kind: str):
            return lambda r: next(row for row in r["rows"] if row["size"] == size)["tokens_per_s"][kind]
        row = {"size": size, **{f"{kind}_tokens_per_s": {level: median(level, tok_s(kind)) for level in levels}
                                for kind in ("ours", "ours_ckpt")}}
        row["ratio_ours"] = {level: row["ours_tokens_per_s"][level] / row["ours_tokens_per_s"][first]
                             for level in levels}
        row["ratio_ours_ckpt"] = {level: row["ours_ckpt_tokens_per_s"][level] / row["ours_ckpt_tokens_per_s"][first]
                                  for level in levels}
        rows.append(row)
        print(f"{size:>7}: " + " | ".join(f"{level} {row['ours_tokens_per_s'][level]:>9,.0f} tok/s "
                                          f"({row['ratio_ours'][level]:.3f}x)" for level in levels))
    peaks = {level: median(level, lambda r: r["matmul_peak_flops"]) for level in levels}
    print("1024^3 fp32 matmul: " + " | ".join(f"{level} {peaks[level] / 1e9:.1f} GFLOP/s "
                                              f"({peaks[level] / peaks[first]:.3f}x)" for level in levels))
    out = args.out or Path("benchmarks/results/train_throughput-cpu-levels.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": args.device, "torch": torch.__version__, "steps": args.steps, "rounds": args.rounds,
        "cpu_capability": {level: results[level][0]["cpu_capability"] for level in levels},
        "matmul_peak_flops": peaks, "matmul_ratio": {level: peaks[level] / peaks[first] for level in levels},
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
