"""Weight decay reaches the weight matrices only on the CURRENT path; LEGACY keeps its rule (numerics.weight_decay)."""

import dataclasses

from training import build_model, build_optimizer, load_spec
from training.loop import run_config
from training.numerics import CURRENT, LEGACY, recorded_numerics


def _decayed(spec) -> set[str]:
    run = next(r for r in spec.runs() if r.architecture == "solu")
    model = build_model(spec, run, 300, "cpu")
    optimizer = build_optimizer(model, spec, "cpu")
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(p)] for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}


def test_new_runs_decay_no_attention_bias_and_old_runs_keep_their_rule():
    spec = load_spec("tiny")
    current = _decayed(dataclasses.replace(spec, numerics=CURRENT))
    legacy = _decayed(dataclasses.replace(spec, numerics=LEGACY))
    assert current == {n for n in legacy if n.rsplit(".", 1)[-1].startswith("W_")}
    assert legacy - current == {"blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V"}
    assert "embed.W_E" in current and "blocks.0.mlp.ln.w" not in current


def test_the_rule_is_recorded_in_config_json_so_a_replay_uses_it():
    spec = load_spec("tiny")
    run = spec.runs()[0]
    model = build_model(spec, run, 300, "cpu")
    config = run_config(dataclasses.replace(spec, numerics=CURRENT), run, model.cfg)
    assert config["numerics"]["weight_decay"] == "weights"
    assert recorded_numerics(config).weight_decay == "weights"
    assert recorded_numerics({k: v for k, v in config.items() if k != "numerics"}).weight_decay == "ndim>=2"
