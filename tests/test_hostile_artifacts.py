"""Hostile artifacts: loading never executes code from a file and refuses malformed files before
allocating: pickle bombs, paths that leave the repo, symlinks, huge safetensors headers, wrong
dtypes or shapes, absurd configs. Run with -s for the count of hostile files refused.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, constants
from safetensors.torch import load_file, save_file

import zoo
from checkpoints_manifest import sha256_bytes
from hub_server import HubServer
from training.model import ModelConfig
from zoo.hub import IntegrityError, PublishError, UnsafeArtifactError

ORG = "zoo-org"
RUN = "gelu-1l-seed1"
WEIGHTS4 = "checkpoints/step00000004/model.safetensors"
REPO_ROOT = Path(__file__).resolve().parent.parent
REFUSED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def tally() -> Iterator[None]:
    yield
    print(f"\nhostile files refused: {len(REFUSED)} ({', '.join(REFUSED)})")


@pytest.fixture(scope="module")
def published(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine-root")
    zoo.publish(trained_tiny / "tiny" / "runs" / RUN, org=ORG, root=root)
    return root


@pytest.fixture
def root(published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of a directory root holding the run, and an empty HF cache."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    shutil.copytree(published, tmp_path / "root")
    return tmp_path / "root"


def _repo(root: Path) -> Path:
    return root / ORG / f"tiny-{RUN}"


def _plant(repo: Path, rel: str, data: bytes) -> None:
    """Put `data` at `rel` and list it in the manifest with its true hash, as a hostile publisher would."""
    (repo / rel).parent.mkdir(parents=True, exist_ok=True)
    (repo / rel).write_bytes(data)
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["files"][rel] = {"size": len(data), "sha256": sha256_bytes(data), "commit": None}
    (repo / "manifest.json").write_text(json.dumps(manifest))


def _refused(kind: str, error: type[Exception], match: str, call) -> None:
    with pytest.raises(error, match=match):
        call()
    REFUSED.append(kind)


def _load(root: Path, step: int = 4) -> zoo.hub.Loaded:
    return zoo.load("gelu-1l", seed=1, step=step, org=ORG, root=root)


class _Bomb:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_bomb_in_a_repo_is_never_executed(root: Path, tmp_path: Path, trained_tiny: Path) -> None:
    marker = tmp_path / "pwned"
    bomb = pickle.dumps(_Bomb(marker))  # pickle-check: the hostile file under test
    repo = _repo(root)
    for rel in ("pytorch_model.bin", "checkpoints/step00000004/model.pt", WEIGHTS4):
        _plant(repo, rel, bomb)
    _refused("pickle as model.safetensors", UnsafeArtifactError, f"{WEIGHTS4}: not a safetensors file",
             lambda: _load(root))
    zoo.download("gelu-1l", seed=1, org=ORG, root=root)  # verifies every listed file: bytes, never unpickled
    assert _load(root, step=8).step == 8  # .bin/.pt beside good weights are never read
    REFUSED.extend(["pytorch_model.bin (ignored)", "model.pt (ignored)"])
    assert not marker.exists()


def test_no_code_path_can_unpickle() -> None:
    """No module of ours imports pickle or calls torch.load / numpy with allow_pickle."""
    unsafe = re.compile(r"^\s*(import pickle|from pickle|import dill|import joblib)|torch\.load\("
                        r"|allow_pickle\s*=\s*True", re.MULTILINE)
    sources = [p for pkg in ("zoo", "training", "data_index", "checkpoints_manifest")
               for p in (REPO_ROOT / pkg).rglob("*.py")]
    assert sources and not [str(p) for p in sources if unsafe.search(p.read_text())]


@pytest.mark.parametrize("path, problem", [("../../../outside.json", "contains '..'"),
                                           ("/etc/passwd", "is absolute")])
def test_manifest_paths_leaving_the_repo_are_refused_on_a_directory_root(root: Path, path: str, problem: str) -> None:
    manifest_path = _repo(root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][path] = manifest["files"].pop("config.json")
    manifest_path.write_text(json.dumps(manifest))
    _refused(f"manifest path {path} (directory)", IntegrityError, f"manifest.json is damaged.*{re.escape(problem)}",
             lambda: _load(root))


def test_manifest_paths_leaving_the_repo_are_refused_on_the_hub(trained_tiny: Path, hub_server: HubServer) -> None:
    zoo.publish(trained_tiny / "tiny" / "runs" / RUN, org=ORG)
    repo = f"{ORG}/tiny-{RUN}"
    manifest = json.loads(Path(HfApi().hf_hub_download(repo, "manifest.json")).read_text())
    manifest["files"]["../../blobs/x"] = manifest["files"]["config.json"]
    HfApi().create_commit(repo, [CommitOperationAdd("manifest.json", json.dumps(manifest).encode())],
                          commit_message="hostile")
    _refused("manifest path ../ (Hub)", IntegrityError, "manifest.json is damaged.*contains '..'",
             lambda: zoo.load("gelu-1l", seed=1, step=4, org=ORG))


def test_symlinks_in_a_directory_root_are_refused_even_to_the_right_bytes(root: Path, trained_tiny: Path) -> None:
    repo = _repo(root)
    good = trained_tiny / "tiny" / "runs" / RUN / WEIGHTS4  # same bytes: the link itself is refused
    (repo / WEIGHTS4).unlink()
    (repo / WEIGHTS4).symlink_to(good)
    _refused("symlinked file", UnsafeArtifactError, "is a symlink", lambda: _load(root))
    folder = repo / "checkpoints" / "step00000008"
    shutil.move(folder, root / "elsewhere")
    folder.symlink_to(root / "elsewhere")
    _refused("symlinked folder", UnsafeArtifactError, "step00000008 is a symlink", lambda: _load(root, step=8))


def test_publishing_a_run_with_a_symlink_is_refused(trained_tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "tiny" / "runs" / RUN
    shutil.copytree(trained_tiny / "tiny" / "runs" / RUN, run)
    (run / WEIGHTS4).unlink()
    (run / WEIGHTS4).symlink_to(trained_tiny / "tiny" / "runs" / RUN / WEIGHTS4)
    _refused("symlink in a run to publish", PublishError, f"{WEIGHTS4} is \\(or lies under\\) a symlink",
             lambda: zoo.publish(run, org=ORG, root=tmp_path / "root"))
    assert not (tmp_path / "root").exists()  # refused before anything was written


def test_an_oversized_safetensors_header_is_refused_unread(root: Path) -> None:
    _plant(_repo(root), WEIGHTS4, struct.pack("<Q", 1 << 40) + b"{}")
    _refused("header claiming 1 TiB", UnsafeArtifactError, r"header length 1099511627776", lambda: _load(root))
    _plant(_repo(root), WEIGHTS4, struct.pack("<Q", 64 << 20) + b"{" + b" " * ((64 << 20) - 2) + b"}")
    _refused("64 MiB header", UnsafeArtifactError, r"at most 16777216 allowed", lambda: _load(root))


def _weights(trained_tiny: Path) -> dict[str, torch.Tensor]:
    return load_file(trained_tiny / "tiny" / "runs" / RUN / WEIGHTS4)


def _safetensors(tensors: dict[str, torch.Tensor], tmp_path: Path) -> bytes:
    save_file(tensors, tmp_path / "w.safetensors")
    return (tmp_path / "w.safetensors").read_bytes()


def test_wrong_dtypes_shapes_or_tensor_names_are_refused_before_loading(root: Path, trained_tiny: Path,
                                                                        tmp_path: Path) -> None:
    good = _weights(trained_tiny)
    cases = {
        "float64 weights": ({k: v.double() for k, v in good.items()}, r"tensor \S+ is .*'F64'.*needs dtype F32"),
        "transposed W_E": ({**good, "embed.W_E": good["embed.W_E"].T.contiguous()}, r"tensor embed.W_E .*needs"),
        "extra tensor": ({**good, "evil": torch.zeros(3)}, r"unexpected: \['evil'\]"),
        "missing tensor": ({k: v for k, v in good.items() if k != "unembed.W_U"}, r"missing: \['unembed.W_U'\]"),
    }
    for kind, (tensors, match) in cases.items():
        _plant(_repo(root), WEIGHTS4, _safetensors(tensors, tmp_path))
        _refused(kind, UnsafeArtifactError, match, lambda: _load(root))


def test_a_config_asking_for_a_trillion_parameters_is_refused_before_allocating(root: Path) -> None:
    repo = _repo(root)
    config = json.loads((repo / "config.json").read_text())
    huge = ModelConfig(**{**ModelConfig.from_dict(config["model"]).__dict__, "n_layers": 1000, "d_model": 10_000,
                          "d_mlp": 40_000, "n_heads": 100, "d_head": 100})
    assert huge.n_params() > 10**12
    _plant(repo, "config.json", json.dumps({**config, "model": huge.to_dict()}).encode())
    # Building it would need terabytes (torch.empty fails or the test runner dies): the refusal comes first.
    _refused("1.2e12-parameter config", UnsafeArtifactError,
             r"model of 1.2e\+12 parameters needs about 4.4 TiB .* but this machine has",
             lambda: _load(root))


def test_a_json_file_listed_as_huge_is_refused_undownloaded(root: Path) -> None:
    manifest_path = _repo(root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["config.json"]["size"] = 10**12
    manifest_path.write_text(json.dumps(manifest))
    _refused("config.json listed at 1 TB", UnsafeArtifactError, "config.json is listed at 1000000000000 bytes",
             lambda: _load(root))

