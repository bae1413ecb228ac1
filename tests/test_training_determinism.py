"""The determinism contract of the trainer, proved bitwise (sha256 / torch.equal)."""

import dataclasses
import shutil

import torch
from safetensors.torch import load_file

from checkpoints_manifest import read_manifest, verify
from data_index import prepare_store
from helpers import cut_run_back, tree_digest
from training import build_model, build_optimizer, load_spec, train_zoo
from training.checkpoint import capture, checkpoint_dir_name, loss_lines, read
from training.loop import loss_record, numerics_of, run_path, run_steps, zoo_dir
from training.spec import CheckpointSpec


def test_two_trainings_of_the_same_run_are_byte_identical(tiny_spec, trained_tiny, tmp_path):
    train_zoo(tiny_spec, tmp_path, runs="solu-1l-seed1,attn-only-1l-seed0", progress=False)
    for name in ("solu-1l-seed1", "attn-only-1l-seed0"):
        again = tree_digest(tmp_path / "tiny" / "runs" / name)
        reference = tree_digest(trained_tiny / "tiny" / "runs" / name)
        assert again == reference
        assert any(p.endswith("loss.jsonl") for p in again)
        assert len([p for p in again if p.endswith("model.safetensors")]) == len(read_manifest(
            trained_tiny / "tiny" / "runs" / name).checkpoints)


def test_init_seed_sets_weights_and_data_seed_alone_leaves_step0_identical(tiny_spec, tmp_path):
    spec = dataclasses.replace(tiny_spec, seeds=((0, 0), (0, 1), (1, 0)))
    train_zoo(spec, tmp_path, runs="gelu-*", progress=False)
    runs = tmp_path / "tiny" / "runs"

    def weights(run, step):
        return load_file(runs / run / "checkpoints" / checkpoint_dir_name(step) / "model.safetensors")

    final = spec.training.steps
    same_init = weights("gelu-1l-seed0", 0), weights("gelu-1l-init0-data1", 0)
    assert all(torch.equal(same_init[0][k], same_init[1][k]) for k in same_init[0])
    other_init = weights("gelu-1l-init1-data0", 0)
    assert not torch.equal(same_init[0]["embed.W_E"], other_init["embed.W_E"])
    a, b = weights("gelu-1l-seed0", final), weights("gelu-1l-init0-data1", final)
    assert not torch.equal(a["embed.W_E"], b["embed.W_E"])


def test_resume_from_every_checkpoint_reproduces_the_next_bitwise(tiny_spec, trained_tiny):
    """Load each checkpoint, train to the next one, compare every tensor and loss line."""
    store = prepare_store(tiny_spec.data, zoo_dir(trained_tiny, tiny_spec) / "data", progress=False)
    for run in tiny_spec.runs():
        path = run_path(trained_tiny, tiny_spec, run)
        steps = read_manifest(path).checkpoints
        for start, stop in zip(steps, steps[1:]):
            model = build_model(tiny_spec, run, store.vocab_size, "cpu")
            optimizer = build_optimizer(model, tiny_spec, "cpu")
            read(path, start, model, optimizer)
            records = []
            for loop, stats in run_steps(tiny_spec, run, store, model, optimizer, start=start, stop=stop,
                                         device="cpu"):
                records.append(loss_record(loop, stats))
            snap = capture(model, optimizer, loop, records, loss_log=numerics_of(tiny_spec).loss_log)
            folder = path / "checkpoints" / checkpoint_dir_name(stop)
            for name, tensors in (("model", snap.weights), ("optimizer", snap.optimizer)):
                saved = load_file(folder / f"{name}.safetensors")
                assert saved.keys() == tensors.keys()
                assert all(torch.equal(saved[k], tensors[k]) for k in saved), (run.name, start, stop, name)
            assert loss_lines(snap.loss_records, snap.loss_log) == (folder / "loss.jsonl").read_bytes()


def test_resume_through_the_cli_path_ends_byte_identical(tiny_spec, trained_tiny, tmp_path):
    """Cut a finished run back to an early checkpoint (as a crash would), then `--resume`."""
    name = "gelu-1l-seed0"
    reference = trained_tiny / "tiny" / "runs" / name
    copy = tmp_path / "tiny" / "runs" / name
    shutil.copytree(trained_tiny / "tiny" / "data", tmp_path / "tiny" / "data")
    shutil.copytree(reference, copy)
    cut_run_back(copy, keep=len(read_manifest(copy).checkpoints) // 2)
    assert verify(copy) == []
    train_zoo(tiny_spec, tmp_path, runs=name, resume=True, progress=False)
    assert tree_digest(copy) == tree_digest(reference)


def test_the_cpu_thread_count_is_pinned_by_the_spec_not_taken_from_the_machine(tmp_path):
    """CPU kernels can give other bits with other thread counts (on AVX-512 machines they do for this
    model; on some AVX2 machines these small matmuls do not split), so the spec pins the count and the
    manifest records it."""
    toy = load_spec("toy")
    spec = dataclasses.replace(toy, training=dataclasses.replace(toy.training, steps=8),
                               checkpoints=CheckpointSpec(log_until=0, every=8))
    two = dataclasses.replace(spec, training=dataclasses.replace(spec.training, cpu_threads=2))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train_zoo(spec, tmp_path / "a", runs="gelu-1l-seed0", progress=False)
        torch.set_num_threads(2)  # the machine's default differs: the spec's count still rules
        train_zoo(spec, tmp_path / "b", runs="gelu-1l-seed0", progress=False)
        train_zoo(two, tmp_path / "c", runs="gelu-1l-seed0", progress=False)
    finally:
        torch.set_num_threads(before)

    def final(root):
        return (root / "toy" / "runs" / "gelu-1l-seed0" / "checkpoints" / "step00000008"
                / "model.safetensors").read_bytes()

    assert final(tmp_path / "a") == final(tmp_path / "b")
    threads = {name: read_manifest(tmp_path / name / "toy" / "runs" / "gelu-1l-seed0").environment.num_threads
               for name in "abc"}
    assert threads == {"a": 1, "b": 1, "c": 2}
