"""Export to TransformerLens 3: logits and every shared hook's activations match ours (float tolerance).

TL 4 (the extra `tl`, what CI installs) has no HookedTransformer: tests/test_tl_bridge.py covers it.
"""

from importlib.metadata import version

import pytest
import torch

from helpers import small_model
from zoo.analysis import export_tl

pytest.importorskip("transformer_lens", reason="the optional extra `tl3` is not installed")
if int(version("transformer-lens").split(".")[0]) != 3:
    pytest.skip("TransformerLens 4 is installed (the extra `tl`); the TL 3 path needs the extra `tl3`",
                allow_module_level=True)


@pytest.mark.parametrize("arch", ["attn-only", "gelu", "solu"])
def test_exported_model_matches_ours_in_logits_and_every_shared_hook(arch, tmp_path):
    ours = small_model(arch)
    theirs = export_tl.load_exported(export_tl.export(ours, tmp_path))
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    logits, cache = ours.run_with_cache(tokens)
    tl_logits, tl_cache = theirs.run_with_cache(tokens)
    torch.testing.assert_close(tl_logits, logits, rtol=1e-5, atol=1e-5)
    shared = set(cache) & set(tl_cache.cache_dict)
    assert shared >= {"hook_embed", "blocks.1.attn.hook_pattern", "blocks.1.hook_resid_post"}
    assert set(cache) - shared == set()  # every hook of ours exists in TL
    for name in sorted(shared):
        torch.testing.assert_close(tl_cache[name], cache[name], rtol=1e-5, atol=1e-5, msg=name)
