"""The `hub_server` pytest fixture: a fresh server per test, with the client pointed at it.

Import it into tests/conftest.py (`from hub_server.fixture import hub_server`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from huggingface_hub import constants

from ._client import client_constants, datasets_constants
from ._server import HubServer, serve


@pytest.fixture
def hub_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A Hub-API server on 127.0.0.1 (free port), data in a tmp dir, stopped after the test.

    For the test's duration:
    - this process: `huggingface_hub.constants.ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE` and
      `HF_HUB_DISABLE_XET` are patched, so a plain `HfApi()`, `hf_hub_download()` or
      `snapshot_download()` hits the server (an `HfApi` built before the fixture ran keeps
      its old endpoint: build it inside the test, or pass `endpoint=server.endpoint`);
    - an already-imported `datasets` (whose streaming reads through the Hub API) has its
      copy of the endpoint patched too (a later import reads the environment);
    - child processes: HF_ENDPOINT, HF_TOKEN and HF_HUB_DISABLE_XET=1 are in os.environ,
      so subprocesses started with the default environment use the server too;
    - the HF cache (HF_HOME, HF_HUB_CACHE) is a fresh empty tmp dir, in both.
    """
    hf_home = tmp_path_factory.mktemp("hf_home")
    with serve(tmp_path_factory.mktemp("hub_server")) as server:
        cache_env = {"HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub")}
        for name, value in {**server.env, **cache_env}.items():
            monkeypatch.setenv(name, value)
        for name, value in {**client_constants(server), **cache_env}.items():
            monkeypatch.setattr(constants, name, value)
        for name, value in datasets_constants(server).items():
            monkeypatch.setattr(sys.modules["datasets.config"], name, value)
        yield server
