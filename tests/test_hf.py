"""Zoo models in transformers, and text in, text out.

`AutoModelForCausalLM.from_pretrained` on a published run gives `zoo.load`'s logits bit for bit
(it runs the same module), `generate` gives a greedy loop's tokens, the weights it reads are
verified against the manifest, and a loaded model carries its tokenizer, fetched alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from hub_server import HubServer
from training.model import lm_loss
from zoo.hub import IntegrityError
from zoo.hub.backends import HubBackend

transformers = pytest.importorskip("transformers", reason="the optional extra `hf` (or `tl`) is not installed")

ORG = "zoo-org"
TEXT = "Once upon a time"  # 13 tokens: the tiny zoo's n_ctx is 16
FINAL = "checkpoints/step00000024"


def _publish(trained_tiny: Path, *runs: str, **where) -> None:
    for run in runs:
        zoo.publish(trained_tiny / "tiny" / "runs" / run, org=ORG, **where)


def test_auto_model_from_a_published_run_gives_zoo_loads_logits_bitwise_for_every_architecture(
        trained_tiny: Path, hub_server: HubServer) -> None:
    _publish(trained_tiny, "attn-only-1l-seed0", "gelu-1l-seed0", "solu-1l-seed0")
    for arch in ("attn-only", "gelu", "solu"):
        for step, where in [(24, {}), (24, {"revision": "step24"}), (8, {})]:
            ours = zoo.load(f"{arch}-1l", seed=0, step=step, org=ORG)
            theirs = transformers.AutoModelForCausalLM.from_pretrained(
                f"{ORG}/tiny-{arch}-1l-seed0", subfolder=f"checkpoints/step{step:08d}", **where)
            assert type(theirs).__name__ == "ZooForCausalLM" and theirs.config.zoo_run["step"] == step
            tokens = ours.to_tokens(TEXT)
            assert torch.equal(theirs(tokens).logits, ours.model(tokens)), (arch, step, where)


def test_generate_gives_the_tokens_of_a_greedy_loop_over_zoo_loads_model(trained_tiny: Path,
                                                                         hub_server: HubServer) -> None:
    _publish(trained_tiny, "solu-1l-seed1")
    ours = zoo.load("solu-1l", seed=1, org=ORG)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(f"{ORG}/tiny-solu-1l-seed1", subfolder=FINAL)
    eos = theirs.config.eos_token_id
    for prompt in ("Once", "The dog", "Tom said"):
        tokens = ours.to_tokens(prompt)
        generated = theirs.generate(tokens, max_new_tokens=16 - tokens.shape[1], do_sample=False)
        while tokens.shape[1] < 16 and tokens[0, -1] != eos:  # generate stops at EOS too
            tokens = torch.cat([tokens, ours.model(tokens)[:, -1:].argmax(-1)], dim=1)
        assert torch.equal(generated, tokens), ours.to_string(generated[0])
    # transformers' loss is the training loss; a left-padded batch, which the model cannot mask, is refused
    torch.testing.assert_close(theirs(tokens, labels=tokens).loss, lm_loss(ours.model(tokens)[:, :-1], tokens[:, 1:]))
    with pytest.raises(ValueError, match="pad on the right"):
        theirs(tokens, attention_mask=torch.ones_like(tokens).index_fill(1, torch.tensor([0]), 0))


def test_to_tokens_fetches_only_the_tokenizer_round_trips_and_auto_tokenizer_gives_the_same_ids(
        trained_tiny: Path, hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(trained_tiny, "gelu-1l-seed1")
    fetched: list[tuple[str, str]] = []
    fetch = HubBackend.fetch
    monkeypatch.setattr(HubBackend, "fetch", lambda self, repo, path, *args: fetched.append((repo.id, path))
                        or fetch(self, repo, path, *args))
    loaded = zoo.load("gelu-1l", seed=1, org=ORG)
    del fetched[:]
    tokens = loaded.to_tokens(TEXT)
    assert fetched == [(f"{ORG}/tiny-data", "manifest.json"), (f"{ORG}/tiny-data", "data/tokenizer.json")]
    assert loaded.to_tokens([TEXT, TEXT]).tolist() == [tokens[0].tolist()] * 2 and len(fetched) == 2
    assert tokens.dtype == torch.int64 and tokens.shape == (1, 13)
    assert loaded.to_string(tokens[0]) == TEXT and loaded.to_string(tokens) == [TEXT]
    auto = transformers.AutoTokenizer.from_pretrained(f"{ORG}/tiny-gelu-1l-seed1")
    for text in (TEXT, "Lily and Tom went to the park.<|endoftext|>The end", " spaces  and\nlines "):
        assert auto(text).input_ids == loaded.to_tokens(text)[0].tolist()
        assert auto.decode(auto(text).input_ids) == loaded.to_string(loaded.to_tokens(text)[0]) == text


def test_a_local_folder_loads_bitwise_and_weights_that_differ_from_the_manifest_are_refused(
        trained_tiny: Path, hub_server: HubServer, tmp_path: Path) -> None:
    _publish(trained_tiny, "attn-only-1l-seed1")
    _publish(trained_tiny, "attn-only-1l-seed1", root=tmp_path)
    ours = zoo.load("attn-only-1l", seed=1, org=ORG)
    folder = tmp_path / ORG / "tiny-attn-only-1l-seed1"
    local = transformers.AutoModelForCausalLM.from_pretrained(folder, subfolder=FINAL)
    tokens = ours.to_tokens(TEXT)
    assert torch.equal(local(tokens).logits, ours.model(tokens))

    weights = folder / FINAL / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match=f"{FINAL}/model.safetensors does not match manifest.json"):
        transformers.AutoModelForCausalLM.from_pretrained(folder, subfolder=FINAL)
    step8 = "checkpoints/step00000008"  # not in the cache yet
    hub_server.corrupt(f"{ORG}/tiny-attn-only-1l-seed1", f"{step8}/model.safetensors")
    with pytest.raises(IntegrityError, match=f"{step8}/model.safetensors does not match its manifest"):
        transformers.AutoModelForCausalLM.from_pretrained(f"{ORG}/tiny-attn-only-1l-seed1", subfolder=step8)
