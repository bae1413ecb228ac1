"""Errors as the Hub sends them: a status, `X-Error-Code`, `X-Error-Message` and a JSON body.

`huggingface_hub` (utils/_http.py: hf_raise_for_status) turns `X-Error-Code` into its
exception classes, so handlers raise `HubError` and the HTTP layer writes exactly those
headers; nothing else decides which client exception a test sees.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """An HTTP error response; `code` becomes X-Error-Code, `extra` joins the JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


def repo_not_found(repo_id: str, repo_type: str) -> HubError:
    """404 that the client raises as RepositoryNotFoundError."""
    return HubError(404, f"Repository not found: {repo_type} '{repo_id}'", code="RepoNotFound")


def revision_not_found(revision: str) -> HubError:
    """404 that the client raises as RevisionNotFoundError."""
    return HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def entry_not_found(path: str, commit: str) -> HubError:
    """404 that the client raises as RemoteEntryNotFoundError; X-Repo-Commit lets it cache the miss."""
    return HubError(
        404, f"Entry not found: '{path}'", code="EntryNotFound", headers={"X-Repo-Commit": commit}
    )


def bad_request(message: str) -> HubError:
    """400: the request itself is wrong (client raises BadRequestError)."""
    return HubError(400, message)


def unauthorized() -> HubError:
    """401 for a write call that carries no `Authorization: Bearer <token>` header."""
    return HubError(
        401,
        "Unauthorized: this call writes to the Hub and needs an 'Authorization: Bearer <token>' "
        "header; set HF_TOKEN or pass token= (the test server accepts any token).",
    )
