"""Shared fixtures: the tiny zoo, trained once per test session."""

from pathlib import Path

import pytest

from hub_server.fixture import hub_server  # noqa: F401
from training import load_spec, train_zoo


@pytest.fixture(scope="session")
def tiny_spec():
    return load_spec("tiny")


@pytest.fixture(scope="session")
def trained_tiny(tiny_spec, tmp_path_factory) -> Path:
    """Output root holding every run of the tiny zoo, trained uninterrupted: the reference."""
    out = tmp_path_factory.mktemp("tiny-reference")
    train_zoo(tiny_spec, out, progress=False)
    return out
