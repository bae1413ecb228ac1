"""An unreachable Hub says so at once: an offline cache miss fails immediately naming offline mode and the
file, a server that is down is a clear error within 30 s under the default (single) retry policy, and
`zoo list` offline lists the runs it has cached and names the others."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

import zoo
from hub_server import HubServer
from zoo.cli import hub as hub_commands
from zoo.cli import main
from zoo.hub import HubUnavailableError, NotCachedError
from zoo.hub.retry import ATTEMPTS_ENV, BACKOFF_ENV

ORG = "zoo-org"
RUNS = ("gelu-1l-seed1", "solu-1l-seed0")


@pytest.fixture(autouse=True)
def default_retry_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ATTEMPTS_ENV, raising=False)
    monkeypatch.delenv(BACKOFF_ENV, raising=False)


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="zoo")
    hub_commands.add_parsers(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _publish(trained_tiny: Path) -> None:
    for run in RUNS:
        zoo.publish(trained_tiny / "tiny" / "runs" / run, org=ORG)


def test_an_offline_cache_miss_fails_at_once_naming_offline_mode_and_the_file(
        trained_tiny: Path, hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _publish(trained_tiny)
    zoo.download("gelu-1l", seed=1, steps=[4], org=ORG)  # the run's manifest is cached, step 8 is not
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(NotCachedError, match=r"tiny-gelu-1l-seed1/checkpoints/step00000008/\S+ at \w+ is not in "
                                             r"the local cache .* offline mode \(HF_HUB_OFFLINE=1\)"):
        zoo.download("gelu-1l", seed=1, steps=[8], org=ORG)
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    assert main(["download", "solu-1l", "--seed", "0", "--zoo", "tiny", "--org", ORG]) == 2
    assert time.monotonic() - start < 1.0
    error = capsys.readouterr().err  # never fetched: not even its manifest is cached
    assert "zoo: error: zoo-org/tiny-solu-1l-seed0/manifest.json: revision 'main' is not in the local cache" in error
    assert "offline mode (HF_HUB_OFFLINE=1)" in error


def test_a_server_that_is_down_is_a_clear_error_within_30_seconds(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match=r"download of zoo-org/zoo-registry/registry.json failed 5 times; "
                                                  r"last fault: ConnectError.*The server is down"):
        zoo.load("gelu-1l", seed=1, org=ORG)
    assert time.monotonic() - start < 30.0


def test_zoo_list_offline_lists_the_runs_it_has_cached_and_names_the_others(
        trained_tiny: Path, hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _publish(trained_tiny)
    zoo.load("gelu-1l", seed=1, step=4, org=ORG)  # registry, this run's manifest and config: cached
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert _cli("list", "--org", ORG) == 1
    shown = capsys.readouterr()
    assert "gelu-1l" in shown.out and "solu-1l" not in shown.out
    assert f"zoo: could not read {ORG}/tiny-solu-1l-seed0: " in shown.err and "HF_HUB_OFFLINE" in shown.err
