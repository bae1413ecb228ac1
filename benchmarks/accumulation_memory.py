"""Peak memory of one training step against the number of micro-batches it accumulates.

    .venv/bin/python -m benchmarks.accumulation_memory

One update of a research-shaped model (1 layer of the research zoo's shape, d_model 512, d_mlp 2048,
n_ctx 1024, with a 4,096-token vocabulary to fit a small CPU) with 1, 2, 4 and 8 micro-batches of
one sequence each (the research zoo's are 32: more activations per gradient set, so a ratio nearer
1), every measurement in a fresh process: `train_step`, whose
running pairwise sum holds at most log2(n) + 1 gradient sets, against the accumulation it
replaced, which kept every micro-batch's gradients and then tree-summed them (n sets; the same
bits). Memory is the peak, over the step, of everything training holds (weights, AdamW moments,
gradients, activations): the peak resident set above the process's size before the model was
built, with glibc told to map every allocation over 64 KiB on its own so that freed tensors leave
the resident set; on a GPU (--device cuda) torch.cuda.max_memory_allocated. Acceptance: 8
micro-batches ≤ 1.5× the memory of 1. Writes benchmarks/results/accumulation_memory[-cuda].json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks._provenance import measured_on
from training.checkpoint import init_optimizer_state
from training.determinism import set_determinism
from training.loop import train_step
from training.model import ModelConfig, Transformer, init_weights, lm_loss
from training.reduce import tree_sum

CONFIG = ModelConfig(n_layers=1, d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=1024, d_vocab=4096,
                     architecture="gelu")
COUNTS = (1, 2, 4, 8)


def keep_every_micro_batch(model, optimizer, tokens: torch.Tensor, micro_batch_size: int) -> None:
    """The accumulation train_step replaced: every micro-batch's gradients kept, then tree-summed."""
    params = list(model.parameters())
    items = [torch.autograd.grad(lm_loss(model(micro[:, :-1]), micro[:, 1:]), params)
             for micro in tokens.split(micro_batch_size)]
    for param, grad in zip(params, tree_sum([list(item) for item in items])):
        param.grad = (grad / len(items)).contiguous()
    optimizer.step()


def one_step(accumulation: str, n_micro: int, device: str) -> dict:
    """Build the model, then take one step; the peak of training's memory over it, in bytes."""
    set_determinism(device, 1)
    before = _resident_bytes()
    model = Transformer(CONFIG, fused_attention=True)
    init_weights(model, torch.Generator().manual_seed(0))
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    init_optimizer_state(model, optimizer)
    tokens = torch.randint(0, CONFIG.d_vocab, (n_micro, CONFIG.n_ctx + 1), generator=torch.Generator().manual_seed(1))
    tokens = tokens.to(device)
    state = _resident_bytes() - before
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if accumulation == "running":
        train_step(model, optimizer, tokens, lr=1e-3, micro_batch_size=1, grad_clip=1.0).loss
    else:
        keep_every_micro_batch(model, optimizer, tokens, 1)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    return {"peak_bytes": peak, "state_bytes_before_step": state}


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--one", nargs=2, metavar=("ACCUMULATION", "N"), help=argparse.SUPPRESS)  # a child
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_step(args.one[0], int(args.one[1]), args.device)))
        return

    torch.set_num_threads(1)  # as in each measured process (recorded below)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows = {}
    for accumulation in ("running", "keep_every"):
        for n in COUNTS:
            child = subprocess.run([sys.executable, "-m", "benchmarks.accumulation_memory", "--device", args.device,
                                    "--one", accumulation, str(n)], env=env, check=True, capture_output=True,
                                   text=True)
            rows[f"{accumulation}_{n}"] = json.loads(child.stdout.splitlines()[-1])
            print(f"{accumulation:>10}, {n} micro-batches: peak {rows[f'{accumulation}_{n}']['peak_bytes'] / 2**20:7.1f} "
                  f"MiB", flush=True)
    ratio = {acc: rows[f"{acc}_8"]["peak_bytes"] / rows[f"{acc}_1"]["peak_bytes"] for acc in ("running", "keep_every")}
    result = {
        "measured": measured_on(args.device, model=CONFIG.to_dict(), micro_batch_size=1,
                                memory="torch.cuda.max_memory_allocated" if args.device == "cuda" else
                                "peak resident set above the process before the model, MALLOC_MMAP_THRESHOLD_=65536"),
        "steps": rows,
        "ratio_8_to_1_micro_batches": ratio,
        "target": "running <= 1.5",
    }
    out = args.out or Path(f"benchmarks/results/accumulation_memory{'-cuda' if args.device == 'cuda' else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"8 / 1 micro-batches: running sum {ratio['running']:.2f}x, keeping every micro-batch "
          f"{ratio['keep_every']:.2f}x -> {out}")


if __name__ == "__main__":
    main()
