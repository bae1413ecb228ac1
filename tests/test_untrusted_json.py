"""Untrusted JSON and safetensors headers: one checked reader (bounded size, values and depth) serves every
command that reads a registry, manifest, config.json, dataset manifest, token store metadata or header;
resume, replay and load read checkpoints through the same checked safetensors reader; one damaged run
does not hide the others."""

from __future__ import annotations

import json
import shutil
import struct
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from checkpoints_manifest import sha256_bytes
from helpers import cut_run_back
from measure import measured
from zoo.cli import main
from zoo.hub import UnsafeArtifactError
from zoo.replay import replay

ORG = "zoo-org"
RUNS = ("gelu-1l-seed1", "solu-1l-seed0")
REPO = f"{ORG}/tiny-gelu-1l-seed1"
WEIGHTS4 = "checkpoints/step00000004/model.safetensors"
NESTED = b"[" * 100_000 + b"]" * 100_000
LIMIT_RSS_MB = 500


@pytest.fixture(scope="module")
def published(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    for run in RUNS:
        zoo.publish(trained_tiny / "tiny" / "runs" / run, org=ORG, root=root)
    return root


def _root(published: Path, where: Path) -> Path:
    shutil.copytree(published, where)
    return where


def _plant(repo: Path, rel: str, data: bytes) -> None:
    """Put `data` at `rel` and list it with its true hash, as a hostile publisher would."""
    (repo / rel).write_bytes(data)
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["files"][rel] = {"size": len(data), "sha256": sha256_bytes(data), "commit": None}
    (repo / "manifest.json").write_text(json.dumps(manifest))


def _nested_header() -> bytes:
    return struct.pack("<Q", len(NESTED)) + NESTED


def _local_run(trained_tiny: Path, out: Path) -> Path:
    """A copy of the trained tiny zoo, its run gelu-1l-seed0 cut back to look unfinished."""
    shutil.copytree(trained_tiny / "tiny", out / "tiny")
    run = out / "tiny" / "runs" / "gelu-1l-seed0"
    cut_run_back(run, keep=7)
    return run


def test_json_and_headers_nested_100000_deep_and_a_60_mb_registry_are_refused_by_every_reader(
        published: Path, trained_tiny: Path, tmp_path: Path) -> None:
    roots = {kind: _root(published, tmp_path / kind) for kind in
             ("huge_registry", "registry", "manifest", "config", "data_manifest", "store_meta", "header")}
    (roots["huge_registry"] / "datasets" / ORG / "zoo-registry" / "registry.json").write_bytes(
        b'{"runs": [' + b"[]," * 20_000_000 + b"[]]}")  # 60 MB, under the 64 MiB size limit
    (roots["registry"] / "datasets" / ORG / "zoo-registry" / "registry.json").write_bytes(NESTED)
    (roots["manifest"] / REPO / "manifest.json").write_bytes(NESTED)
    _plant(roots["config"] / REPO, "config.json", NESTED)
    (roots["data_manifest"] / "datasets" / ORG / "tiny-data" / "manifest.json").write_bytes(NESTED)
    _plant(roots["store_meta"] / "datasets" / ORG / "tiny-data", "data/store.json", NESTED)
    _plant(roots["header"] / REPO, WEIGHTS4, _nested_header())
    locals_ = {kind: _local_run(trained_tiny, tmp_path / f"local-{kind}")
               for kind in ("manifest", "config", "header", "store_meta")}
    (locals_["store_meta"].parents[1] / "data" / "store.json").write_bytes(NESTED)
    (locals_["manifest"] / "manifest.json").write_bytes(NESTED)
    _plant(locals_["config"], "config.json", NESTED)
    _plant(locals_["header"], "checkpoints/step00000016/model.safetensors", _nested_header())

    def hub(kind: str) -> list[str]:
        return ["--org", ORG, "--root", str(roots[kind])]

    load, replay_ = ["download", "gelu-1l", "--seed", "1"], ["replay", "gelu-1l", "--seed", "1", "--from", "4",
                                                               "--to", "8", "--quiet"]
    cases = {  # the 60 MB registry first, while the process is at its smallest
        "60 MB registry: list": ["list", *hub("huge_registry")],
        "60 MB registry: download": [*load, *hub("huge_registry")],
        "60 MB registry: replay": [*replay_, *hub("huge_registry")],
        "nested registry: list": ["list", *hub("registry")],
        "nested registry: download": [*load, *hub("registry")],
        "nested registry: replay": [*replay_, *hub("registry")],
        "nested manifest: list": ["list", *hub("manifest")],
        "nested manifest: download": [*load, *hub("manifest")],
        "nested manifest: replay": [*replay_, *hub("manifest")],
        "nested config.json: list": ["list", *hub("config")],
        "nested config.json: replay": [*replay_, *hub("config")],
        "nested dataset manifest: download": ["download", "tiny", "--data", *hub("data_manifest")],
        "nested dataset manifest: replay": [*replay_, *hub("data_manifest")],
        "nested token store metadata: replay": [*replay_, *hub("store_meta")],
        "nested token store metadata: where-seen": ["where-seen", "tiny", "--doc", "1", *hub("store_meta")],
        "nested header: replay": [*replay_, *hub("header")],
        "nested local manifest: verify": ["verify", str(locals_["manifest"])],
        "nested local manifest: publish": ["publish", str(locals_["manifest"]), *hub("manifest")],
        "nested local manifest: resume": ["train", "tiny", "--out", str(locals_["manifest"].parents[2]),
                                          "--runs", "gelu-1l-seed0", "--resume", "--quiet"],
        "nested local config.json: publish": ["publish", str(locals_["config"]), *hub("config")],
        "nested local config.json: resume": ["train", "tiny", "--out", str(locals_["config"].parents[2]),
                                             "--runs", "gelu-1l-seed0", "--resume", "--quiet"],
        "nested local token store metadata: batch": ["batch", str(locals_["store_meta"].parents[1]), "--step", "1"],
        "nested local header: resume": ["train", "tiny", "--out", str(locals_["header"].parents[2]),
                                        "--runs", "gelu-1l-seed0", "--resume", "--quiet"],
    }
    loads = {f"nested {kind}: zoo.load": dict(model="gelu-1l", seed=1, step=4, org=ORG, root=str(roots[kind]))
             for kind in ("registry", "manifest", "config", "header")}
    results = tmp_path / "results.json"
    run = measured(textwrap.dedent(f"""
        import contextlib, io, json, traceback
        results = {{}}
        for label, argv in {cases!r}.items():
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(argv)
            except BaseException:
                code, err = None, io.StringIO(traceback.format_exc())
            results[label] = [code, err.getvalue()]
        for label, kwargs in {loads!r}.items():
            try:
                zoo.load(**kwargs)
                results[label] = [0, "loaded"]
            except zoo.HubError as error:
                results[label] = [2, f"{{type(error).__name__}}: {{error}}"]
            except BaseException:
                results[label] = [None, traceback.format_exc()]
        open({str(results)!r}, "w").write(json.dumps(results))
    """), env={"HF_HUB_CACHE": str(tmp_path / "hf")})
    assert run.error is None, run.traceback
    outcome = json.loads(results.read_text())
    for label, (code, message) in outcome.items():
        assert code in (1, 2) and "Traceback" not in message, f"{label}: exit {code}\n{message[-2000:]}"
        reason = "commas and brackets, more than" if label.startswith("60 MB") else "nested more than 64 levels"
        assert reason in message, f"{label}: {message[-2000:]}"
    assert run.rss_mb < LIMIT_RSS_MB, run.rss_mb


def test_overlapping_tensor_offsets_are_refused_as_unsafe_before_loading(published: Path, tmp_path: Path) -> None:
    root = _root(published, tmp_path / "root")
    weights = root / REPO / WEIGHTS4
    header_length = struct.unpack("<Q", weights.read_bytes()[:8])[0]
    header = json.loads(weights.read_bytes()[8:8 + header_length])
    first, second = sorted((name for name in header if name != "__metadata__"),
                           key=lambda n: header[n]["data_offsets"][0])[:2]
    size = header[second]["data_offsets"][1] - header[second]["data_offsets"][0]
    if header[first]["data_offsets"][1] - header[first]["data_offsets"][0] == size:  # same size: let them overlap
        header[second]["data_offsets"] = list(header[first]["data_offsets"])
    raw = json.dumps(header).encode()
    _plant(root / REPO, WEIGHTS4, struct.pack("<Q", len(raw)) + raw + weights.read_bytes()[8 + header_length:])
    with pytest.raises(UnsafeArtifactError, match=r"overlaps the tensor before it|leaves a gap"):
        zoo.load("gelu-1l", seed=1, step=4, org=ORG, root=root)


def test_replay_reads_checkpoints_through_the_checked_reader(published: Path, tmp_path: Path) -> None:
    root = _root(published, tmp_path / "root")
    save_file({"evil": torch.zeros(3)}, tmp_path / "evil.safetensors")
    _plant(root / REPO, WEIGHTS4, (tmp_path / "evil.safetensors").read_bytes())
    with pytest.raises(UnsafeArtifactError, match=r"published checkpoint 4 is malformed: .*unexpected: \['evil'\]"):
        replay("gelu-1l", seed=1, from_step=4, to_step=8, org=ORG, root=root)


def test_one_damaged_run_does_not_hide_the_others_from_zoo_list(published: Path, tmp_path: Path, capsys) -> None:
    root = _root(published, tmp_path / "root")
    (root / REPO / "manifest.json").write_text("{not json")
    assert main(["list", "--org", ORG, "--root", str(root)]) == 1
    shown = capsys.readouterr()
    assert "solu-1l" in shown.out and "gelu-1l" not in shown.out
    assert f"zoo: could not read {REPO}: {REPO}: manifest.json is damaged (" in shown.err
