"""Errors a user can act on: a manifest that is malformed or unsafe, or not there."""


class ManifestError(ValueError):
    """A manifest is malformed or unsafe; the message names its source and the key."""


class ManifestNotFoundError(FileNotFoundError):
    """A run directory has no manifest (yet): it is not a valid run."""
