"""Data parallel is bitwise: every rank holds the same weights, equal to one process's (1×4 = 2×2 = 4×1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from data_index import prepare_store
from training import build_model, build_optimizer
from training.distributed import DataParallel, DataParallelError
from training.loop import run_steps, zoo_dir

STEPS = 6


def _train(spec, store, parallel: DataParallel):
    run = next(r for r in spec.runs() if r.name == "gelu-1l-seed1")
    model = build_model(spec, run, store.vocab_size, "cpu")
    optimizer = build_optimizer(model, spec, "cpu")
    for _ in run_steps(spec, run, store, model, optimizer, start=0, stop=STEPS, device="cpu", parallel=parallel):
        pass
    return {**model.state_dict(), **{f"opt.{i}": s["exp_avg_sq"] for i, s in enumerate(optimizer.state.values())}}


def _rank(rank: int, world: int, spec, store_dir: str, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        state = _train(spec, prepare_store(spec.data, store_dir, progress=False), DataParallel(rank, world))
        save_file({k: v.contiguous() for k, v in state.items()}, f"{folder}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def four_micro(tiny_spec, tmp_path_factory):
    spec = dataclasses.replace(tiny_spec, training=dataclasses.replace(tiny_spec.training, micro_batch_size=2))
    store_dir = zoo_dir(tmp_path_factory.mktemp("dp"), spec) / "data"
    store = prepare_store(spec.data, store_dir, progress=False)
    return spec, store, str(store_dir), _train(spec, store, DataParallel())


def test_every_rank_holds_the_single_process_weights_bitwise(four_micro, tmp_path: Path):
    """2 processes × 2 micro-batches; 4 × 1 runs through real jobs in test_launch.py."""
    world = 2
    spec, _, store_dir, single = four_micro
    mp.spawn(_rank, args=(world, spec, store_dir, str(tmp_path)), nprocs=world, join=True)
    for rank in range(world):
        state = load_file(tmp_path / f"rank{rank}.safetensors")
        assert state.keys() == single.keys()
        assert all(torch.equal(state[k], single[k]) for k in single), f"rank {rank} differs"


def test_a_split_without_a_power_of_two_micro_batches_per_rank_is_refused():
    tokens = torch.zeros(12, 5, dtype=torch.int64)  # 6 micro-batches of 2
    with pytest.raises(DataParallelError, match="6 micro-batches.*4 processes"):
        DataParallel(rank=0, world_size=4).shard(tokens, 2)
    with pytest.raises(DataParallelError, match="power-of-two"):
        DataParallel(rank=0, world_size=2).shard(tokens, 2)  # 3 each
    assert torch.equal(DataParallel(rank=1, world_size=3).shard(tokens, 2), tokens[4:8])
