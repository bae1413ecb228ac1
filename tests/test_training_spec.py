"""Zoo specs: built-ins load, bad specs fail with the key and its line."""

import pytest

from training import SpecError, checkpoint_steps, learning_rate, load_spec, parse_spec

GOOD = """\
name = "mini"
seeds = [0, 1]
seed_pairs = [[1, 2]]

[data]
corpus = "stories"
n_docs = 50
vocab_size = 300
n_ctx = 16

[sizes]
1l = { n_layers = 1, d_model = 16, n_heads = 2, d_head = 8, d_mlp = 32 }

[families]
solu = ["1l"]
gelu = ["1l"]

[training]
steps = 10
batch_size = 8
micro_batch_size = 4
"""


def test_builtin_specs_load_and_toy_has_three_architectures_two_sizes_three_seeds():
    toy = load_spec("toy")
    assert set(toy.families) == {"attn-only", "gelu", "solu"}
    assert all(len(sizes) >= 2 for sizes in toy.families.values())
    assert len(toy.seeds) >= 3
    assert len(toy.runs()) == 18
    assert load_spec("tiny").runs()


def test_seed_sets_both_seeds_and_seed_pairs_set_them_apart():
    spec = parse_spec(GOOD)
    names = [r.name for r in spec.runs()]
    assert "solu-1l-seed0" in names and "solu-1l-init1-data2" in names
    pair = next(r for r in spec.runs() if r.name == "solu-1l-init1-data2")
    assert (pair.init_seed, pair.data_seed) == (1, 2)
    assert pair.full_name == "mini-solu-1l-init1-data2"


def test_run_filter_globs_and_names_the_runs_when_nothing_matches():
    spec = parse_spec(GOOD)
    assert [r.name for r in spec.runs("gelu-*")] == ["gelu-1l-seed0", "gelu-1l-seed1", "gelu-1l-init1-data2"]
    with pytest.raises(SpecError, match="matches no run.*solu-1l-seed0"):
        spec.runs("mamba-*")


def test_unknown_architecture_lists_the_known_ones_with_its_line():
    bad = GOOD.replace('gelu = ["1l"]', 'mamba = ["1l"]')
    with pytest.raises(SpecError, match=r"line 16.*unknown architecture 'mamba'.*attn-only, gelu, solu"):
        parse_spec(bad, source="mini.toml")


def test_malformed_value_names_key_and_line():
    bad = GOOD.replace("steps = 10", 'steps = "ten"')
    with pytest.raises(SpecError, match=r"mini.toml, line 19, key 'training.steps'.*expected int"):
        parse_spec(bad, source="mini.toml")


def test_unknown_key_names_key_line_and_allowed_keys():
    bad = GOOD.replace("batch_size = 8", "batch_size = 8\nlearning_rate = 3")
    with pytest.raises(SpecError, match=r"line 21.*unknown key 'learning_rate'.*allowed here"):
        parse_spec(bad, source="mini.toml")


def test_toml_syntax_error_names_the_line():
    with pytest.raises(SpecError, match=r"not valid TOML.*line 3"):
        parse_spec('name = "x"\n[data]\nn_ctx = = 3\n', source="x.toml")


def test_batch_not_divisible_by_micro_batch_is_refused():
    bad = GOOD.replace("micro_batch_size = 4", "micro_batch_size = 3")
    with pytest.raises(SpecError, match=r"line 21.*batch_size 8 is not divisible by micro_batch_size 3"):
        parse_spec(bad, source="mini.toml")


def test_undefined_size_and_unknown_spec_name():
    with pytest.raises(SpecError, match=r"size '2l' is not defined"):
        parse_spec(GOOD.replace('solu = ["1l"]', 'solu = ["2l"]'))
    with pytest.raises(SpecError, match=r"built-in specs are: toy, tiny"):
        load_spec("nonexistent")


def test_dense_checkpoint_schedule_is_log_spaced_then_linear():
    toy = load_spec("toy")
    steps = checkpoint_steps(toy.checkpoints, toy.training.steps)
    assert 150 <= len(steps) <= 250
    assert steps[:8] == [0, 1, 2, 4, 8, 12, 16, 20] or steps[:5] == [0, 1, 2, 4, 8]
    assert steps[-1] == toy.training.steps
    assert all(b > a for a, b in zip(steps, steps[1:]))


def test_learning_rate_warms_up_then_decays_to_min_lr():
    toy = load_spec("toy")
    opt, total = toy.optimizer, toy.training.steps
    assert learning_rate(opt, 1, total) == pytest.approx(opt.lr / opt.warmup_steps)
    assert learning_rate(opt, opt.warmup_steps, total) == pytest.approx(opt.lr)
    assert learning_rate(opt, total, total) == pytest.approx(opt.min_lr)


def test_a_bad_data_value_is_a_spec_error_naming_the_table():
    with pytest.raises(SpecError, match=r"mini.toml, table \[data\]: .*n_ctx"):
        parse_spec(GOOD.replace("n_ctx = 16", "n_ctx = 0"), source="mini.toml")
