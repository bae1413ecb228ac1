"""Replay of published runs: bitwise from any checkpoint, from downloaded artifacts only, with interventions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from checkpoints_manifest import file_entry, read_manifest, write_manifest
from hub_server import HubServer
from zoo.cli import replay as replay_commands
from zoo.hub.errors import IntegrityError, UnknownModelError
from zoo.replay import Callback, ReplayError, ReplayStep, replay

ORG = "zoo-org"
RUN = "gelu-1l-seed1"
REPO = f"{ORG}/tiny-{RUN}"
DATA_REPO = f"{ORG}/tiny-data"
ROOT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def published_root(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole tiny zoo published to a directory root (read-only for the tests that share it)."""
    root = tmp_path_factory.mktemp("replay-root")
    zoo.publish(trained_tiny / "tiny", org=ORG, root=root)
    return root


def _weights(root: Path, step: int, run: str = RUN) -> dict[str, torch.Tensor]:
    return load_file(root / ORG / f"tiny-{run}" / "checkpoints" / f"step{step:08d}" / "model.safetensors")


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_replay_from_every_checkpoint_to_the_next_is_bitwise_equal_for_every_run(published_root: Path,
                                                                                 tiny_spec) -> None:
    steps = zoo.list_models(org=ORG, root=published_root)[0].steps
    for run in tiny_spec.runs():
        for start, stop in zip(steps, steps[1:]):
            result = replay(run.model, seed=run.init_seed, from_step=start, to_step=stop, org=ORG,
                            root=published_root)
            assert result.bitwise_equal, result.verdict()
            assert (result.compared_checkpoint, result.updates, result.counterfactual) == (stop, stop - start, False)
            assert set(result.weight_max_abs_diff.values()) == {0.0}
            assert set(result.optimizer_max_abs_diff.values()) == {0.0}
            assert result.verdict().startswith("BITWISE EQUAL")


def test_replay_across_several_checkpoints_and_to_a_step_between_checkpoints(published_root: Path) -> None:
    across = replay("solu-1l", seed=0, from_step=2, to_step=20, org=ORG, root=published_root)
    assert across.bitwise_equal and across.compared_checkpoint == 20 and across.updates == 18
    assert [r["step"] for r in across.loss_records] == list(range(3, 21))
    between = replay("solu-1l", seed=0, from_step=8, to_step=14, org=ORG, root=published_root)
    assert between.bitwise_equal and between.compared_checkpoint is None  # the loss log is still compared
    assert between.first_loss_difference is None


def test_replay_through_the_hub_server_fetches_only_what_it_needs(trained_tiny: Path,
                                                                  hub_server: HubServer) -> None:
    zoo.publish(trained_tiny / "tiny", org=ORG)
    steps = read_manifest(trained_tiny / "tiny" / "runs" / RUN).checkpoints
    for start, stop in zip(steps, steps[1:]):
        result = replay("gelu-1l", seed=1, from_step=start, to_step=stop, org=ORG)
        assert result.bitwise_equal, result.verdict()
    assert replay("gelu-1l", seed=1, from_step=8, to_step=20, org=ORG).bitwise_equal  # across checkpoints
    cached = {p.relative_to(_snapshots(p)).as_posix() for p in Path(os.environ["HF_HUB_CACHE"]).rglob("*") if p.is_file() and "snapshots" in p.parts}
    # Only the seed-1 step index's batches, never data seed 0's index nor the reverse (where-seen) maps.
    assert not [p for p in cached if p.startswith("index/data0") or "/seen_" in p]
    assert "index/data1/batches/c/0/0" in cached


def _snapshots(path: Path) -> Path:
    """The snapshot folder (…/snapshots/<commit>) a cached file lies in."""
    parts = path.parts
    return Path(*parts[: parts.index("snapshots") + 2])


def test_replay_in_a_fresh_process_and_cache_uses_downloaded_artifacts_only(trained_tiny: Path, tmp_path: Path,
                                                                            hub_server: HubServer) -> None:
    # Publish from a copy that is deleted before the replay: the training outputs no longer exist anywhere.
    copy = tmp_path / "copy" / "tiny"
    for part in ("data", "index", f"runs/{RUN}"):
        shutil.copytree(trained_tiny / "tiny" / part, copy / part)
    zoo.publish(copy / "runs" / RUN, org=ORG)
    shutil.rmtree(tmp_path / "copy")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = {**os.environ, "HF_HOME": str(fresh / "hf"), "HF_HUB_CACHE": str(fresh / "hf" / "hub"),
           "HOME": str(fresh), "PYTHONPATH": str(ROOT_DIR)}
    script = ("from zoo.replay import replay; "
              f"r = replay('gelu-1l', seed=1, from_step=4, to_step=12, org='{ORG}'); print(r.verdict())")
    done = subprocess.run([sys.executable, "-c", script], cwd=fresh, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"BITWISE EQUAL {REPO} steps 4→12"), done.stdout
    assert list((fresh / "hf" / "hub").glob("models--*tiny-gelu-1l-seed1"))  # it really downloaded


@pytest.mark.parametrize("path, repo_type, names", [
    ("checkpoints/step00000004/optimizer.safetensors", "model", "checkpoint step00000004"),
    ("data/tokens/c/0/0", "dataset", "token store"),
    ("index/data1/batches/c/0/0", "dataset", r"step index \(batch ids\)"),
])
def test_a_tampered_published_file_fails_the_replay_naming_which(trained_tiny: Path, hub_server: HubServer,
                                                                 tmp_path: Path, path: str, repo_type: str,
                                                                 names: str) -> None:
    zoo.publish(trained_tiny / "tiny" / "runs" / RUN, org=ORG)
    hub_server.corrupt(REPO if repo_type == "model" else DATA_REPO, path, repo_type=repo_type)
    with pytest.raises(IntegrityError, match=f"published {names} is damaged.*{path}"):
        replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG)
    # The same on a directory root (a shared filesystem): one byte flipped in place.
    root = tmp_path / "root"
    zoo.publish(trained_tiny / "tiny" / "runs" / RUN, org=ORG, root=root)
    target = root / ("datasets" if repo_type == "dataset" else "") / (REPO if repo_type == "model" else DATA_REPO)
    data = bytearray((target / path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / path).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"published {names} is damaged.*{path}"):
        replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=root)


class _Recorder(Callback):
    """Reads activations before each update and keeps the weights after it: touches nothing."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.seen: dict[int, tuple[list[int], float]] = {}

    def before_update(self, step: ReplayStep) -> None:
        with torch.no_grad():
            _, cache = step.model.run_with_cache(step.tokens[:, :-1])
        assert cache["blocks.0.hook_resid_post"].shape[0] == len(step.sample_ids)

    def after_update(self, step: ReplayStep) -> None:
        self.weights[step.step] = _state(step.model)
        self.seen[step.step] = (step.sample_ids.tolist(), step.loss)


class _NeverSee(_Recorder):
    def __init__(self, doc: int, at: int) -> None:
        super().__init__()
        self.doc, self.at = doc, at
        self.dropped: list[int] = []

    def before_update(self, step: ReplayStep) -> None:
        if step.step == self.at:
            self.dropped = step.drop_documents([self.doc])


def test_dropping_a_documents_samples_changes_weights_from_that_step_on_and_is_counterfactual(
        published_root: Path) -> None:
    original = _Recorder()  # a callback that only reads: the replay stays bitwise equal
    plain = replay("gelu-1l", seed=1, from_step=2, to_step=12, org=ORG, root=published_root, callbacks=[original])
    assert plain.bitwise_equal and not plain.counterfactual
    t = 6
    never = _NeverSee(_first_doc_of_step(published_root, t), at=t)
    result = replay("gelu-1l", seed=1, from_step=2, to_step=12, org=ORG, root=published_root, callbacks=[never])
    assert never.dropped and result.counterfactual and result.bitwise_equal is None
    assert result.first_loss_difference is None and f"step {t}: dropped samples" in result.interventions[0]
    assert result.verdict().startswith("COUNTERFACTUAL")
    for step in range(3, 13):
        same = all(torch.equal(never.weights[step][k], original.weights[step][k]) for k in original.weights[step])
        assert same == (step < t), step
    assert not all(torch.equal(result.model.state_dict()[k], v) for k, v in _weights(published_root, 12).items())
    assert len(never.seen[t][0]) == len(original.seen[t][0]) - len(never.dropped)


def _first_doc_of_step(root: Path, step: int) -> int:
    """A document trained on at `step` (from the published step index and store, read directly)."""
    from data_index import StepIndex, TokenStore
    data = root / "datasets" / DATA_REPO
    ids = StepIndex.open(data / "index" / "data1").batch_ids(step)
    return TokenStore.open(data / "data").sample_documents(int(ids[0]))[0].doc


def test_replacing_samples_or_editing_weights_is_counterfactual_and_bad_interventions_are_refused(
        published_root: Path) -> None:
    class Edit(Callback):
        def before_update(self, step: ReplayStep) -> None:
            if step.step == 5:
                step.replace(0, step.tokens[1])
            if step.step == 6:
                with step.edit_weights() as model:
                    model.embed.W_E[0] += 1.0

    result = replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=published_root, callbacks=[Edit()])
    assert result.counterfactual and len(result.interventions) == 2 and result.bitwise_equal is None
    assert max(result.weight_max_abs_diff.values()) > 0

    class DropAll(Callback):
        def before_update(self, step: ReplayStep) -> None:
            step.drop(range(len(step.sample_ids)))

    with pytest.raises(ReplayError, match="dropping every row"):
        replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=published_root, callbacks=[DropAll()])

    class Late(Callback):
        def after_update(self, step: ReplayStep) -> None:
            step.drop([0])

    with pytest.raises(ReplayError, match="before_update only"):
        replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=published_root, callbacks=[Late()])


def test_bad_steps_are_errors_that_say_what_exists(published_root: Path) -> None:
    with pytest.raises(UnknownModelError, match="no checkpoint at step 6; nearest: 4, 8"):
        replay("gelu-1l", seed=1, from_step=6, to_step=8, org=ORG, root=published_root)
    with pytest.raises(ReplayError, match=r"to_step must lie in \(8, 24\]"):
        replay("gelu-1l", seed=1, from_step=8, to_step=30, org=ORG, root=published_root)


def test_a_divergence_is_reported_per_tensor_and_at_the_first_differing_loss(trained_tiny: Path,
                                                                             tmp_path: Path) -> None:
    root = tmp_path / "root"
    zoo.publish(trained_tiny / "tiny" / "runs" / RUN, org=ORG, root=root)
    run = root / REPO
    ckpt = run / "checkpoints" / "step00000008"
    weights = load_file(ckpt / "model.safetensors")
    weights["blocks.0.attn.W_Q"] = weights["blocks.0.attn.W_Q"] + 1e-3
    save_file(weights, ckpt / "model.safetensors")
    records = [json.loads(line) for line in (ckpt / "loss.jsonl").read_text().splitlines()]
    records[1]["loss"] += 1e-6  # step 6
    (ckpt / "loss.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    manifest = read_manifest(run)
    files = {**manifest.files, **{p: dataclasses.replace(file_entry(run, p), commit=None)
                                  for p in ("checkpoints/step00000008/model.safetensors",
                                            "checkpoints/step00000008/loss.jsonl")}}
    write_manifest(run, dataclasses.replace(manifest, files=files))  # published "consistently": verification passes

    result = replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=root)
    assert result.bitwise_equal is False and result.first_loss_difference == 6
    assert result.weight_max_abs_diff["blocks.0.attn.W_Q"] == pytest.approx(1e-3, rel=1e-2)
    assert result.weight_max_abs_diff["embed.W_E"] == 0.0 and set(result.optimizer_max_abs_diff.values()) == {0.0}
    assert "DIVERGED" in result.verdict() and "loss first differs at step 6" in result.verdict()
    assert _cli(["gelu-1l", "--seed", "1", "--from", "4", "--to", "8", "--org", ORG, "--root", str(root)]) == 1


def test_an_other_platform_is_stated_plainly(published_root: Path, monkeypatch) -> None:
    replay_module = zoo.replay  # one name, one thing: the package
    here = replay_module.environment_record("cpu")
    monkeypatch.setattr(replay_module, "environment_record",
                        lambda device: dataclasses.replace(here, torch="9.9.9"))
    result = replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=published_root)
    assert [d for d in result.environment_differences if d.startswith("torch 9.9.9 here")]
    assert result.bitwise_equal  # same real platform: still equal, and the difference is still stated


def test_cli_replays_with_a_verdict_and_explains_a_step(published_root: Path, capsys) -> None:
    assert _cli(["gelu-1l", "--seed", "1", "--from", "4", "--to", "8", "--explain", "6", "--quiet",
                 "--org", ORG, "--root", str(published_root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[-1].startswith(f"BITWISE EQUAL {REPO} steps 4→8: checkpoint 8 (all 4 files)")
    assert lines[0].startswith("step 6: 8 samples of 17 tokens; loss per sample")
    rows = [line for line in lines if line.strip().startswith("row")]
    assert len(rows) == 8 and all(" loss " in r and " doc " in r for r in rows)
    with pytest.raises(ReplayError, match=r"--explain 9 is not replayed"):
        _cli(["gelu-1l", "--seed", "1", "--from", "4", "--to", "8", "--explain", "9", "--org", ORG,
              "--root", str(published_root)])


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    replay_commands.add_parsers(parser.add_subparsers())
    args = parser.parse_args(["replay", *argv])
    return args.func(args)
