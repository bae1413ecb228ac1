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


def mismatch_error(repo_id: str, path: str, entry: FileEntry, size: int, sha256: str) -> IntegrityError:
    """The error for a copy of `path` that differs from its manifest `entry` (the copy is already gone)."""
    found = f"{size} bytes" if size != entry.size else f"sha256 {sha256}"
    return IntegrityError(
        f"{repo_id}: {path} does not match its manifest (expected {entry.size} bytes, sha256 {entry.sha256}; "
        f"got {found}). The bad copy was removed from the cache; download again, and if it persists the "
        f"published file is damaged: republish the run", repo_id=repo_id, path=path)


class HubUnavailableError(HubError):
    """The server kept failing (5xx, timeouts, dropped connections) after every retry; nothing bad was kept."""


class UnsafeArtifactError(HubError):
    """A published file is not a well-formed zoo artifact (unsafe path, not safetensors, wrong tensors,
    absurd sizes); it was refused before anything was allocated or executed from it."""
