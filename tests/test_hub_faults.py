"""Hub faults: the test server fails the ways networks and servers do (5xx, slow answers, connection
resets, truncated bodies). Publish and download retry with backoff, then fail with HubUnavailableError
naming the repo and file; nothing half-published is listed in a manifest, nothing half-downloaded is kept.

Run with -s for the tally of faults injected and survived.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, constants
from safetensors.torch import load_file

import zoo
from checkpoints_manifest import read_manifest
from hub_server import HubServer
from zoo.hub import HubUnavailableError

ORG = "zoo-org"
RUN = "gelu-1l-seed1"
REPO = f"{ORG}/tiny-{RUN}"
WEIGHTS4 = "checkpoints/step00000004/model.safetensors"
INJECTED: Counter[str] = Counter()
SURVIVED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def tally() -> Iterator[None]:
    yield
    print(f"\nhub faults injected: {dict(sorted(INJECTED.items()))}; survived (the operation then succeeded "
          f"with bitwise-equal results): {dict(sorted(SURVIVED.items()))}")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HUB_ATTEMPTS", "4")
    monkeypatch.setenv("ZOO_HUB_BACKOFF_S", "0.01")
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # so a "slow" fault is a timeout
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)


@pytest.fixture
def run_dir(trained_tiny: Path) -> Path:
    return trained_tiny / "tiny" / "runs" / RUN


def _count(server: HubServer, survived: bool) -> None:
    INJECTED.update(server.injected)
    if survived:
        SURVIVED.update(server.injected)


def _loads_bitwise(run_dir: Path, step: int) -> bool:
    state = zoo.load("gelu-1l", seed=1, step=step, org=ORG).model.state_dict()
    local = load_file(run_dir / "checkpoints" / f"step{step:08d}" / "model.safetensors")
    return state.keys() == local.keys() and all(torch.equal(state[k], local[k]) for k in local)


def test_publish_survives_5xx_resets_and_lost_answers(run_dir: Path, hub_server: HubServer) -> None:
    hub_server.inject("503", path_glob="/api/models/*/preupload/*")
    hub_server.inject("500", path_glob="/*.git/info/lfs/objects/batch")
    hub_server.inject("reset", path_glob="/*.git/info/lfs/objects/*", method="PUT")
    hub_server.inject("reset", path_glob="/api/models/*/commit/*")  # the commit never reaches the server
    hub_server.inject("truncate", path_glob="/api/models/*/commit/*")  # the commit lands, its answer is cut
    hub_server.inject("502", path_glob="/api/models/*", method="GET")
    zoo.publish(run_dir, org=ORG)
    _count(hub_server, survived=True)
    assert sum(hub_server.injected.values()) == 6
    published = json.loads((_file_at_head(hub_server, REPO, "manifest.json")))
    assert {p: e["sha256"] for p, e in published["files"].items()} == {
        p: e.sha256 for p, e in read_manifest(run_dir).files.items()}
    assert len(hub_server.commits(REPO)) == 3  # initial, files, manifest: a retried commit made no second one
    assert _loads_bitwise(run_dir, 4)


def _file_at_head(server: HubServer, repo: str, path: str) -> bytes:
    api = HfApi()
    return Path(api.hf_hub_download(repo, path, revision=server.commits(repo)[0])).read_bytes()


def test_downloads_survive_5xx_timeouts_resets_and_truncated_bodies(run_dir: Path, hub_server: HubServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # One retry policy: each fault that brings no byte of the body costs one of its attempts (a truncated
    # body is resumed where it stopped); four such faults on one file need a fifth attempt.
    monkeypatch.setenv("ZOO_HUB_ATTEMPTS", "5")
    zoo.publish(run_dir, org=ORG)
    for kind in ("503", "500", "slow", "reset", "truncate"):
        hub_server.inject(kind, path_glob=f"/{REPO}/resolve/*/{WEIGHTS4}", method="GET", delay_s=1.5)
    hub_server.inject("503", path_glob=f"/{REPO}/resolve/*/manifest.json", method="HEAD")
    hub_server.inject("reset", path_glob=f"/{REPO}/resolve/*/config.json")
    assert _loads_bitwise(run_dir, 4)
    assert sum(hub_server.injected.values()) == 7
    _count(hub_server, survived=True)


def test_a_download_that_keeps_failing_is_a_clear_error_and_nothing_is_kept(run_dir: Path,
                                                                          hub_server: HubServer) -> None:
    zoo.publish(run_dir, org=ORG)
    hub_server.inject("truncate", times=100, path_glob=f"/{REPO}/resolve/*/{WEIGHTS4}", method="GET")
    with pytest.raises(HubUnavailableError, match=rf"download of {REPO}/{WEIGHTS4} failed 4 times"):
        zoo.load("gelu-1l", seed=1, step=4, org=ORG)
    cached = Path(constants.HF_HUB_CACHE)
    assert not [p for p in cached.rglob("model.safetensors") if "step00000004" in str(p)]  # no half file as good
    _count(hub_server, survived=False)
    hub_server.clear_faults()
    assert _loads_bitwise(run_dir, 4)


def test_a_publish_that_keeps_failing_lists_nothing_half_published_and_a_rerun_completes(
        run_dir: Path, hub_server: HubServer) -> None:
    hub_server.inject("503", times=100, path_glob="/api/models/*/commit/*")
    with pytest.raises(HubUnavailableError, match=rf"commit of \d+ file\(s\) to model repo {REPO} failed 4 times"):
        zoo.publish(run_dir, org=ORG)
    assert HfApi().list_repo_files(REPO) == [".gitattributes"]  # created, but no file and no manifest
    _count(hub_server, survived=False)
    hub_server.clear_faults()
    zoo.publish(run_dir, org=ORG)
    assert _loads_bitwise(run_dir, 4)
