"""Errors of publishing and loading: one class per failure a user can act on."""


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


class HubUnavailableError(HubError):
    """The server kept failing (5xx, timeouts, dropped connections) after every retry; nothing bad was kept."""


class UnsafeArtifactError(HubError):
    """A published file is not a well-formed zoo artifact (unsafe path, not safetensors, wrong tensors,
    absurd sizes); it was refused before anything was allocated or executed from it."""
