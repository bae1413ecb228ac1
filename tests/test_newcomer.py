"""The README's test command on a newcomer's machine: `./scripts/test.sh` as a user who is not root runs
every test but the Slurm ones and says in one line why those were skipped; as root (on Debian, here) it
starts Slurm and runs them, as before; under CI=true a Slurm that cannot start stops it.

The script runs for real, as a real unprivileged user, in a copy of the repository. Only its set-up
step (`scripts/_venv.sh`: make .venv, pip install) is replaced: the copy's .venv is a venv over the
running venv's packages, on a Python interpreter that user may run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm import needs_slurm, slurm_cluster  # noqa: F401 (the fixture needs_slurm uses)

REPO = Path(__file__).resolve().parent.parent
USER = "zoo-newcomer"
# One test of each kind: a plain test, and one that needs the Slurm cluster.
SELECTION = ["tests/test_slurm_cluster.py", "-k", "failed_cluster_start or idempotent", "-q", "-ra",
             "-p", "no:cacheprovider"]


@pytest.fixture
def checkout(newcomer: str) -> Iterator[Path]:
    """A copy of the repository's files as a newcomer would clone it, readable by everyone."""
    folder = Path(tempfile.mkdtemp(prefix="zoo-checkout-"))
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        if (REPO / rel).is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, folder / rel)
    (folder / "scripts" / "_venv.sh").write_text(": # set-up skipped by the test: .venv holds the running venv's\n")
    _venv_over_this_one(folder / ".venv", newcomer)
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _venv_over_this_one(venv: Path, user: str) -> None:
    """A venv that sees the running venv's packages, on an interpreter `user` may execute (the running
    one may live in root's home)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [f"/usr/bin/{version}", f"/usr/local/bin/{version}", os.path.realpath(sys.executable)]
    python = next(c for c in candidates if subprocess.run(["runuser", "-u", user, "--", "test", "-x", c]).returncode
                  == 0)
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = sysconfig.get_paths()["purelib"]
    (venv / "lib" / version / "site-packages" / "running-venv.pth").write_text(
        f"import site; site.addsitedir({packages!r})\n")


@pytest.fixture
def newcomer() -> str:
    """A real user who is not root (made once; needs root, as CI has)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true runs as root, which this test needs to create a user")
        pytest.skip("creating a user needs root; run as a user who is not root, ./scripts/test.sh is this test")
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", USER], check=True)
    return USER


def _test_sh(checkout: Path, *, user: str | None, ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    command = ["bash", str(checkout / "scripts" / "test.sh"), *SELECTION]
    if user is not None:
        env["HOME"] = f"/home/{user}"
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(command, cwd="/", env=env, capture_output=True, text=True, timeout=600)


def test_test_sh_as_a_user_who_is_not_root_runs_the_other_tests_and_says_why_slurm_is_skipped(
        checkout: Path, newcomer: str) -> None:
    user = newcomer
    done = _test_sh(checkout, user=user, ci="false")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "slurm_up: ERROR: run as root" in out
    assert "test.sh: Slurm cannot start here (above): the Slurm tests will be skipped" in out
    assert "1 passed, 1 skipped" in out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1 and "local Slurm cluster unavailable" in skipped[0] and "run as root" in skipped[0]

    done = _test_sh(checkout, user=user, ci="true")  # CI must run the Slurm tests: it stops, saying so
    assert done.returncode == 1 and "CI=true needs the Slurm tests" in done.stderr
    assert "passed" not in done.stdout


@needs_slurm
def test_test_sh_as_root_on_debian_starts_slurm_and_runs_its_tests(checkout: Path) -> None:
    done = _test_sh(checkout, user=None, ci="true")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "2 passed" in out and "skipped" not in out and "test.sh:" not in out


def test_zoo_accepts_a_newer_torch_and_the_set_up_still_installs_the_tested_one_first() -> None:
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch")
    assert torch.specifier.contains("2.13.0") and not torch.specifier.contains("2.12.1")  # the tested floor
    assert all(torch.specifier.contains(v) for v in ("2.14.1", "2.15.0", "3.0.0"))  # a newer torch installs
    setup = (REPO / "scripts" / "_venv.sh").read_text()
    assert setup.index("torch==2.13.0\n") < setup.index("-e '.[test,tl]'")
