"""Loading published runs: verification, errors that list what exists, pins, offline mode, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants, hf_hub_download
from safetensors.torch import load_file

import zoo
from checkpoints_manifest import read_manifest
from hub_server import HubServer, pointed_at, serve
from zoo.cli import hub as hub_commands
from zoo.hub import verified
from zoo.hub import IntegrityError, UnknownModelError

ORG = "zoo-org"
RUN = "gelu-1l-seed1"
WEIGHTS4 = "checkpoints/step00000004/model.safetensors"


@pytest.fixture
def run_dir(trained_tiny: Path) -> Path:
    return trained_tiny / "tiny" / "runs" / RUN


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step{step:08d}" / "model.safetensors")


def _equal(loaded: zoo.hub.Loaded, expected: dict[str, torch.Tensor]) -> bool:
    state = loaded.model.state_dict()
    return state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)


def test_a_byte_flipped_on_the_server_is_an_error_naming_the_file_and_never_cached(run_dir: Path,
                                                                                  hub_server: HubServer) -> None:
    zoo.publish(run_dir, org=ORG)
    hub_server.corrupt(f"{ORG}/tiny-{RUN}", WEIGHTS4)
    for _ in range(2):  # the second try downloads again: the bad copy was not kept as good
        with pytest.raises(IntegrityError, match=WEIGHTS4) as error:
            zoo.load("gelu-1l", seed=1, step=4, org=ORG)
        assert error.value.path == WEIGHTS4
    cached = Path(constants.HF_HUB_CACHE)
    assert not [p for p in cached.rglob("model.safetensors") if "step00000004" in str(p)]
    assert _equal(zoo.load("gelu-1l", seed=1, step=8, org=ORG), _weights(run_dir, 8))  # other files are fine


def test_a_truncated_file_in_the_cache_is_detected_evicted_and_fetched_again(run_dir: Path, tmp_path: Path,
                                                                            hub_server: HubServer) -> None:
    zoo.publish(run_dir, org=ORG)
    folder = zoo.download("gelu-1l", seed=1, steps=[4], org=ORG)
    blob = (folder / WEIGHTS4).resolve()
    size = blob.stat().st_size
    blob.write_bytes(blob.read_bytes()[:100])  # as an interrupted write would leave it
    assert _equal(zoo.load("gelu-1l", seed=1, step=4, org=ORG), _weights(run_dir, 4))  # evicted, fetched again
    assert blob.stat().st_size == size
    zoo.publish(run_dir, org=ORG, root=tmp_path)  # a directory root is the source: nothing to fetch again
    there = tmp_path / ORG / f"tiny-{RUN}" / WEIGHTS4
    there.write_bytes(there.read_bytes()[:100])
    with pytest.raises(IntegrityError, match=f"{WEIGHTS4}.*expected {size} bytes.*got 100 bytes"):
        zoo.load("gelu-1l", seed=1, step=4, root=tmp_path, org=ORG)


def test_a_download_is_hashed_as_it_streams_into_the_cache_layout_hf_hub_download_reads(
        run_dir: Path, hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo.publish(run_dir, org=ORG)
    # Each file's hash is taken on the way in: neither downloading nor loading reads a file back to hash it.
    monkeypatch.setattr(verified, "sha256_file", lambda path: pytest.fail(f"{path} was read back to be hashed"))
    folder = zoo.download("gelu-1l", seed=1, steps=[4], org=ORG)
    commit = folder.name
    # The file is where hf_hub_download looks: a snapshot link to a content-named blob, found offline.
    cached = Path(hf_hub_download(f"{ORG}/tiny-{RUN}", WEIGHTS4, revision=commit, local_files_only=True))
    assert cached == folder / WEIGHTS4 and cached.is_symlink() and cached.resolve().parent.name == "blobs"
    assert _equal(zoo.load("gelu-1l", seed=1, step=4, org=ORG, revision=commit), _weights(run_dir, 4))


def test_unknown_model_seed_or_step_errors_list_what_exists(run_dir: Path, hub_server: HubServer) -> None:
    zoo.publish(run_dir, org=ORG)
    with pytest.raises(UnknownModelError, match=r"no model 'solu-9l'.*tiny/gelu-1l"):
        zoo.load("solu-9l", seed=0, org=ORG)
    with pytest.raises(UnknownModelError, match=r"init_seed=7.*published seeds: tiny: init_seed=1 data_seed=1"):
        zoo.load("gelu-1l", seed=7, org=ORG)
    with pytest.raises(UnknownModelError, match=r"published seeds: tiny: init_seed=1"):
        zoo.load("gelu-1l", seed=7, zoo="tiny", org=ORG)  # by repo name, then explained by the registry
    with pytest.raises(UnknownModelError, match=r"no checkpoint at step 13; nearest: 12, 16"):
        zoo.load("gelu-1l", seed=1, step=13, org=ORG)
    with pytest.raises(UnknownModelError, match="nothing is published under org 'nobody'"):
        zoo.load("gelu-1l", seed=1, org="nobody")


def test_final_tokens_and_revision_pick_the_checkpoint_asked_for(run_dir: Path, hub_server: HubServer) -> None:
    zoo.publish(run_dir, org=ORG)
    final = read_manifest(run_dir).checkpoints[-1]
    assert zoo.load("gelu-1l", seed=1, step="final", org=ORG).step == final
    per_step = 8 * 16  # batch_size * n_ctx of the tiny spec
    assert zoo.load("gelu-1l", seed=1, tokens=11 * per_step, org=ORG).step == 12  # 12 is nearer than 8
    pinned = zoo.load("gelu-1l", seed=1, step=4, revision=f"step{final}", org=ORG)
    assert _equal(pinned, _weights(run_dir, 4)) and pinned.commit == hub_server.commits(f"{ORG}/tiny-{RUN}")[0]
    with pytest.raises(UnknownModelError, match="no revision 'v9'"):
        zoo.load("gelu-1l", seed=1, revision="v9", org=ORG)


def test_a_warm_cache_loads_offline_with_no_server_running(run_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setattr(constants, name, value)
    with serve(tmp_path / "server") as server, pointed_at(server):
        zoo.publish(run_dir, org=ORG)
        zoo.load("gelu-1l", seed=1, step=4, org=ORG)
    with pointed_at(server):  # stopped now: nothing listens at its endpoint
        assert _equal(zoo.load("gelu-1l", seed=1, step=4, org=ORG), _weights(run_dir, 4))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        assert _equal(zoo.load("gelu-1l", seed=1, step=4, org=ORG), _weights(run_dir, 4))


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="zoo")
    hub_commands.add_parsers(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_publishes_lists_and_downloads(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = str(tmp_path / "root")
    assert _cli("publish", str(run_dir), "--org", ORG, "--root", root) == 0
    assert _cli("publish", str(run_dir), "--org", ORG, "--root", root) == 0
    assert capsys.readouterr().out.count("up to date") == 3  # data, run, registry
    assert _cli("list", "--org", ORG, "--root", root) == 0
    assert "gelu-1l" in capsys.readouterr().out
    assert _cli("download", "gelu-1l", "--seed", "1", "--step", "4", "--org", ORG, "--root", root) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert json.loads((folder / "manifest.json").read_text())["run"] == f"tiny-{RUN}"
