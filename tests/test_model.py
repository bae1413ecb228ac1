"""The zoo transformer: TL names and shapes, seeded init, hooks, loss, config round trip."""

import json
import math

import pytest
import torch

from training.model import (
    ARCHITECTURES,
    HookPoint,
    ModelConfig,
    ModelConfigError,
    ModelInputError,
    Transformer,
    UnknownHookError,
    init_weights,
    lm_loss,
)


def tiny_config(architecture: str, **overrides: int) -> ModelConfig:
    sizes = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8, d_vocab=50)
    return ModelConfig(**{**sizes, **overrides}, architecture=architecture)


def seeded_model(architecture: str, seed: int = 0) -> Transformer:
    model = Transformer(tiny_config(architecture))
    init_weights(model, torch.Generator().manual_seed(seed))
    return model


def tokens(seed: int = 1, batch: int = 3, pos: int = 8, d_vocab: int = 50) -> torch.Tensor:
    return torch.randint(0, d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    d, h, dh, m = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    shapes = {"embed.W_E": (cfg.d_vocab, d), "pos_embed.W_pos": (cfg.n_ctx, d)}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        shapes |= {b + "ln1.w": (d,), b + "ln1.b": (d,)}
        shapes |= {b + f"attn.W_{x}": (h, d, dh) for x in "QKV"} | {b + f"attn.b_{x}": (h, dh) for x in "QKV"}
        shapes |= {b + "attn.W_O": (h, dh, d), b + "attn.b_O": (d,)}
        if cfg.architecture != "attn-only":
            shapes |= {b + "ln2.w": (d,), b + "ln2.b": (d,)}
            shapes |= {b + "mlp.W_in": (d, m), b + "mlp.b_in": (m,), b + "mlp.W_out": (m, d), b + "mlp.b_out": (d,)}
        if cfg.architecture == "solu":
            shapes |= {b + "mlp.ln.w": (m,), b + "mlp.ln.b": (m,)}
    return shapes | {"ln_final.w": (d,), "ln_final.b": (d,), "unembed.W_U": (d, cfg.d_vocab), "unembed.b_U": (cfg.d_vocab,)}


def expected_hooks(cfg: ModelConfig) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_scale", "ln_final.hook_normalized"}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        names |= {b + n for n in ("hook_resid_pre", "hook_attn_out", "hook_resid_post",
                                  "ln1.hook_scale", "ln1.hook_normalized")}
        names |= {b + "attn." + n for n in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z")}
        if cfg.architecture != "attn-only":
            names |= {b + n for n in ("hook_resid_mid", "hook_mlp_out", "ln2.hook_scale", "ln2.hook_normalized",
                                      "mlp.hook_pre", "mlp.hook_post")}
        if cfg.architecture == "solu":
            names |= {b + n for n in ("mlp.hook_mid", "mlp.ln.hook_scale", "mlp.ln.hook_normalized")}
    return names


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_state_dict_has_exactly_the_tl_names_and_shapes(architecture):
    cfg = tiny_config(architecture)
    model = Transformer(cfg)
    got = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert got == expected_shapes(cfg)
    assert cfg.n_params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_hook_points_are_the_tl_hook_names(architecture):
    cfg = tiny_config(architecture)
    assert set(Transformer(cfg).hook_dict) == expected_hooks(cfg)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_same_init_seed_gives_equal_weights_and_another_seed_differs(architecture):
    a, b, c = (seeded_model(architecture, seed).state_dict() for seed in (7, 7, 8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed.W_E"], c["embed.W_E"])
    assert all(torch.equal(a[k], c[k]) for k in a if not k.rsplit(".", 1)[-1].startswith("W_"))


def test_init_draws_each_matrix_in_sorted_name_order_and_sets_ln_and_biases():
    model = seeded_model("solu", seed=3)
    generator = torch.Generator().manual_seed(3)
    for name, param in sorted(model.named_parameters()):
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("W_"):
            expected = torch.empty(param.shape).normal_(0.0, model.cfg.init_range, generator=generator)
        else:
            expected = torch.ones(param.shape) if leaf == "w" else torch.zeros(param.shape)
        assert torch.equal(param.detach(), expected), name


def test_construction_and_init_leave_the_global_rng_untouched():
    state = torch.get_rng_state()
    model = Transformer(tiny_config("gelu"))
    init_weights(model, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_and_backward_repeat_bitwise_in_deterministic_mode(architecture, deterministic):
    model, sample = seeded_model(architecture), tokens(pos=9)

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = lm_loss(model(sample[:, :-1]), sample[:, 1:])
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads(), loss_and_grads()
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_changing_a_later_token_leaves_earlier_logits_unchanged(architecture):
    model, sample = seeded_model(architecture), tokens()
    changed = sample.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 50
    with torch.no_grad():
        before, after = model(sample), model(changed)
    assert torch.equal(before[:, :5], after[:, :5])
    assert not torch.equal(before[:, 5:], after[:, 5:])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_run_with_cache_holds_every_hook_and_the_forward_logits(architecture):
    model, sample = seeded_model(architecture), tokens()
    logits, cache = model.run_with_cache(sample)
    assert set(cache) == expected_hooks(model.cfg)
    assert torch.equal(logits, model(sample))
    assert not any(t.requires_grad for t in cache.values())
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 2, 8, 8)
    assert cache["blocks.0.attn.hook_z"].shape == (3, 8, 2, 8)
    assert not model.hook_dict["hook_embed"]._forward_hooks  # cache hooks removed


def test_solu_mid_is_pre_times_softmax_of_pre_and_post_is_its_layernorm():
    _, cache = seeded_model("solu").run_with_cache(tokens())
    pre, mid = cache["blocks.0.mlp.hook_pre"], cache["blocks.0.mlp.hook_mid"]
    assert torch.equal(mid, pre * pre.softmax(dim=-1))
    assert torch.equal(cache["blocks.0.mlp.hook_post"], cache["blocks.0.mlp.ln.hook_normalized"])


def test_attention_pattern_is_causal_and_rows_sum_to_one():
    _, cache = seeded_model("attn-only").run_with_cache(tokens())
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.equal(pattern.triu(diagonal=1), torch.zeros_like(pattern))
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_zeroing_hook_changes_logits_and_is_removed_on_exit(architecture):
    model, sample = seeded_model(architecture), tokens()
    clean = model(sample)
    with model.hooks([("blocks.0.attn.hook_z", lambda z, hook: torch.zeros_like(z))]):
        ablated, cache = model.run_with_cache(sample)
    assert not torch.equal(ablated, clean)
    assert torch.equal(cache["blocks.0.attn.hook_z"], torch.zeros(3, 8, 2, 8))
    assert torch.equal(model(sample), clean)


def test_read_only_hooks_see_the_activation_with_their_name_and_change_nothing():
    model, sample = seeded_model("gelu"), tokens()
    seen = []
    with model.hooks([("blocks.1.mlp.hook_post", lambda act, hook: seen.append((hook.name, act.shape)))]):
        logits = model(sample)
    assert seen == [("blocks.1.mlp.hook_post", (3, 8, 32))]
    assert torch.equal(logits, model(sample))


def test_hooks_are_removed_when_the_body_raises():
    model = seeded_model("gelu")
    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks([("hook_embed", lambda x, hook: x * 0)]):
            raise RuntimeError("boom")
    assert not any(p._forward_hooks for p in model.hook_dict.values())


def test_an_unknown_hook_name_is_refused_before_any_hook_is_attached():
    model = seeded_model("attn-only")
    with pytest.raises(UnknownHookError, match="blocks.0.hook_resid_mid"):
        with model.hooks([("hook_embed", lambda x, hook: None), ("blocks.0.hook_resid_mid", lambda x, hook: None)]):
            pass
    assert not any(p._forward_hooks for p in model.hook_dict.values())
    assert isinstance(model.hook_dict["hook_embed"], HookPoint)


def test_tokens_longer_than_the_context_are_refused():
    with pytest.raises(ModelInputError, match="n_ctx=8"):
        seeded_model("gelu")(tokens(pos=9))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_loss_at_init_is_close_to_uniform(architecture):
    sample = tokens(pos=9)
    with torch.no_grad():
        loss = lm_loss(seeded_model(architecture)(sample[:, :-1]), sample[:, 1:])
    assert abs(loss.item() - math.log(50)) < 0.05


def test_per_sample_loss_is_one_mean_per_row():
    logits = torch.randn(4, 6, 10, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 10, (4, 6), generator=torch.Generator().manual_seed(1))
    per_sample = lm_loss(logits, targets, per_sample=True)
    assert per_sample.shape == (4,)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1), reduction="none")
    torch.testing.assert_close(per_sample, expected.view(4, 6).mean(-1))
    torch.testing.assert_close(lm_loss(logits, targets), per_sample.mean())
    with pytest.raises(ModelInputError, match="targets shape"):
        lm_loss(logits, targets[:, 1:])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_config_round_trips_through_json(architecture):
    cfg = tiny_config(architecture)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.to_dict()["attn_only"] == (architecture == "attn-only")
    assert cfg.to_dict()["act_fn"] == {"attn-only": None, "gelu": "gelu", "solu": "solu_ln"}[architecture]


def test_unknown_architecture_error_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="attn-only, gelu, solu"):
        tiny_config("relu")


@pytest.mark.parametrize("field", ["n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab"])
def test_a_zero_size_is_refused(field):
    with pytest.raises(ModelConfigError, match=field):
        tiny_config("gelu", **{field: 0})


def test_attn_only_may_have_no_mlp_width():
    assert tiny_config("attn-only", d_mlp=0).n_params() == tiny_config("attn-only").n_params()


def test_from_dict_refuses_contradicting_and_unknown_keys():
    d = tiny_config("gelu").to_dict()
    with pytest.raises(ModelConfigError, match="act_fn='solu_ln'"):
        ModelConfig.from_dict({**d, "act_fn": "solu_ln"})
    with pytest.raises(ModelConfigError, match="normalization_type"):
        ModelConfig.from_dict({**d, "normalization_type": "RMS"})
    with pytest.raises(ModelConfigError, match="dropout"):
        ModelConfig.from_dict({**d, "dropout": 0.1})
    with pytest.raises(ModelConfigError, match="d_vocab"):
        ModelConfig.from_dict({k: v for k, v in d.items() if k != "d_vocab"})
