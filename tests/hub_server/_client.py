"""Point an already-imported huggingface_hub at a server.

huggingface_hub reads HF_ENDPOINT and HF_HUB_DISABLE_XET once, at import, into
`huggingface_hub.constants`; `HfApi()` then takes `constants.ENDPOINT` when built and
`hf_hub_download` formats `constants.HUGGINGFACE_CO_URL_TEMPLATE` on every call. So a
running process needs those attributes set, and child processes need the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from huggingface_hub import constants

from ._server import HubServer


def client_constants(server: HubServer) -> dict[str, object]:
    """`huggingface_hub.constants` attributes that must change for this process to use `server`."""
    return {
        "ENDPOINT": server.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_DISABLE_XET": True,
    }


def datasets_constants(server: HubServer) -> dict[str, object]:
    """`datasets.config` attributes that must change for an already-imported `datasets` to use `server`.

    `datasets` copies HF_ENDPOINT at import into `datasets.config` (its Hub URLs and the
    endpoint of the HfFileSystem its streaming reads through); imported later, it takes the
    environment, which points at the server already.
    """
    if "datasets.config" not in sys.modules:
        return {}
    return {"HF_ENDPOINT": server.endpoint,
            "HUB_DATASETS_URL": server.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"}


@contextmanager
def pointed_at(server: HubServer) -> Iterator[None]:
    """Within the block, this process and the processes it starts use `server` (for code outside pytest)."""
    with mock.patch.dict(os.environ, server.env), mock.patch.multiple(constants, **client_constants(server)):
        if datasets := datasets_constants(server):
            with mock.patch.multiple(sys.modules["datasets.config"], **datasets):
                yield
        else:
            yield
