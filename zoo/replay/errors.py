"""The error of a replay that cannot be carried out as asked."""

from zoo.hub.errors import HubError


class ReplayError(HubError):
    """A replay request or intervention is invalid, or the published run cannot be replayed; the message says why."""
