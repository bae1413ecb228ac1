"""Publishing runs to a Hub-API server (the real client against tests/hub_server) or a directory root."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from safetensors.torch import load_file

import zoo
from checkpoints_manifest import read_manifest, sha256_file
from hub_server import HubServer
from training import load_spec, train_zoo
from zoo.hub import PublishError

ORG = "zoo-org"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _runs(out: Path) -> list[Path]:
    return sorted((out / "tiny" / "runs").iterdir())


def assert_loads_bitwise(run_dir: Path, steps: list[int] | None = None, **where) -> None:
    """Every checkpoint (or `steps`) of a local run loads from the backend with bitwise equal weights."""
    config = json.loads((run_dir / "config.json").read_text())["run"]
    for step in steps or read_manifest(run_dir).checkpoints:
        loaded = zoo.load(config["model"], init_seed=config["init_seed"], data_seed=config["data_seed"],
                          step=step, org=ORG, **where)
        local = load_file(run_dir / "checkpoints" / f"step{step:08d}" / "model.safetensors")
        state = loaded.model.state_dict()
        assert loaded.step == step and state.keys() == local.keys()
        assert all(torch.equal(state[k], local[k]) for k in local), (run_dir.name, step)


def test_every_published_checkpoint_loads_bitwise_equal_from_a_fresh_cache(trained_tiny: Path,
                                                                           hub_server: HubServer) -> None:
    results = zoo.publish(trained_tiny / "tiny", org=ORG)
    assert {r.repo_id for r in results} == {f"{ORG}/tiny-data", f"{ORG}/zoo-registry",
                                            *(f"{ORG}/tiny-{d.name}" for d in _runs(trained_tiny))}
    for run_dir in _runs(trained_tiny):
        assert_loads_bitwise(run_dir)  # the fixture's HF cache started empty
    listed = zoo.list_models(org=ORG)
    assert [(r.model, r.init_seed, r.steps) for r in listed] == sorted(
        (d.name.rsplit("-seed", 1)[0], int(d.name.rsplit("seed", 1)[1]), read_manifest(d).checkpoints)
        for d in _runs(trained_tiny))


def test_published_manifest_records_the_commit_each_file_is_at_and_the_final_commit_is_tagged(
        trained_tiny: Path, hub_server: HubServer) -> None:
    run_dir = _runs(trained_tiny)[0]
    zoo.publish(run_dir, org=ORG)
    repo = f"{ORG}/tiny-{run_dir.name}"
    published = json.loads(Path(hf_hub_download(repo, "manifest.json")).read_text())
    local = read_manifest(run_dir)
    assert {p: e["sha256"] for p, e in published["files"].items()} == {p: e.sha256 for p, e in local.files.items()}
    for path in ("config.json", "checkpoints/step00000000/model.safetensors"):
        at_commit = hf_hub_download(repo, path, revision=published["files"][path]["commit"])
        assert sha256_file(at_commit) == local.files[path].sha256
    tags = {t.name: t.target_commit for t in HfApi().list_repo_refs(repo).tags}
    assert tags == {f"step{local.checkpoints[-1]}": hub_server.commits(repo)[0]}
    card = ModelCard.load(repo)
    assert card.data.library_name == "zoo" and card.data.datasets == [f"{ORG}/tiny-data"]
    assert local.dataset_fingerprint in card.text and "zoo.load(" in card.text
    assert Path(hf_hub_download(repo, "loss.png")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(Path(hf_hub_download(f"{ORG}/tiny-data", "manifest.json", repo_type="dataset")).read_text())
    assert "data/tokenizer.json" in data["files"] and any(p.startswith("index/data") for p in data["files"])


def test_publishing_twice_makes_no_second_commit(trained_tiny: Path, hub_server: HubServer) -> None:
    first = zoo.publish(trained_tiny / "tiny", org=ORG)
    repos = [(r.repo_id, r.repo_type) for r in first]
    before = {repo: hub_server.commits(repo, repo_type=kind) for repo, kind in repos}
    assert all(len(commits) == 3 for repo, commits in before.items() if "registry" not in repo)  # initial + 2
    again = zoo.publish(trained_tiny / "tiny", org=ORG)
    assert all(r.uploaded == [] and r.commits == [] for r in again)
    assert {repo: hub_server.commits(repo, repo_type=kind) for repo, kind in repos} == before


def test_directory_backend_has_the_same_layout_and_loads_bitwise_equal(trained_tiny: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    zoo.publish(trained_tiny / "tiny", org=ORG, root=f"file://{root}")
    run_dir = _runs(trained_tiny)[0]
    assert (root / ORG / f"tiny-{run_dir.name}" / "checkpoints" / "step00000000" / "model.safetensors").is_file()
    assert (root / "datasets" / ORG / "tiny-data" / "data" / "tokenizer.json").is_file()
    for run in _runs(trained_tiny):
        assert_loads_bitwise(run, root=root)
    assert len(zoo.list_models(org=ORG, root=root)) == len(_runs(trained_tiny))
    assert all(r.uploaded == [] for r in zoo.publish(trained_tiny / "tiny", org=ORG, root=root))
    data = zoo.download_data("tiny", org=ORG, root=root)
    assert sha256_file(data / "data" / "tokenizer.json") == sha256_file(trained_tiny / "tiny/data/tokenizer.json")


def test_publish_refuses_a_run_that_does_not_match_its_manifest_and_writes_nothing(trained_tiny: Path,
                                                                                   tmp_path: Path) -> None:
    zoo_dir = tmp_path / "tiny"
    shutil.copytree(trained_tiny / "tiny" / "data", zoo_dir / "data")
    shutil.copytree(trained_tiny / "tiny" / "index", zoo_dir / "index")
    run_dir = zoo_dir / "runs" / "gelu-1l-seed0"
    shutil.copytree(trained_tiny / "tiny" / "runs" / "gelu-1l-seed0", run_dir)
    weights = run_dir / "checkpoints" / "step00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(PublishError, match="step00000004/model.safetensors"):
        zoo.publish(zoo_dir, org=ORG, root=tmp_path / "root")
    assert not (tmp_path / "root").exists()


_PUBLISH = "import sys, zoo; zoo.publish(sys.argv[1], org=sys.argv[2])"


def test_a_publish_killed_mid_upload_completes_when_run_again(trained_tiny: Path, hub_server: HubServer) -> None:
    log = hub_server.root / "access.log"
    child = subprocess.Popen([sys.executable, "-c", _PUBLISH, str(trained_tiny / "tiny"), ORG], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # Kill at the first LFS upload into a run repo: its first commit cannot have been made yet.
    while child.poll() is None and time.monotonic() < deadline:
        if log.exists() and "PUT /zoo-org/tiny-" in log.read_text():
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert child.wait() == -signal.SIGKILL, "the publish finished before it could be killed"
    api = HfApi()
    incomplete = [d for d in _runs(trained_tiny)
                  if not api.repo_exists(f"{ORG}/tiny-{d.name}")
                  or not api.file_exists(f"{ORG}/tiny-{d.name}", "manifest.json")]
    assert incomplete
    zoo.publish(trained_tiny / "tiny", org=ORG)
    for run_dir in _runs(trained_tiny):
        assert len(hub_server.commits(f"{ORG}/tiny-{run_dir.name}")) <= 3
    for run_dir in incomplete:
        assert_loads_bitwise(run_dir, steps=[0, read_manifest(run_dir).checkpoints[-1]])


DENSE = """
name = "dense"
seeds = [0]
[data]
corpus = "stories"
corpus_seed = 0
n_docs = 50
vocab_size = 280
n_ctx = 8
[sizes]
1l = { n_layers = 1, d_model = 8, n_heads = 1, d_head = 8, d_mlp = 16 }
[families]
attn-only = ["1l"]
[training]
steps = 249
batch_size = 2
micro_batch_size = 2
[optimizer]
lr = 1e-2
[checkpoints]
log_until = 1
every = 1
"""


def test_a_run_with_250_checkpoints_publishes_in_at_most_5_commits(hub_server: HubServer, tmp_path: Path) -> None:
    spec_path = tmp_path / "dense.toml"
    spec_path.write_text(DENSE)
    out = tmp_path / "out"
    train_zoo(load_spec(spec_path), out, progress=False)
    run_dir = out / "dense" / "runs" / "attn-only-1l-seed0"
    assert len(read_manifest(run_dir).checkpoints) == 250
    zoo.publish(run_dir, org=ORG)
    assert len(hub_server.commits(f"{ORG}/dense-attn-only-1l-seed0")) <= 5
    assert len(hub_server.commits(f"{ORG}/dense-data", repo_type="dataset")) <= 5
    assert_loads_bitwise(run_dir, steps=[137, 249])


def test_a_commit_raced_on_the_hub_is_refused_clearly_and_publishing_again_completes(
        trained_tiny: Path, hub_server: HubServer) -> None:
    """The Hub refuses (412) a commit whose parent is no longer the head. When another writer commits
    between our head check and our commit, publish names the repo and the fix, lists nothing, and
    the next publish completes."""
    run_dir = _runs(trained_tiny)[0]
    repo_id = f"{ORG}/tiny-{run_dir.name}"
    api = HfApi()
    api.create_repo(repo_id)
    # The run repo's first commit is held on the server for 2 s; the racing commit lands meanwhile.
    hub_server.inject("slow", path_glob=f"/api/models/{repo_id}/commit/*", method="POST", delay_s=2.0)
    outcome: list[BaseException | None] = []

    def publish() -> None:
        try:
            zoo.publish(run_dir, org=ORG)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    publisher = threading.Thread(target=publish)
    publisher.start()
    deadline = time.monotonic() + 60
    while hub_server.injected.get("slow", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    api.upload_file(path_or_fileobj=b"another writer\n", path_in_repo="NOTES.md", repo_id=repo_id)
    publisher.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], PublishError), outcome
    assert repo_id in str(outcome[0]) and "publish again" in str(outcome[0])
    assert not api.file_exists(repo_id, "manifest.json")

    zoo.publish(run_dir, org=ORG)
    assert api.file_exists(repo_id, "NOTES.md")
    assert_loads_bitwise(run_dir, steps=[0, read_manifest(run_dir).checkpoints[-1]])
