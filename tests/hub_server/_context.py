"""What every endpoint handler needs: the store, the server's own URL, the signing secret."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from ._store import Repo, Store


@dataclass(frozen=True)
class Context:
    """Shared by all handlers of one server."""

    store: Store
    endpoint: str
    secret: bytes

    def repo_url(self, repo: Repo) -> str:
        """Web URL of a repo, as create_repo returns it."""
        return f"{self.endpoint}/{repo.url_prefix}{repo.id}"

    def commit_url(self, repo: Repo, sha: str) -> str:
        """Web URL of a commit, as create_commit returns it."""
        return f"{self.repo_url(repo)}/commit/{sha}"


def api_repo(types: str, namespace: str, name: str) -> Repo:
    """Repo from /api/{models|datasets}/{namespace}/{name}/... URL parts."""
    return Repo(types.removesuffix("s"), f"{unquote(namespace)}/{unquote(name)}")


def web_repo(datasets: str | None, namespace: str, name: str) -> Repo:
    """Repo from [/datasets]/{namespace}/{name}/... URL parts (resolve and git LFS URLs)."""
    return Repo("dataset" if datasets else "model", f"{unquote(namespace)}/{unquote(name)}")
