import dataclasses

import pytest

from genlab.config import (
    DataConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    build_run_config,
    dump_yaml,
    from_dict,
    load_yaml,
    to_dict,
)
from genlab.errors import ConfigError


def test_yaml_11_float_strings_are_coerced():
    # YAML 1.1 reads 1e-3 as the string "1e-3"; the config must still get a float.
    cfg = from_dict(OptimConfig, {"lr": "1e-3", "momentum": "0.5"})
    assert cfg.lr == pytest.approx(1e-3) and isinstance(cfg.lr, float)
    assert cfg.momentum == 0.5


def test_unknown_key_is_an_error_that_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) optim.lrr.*optim.lr"):
        from_dict(OptimConfig, {"lrr": 0.1}, "optim")


@pytest.mark.parametrize("section,values,message", [
    (OptimConfig, {"lr": "fast"}, "expected a number"),
    (OptimConfig, {"lr": -1}, "optim.lr must be > 0"),
    (OptimConfig, {"lr": "nan"}, "finite"),
    (TrainConfig, {"epochs": 1.5}, "expected an integer"),
    (TrainConfig, {"epochs": True}, "expected an integer"),
    (TrainConfig, {"validate": "maybe"}, "true/false"),
    (DataConfig, {"binarize": "sometimes"}, "binarize"),
    (DataConfig, {"batch_size": 0}, "batch_size"),
])
def test_wrong_types_and_values_are_errors(section, values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(section, values)


def test_integer_from_scientific_string():
    assert from_dict(TrainConfig, {"max_steps": "1e3"}).max_steps == 1000


def test_overrides_build_a_valid_run_config():
    data = apply_overrides({"model_name": "rbm"}, ["optim.lr=1e-3", "model.n_hidden=20", "train.epochs=3",
                                                   "data.data_dir=null"])
    config = build_run_config(data)
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.model.n_hidden == 20
    assert config.train.epochs == 3
    assert config.data.data_dir is None


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="unknown model"):
        build_run_config({"model_name": "nope"})
    with pytest.raises(ConfigError, match="top-level"):
        build_run_config({"model_name": "rbm", "optimizer": {}})


def test_round_trip_through_yaml(tmp_path):
    config = build_run_config({"model_name": "rbm", "optim": {"lr": 0.05, "name": "sgd"}})
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(config.to_dict()))
    again = build_run_config(load_yaml(path))
    assert to_dict(again.model) == to_dict(config.model)
    assert again.optim == config.optim and again.train == config.train and again.data == config.data


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(path)


def test_step_schedule_multiplies_the_lr_at_each_milestone():
    from genlab.training.optim import lr_factor

    cfg = from_dict(OptimConfig, {"schedule": "step", "milestones": [2, 4], "decay_rate": 0.3})
    steps_per_epoch = 10
    factors = [lr_factor(epoch * steps_per_epoch + 9, cfg, 60, steps_per_epoch) for epoch in range(6)]
    assert factors == pytest.approx([1.0, 1.0, 0.3, 0.3, 0.09, 0.09])
    assert lr_factor(19, cfg, 60, steps_per_epoch) == 1.0 and lr_factor(20, cfg, 60, steps_per_epoch) == 0.3
    with pytest.raises(ConfigError, match="needs optim.milestones"):
        from_dict(OptimConfig, {"schedule": "step"})
    with pytest.raises(ConfigError, match="only apply to optim.schedule=step"):
        from_dict(OptimConfig, {"schedule": "cosine", "milestones": [2]})
    with pytest.raises(ConfigError, match="never lowers the lr"):
        from_dict(OptimConfig, {"schedule": "step", "milestones": [2]})
    with pytest.raises(ConfigError, match=r"milestones \[3\] are not before train.epochs=3"):
        build_run_config({"model_name": "rbm", "train": {"epochs": 3},
                          "optim": {"schedule": "step", "milestones": [1, 3], "decay_rate": 0.5}})
    with pytest.raises(ConfigError, match="increasing"):
        from_dict(OptimConfig, {"schedule": "step", "milestones": [4, 2]})


def test_a_preset_that_extends_another_states_only_what_differs(tmp_path):
    from genlab.config import compose_run_config

    variant = tmp_path / "variant.yaml"
    variant.write_text("extends: gan-wgan-gp-paper\nmodel:\n  g_width: 16\noptim:\n  lr: 5.0e-4\n")
    parent = compose_run_config(preset="gan-wgan-gp-paper")
    config = compose_run_config(preset=str(variant))
    assert config.model_name == "wgan-gp"  # inherited with everything it does not restate
    assert (config.model.g_width, config.optim.lr) == (16, 5e-4)
    assert config.model.d_width == parent.model.d_width and config.optim.beta2 == parent.optim.beta2
    assert config.data.batch_size == parent.data.batch_size and config.model.gp_weight == parent.model.gp_weight
    # A bundled variant composes to the same run as its parent with the dataset changed.
    fashion, mnist = compose_run_config(preset="gan-acgan-fashion"), compose_run_config(preset="gan-acgan-mnist")
    assert fashion.data.dataset == "fashion-mnist"
    assert dataclasses.replace(fashion, data=mnist.data) == mnist


@pytest.mark.parametrize("text,message", [
    ("extends: 3\n", "extends must name one preset"),
    ("extends: no-such-preset\n", "unknown preset 'no-such-preset'"),
    ("extends: SELF\n", "extends loops back"),
    ("extends: gan-wgan-gp-paper\nmodel: 3\n", "preset .*bad.yaml: 'model' must be a block of settings"),
    ("model_name: dcgan\noptim: [1, 2]\n", "'optim' must be a block of settings"),
    ("extends: PARENT\nmodel:\n  g_width: 16\n", "preset .*parent.yaml: 'model' must be a block"),
])
def test_a_bad_preset_is_a_config_error(tmp_path, text, message):
    from genlab.config import compose_config

    preset = tmp_path / "bad.yaml"
    parent = tmp_path / "parent.yaml"  # a parent whose own section is broken: the error names the parent
    parent.write_text("model_name: dcgan\nmodel: 3\n")
    preset.write_text(text.replace("SELF", str(preset)).replace("PARENT", str(parent)))
    with pytest.raises(ConfigError, match=message):
        compose_config("dcgan", preset=str(preset))


def test_an_empty_preset_section_is_no_settings(tmp_path):
    from genlab.config import compose_run_config

    preset = tmp_path / "empty-train.yaml"
    preset.write_text("extends: gan-wgan-gp-paper\ntrain:\n")
    assert compose_run_config(preset=str(preset)) == compose_run_config(preset="gan-wgan-gp-paper")
