"""Start and stop a server on 127.0.0.1, and the test-side handles on its storage."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ._context import Context
from ._http import Server
from ._routes import dispatcher
from ._store import Repo, Store


@dataclass
class HubServer:
    """A running Hub-API server: where it listens, a token it accepts, where it keeps data."""

    endpoint: str
    token: str
    root: Path
    _store: Store = field(repr=False)
    _http: Server | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment that points a fresh process's huggingface_hub at this server over plain LFS.

        HF_HUB_DISABLE_XET=1 because with hf_xet installed the client uploads through Xet
        whatever the server says, and this server speaks LFS only.
        """
        return {"HF_ENDPOINT": self.endpoint, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1"}

    def corrupt(self, repo_id: str, path: str, *, repo_type: str = "model", revision: str = "main") -> None:
        """Flip one byte of the stored blob behind `path`, as silent storage rot would.

        Metadata (ETag, sizes) keeps describing the good bytes. Blobs are shared by
        content, so every path and revision holding the same bytes is corrupted too.
        """
        repo = Repo(repo_type, repo_id)
        entry = self._store.resolve(repo, revision).files.get(path)
        if entry is None or entry.size == 0:
            raise ValueError(f"{repo_type} {repo_id}@{revision} has no non-empty file '{path}' to corrupt")
        with open(self._store.blob_path(repo, entry.sha256), "r+b") as f:
            f.seek(entry.size // 2)
            byte = f.read(1)[0]
            f.seek(entry.size // 2)
            f.write(bytes([byte ^ 0xFF]))

    def inject(self, fault: str, *, times: int = 1, path_glob: str = "*", method: str | None = None,
               delay_s: float = 3.0) -> None:
        """Make the next `times` requests matching `path_glob` (a glob over the URL path) fail with `fault`.

        Faults: "500", "502", "503", "reset", "slow" (`delay_s` before answering), "truncate".
        See _faults.py. Rules are tried in the order added; `injected` counts what fired.
        """
        self._http.faults.add(fault, times, path_glob, method, delay_s)

    def clear_faults(self) -> None:
        """Drop every pending fault rule."""
        self._http.faults.clear()

    @property
    def injected(self) -> dict[str, int]:
        """Faults injected so far, per kind."""
        return dict(self._http.faults.injected)

    def commits(self, repo_id: str, *, repo_type: str = "model") -> list[str]:
        """Commit shas on main, newest first (the repo's "initial commit" is the last one)."""
        repo = Repo(repo_type, repo_id)
        return [commit.id for commit in self._store.history(repo, self._store.resolve(repo, "main").id)]


@contextmanager
def serve(root: Path) -> Iterator[HubServer]:
    """Serve the repos under `root` (created if missing, reused if present) until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root)
    log_lock = threading.Lock()

    def log(line: str) -> None:
        with log_lock, open(root / "access.log", "a") as f:
            f.write(f"{datetime.now().isoformat(timespec='milliseconds')} {line}\n")

    server = Server(("127.0.0.1", 0), log)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    server.dispatch = dispatcher(Context(store, endpoint, secrets.token_bytes(32)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield HubServer(endpoint, f"hf_test_{secrets.token_hex(8)}", root, store, server)
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
