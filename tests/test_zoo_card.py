"""The zoo card (the dataset repo's README.md and its figure), `zoo list`'s steps, `zoo publish`'s one bar."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib.image
import pytest
from huggingface_hub import DatasetCard, HfApi, hf_hub_download

import zoo
from checkpoints_manifest import read_manifest
from hub_server import HubServer
from training.schedule import describe_steps
from zoo.cli import main

ORG = "zoo-org"
DATA = f"{ORG}/tiny-data"
RUNS = [f"{arch}-1l-seed{seed}" for arch in ("attn-only", "gelu", "solu") for seed in (0, 1)]


def _card() -> str:
    return Path(hf_hub_download(DATA, "README.md", repo_type="dataset")).read_text()


def test_the_zoo_card_and_its_figure_are_published_side_by_side_and_read_back(trained_tiny: Path,
                                                                               hub_server: HubServer) -> None:
    zoo.publish(trained_tiny / "tiny", org=ORG, progress=False)
    card = _card()
    png = Path(hf_hub_download(DATA, "loss.png", repo_type="dataset")).read_bytes()

    assert "![loss of every run](loss.png)" in card
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2] == (450, 800)
    for arch in ("attn-only", "gelu", "solu"):  # a row per family and size, a link per seed, the checkpoints
        links = ", ".join(f"[{seed}](../../{ORG}/tiny-{arch}-1l-seed{seed})" for seed in (0, 1))
        assert re.search(rf"\| {arch}-1l \| {arch} \| 1 \| 16 \| {re.escape(links)} \| "
                         rf"9: 0, 1, 2, 4 … 24 \(every 4\) \| \d\.\d{{3}} ± \d\.\d{{3}} \|", card), arch
    fingerprint = read_manifest(trained_tiny / "tiny" / "runs" / RUNS[0]).dataset_fingerprint
    assert f"Dataset fingerprint: `{fingerprint}`" in card
    DatasetCard(card).validate(repo_type="dataset")  # the server's /api/validate-yaml
    assert {"zoo", "tiny"} <= set(HfApi().dataset_info(DATA).card_data.tags)


def test_the_cards_three_lines_load_and_replay_bitwise(trained_tiny: Path, hub_server: HubServer) -> None:
    zoo.publish(trained_tiny / "tiny" / "runs" / "attn-only-1l-seed0", org=ORG, progress=False)
    code = re.search(r"```python\n(.*?)```", _card(), re.S).group(1).splitlines()
    assert len(code) == 3
    scope: dict = {}
    exec("\n".join(code[:2]), scope)
    assert scope["m"].step == 24
    assert eval(code[2], scope).startswith("BITWISE EQUAL")


def test_publishing_one_run_later_keeps_every_published_run_on_the_card(trained_tiny: Path,
                                                                      hub_server: HubServer) -> None:
    zoo.publish(trained_tiny / "tiny", org=ORG, progress=False)
    zoo.publish(trained_tiny / "tiny" / "runs" / "gelu-1l-seed1", org=ORG, progress=False)
    card = _card()
    assert all(f"](../../{ORG}/tiny-{run})" in card for run in RUNS)
    assert card.startswith("---") and "6 runs of 3 models" in card


def test_zoo_publish_shows_one_progress_bar_and_zoo_list_the_steps_compactly(
        trained_tiny: Path, hub_server: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", str(trained_tiny / "tiny" / "runs" / "solu-1l-seed0"), "--org", ORG]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "publish: 100%" in err and "3/3" in err  # one bar: data, run, registry
    assert not re.search(r"LFS|safetensors|Upload", err)  # huggingface_hub's bars, one per file, are silenced
    assert main(["list", "--org", ORG]) == 0
    assert "tiny       solu-1l          solu            1      16         0     9  0, 1, 2, 4 … 24 (every 4)" in (
        capsys.readouterr().out)


def test_checkpoint_steps_are_written_compactly_and_gaps_stay_visible() -> None:
    dense = [0, 1, 2, 4, 8, 16, 32, 64, *range(68, 601, 4)]
    assert describe_steps(dense) == "0, 1, 2, 4 … 64, 68 … 600 (every 4)"
    assert describe_steps([s for s in dense if s != 300]) == (
        "0, 1, 2, 4 … 64, 68 … 296 (every 4), 304 … 600 (every 4)")
    assert describe_steps([0, 1, 2, 4, 8, 16, 20, 24, 40]) == "0, 1, 2, 4 … 16, 20, 24, 40"
    assert describe_steps([0, 24]) == "0, 24" and describe_steps([]) == ""
