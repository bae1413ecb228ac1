"""Data parallel across processes: a failure on any rank stops every rank at the next step with the error,
and the manifest records how the run was split (world size, micro-batches per rank).

Rank 0's checkpoint writer fails for real: the run directory lies on a small tmpfs that fills up.
Before, the other rank learnt nothing: it waited in the next gradient gather until the process
group's timeout, or, when rank 0's process had exited by then, failed with gloo's "Connection
closed by peer".
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from checkpoints_manifest import read_manifest
from data_index import prepare_store
from helpers import leave_room, one_run_spec, tmpfs
from training import parse_spec, train_run
from training.distributed import DataParallel

SPEC = one_run_spec("dpfail", steps=12)
WORLD = 2
DEADLINE_S = 180  # process start and torch import included; a hang would wait the group's 120 s timeout first


def _rank(rank: int, store_dir: str, out: str, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))
    outcome = "finished"
    try:
        spec = parse_spec(SPEC)
        train_run(spec, spec.runs()[0], prepare_store(spec.data, store_dir, progress=False), Path(out),
                  progress=False, parallel=DataParallel(rank, WORLD))
    except Exception as error:  # noqa: BLE001 (the outcome is the test's evidence)
        outcome = f"{type(error).__name__}: {error}"
    finally:
        dist.destroy_process_group()
    Path(folder, f"rank{rank}.txt").write_text(outcome)


def test_a_checkpoint_writer_failing_on_rank_0_stops_every_rank_with_its_error(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    store_dir = tmp_path / "data"
    prepare_store(spec.data, store_dir, progress=False)
    with tmpfs(tmp_path / "disk", 4096) as disk:  # large enough for the schedule, which training checks first
        leave_room(disk, 256)  # but room for the config and checkpoint 0, not much more
        context = multiprocessing.get_context("spawn")
        ranks = [context.Process(target=_rank, args=(r, str(store_dir), str(disk), str(tmp_path)))
                 for r in range(WORLD)]
        for process in ranks:
            process.start()
        began = time.monotonic()
        for process in ranks:
            process.join(timeout=max(1.0, DEADLINE_S - (time.monotonic() - began)))
        alive = [r for r, process in enumerate(ranks) if process.is_alive()]
        for process in ranks:
            process.kill()
        assert not alive, f"ranks {alive} still running: a failed rank left them waiting"
        outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in range(WORLD)]
        assert outcomes[0].startswith("CheckpointError") and "the disk is full" in outcomes[0], outcomes
        assert outcomes[1].startswith("RankFailedError: rank 1 stopped"), outcomes
        assert "rank 0 failed with CheckpointError" in outcomes[1] and "the disk is full" in outcomes[1], outcomes
        environment = read_manifest(disk / "dpfail" / "runs" / "gelu-1l-seed0").environment
        assert (environment.world_size, environment.micro_batches_per_rank) == (2, 1)
