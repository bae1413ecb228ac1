"""A localhost Hub-API server for tests: the real huggingface_hub client talks to it.

`serve(root)` runs one; `pointed_at(server)` makes this process use it; the pytest
fixture `hub_server` (in `fixture.py`) does both per test. See README.md for what is
served and how faithfully.
"""

from ._client import client_constants, pointed_at
from ._server import HubServer, serve

__all__ = ["HubServer", "client_constants", "pointed_at", "serve"]
