"""Fault injection: make the next matching requests fail the ways real networks and servers do.

    server.inject("503", times=2, path_glob="*/resolve/*")   # the next two downloads get a 503

Kinds: "500"/"502"/"503" (that status, before the handler runs), "reset" (the connection is
dropped with a TCP RST, no response), "slow" (the handler runs after `delay_s`, longer than
the client's timeout), "truncate" (the headers promise the whole body, half of it is sent,
then the connection closes). Faults injected are counted per kind, for reports.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import Counter
from dataclasses import dataclass

KINDS = ("500", "502", "503", "reset", "slow", "truncate")


@dataclass
class _Rule:
    kind: str
    left: int
    path_glob: str
    method: str | None
    delay_s: float


class Faults:
    """Pending fault rules (first match wins) and how many faults of each kind were injected."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def add(self, kind: str, times: int, path_glob: str, method: str | None, delay_s: float) -> None:
        """Fail the next `times` requests whose path matches `path_glob` (and `method`, if given)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
        with self._lock:
            self._rules.append(_Rule(kind, times, path_glob, method, delay_s))

    def clear(self) -> None:
        """Drop every pending rule (the counts stay)."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> _Rule | None:
        """The fault to inject into this request, if any (using up one of its `times`)."""
        with self._lock:
            for rule in self._rules:
                if rule.left > 0 and rule.method in (None, method) and fnmatch.fnmatchcase(path, rule.path_glob):
                    rule.left -= 1
                    self.injected[rule.kind] += 1
                    return rule
        return None
