"""Export to TransformerLens 4: a TransformerBridge over TL's native model computes our logits and every
hook both models have (float tolerance: another implementation), for all three architectures.

Where TL 4.3 differs upstream, the test says exactly how: its bridge fires `attn.hook_attn_scores`
with the softmaxed pattern (the pre-softmax scores are not exposed), and its native SoLU MLP has
no `mlp.hook_mid`; the same activation is the input of its `mlp.ln` (`mlp.ln.hook_in`).
"""

from importlib.metadata import version

import pytest
import torch

from helpers import small_model
from zoo.analysis import export_tl

pytest.importorskip("transformer_lens", reason="the optional extra `tl` is not installed")
if int(version("transformer-lens").split(".")[0]) < 4:
    pytest.skip("TransformerLens 3 is installed (the extra `tl3`); the bridge needs TL 4 (the extra `tl`)",
                allow_module_level=True)

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize("arch", ["attn-only", "gelu", "solu"])
def test_bridge_matches_ours_in_logits_and_every_shared_hook(arch, tmp_path):
    ours = small_model(arch)
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    logits, cache = ours.run_with_cache(tokens)
    for bridge in (export_tl.to_transformer_bridge(ours), export_tl.load_exported(export_tl.export(ours, tmp_path))):
        assert type(bridge).__name__ == "TransformerBridge"
        tl_logits, tl_cache = bridge.run_with_cache(tokens)
        torch.testing.assert_close(tl_logits, logits, **TOLERANCE)
        shared = set(cache) & set(tl_cache.keys())
        hook_mid = {f"blocks.{i}.mlp.hook_mid" for i in range(2)} if arch == "solu" else set()
        assert set(cache) - shared == hook_mid  # every other hook of ours exists in TL 4
        for name in sorted(shared):
            # Upstream: TL 4.3's bridge fires hook_attn_scores with the pattern, after the softmax.
            expected = cache[name.replace("hook_attn_scores", "hook_pattern")]
            torch.testing.assert_close(tl_cache[name], expected, **TOLERANCE, msg=name)
        for name in hook_mid:
            torch.testing.assert_close(tl_cache[name.replace("hook_mid", "ln.hook_in")], cache[name], **TOLERANCE)


def test_a_hook_that_edits_an_activation_changes_the_bridge_as_it_changes_ours():
    ours, tokens = small_model("gelu"), torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(2))
    bridge = export_tl.to_transformer_bridge(ours)

    def ablate(activation, hook):
        return torch.zeros_like(activation)

    with ours.hooks([("blocks.0.mlp.hook_post", ablate)]):
        expected = ours(tokens)
    got = bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", ablate)])
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert not torch.allclose(expected, ours(tokens))
