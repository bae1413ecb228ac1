"""Run a zoo command in a fresh Python process and measure it: seconds after the imports, peak RSS.

Linux keeps a process's peak RSS (ru_maxrss) across execve, so a child forked straight from the
test runner would start at the runner's size: a small launcher process forks the measured one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
_SCRIPT = """
import json, resource, sys, time, traceback
import zoo
from zoo.cli import main
start = time.monotonic()
outcome = {"error": None}
try:
    exec(sys.argv[2])
except Exception as error:
    outcome["error"] = f"{type(error).__name__}: {error}"
    outcome["traceback"] = traceback.format_exc()
outcome["seconds"] = time.monotonic() - start
outcome["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with open(sys.argv[1], "w") as f:
    json.dump(outcome, f)
"""


@dataclass(frozen=True)
class Measured:
    """What a measured command did: the exception it raised (type: message), if any, and its stderr."""

    error: str | None
    traceback: str | None
    seconds: float  # from after the imports to the end of the statement
    rss_mb: float  # the process's peak resident memory (imports included)
    stdout: str
    stderr: str


def measured(statement: str, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """Run `statement` (Python, with `zoo` and `main` = zoo.cli.main imported) in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "outcome.json"
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _SCRIPT, str(result), statement],
                              capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)
        assert result.is_file(), f"the measured process died:\n{done.stdout}\n{done.stderr}"
        outcome = json.loads(result.read_text())
    return Measured(outcome["error"], outcome.get("traceback"), outcome["seconds"], outcome["rss_mb"],
                    done.stdout, done.stderr)
