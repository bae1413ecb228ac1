"""The fast training path (issue 13): each piece is kept only where training stays bitwise.

SDPA attention and the fused AdamW are the CURRENT numerics path, so every determinism test
(twice, resume from every checkpoint, SIGKILL, data parallel 1×4 = 2×2 = 4×1, replay) runs on
them; LEGACY's bytes are guarded by test_training_golden.py and test_numerics.py. Here: what
those tests cannot see.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
import torch

from checkpoints_manifest import read_manifest, verify
from helpers import cut_run_back, tree_digest
from training import CheckpointError, load_spec, train_zoo
from training import checkpoint as checkpoint_module
from training.model import ARCHITECTURES, ModelConfig, Transformer, init_weights, lm_loss
from training.numerics import CURRENT
from training.reduce import PairwiseSum, tree_sum
from training.run_dir import SNAPSHOTS_IN_FLIGHT


@pytest.mark.parametrize("n", range(1, 18))
def test_the_running_pairwise_sum_has_the_bits_of_tree_sum(n):
    generator = torch.Generator().manual_seed(n)
    # magnitudes spread over many orders, so that any other order of additions rounds differently
    items = [[torch.randn(7, 5, generator=generator) * 10.0 ** torch.randint(-6, 7, (7, 5), generator=generator),
              torch.randn((), generator=generator)] for _ in range(n)]
    expected = tree_sum(items)
    running = PairwiseSum()
    for item in items:
        running.add([t.clone() for t in item])
    assert all(torch.equal(a, b) for a, b in zip(running.total(), expected, strict=True))


def test_the_running_sum_holds_one_partial_sum_per_binary_digit_and_never_sums_into_a_shared_tensor():
    running, most = PairwiseSum(), 0
    for _ in range(8):
        shared = torch.ones(3)
        running.add([shared, shared])  # autograd may hand two parameters one tensor
        most = max(most, len(running._partial))
    assert most == 3  # after 7 items: 4 + 2 + 1 (8 micro-batches: log2(8) + 1 gradient sets with the 8th)
    assert all(torch.equal(t, torch.full((3,), 8.0)) for t in running.total())


def _pair(architecture: str) -> tuple[Transformer, Transformer]:
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=24, d_vocab=60,
                      architecture=architecture)
    explicit, fused = Transformer(cfg), Transformer(cfg, fused_attention=True)
    init_weights(explicit, torch.Generator().manual_seed(0))
    fused.load_state_dict(explicit.state_dict())
    return explicit, fused


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_sdpa_and_explicit_attention_agree_to_float_tolerance_forward_and_backward(architecture):
    """Two different computations of the same function: equal up to rounding, not bit for bit."""
    explicit, fused = _pair(architecture)
    tokens = torch.randint(0, 60, (3, 25), generator=torch.Generator().manual_seed(1))
    grads = []
    for model in (explicit, fused):
        loss = lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    torch.testing.assert_close(fused(tokens[:, :-1]), explicit(tokens[:, :-1]), rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_hook_on_the_scores_or_the_pattern_takes_the_explicit_path_of_an_sdpa_model():
    explicit, fused = _pair("gelu")
    tokens = torch.randint(0, 60, (2, 24), generator=torch.Generator().manual_seed(2))
    logits, cache = fused.run_with_cache(tokens)
    reference, reference_cache = explicit.run_with_cache(tokens)
    assert torch.equal(logits, reference)  # the hooks made it compute what the explicit model computes
    assert all(torch.equal(cache[k], reference_cache[k]) for k in reference_cache)
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, 4, 24, 24)

    def only_previous_token(pattern, hook):
        return torch.diag_embed(torch.ones(pattern.shape[-1] - 1), offset=-1).expand_as(pattern).clone()

    with fused.hooks([("blocks.0.attn.hook_pattern", only_previous_token)]):
        edited = fused(tokens)  # layer 0 explicit (hooked), layer 1 through SDPA
    with explicit.hooks([("blocks.0.attn.hook_pattern", only_previous_token)]):
        torch.testing.assert_close(edited, explicit(tokens), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(edited, fused(tokens), atol=1e-3)  # the edit took effect, and left with the hook


def test_a_snapshot_keeps_the_state_it_captured_while_training_goes_on():
    model = Transformer(ModelConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=4, d_vocab=20,
                                    architecture="gelu"))
    init_weights(model, torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    checkpoint_module.init_optimizer_state(model, optimizer)
    loop = checkpoint_module.LoopState(step=0, tokens_seen=0, lr=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    snapshot = checkpoint_module.capture(model, optimizer, loop, [], loss_log="strict-json")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(snapshot.weights[k], before[k]) for k in before)


@pytest.fixture
def slow_disk(monkeypatch):
    """Checkpoint writes that wait until the test lets them go, failing at the steps it names; and the
    list of snapshots captured so far."""
    gate, fail_at, captured = threading.Event(), set(), []
    write, capture = checkpoint_module.write, checkpoint_module.capture

    def slow_write(run_dir, snapshot):
        gate.wait(timeout=120)
        if snapshot.loop.step in fail_at:
            raise CheckpointError(f"could not write checkpoint step {snapshot.loop.step}: the disk is full")
        return write(run_dir, snapshot)

    def counted_capture(model, optimizer, loop, records, **options):
        captured.append(loop.step)
        return capture(model, optimizer, loop, records, **options)

    monkeypatch.setattr(checkpoint_module, "write", slow_write)
    monkeypatch.setattr(checkpoint_module, "capture", counted_capture)
    return gate, fail_at, captured


def test_training_waits_only_while_two_snapshots_are_in_flight_and_a_failed_write_stops_the_rest(
        tmp_path, slow_disk):
    gate, fail_at, captured = slow_disk
    spec = load_spec("tiny")
    spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training, steps=8))  # checkpoints 0 1 2 4 8
    fail_at.add(2)
    errors = []

    def train():
        try:
            train_zoo(spec, tmp_path, runs="gelu-1l-seed0", progress=False)
        except CheckpointError as e:
            errors.append(e)

    trainer = threading.Thread(target=train)
    trainer.start()
    deadline = time.monotonic() + 120
    while len(captured) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    assert captured == [0, 1, 2]  # 0 is being written, 1 waits: step 2's commit waits for room
    assert SNAPSHOTS_IN_FLIGHT == 2
    gate.set()
    trainer.join(timeout=120)
    assert not trainer.is_alive() and len(errors) == 1 and "step 2" in str(errors[0])
    run = tmp_path / "tiny" / "runs" / "gelu-1l-seed0"
    assert read_manifest(run).checkpoints == [0, 1] and verify(run) == []  # nothing after the failed step


@pytest.mark.slow
def test_compiled_training_is_bitwise_equal_twice_and_across_a_resume(tmp_path):
    """torch.compile (inductor, in deterministic mode) on CPU: the same bits twice and after a resume."""
    spec = load_spec("tiny")
    spec = dataclasses.replace(spec, numerics=dataclasses.replace(CURRENT, compile=True),
                               training=dataclasses.replace(spec.training, steps=12))
    for out in ("a", "b"):
        train_zoo(spec, tmp_path / out, runs="solu-1l-seed0", progress=False)
    runs = [tmp_path / out / "tiny" / "runs" / "solu-1l-seed0" for out in ("a", "b")]
    assert tree_digest(runs[0]) == tree_digest(runs[1])
    assert json.loads((runs[0] / "config.json").read_text())["numerics"]["compile"] is True
    cut_run_back(runs[1], keep=4)  # steps 0, 1, 2, 4
    train_zoo(spec, tmp_path / "b", runs="solu-1l-seed0", resume=True, progress=False)
    assert tree_digest(runs[0]) == tree_digest(runs[1])


def test_bf16_training_on_the_fast_path_is_bitwise_equal_twice_and_across_a_resume(tmp_path):
    """The research zoo's precision: bf16 autocast through SDPA and the fused AdamW (moments stay float32)."""
    spec = load_spec("tiny")
    spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training, steps=8, precision="bfloat16"))
    for out in ("a", "b"):
        train_zoo(spec, tmp_path / out, runs="attn-only-1l-seed1", progress=False)
    runs = [tmp_path / out / "tiny" / "runs" / "attn-only-1l-seed1" for out in ("a", "b")]
    cut_run_back(runs[1], keep=3)  # steps 0, 1, 2
    train_zoo(spec, tmp_path / "b", runs="attn-only-1l-seed1", resume=True, progress=False)
    assert tree_digest(runs[0]) == tree_digest(runs[1])
