"""Retry what a flaky network or server breaks, with bounded exponential backoff, then fail clearly.

The one retry policy of every Hub request zoo makes (the requests themselves do not retry:
zoo/hub/stream_download.py). Transient: connection errors, timeouts, truncated bodies,
HTTP 429 and 5xx (also when the client wraps them, e.g. in LocalEntryNotFoundError).
Anything else (404, 412, bad input) is raised at once, and offline mode (HF_HUB_OFFLINE)
is an error at once, never retried. ZOO_HUB_ATTEMPTS (default 5) bounds the tries,
ZOO_HUB_BACKOFF_S (default 0.5) is the first wait; each wait doubles, capped at 30 s,
with jitter. So a server that refuses connections is an error after about 7 s.
"""

from __future__ import annotations

import http.client
import os
import random
import time
import urllib.error
from collections.abc import Callable
from typing import TypeVar

import httpx2
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from zoo.hub.errors import HubError, HubUnavailableError

T = TypeVar("T")
ATTEMPTS_ENV = "ZOO_HUB_ATTEMPTS"
BACKOFF_ENV = "ZOO_HUB_BACKOFF_S"
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
# A standard-library connection cut, reset, timed out or refused (urllib's HTTPError is a URLError:
# callers test it first, as a status).
CONNECTION_FAULTS = (http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError)


def retrying(what: str, call: Callable[[], T], *, also: tuple[type[BaseException], ...] = ()) -> T:
    """`call()`, tried again after a transient fault (or an error of type `also`) until it succeeds
    or the attempts run out; then HubUnavailableError naming `what` and the last fault."""
    attempts, delay = _setting(ATTEMPTS_ENV, 5, int), _setting(BACKOFF_ENV, 0.5, float)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except OfflineModeIsEnabled:
            raise HubUnavailableError(f"{what} needs the server, but offline mode is on (HF_HUB_OFFLINE=1); "
                                      f"unset HF_HUB_OFFLINE and try again") from None
        except Exception as error:
            fault = transient(error) or (error if isinstance(error, also) else None)
            if fault is None:
                raise
            if attempt == attempts:
                if isinstance(error, also):
                    raise  # our own error (e.g. IntegrityError) already names the file and the fix
                raise HubUnavailableError(
                    f"{what} failed {attempts} times; last fault: {_describe(fault)}. The server is down, "
                    f"overloaded or unreachable: try again later (or raise {ATTEMPTS_ENV})") from error
            time.sleep(min(delay * 2 ** (attempt - 1), 30.0) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


def transient(error: BaseException) -> BaseException | None:
    """The transient fault behind `error` (itself or a cause), or None (offline mode is not one)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OfflineModeIsEnabled):
            return None
        if isinstance(seen, httpx2.TransportError):
            return seen
        if isinstance(seen, HfHubHTTPError) and seen.response is not None and \
                seen.response.status_code in _TRANSIENT_STATUS:
            return seen
        if isinstance(seen, OSError) and "Consistency check failed" in str(seen):  # short body, from the client
            return seen
        if isinstance(seen, urllib.error.HTTPError):  # a streamed body's GET (zoo/hub/stream_download.py)
            return seen if seen.code in _TRANSIENT_STATUS else None
        if isinstance(seen, CONNECTION_FAULTS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(fault: BaseException) -> str:
    if isinstance(fault, HfHubHTTPError) and fault.response is not None:
        return f"HTTP {fault.response.status_code} from {fault.response.url}"
    if isinstance(fault, urllib.error.HTTPError):
        return f"HTTP {fault.code} from {fault.url}"
    return f"{type(fault).__name__}: {str(fault)[:300] or 'no message'}"


def _setting(name: str, default: T, kind: Callable[[str], T]) -> T:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < (1 if kind is int else 0):
        wanted = "a positive integer" if kind is int else "a number >= 0"
        raise HubError(f"{name}={raw!r} is not a valid setting; use {wanted}")
    return value
