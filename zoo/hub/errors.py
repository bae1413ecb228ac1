"""Errors of publishing and loading: one class per failure a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checkpoints_manifest import FileEntry


class HubError(Exception):
    """Base of every zoo publish/load error; the message names the thing and the fix."""


class PublishError(HubError):
    """What was asked to be published is not a complete, valid run or zoo directory."""


class UnknownModelError(HubError, LookupError):
    """No published run matches the model, seed or step asked for; the message lists what exists."""


class IntegrityError(HubError):
    """A downloaded file's bytes differ from its manifest entry; the bad copy was not kept."""

    def __init__(self, message: str, *, repo_id: str, path: str) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.path = path


def mismatch_error(repo_id: str, path: str, entry: FileEntry, size: int, sha256: str, *,
                   cached: bool) -> IntegrityError:
    """The error for a copy of `path` that differs from its manifest `entry`: a downloaded copy (`cached`,
    already removed from the cache) or the file itself in a directory root."""
    found = f"{size} bytes" if size != entry.size else f"sha256 {sha256}"
    fix = ("The bad copy was removed from the cache; download again, and if it persists the published file "
           "is damaged: republish the run" if cached else
           "The file in the directory root is damaged (a root is the source, not a cache: nothing was removed); "
           "republish the run to repair it")
    return IntegrityError(f"{repo_id}: {path} does not match its manifest (expected {entry.size} bytes, sha256 "
                          f"{entry.sha256}; got {found}). {fix}", repo_id=repo_id, path=path)


class HubUnavailableError(HubError):
    """The server kept failing (5xx, timeouts, dropped connections) after every retry; nothing bad was kept."""


class NotCachedError(HubUnavailableError):
    """Offline mode (HF_HUB_OFFLINE) is on and a file is not in the local cache; the message names both."""


class UnsafeArtifactError(HubError):
    """A published file is not a well-formed zoo artifact (unsafe path, not safetensors, wrong tensors,
    absurd sizes); it was refused before anything was allocated or executed from it."""
