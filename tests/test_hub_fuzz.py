"""Fuzzed bad input to the loader: manifest JSON and model/seed/step selectors always give a HubError
(our class, a message), never a traceback from deep inside a library; plus the concurrency promises:
two publishers on one run refuse, readers of a directory root never see a torn manifest.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import constants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from checkpoints_manifest import read_manifest
from training.run_dir import LOCK_NAME
from zoo.hub import HubError, PublishError

ORG = "zoo-org"
RUN = "gelu-1l-seed1"
EXAMPLES = {"manifest": 0, "selectors": 0}
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def root(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-root")
    zoo.publish(trained_tiny / "tiny" / "runs" / RUN, org=ORG, root=root)
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture(scope="module", autouse=True)
def tally():
    yield
    print(f"\nfuzz examples run: {EXAMPLES}")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=12)


@st.composite
def _mutated_manifest(draw: st.DrawFn, original: dict) -> str:
    """The published manifest with one key path replaced, deleted or added, or raw garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    doc = json.loads(json.dumps(original))
    node = doc
    while isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        if not isinstance(node[key], (dict, list)) or not node[key]:
            break
        node = node[key] if isinstance(node[key], dict) else node[key][0] if isinstance(node[key][0], dict) else node
        if not isinstance(node, dict):
            break
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = draw(_json)
        elif action == "delete":
            del node[key]
        else:
            node[draw(st.text(max_size=10))] = draw(_json)
    return json.dumps(doc)


def test_fuzzed_manifests_give_a_hub_error_never_a_library_traceback(root: Path, tmp_path: Path) -> None:
    repo = root / ORG / f"tiny-{RUN}"
    pristine = (repo / "manifest.json").read_text()
    work = tmp_path / "root"
    shutil.copytree(root, work)
    target = work / ORG / f"tiny-{RUN}" / "manifest.json"

    @_FUZZ
    @given(text=_mutated_manifest(json.loads(pristine)))
    def check(text: str) -> None:
        EXAMPLES["manifest"] += 1
        target.write_text(text)
        try:
            zoo.load("gelu-1l", seed=1, zoo="tiny", step=4, org=ORG, root=work)
        except HubError as e:
            assert str(e)

    check()


_selector = st.none() | st.integers(-5, 40) | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=12) \
    | st.just("final") | st.lists(st.integers(), max_size=2)


@_FUZZ
@given(model=st.sampled_from(["gelu-1l", "solu-1l", "../gelu-1l", "gelu-1l/..", ""]) | st.text(max_size=12),
       seed=_selector, step=_selector, tokens=_selector,
       zoo_name=st.sampled_from([None, "tiny", "../x"]) | st.text(max_size=6), org=st.sampled_from([ORG, "..", "a/b"]))
def test_fuzzed_selectors_give_a_hub_error_or_the_model(root: Path, model, seed, step, tokens, zoo_name,
                                                        org) -> None:
    EXAMPLES["selectors"] += 1
    try:
        loaded = zoo.load(model, seed=seed, step=step, tokens=tokens, zoo=zoo_name, org=org, root=root)
    except HubError as e:
        assert str(e)
        return
    assert loaded.step in read_manifest(root / ORG / f"tiny-{RUN}").checkpoints


def test_a_second_publisher_on_the_same_run_refuses(trained_tiny: Path, tmp_path: Path) -> None:
    run = trained_tiny / "tiny" / "runs" / RUN
    fd = os.open(run / LOCK_NAME, os.O_RDWR | os.O_CREAT)  # held as a first publisher (or a trainer) holds it
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(PublishError, match="locked by another process"):
            zoo.publish(run, org=ORG, root=tmp_path / "root")
    finally:
        os.close(fd)
    assert not (tmp_path / "root").exists()


def test_readers_of_a_directory_root_see_the_old_or_the_new_manifest_never_a_torn_one(root: Path,
                                                                                      tmp_path: Path) -> None:
    work = tmp_path / "root"
    shutil.copytree(root, work)
    repo = work / ORG / f"tiny-{RUN}"
    old = (repo / "manifest.json").read_text()
    new = json.dumps({**json.loads(old), "code_version": "x" * 200_000})  # large: a torn write would show
    backend = zoo.hub.backends.DirBackend(work)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            for text in (new, old):
                backend.commit(zoo.hub.backends.Repo(f"{ORG}/tiny-{RUN}", "model"), {"manifest.json": text.encode()},
                               "rewrite", None)

    thread = threading.Thread(target=writer)
    thread.start()
    seen, reads, began = set(), 0, time.monotonic()
    try:
        while (reads < 300 or len(seen) < 2) and time.monotonic() - began < 20:
            seen.add((repo / "manifest.json").read_text())
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert seen <= {old, new} and len(seen) == 2
