"""Data parallel on this machine: 2 processes vs 1, and the fixed-order reduction vs all_reduce.

    .venv/bin/python -m benchmarks.distributed [--spec toy] [--run gelu-1l-seed0] [--steps 20] [--rounds 3]

(1) Throughput: the same updates (same global batch, same 4 micro-batches) trained by
1 process with 1 thread, 1 process with 2 threads, and 2 processes (gloo, CPU) with
1 thread each; tokens per second each, median over rounds that interleave the three
(the machine is shared and noisy). Whether each one's final weights equal the
1-process 1-thread ones (torch.equal) is recorded too. (2) Reduction cost: on 2
processes, one update's gradients reduced by DataParallel.sum_over_ranks (all_gather of
partial sums + fixed tree) versus one dist.all_reduce of the same flat buffer (order
left to gloo), median seconds each, their ratio, and the fixed order's share of a step.
Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from benchmarks._provenance import measured_on
from data_index import prepare_store
from training import ZooSpec, build_model, build_optimizer, load_spec
from training.determinism import set_determinism
from training.distributed import DataParallel
from training.loop import run_steps, zoo_dir


def _spec(args: argparse.Namespace) -> ZooSpec:
    """The spec with its global batch cut into 4 micro-batches, so 1 and 2 processes do the same sums."""
    spec = load_spec(args.spec)
    micro = spec.training.batch_size // 4
    return dataclasses.replace(spec, training=dataclasses.replace(spec.training, micro_batch_size=micro))


CONFIGS = ((1, 1), (1, 2), (2, 1))  # (processes, threads per process)


def _worker(rank: int, world: int, threads: int, args: argparse.Namespace, store_dir: str, result_dir: str,
            tag: str) -> None:
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{result_dir}/rendezvous-{tag}", rank=rank,
                                world_size=world)
    parallel = DataParallel(rank=rank, world_size=world)
    spec = _spec(args)
    run = next(r for r in spec.runs() if r.name == args.run)
    store = prepare_store(spec.data, store_dir, progress=False)
    set_determinism("cpu", threads)
    model = build_model(spec, run, store.vocab_size, "cpu")
    optimizer = build_optimizer(model, spec, "cpu")
    for _ in run_steps(spec, run, store, model, optimizer, start=0, stop=1, device="cpu", parallel=parallel):
        pass  # warm-up
    if world > 1:
        dist.barrier()
    began = time.perf_counter()
    for _ in run_steps(spec, run, store, model, optimizer, start=1, stop=args.steps + 1, device="cpu",
                       parallel=parallel):
        pass
    report = {"seconds": time.perf_counter() - began}
    if world > 1:
        grads = [p.detach().clone() for p in model.parameters()]
        tree, plain = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same noise
            dist.barrier()
            t = time.perf_counter()
            parallel.sum_over_ranks(grads)
            tree.append(time.perf_counter() - t)
            dist.barrier()
            t = time.perf_counter()
            dist.all_reduce(torch.cat([g.reshape(-1) for g in grads]))
            plain.append(time.perf_counter() - t)
        report.update(tree_s=statistics.median(tree), all_reduce_s=statistics.median(plain),
                      n_params=sum(g.numel() for g in grads))
        dist.destroy_process_group()
    if rank == 0:  # scratch files between processes (no pickle), deleted with the temp dir
        save_file(dict(model.state_dict()), f"{result_dir}/{tag}.safetensors")
        Path(f"{result_dir}/{tag}.json").write_text(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="toy")
    parser.add_argument("--run", default="gelu-1l-seed0")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    spec = _spec(args)
    runs: dict[tuple[int, int], list[dict]] = {config: [] for config in CONFIGS}
    weights = {}
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = str(zoo_dir(Path(tmp), spec) / "data")
        prepare_store(spec.data, store_dir, progress=False)
        for round_ in range(args.rounds):
            for world, threads in CONFIGS:
                tag = f"p{world}t{threads}r{round_}"
                mp.spawn(_worker, args=(world, threads, args, store_dir, tmp, tag), nprocs=world, join=True)
                runs[world, threads].append(json.loads(Path(f"{tmp}/{tag}.json").read_text()))
                weights[world, threads] = load_file(f"{tmp}/{tag}.safetensors")
    tokens = args.steps * spec.training.batch_size * spec.data.n_ctx
    seconds = {config: statistics.median(r["seconds"] for r in rows) for config, rows in runs.items()}
    reference = weights[1, 1]
    tree_s = statistics.median(r["tree_s"] for r in runs[2, 1])
    all_reduce_s = statistics.median(r["all_reduce_s"] for r in runs[2, 1])
    record = {
        "spec": args.spec, "run": args.run, "steps": args.steps, "rounds": args.rounds,
        "global_batch": spec.training.batch_size, "micro_batch": spec.training.micro_batch_size,
        "n_params": runs[2, 1][0]["n_params"],
        "tokens_per_s": {f"{w}_process_{t}_thread": tokens / seconds[w, t] for w, t in CONFIGS},
        "speedup_2_processes_vs_1_process_1_thread": seconds[1, 1] / seconds[2, 1],
        "speedup_2_processes_vs_1_process_2_threads": seconds[1, 2] / seconds[2, 1],
        "weights_equal_to_1_process_1_thread": {
            f"{w}_process_{t}_thread": all(torch.equal(weights[w, t][k], reference[k]) for k in reference)
            for w, t in CONFIGS},
        "fixed_order_reduce_s": tree_s, "all_reduce_s": all_reduce_s,
        "fixed_order_vs_all_reduce_ratio": tree_s / all_reduce_s,
        "fixed_order_share_of_step_2_processes": tree_s / (seconds[2, 1] / args.steps),
        "measured": measured_on("cpu", statistic=f"median of {args.rounds} rounds"),
    }
    out = Path("benchmarks/results/distributed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
