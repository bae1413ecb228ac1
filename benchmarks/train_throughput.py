"""Tokens/s of our deterministic trainer versus a nanoGPT-style plain loop, side by side in one run.

    .venv/bin/python -m benchmarks.train_throughput [--sizes 1l-64,2l-64,4l-256] [--steps 60] [--rounds 3]
    python3 -m benchmarks.train_throughput --device cuda --sizes 4l-512,12l-768 --steps 30 --rounds 2
    .venv/bin/python -m benchmarks.train_throughput --compare-cpu-levels native,avx2 [--steps 60] [--rounds 3]

Per size (a GELU model), the three alternate round by round (the machine may be noisy) and the
median of each is kept:
(a) the anchor, a nanoGPT-style plain loop on the same model class and the same batches: SDPA
    attention, fused AdamW, `loss.backward()` per micro-batch, the spec's precision (bf16
    autocast at research sizes), compiled when ours is, no determinism flags, no checkpoints,
    the loss fetched once at the end;
(b) ours without checkpoints (`run_steps`: determinism on, the spec's numerics path);
(c) ours with checkpoints: the whole `train_run` (model build, step-0 checkpoint and the last
    write included) on the default dense schedule, or with `--every K` one every K steps.
Toy sizes (1l-64, 2l-64, 4l-256) train the toy zoo's setup (float32, n_ctx 64, batch 32) on its
stories; research sizes (4l-512, 12l-768) the research zoo's (n_ctx 1024, bf16, batch 64 in
micro-batches of 32, compiled) on local text (benchmarks/_research.py). On a CPU both loops run
the same kernels on the same threads, so the ratio is the cost of our loop alone.

Reported: tokens/s, ours/anchor ratios, MFU against a matmul peak measured here (bf16 on a GPU
at research sizes, else fp32), peak device memory (GPU), and (c)'s cost extrapolated to a whole
run of the zoo's own schedule (short runs overweight the log-spaced early checkpoints). `--smoke`
shrinks research sizes to seconds on a CPU, to prove this script, not to measure. Writes
benchmarks/results/train_throughput[-DEVICE].json (or --out) with where and how it was measured.

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
from contextlib import nullcontext
from pathlib import Path

import torch

from benchmarks._provenance import measured_on
from benchmarks._research import research_on_local_text
from checkpoints_manifest import KERNEL_ENVIRONMENT_VARIABLES
from data_index import prepare_store
from training import build_model, build_optimizer, checkpoint_steps, load_spec, lm_loss, train_run
from training.determinism import CPU_LEVELS, restart_with_cpu_level, set_determinism
from training.loop import batch_tokens, model_config, numerics_of, run_steps
from training.spec import CheckpointSpec, SizeSpec

TOY_SIZES = {
    "1l-64": SizeSpec(n_layers=1, d_model=64, n_heads=4, d_head=16, d_mlp=256),
    "2l-64": SizeSpec(n_layers=2, d_model=64, n_heads=4, d_head=16, d_mlp=256),
    "4l-256": SizeSpec(n_layers=4, d_model=256, n_heads=8, d_head=32, d_mlp=1024),
}
RESEARCH_SIZES = {
    "4l-512": SizeSpec(n_layers=4, d_model=512, n_heads=8, d_head=64, d_mlp=2048),
    "12l-768": SizeSpec(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072),
}
SIZES = {**TOY_SIZES, **RESEARCH_SIZES}


def matmul_peak(device: str, dtype: torch.dtype) -> float:
    """Measured matmul FLOP/s of this machine in `dtype` (the MFU denominator), on random data."""
    n = 8192 if device == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < 2.0:
        a @ b
        count += 1
        if device == "cuda" and count % 10 == 0:
            _sync(device)
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - began)


def flops_per_token(cfg) -> float:
    """6N for the weights (forward + backward) plus attention's 6 * n_layers * n_ctx * d_model (PaLM's count)."""
    n_params = cfg.n_params() - cfg.d_vocab * cfg.d_model - cfg.n_ctx * cfg.d_model  # embeddings are lookups
    return 6 * n_params + 6 * cfg.n_layers * cfg.n_ctx * cfg.n_heads * cfg.d_head


def plain_loop(spec, run, store, steps: int, device: str) -> float:
    """Seconds for `steps` updates of a nanoGPT-style loop on the same batches (see the module doc)."""
    torch.use_deterministic_algorithms(False)
    if device == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(True)  # torch's default: any attention backend it likes
    torch.set_num_threads(spec.training.cpu_threads)  # the same threads as ours: only the loop differs
    model = build_model(spec, run, store.vocab_size, device)  # same class, attention kernel and compilation
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.optimizer.lr,
                                  weight_decay=spec.optimizer.weight_decay, fused=True)
    t = spec.training
    n_micro = t.batch_size // t.micro_batch_size
    autocast = torch.autocast(device, dtype=torch.bfloat16) if t.precision == "bfloat16" else nullcontext()
    _sync(device)
    began = time.perf_counter()
    for step in range(1, steps + 1):
        tokens = batch_tokens(store, step, batch_size=t.batch_size, data_seed=run.data_seed, device=device)
        for micro in tokens.split(t.micro_batch_size):
            with autocast:
                loss = lm_loss(model(micro[:, :-1]), micro[:, 1:]) / n_micro
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return time.perf_counter() - began


def our_loop(spec, run, store, steps: int, device: str) -> float:
    set_determinism(device, spec.training.cpu_threads)
    model = build_model(spec, run, store.vocab_size, device)
    optimizer = build_optimizer(model, spec, device)
    _sync(device)
    began = time.perf_counter()
    for _, stats in run_steps(spec, run, store, model, optimizer, start=0, stop=steps, device=device):
        pass
    stats.loss  # nothing in the loop waited for the device: wait for its last update
    return time.perf_counter() - began


def our_training_with_checkpoints(spec, run, store, steps: int, device: str) -> float:
    """Whole `train_run` (model build, the step-0 checkpoint, the last write) on the spec's schedule."""
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        train_run(spec, run, store, Path(out), device=device, progress=False)
        return time.perf_counter() - began


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed_with_peak_memory(loop, *args, device: str) -> tuple[float, int | None]:
    if device != "cuda":
        return loop(*args, device), None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seconds = loop(*args, device)
    return seconds, torch.cuda.max_memory_allocated()


def size_spec(size_name: str, steps: int, *, every: int | None, cpu_threads: int | None, cpu_level: str,
              smoke: bool):
    """The benchmark's spec for one size: the toy or the research zoo's setup, cut to `steps` updates;
    and the zoo's own spec, whose schedule the checkpoint cost is extrapolated to."""
    if size_name in TOY_SIZES:
        zoo = load_spec("toy")
        base = dataclasses.replace(zoo, training=dataclasses.replace(zoo.training, steps=steps))
    else:
        zoo = load_spec("research")
        base = research_on_local_text(steps=steps, smoke=smoke)
    size = SIZES[size_name] if not (smoke and size_name in RESEARCH_SIZES) else base.sizes["4l"]
    threads = cpu_threads or base.training.cpu_threads
    spec = dataclasses.replace(base, sizes={size_name: size}, families={"gelu": (size_name,)},
                               training=dataclasses.replace(base.training, cpu_threads=threads, cpu_level=cpu_level),
                               checkpoints=CheckpointSpec(log_until=0, every=every) if every else CheckpointSpec())
    return spec, zoo


def measure(spec, zoo, store, *, steps: int, rounds: int, device: str) -> dict:
    run = spec.runs()[0]
    tokens = steps * spec.training.batch_size * spec.data.n_ctx
    loops = {"plain": plain_loop, "ours": our_loop, "ours_ckpt": our_training_with_checkpoints}
    for loop in (plain_loop, our_loop):  # compile (when on), allocator and kernels warm before timing
        loop(spec, run, store, 3, device)
    times: dict[str, list[float]] = {name: [] for name in loops}
    memory: dict[str, int | None] = {}
    for _ in range(rounds):
        for name, loop in loops.items():
            seconds, memory[name] = _timed_with_peak_memory(loop, spec, run, store, steps, device=device)
            times[name].append(seconds)
    tok_s = {name: tokens / statistics.median(t) for name, t in times.items()}
    cfg = model_config(spec, run, store.vocab_size)
    n_ckpt = len(checkpoint_steps(spec.checkpoints, steps))
    # (c)'s cost over (b), spread over its checkpoints (its setup included: an over-estimate), applied
    # to the zoo's whole run and schedule
    per_checkpoint = max(0.0, statistics.median(times["ours_ckpt"]) - statistics.median(times["ours"])) / n_ckpt
    full_steps = zoo.training.steps
    step_s = {name: statistics.median(times[name]) / steps for name in ("plain", "ours")}
    full_ckpt = len(checkpoint_steps(zoo.checkpoints, full_steps))
    return {
        "params": cfg.n_params(), "d_vocab": cfg.d_vocab, "n_ctx": spec.data.n_ctx,
        "batch": spec.training.batch_size, "micro_batch": spec.training.micro_batch_size,
        "precision": spec.training.precision, "numerics": dataclasses.asdict(numerics_of(spec)),
        "steps": steps, "rounds": rounds, "checkpoints_in_dense_run": n_ckpt,
        "seconds": times, "tokens_per_s": tok_s,
        "ratio_no_checkpoints": tok_s["ours"] / tok_s["plain"],
        "ratio_dense_checkpoints": tok_s["ours_ckpt"] / tok_s["plain"],
        "ratio_full_schedule_extrapolated": full_steps * step_s["plain"] / (
            full_steps * step_s["ours"] + full_ckpt * per_checkpoint),
        "full_schedule": {"zoo": zoo.name, "steps": full_steps, "checkpoints": full_ckpt,
                          "seconds_per_checkpoint": per_checkpoint},
        "flops_per_token": flops_per_token(cfg),
        "peak_memory_bytes": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--cpu-threads", type=int, default=None, help="threads for both loops (default: the spec's)")
    parser.add_argument("--every", type=int, default=None,
                        help="a checkpoint every K steps instead of the default dense schedule")
    parser.add_argument("--sizes", default=",".join(TOY_SIZES), help=f"comma-separated, of: {', '.join(SIZES)}")
    parser.add_argument("--smoke", action="store_true", help="research sizes shrunk to seconds on a CPU")
    parser.add_argument("--cpu-level", choices=CPU_LEVELS, default="native",
                        help="the CPU level every loop runs at (this process restarts with it)")
    parser.add_argument("--compare-cpu-levels", metavar="LEVELS",
                        help=f"comma-separated, of: {', '.join(CPU_LEVELS)}; our loop at each, side by side")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/train_throughput[-cuda].json "
                             "(-cpu-levels.json with --compare-cpu-levels)")
    args = parser.parse_args()
    if args.compare_cpu_levels:
        compare_cpu_levels(args)
        return
    restart_with_cpu_level(args.cpu_level)  # before the first tensor operation
    out = args.out or Path(f"benchmarks/results/train_throughput{'-cuda' if args.device == 'cuda' else ''}.json")

    set_determinism(args.device, args.cpu_threads or 1, args.cpu_level)  # before CUDA: cuBLAS reads its workspace once
    names = args.sizes.split(",")
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as data_dir:
        for size_name in names:
            spec, zoo = size_spec(size_name, args.steps, every=args.every, cpu_threads=args.cpu_threads,
                                  cpu_level=args.cpu_level, smoke=args.smoke)
            store = prepare_store(spec.data, Path(data_dir) / spec.name, progress=False)
            bf16 = spec.training.precision == "bfloat16" and args.device == "cuda"
            dtype = torch.bfloat16 if bf16 else torch.float32
            if dtype not in peaks:
                peaks[dtype] = matmul_peak(args.device, dtype)
                print(f"measured {dtype} matmul peak: {peaks[dtype] / 1e12:.2f} TFLOP/s on {args.device}")
            row = {"size": size_name, **measure(spec, zoo, store, steps=args.steps, rounds=args.rounds,
                                                device=args.device)}
            row["matmul_peak_flops"] = peaks[dtype]
            row["mfu"] = {name: row["tokens_per_s"][name] * row["flops_per_token"] / peaks[dtype]
                          for name in ("plain", "ours", "ours_ckpt")}
            rows.append(row)
            tok_s = row["tokens_per_s"]
            print(f"{size_name:>7}: anchor {tok_s['plain']:>10,.0f} tok/s | ours {tok_s['ours']:>10,.0f} "
                  f"({row['ratio_no_checkpoints']:.3f}x) | ours+dense ckpts {tok_s['ours_ckpt']:>10,.0f} "
                  f"({row['ratio_dense_checkpoints']:.3f}x; whole {zoo.name} run "
                  f"~{row['ratio_full_schedule_extrapolated']:.3f}x) | MFU ours {row['mfu']['ours']:.1%}", flush=True)
            result = {"measured": measured_on(args.device, statistic=f"median of {args.rounds} interleaved rounds",
                                              smoke=args.smoke, cpu_level=args.cpu_level,
                                              cpu_capability=torch.backends.cpu.get_cpu_capability()),
                      "rows": rows}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")  # after each size: a time-boxed run keeps its rows
    print(f"wrote {out}")


def compare_cpu_levels(args: argparse.Namespace) -> None:
    """Our loop and the matmul peak at each CPU level, each level in a fresh process per round."""
    levels = args.compare_cpu_levels.split(",")
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENVIRONMENT_VARIABLES}  # "native" is native
    passed = ["--steps", str(args.steps), "--device", args.device, "--sizes", args.sizes,
              *(["--cpu-threads", str(args.cpu_threads)] if args.cpu_threads else []),
              *(["--every", str(args.every)] if args.every else []), *(["--smoke"] if args.smoke else [])]
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
        def row_of(r: dict) -> dict:
            return next(row for row in r["rows"] if row["size"] == size)

        row = {"size": size, **{f"{kind}_tokens_per_s": {level: median(level, lambda r: row_of(r)["tokens_per_s"][kind])
                                                         for level in levels} for kind in ("ours", "ours_ckpt")}}
        row["matmul_peak_flops"] = {level: median(level, lambda r: row_of(r)["matmul_peak_flops"]) for level in levels}
        for kind in ("ours", "ours_ckpt"):
            row[f"ratio_{kind}"] = {level: row[f"{kind}_tokens_per_s"][level] / row[f"{kind}_tokens_per_s"][first]
                                    for level in levels}
        row["matmul_ratio"] = {level: row["matmul_peak_flops"][level] / row["matmul_peak_flops"][first]
                               for level in levels}
        rows.append(row)
        print(f"{size:>7}: " + " | ".join(f"{level} {row['ours_tokens_per_s'][level]:>9,.0f} tok/s "
                                          f"({row['ratio_ours'][level]:.3f}x), matmul {row['matmul_ratio'][level]:.3f}x"
                                          for level in levels))
    out = args.out or Path("benchmarks/results/train_throughput-cpu-levels.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "measured": measured_on(args.device, statistic=f"median of {args.rounds} rounds, levels alternating",
                                steps=args.steps),
        "cpu_capability": {level: results[level][0]["measured"]["cpu_capability"] for level in levels},
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
