"""Deep belief nets: greedy stacking, the label-clamped sampler, PCD/up-down stages, the backprop classifier."""

import itertools
from pathlib import Path

import pytest
import torch

from genlab.cli import main
from genlab.config import apply_overrides, build_run_config, compose_run_config
from genlab.data.datasets import build_data
from genlab.errors import ConfigError
from genlab.models.base import DataInfo
from genlab.models.dbn import DBN, DBNConfig, sample_softmax
from genlab.models.dbn_classifier import DBNClassifier, DBNClassifierConfig
from genlab.training import checkpoint as ckpt
from genlab.training.checkpoint import load_model
from genlab.training.run import train


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids OpenMP spin-waiting on a busy machine."""
    torch.set_num_threads(1)


def run_config(model_name: str, dataset: Path, out: Path, *extra: str):
    overrides = [f"data.dataset={dataset}", "data.val_size=64", "data.batch_size=16", "optim.name=sgd",
                 "optim.lr=0.1", "optim.momentum=0.5", "train.num_samples=8", "train.progress=false",
                 "train.device=cpu", f"train.out_dir={out}", *extra]
    return build_run_config(apply_overrides({"model_name": model_name}, overrides))


def toy_batch(count: int = 10, n_labels: int = 4, seed: int = 0):
    """Random 8x8 images in [0, 1] and labels."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 8, 8, generator=generator), torch.randint(0, n_labels, (count,), generator=generator)


def bar_accuracy(images: torch.Tensor, label: int) -> float:
    """Fraction of 8x8 images whose brightest column pair is the bar of ``label`` (the bars data set)."""
    column_pairs = images.reshape(images.shape[0], 8, 4, 2).mean((1, 3))
    return float((column_pairs.argmax(1) == label).float().mean())


# ---------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("layers, message", [((784,), "at least 2 sizes"), ((784, 0, 10), "positive"),
                                             ((784, -5), "positive"), ((), "at least 2 sizes")])
def test_impossible_layer_lists_are_config_errors(layers, message):
    with pytest.raises(ConfigError, match=message):
        DBNConfig(layers=layers)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="one value or one per RBM"):
        DBNConfig(layers=(784, 500, 500), epochs_per_layer=(1, 2, 3))
    with pytest.raises(ConfigError, match="n_labels=1"):
        DBNConfig(n_labels=1)
    image = DataInfo(kind="image", shape=(1, 8, 8), num_classes=4)
    with pytest.raises(ConfigError, match=r"model.layers starts with 784 .* 64 values"):
        DBN.adapt_config(DBNConfig(), image)
    with pytest.raises(ConfigError, match="data.scale=unit"):
        DBN.adapt_config(DBNConfig(layers=(64, 8)), DataInfo(kind="image", shape=(1, 8, 8), value_range=(-1.0, 1.0)))
    with pytest.raises(ConfigError, match="no labels"):
        DBN.adapt_config(DBNConfig(layers=(64, 8)), DataInfo(kind="image", shape=(1, 8, 8), num_classes=0))
    with pytest.raises(ConfigError, match="n_labels=4"):
        DBN.adapt_config(DBNConfig(layers=(64, 8), n_labels=2), image)


def test_cli_reports_a_layer_list_that_does_not_fit_the_data(tiny_images, tmp_path, capsys):
    code = main(["train", "dbn", "--dataset", str(tiny_images), "--out", str(tmp_path), "--set",
                 "model.layers=[784,500]", "--set", "model.n_labels=4", "--set", "data.val_size=64"])
    assert code == 2
    assert "model.layers starts with 784" in capsys.readouterr().err


def test_stage_schedule_follows_the_epochs():
    config = DBNConfig(layers=(64, 16, 16, 32), epochs_per_layer=(2, 1, 1), pcd_epochs=1, updown_epochs=2)
    stages = [config.stage_of_epoch(epoch) for epoch in range(9)]
    assert stages == [("greedy", 0), ("greedy", 0), ("greedy", 1), ("greedy", 2), ("pcd", 2),
                      ("updown", 2), ("updown", 2), ("updown", 2), ("updown", 2)]
    assert config.total_epochs == 7
    assert DBNConfig(layers=(64, 16), epochs_per_layer=(3,)).stage_of_epoch(10) == ("greedy", 0)


def test_classifier_stages_and_fine_tuning_learning_rate_decay():
    config = DBNClassifierConfig(dbn=DBNConfig(layers=(64, 16, 20), n_labels=4, epochs_per_layer=(1,), pcd_epochs=1),
                                 n_classes=4, finetune_lr_scale=0.5, finetune_lr_decay=0.9)
    assert config.pretrain_epochs == 3
    model = DBNClassifier(config)
    model.on_epoch_start(2)
    assert model.pretraining and model.dbn.stage == "pcd"
    model.on_epoch_start(5)
    assert not model.pretraining and bool(model.finetuning)
    assert model.loss_scale == pytest.approx(0.5 * 0.9 ** 2)
    assert torch.equal(model.head.weight, model.dbn.top.W[:, 16:].T)  # p(label | top) of the top RBM
    assert DBNClassifierConfig(init_from="somewhere").pretrain_epochs == 0


def test_fine_tuning_dropout_drops_each_layer_input_at_its_rate_and_rescales_the_rest_in_training_only():
    torch.manual_seed(0)
    config = DBNClassifierConfig(dbn=DBNConfig(layers=(64, 16, 20), n_labels=4, epochs_per_layer=(1,)), n_classes=4,
                                 finetune_input_dropout=0.2, finetune_dropout=0.5)
    model = DBNClassifier(config)
    seen: dict[str, torch.Tensor] = {}
    for name, layer in (("input", model.hidden[0]), ("hidden", model.hidden[1]), ("top", model.head)):
        layer.register_forward_pre_hook(lambda module, args, name=name: seen.__setitem__(name, args[0]))
    x = torch.rand(1, 64).clamp_min(0.05).expand(20000, -1)  # one image, many dropout masks
    model.eval()
    model.logits(x)
    clean = {name: value[0].clone() for name, value in seen.items()}
    assert all(torch.equal(value, value[:1].expand_as(value)) for value in seen.values()), "no dropout in eval"
    model.train()
    model.logits(x)
    for name, rate in (("input", 0.2), ("hidden", 0.5), ("top", 0.5)):
        dropped = float((seen[name] == 0).float().mean())
        assert abs(dropped - rate) < 0.01, f"{name}: dropped {dropped:.3f}, wanted {rate}"
    kept = seen["input"] != 0  # inverted dropout: the pixels kept are scaled by 1 / (1 - rate)
    assert torch.allclose(seen["input"][kept], (clean["input"] / 0.8).expand_as(kept)[kept], rtol=1e-5)
    assert torch.allclose(seen["input"].mean(0), clean["input"], atol=0.02)
    for bad in ({"finetune_dropout": 1.0}, {"finetune_input_dropout": -0.1}):
        with pytest.raises(ConfigError, match="dropout must be in"):
            DBNClassifierConfig(**bad)


def test_fine_tuning_weight_decay_adds_the_l2_penalty_of_the_net_weights_to_the_cross_entropy():
    dbn = DBNConfig(layers=(64, 16, 20), n_labels=4, epochs_per_layer=(1,))
    torch.manual_seed(0)
    plain = DBNClassifier(DBNClassifierConfig(dbn=dbn, n_classes=4, pretrain=False, finetune_lr_scale=3.0))
    decayed = DBNClassifier(DBNClassifierConfig(dbn=dbn, n_classes=4, pretrain=False, finetune_lr_scale=3.0,
                                                finetune_weight_decay=0.01))
    decayed.load_state_dict(plain.state_dict())
    for model in (plain, decayed):
        model.on_epoch_start(0)
    batch = (torch.rand(8, 64), torch.randint(0, 4, (8,)))
    squares = sum(float((layer.weight.detach() ** 2).sum()) for layer in [*plain.hidden, plain.head])
    loss, logs = decayed.loss(batch)
    assert logs["l2_penalty"] == pytest.approx(0.5 * 0.01 * squares, rel=1e-5)
    expected = float(plain.loss(batch)[0].detach()) + 3.0 * 0.5 * 0.01 * squares
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="finetune_weight_decay"):
        DBNClassifierConfig(finetune_weight_decay=-1.0)


# ---------------------------------------------------------------------------------------------- the math


def test_greedy_stacking_trains_each_layer_on_the_hidden_probabilities_below(monkeypatch):
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(64, 16, 12, 20), n_labels=4, epochs_per_layer=(1,)))
    with torch.no_grad():
        model.rbms[0].W.normal_(0.0, 0.5)  # so hidden probabilities are spread out, not all 0.5
    x, y = toy_batch()
    seen = {}
    original = model.rbms[1].loss

    def spy(v):
        seen["layer1"] = v.detach().clone()
        return original(v)

    monkeypatch.setattr(model.rbms[1], "loss", spy)
    model.on_epoch_start(1)
    loss, logs = model.loss((x, y))
    loss.backward()
    expected = model.rbms[0].hidden_probs(x.reshape(10, -1)).detach()
    assert torch.allclose(seen["layer1"], expected)
    # Probabilities, not samples and not the pixels: the input statistics are those of p(h1 | x).
    assert bool(((seen["layer1"] > 0) & (seen["layer1"] < 1)).all())
    assert not bool(((seen["layer1"] == 0) | (seen["layer1"] == 1)).all())
    assert seen["layer1"].mean() == pytest.approx(float(expected.mean()))
    assert seen["layer1"].std() == pytest.approx(float(expected.std()))
    assert logs["layer"] == 1.0
    assert model.rbms[1].W.grad is not None
    assert model.rbms[0].W.grad is None and model.top.W.grad is None  # frozen below, untouched above

    captured = {}
    original_top = model._top_cd_loss

    def spy_top(pen, labels, k, persistent=False):
        captured.update(pen=pen.detach().clone(), labels=labels.clone(), persistent=persistent)
        return original_top(pen, labels, k, persistent)

    monkeypatch.setattr(model, "_top_cd_loss", spy_top)
    model.on_epoch_start(2)
    model.loss((x, y))[0].backward()
    assert torch.allclose(captured["pen"], model.up_probs(x.reshape(10, -1), 2).detach())
    assert torch.equal(captured["labels"], torch.nn.functional.one_hot(y, 4).float())
    assert captured["persistent"] is False


def test_sample_softmax_draws_one_hot_rows_with_the_right_frequencies():
    probs = torch.tensor([0.1, 0.2, 0.7]).expand(40000, 3)
    draws = sample_softmax(probs, torch.Generator().manual_seed(0))
    assert torch.equal(draws.sum(1), torch.ones(40000))
    assert torch.allclose(draws.mean(0), torch.tensor([0.1, 0.2, 0.7]), atol=0.01)


def small_random_dbn(seed: int = 0) -> DBN:
    torch.manual_seed(seed)
    model = DBN(DBNConfig(layers=(6, 3), n_labels=2, epochs_per_layer=(1,)))
    with torch.no_grad():
        model.top.W.normal_(0.0, 1.5)
        model.top.b.normal_(0.0, 1.0)
        model.top.c.normal_(0.0, 1.0)
    return model


def histogram(samples: torch.Tensor) -> torch.Tensor:
    index = (samples.reshape(samples.shape[0], -1) * (2 ** torch.arange(5, -1, -1))).sum(1).long()
    return torch.bincount(index, minlength=64).double() / samples.shape[0]


def test_label_clamped_gibbs_sampling_matches_the_exact_conditional():
    # A single labelled RBM: sample() returns the visible states, whose law is p(v | label) ∝ exp(-F([v, e_label])).
    model = small_random_dbn()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    for label in (0, 1):
        exact = torch.softmax(-model.top.free_energy(
            torch.cat([states, torch.nn.functional.one_hot(torch.full((64,), label), 2).float()], 1)).detach()
            .double(), 0)
        samples = model.sample(20000, label=label, steps=30, generator=torch.Generator().manual_seed(label),
                               mean_field=False)  # binary states, whose law the test checks
        assert 0.5 * float((histogram(samples) - exact).abs().sum()) < 0.04
    joint = torch.stack([-model.top.free_energy(torch.cat([states, torch.eye(2)[k].expand(64, 2)], 1))
                         for k in range(2)], 1)
    marginal = torch.softmax(joint.detach().reshape(-1).double(), 0).reshape(64, 2).sum(1)
    free = model.sample(20000, steps=30, generator=torch.Generator().manual_seed(5), mean_field=False)  # labels too
    assert 0.5 * float((histogram(free) - marginal).abs().sum()) < 0.04


def test_label_gain_samples_the_conditional_with_the_label_unit_at_that_value():
    # The tempered conditional: p(v | label, gain) ∝ exp(-F([v, gain · e_label])), exact by enumeration.
    model = small_random_dbn(seed=1)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    gain = 2.5
    exact = torch.softmax(-model.top.free_energy(
        torch.cat([states, torch.tensor([0.0, gain]).expand(64, 2)], 1)).detach().double(), 0)
    samples = model.sample(20000, label=1, steps=30, label_gain=gain, mean_field=False,
                           generator=torch.Generator().manual_seed(0))
    assert 0.5 * float((histogram(samples) - exact).abs().sum()) < 0.04
    with pytest.raises(ConfigError, match="label_gain"):
        model.sample(2, label=1, label_gain=0.0)
    with pytest.raises(ConfigError, match="label_gain"):
        DBNConfig(label_gain=-1.0)


def test_mean_field_down_pass_decodes_the_last_top_state_without_sampling():
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(6, 4, 3), n_labels=2, epochs_per_layer=(1,)))
    with torch.no_grad():
        for rbm in model.rbms:
            rbm.W.normal_(0.0, 1.0)
    generator = torch.Generator().manual_seed(3)
    pen, _ = model._start(5, None, generator)
    model.down_pass(pen, generator)  # frame 0 draws its own noise
    clamped = torch.nn.functional.one_hot(torch.ones(5, dtype=torch.long), 2).float()
    _, _, pen_probs = model._gibbs_top(pen, clamped, clamped, generator)
    expected = model.generative_probs(0, pen_probs).reshape(5, 6)
    images = model.sample(5, steps=1, label=1, mean_field=True, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(images.reshape(5, 6), expected)
    assert model.config.mean_field_down  # the default: generation shows probabilities, not one noisy draw


def test_label_free_energies_are_the_top_rbm_free_energy_of_each_label():
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(64, 16, 20), n_labels=4, epochs_per_layer=(1,)))
    with torch.no_grad():
        model.top.W.normal_(0.0, 0.3)
    x = toy_batch()[0].reshape(10, -1)
    pen = model.up_probs(x, 1)
    expected = torch.stack([model.top.free_energy(torch.cat([pen, torch.eye(4)[k].expand(10, 4)], 1))
                            for k in range(4)], 1)
    assert torch.allclose(model.label_free_energies(x), expected, atol=1e-5)
    assert torch.equal(model.classify(x), expected.argmin(1))


def test_updown_trains_recognition_generative_and_top_weights_only():
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(64, 16, 12, 20), n_labels=4, epochs_per_layer=(1,), updown_epochs=1))
    model.on_epoch_start(3)
    assert model.stage == "updown" and bool(model.untied)
    for layer in range(2):
        assert torch.equal(model.gen_weights[layer], model.rbms[layer].W)
        assert torch.equal(model.gen_biases[layer], model.rbms[layer].b)
    loss, logs = model.loss(toy_batch())
    loss.backward()
    assert {"wake_recon_ce_nats", "sleep_ce_nats", "cd_gap"} <= logs.keys()
    for layer in range(2):
        assert model.gen_weights[layer].grad is not None and model.gen_biases[layer].grad is not None
        assert model.rbms[layer].W.grad is not None and model.rbms[layer].c.grad is not None  # recognition
        assert model.rbms[layer].b.grad is None  # replaced by the generative biases
    assert model.top.W.grad is not None


@pytest.mark.parametrize("epoch, scale_name", [(0, None), (2, None), (3, "pcd_lr_scale"),
                                               (4, "updown_lr_scale")])
def test_weight_decay_follows_each_stage_learning_rate_scale(epoch, scale_name):
    # SGD's own weight decay would not be scaled with a stage's loss: at scale 0.1 it would be a 10x stronger
    # L2 relative to the gradient. The DBN's penalty sits inside the scaled loss instead.
    config = DBNConfig(layers=(64, 16, 12, 20), n_labels=4, epochs_per_layer=(1,), pcd_epochs=1,
                       pcd_lr_scale=0.1, updown_epochs=1, updown_lr_scale=0.3)
    scale = getattr(config, scale_name) if scale_name else 1.0

    def gradients(weight_decay: float) -> tuple[dict[str, torch.Tensor], DBN]:
        torch.manual_seed(0)
        model = DBN(config)
        assert all(group["weight_decay"] == 0.0 for group in model.param_groups(weight_decay))
        model.on_epoch_start(epoch)
        torch.manual_seed(1)
        model.loss(toy_batch())[0].backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, model

    plain, _ = gradients(0.0)
    decayed, model = gradients(0.02)
    assert plain.keys() == decayed.keys()
    for name, parameter in model.named_parameters():
        if name not in plain:
            continue
        expected = scale * 0.02 * parameter.detach() if parameter.ndim == 2 else torch.zeros_like(parameter)
        assert torch.allclose(decayed[name] - plain[name], expected, atol=1e-7), name


def test_updown_cd_k_schedule_takes_equal_shares_of_the_updown_epochs():
    config = DBNConfig(layers=(64, 16, 12, 20), epochs_per_layer=(1,), pcd_epochs=2, updown_epochs=6,
                       updown_cd_k=(3, 6, 10))
    first_updown = 3 + 2
    assert [config.updown_cd_k_of_epoch(first_updown + e) for e in range(8)] == [3, 3, 6, 6, 10, 10, 10, 10]
    assert config.updown_cd_k_of_epoch(0) == 3
    # A single value (the older presets' scalar) is the constant schedule.
    scalar = build_run_config(apply_overrides({"model_name": "dbn"}, ["model.updown_cd_k=4"]))
    assert scalar.model.updown_cd_k == (4,)
    with pytest.raises(ConfigError, match="updown_cd_k"):
        DBNConfig(updown_cd_k=(3, 0))
    with pytest.raises(ConfigError, match="updown_cd_k"):
        DBNConfig(updown_cd_k=())
    with pytest.raises(ConfigError, match="updown_epochs=2"):
        DBNConfig(updown_epochs=2, updown_cd_k=(3, 6, 10))
    assert DBNConfig(updown_cd_k=5).updown_cd_k == (5,)
    # The Gibbs steps actually run: the top visible layer is sampled k times per up-down loss.
    model = DBN(config)
    counted = []
    original = model._top_visible
    model._top_visible = lambda *args, **kwargs: counted.append(1) or original(*args, **kwargs)
    steps = []
    for epoch in (first_updown, first_updown + 2, first_updown + 5):
        model.on_epoch_start(epoch)
        counted.clear()
        model.loss(toy_batch())
        steps.append(len(counted))
    assert steps == [3, 6, 10]


@pytest.mark.parametrize("label_probs", [True, False])
def test_top_negative_phase_uses_label_probabilities_as_the_paper(label_probs):
    # Hinton et al. 2006's code drives and measures the top RBM's negative phase with the label softmax
    # probabilities; the label biases' gradient is then mean(one-hot data) vs mean(those probabilities).
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(64, 16, 12, 20), n_labels=4, epochs_per_layer=(1,), updown_epochs=1,
                          updown_cd_k=(1,), label_probs_in_negative=label_probs))
    with torch.no_grad():
        model.top.W.normal_(0.0, 0.5)
    model.on_epoch_start(3)
    captured = {}
    original = model._top_negative

    def spy(h, k, label_probs):
        captured["h"], captured["v"] = h.clone(), original(h, k, label_probs)
        return captured["v"]

    model._top_negative = spy
    images, y = toy_batch()
    loss, _ = model.loss((images, y))
    loss.backward()
    labels_model = captured["v"][:, 12:]
    expected_probs = torch.softmax(torch.addmm(model.top.b, captured["h"], model.top.W)[:, 12:], 1).detach()
    if label_probs:
        assert torch.allclose(labels_model, expected_probs, atol=1e-6)
    else:
        assert set(labels_model.unique().tolist()) <= {0.0, 1.0} and torch.equal(labels_model.sum(1), torch.ones(10))
    # ... and the loss's negative phase is that state: the label biases' gradient is data minus those labels.
    one_hot = torch.nn.functional.one_hot(y, 4).float()
    expected_grad = model.config.updown_lr_scale * -(one_hot.mean(0) - labels_model.mean(0))
    assert torch.allclose(model.top.b.grad[12:], expected_grad, atol=1e-6)


@pytest.mark.parametrize("label_probs", [True, False])
def test_greedy_top_cd_uses_label_probabilities_and_pcd_chains_stay_one_hot(label_probs):
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(64, 16, 20), n_labels=4, epochs_per_layer=(1,), pcd_epochs=1, top_cd_k=2,
                          n_chains=6, label_probs_in_negative=label_probs))
    with torch.no_grad():
        model.top.W.normal_(0.0, 0.5)
    negatives = []
    original = model._top_negative
    model._top_negative = lambda h, k, probs: negatives.append(original(h, k, probs)) or negatives[-1]
    model.on_epoch_start(1)  # the greedy stage of the labelled top RBM (the second RBM)
    assert model.stage == "greedy" and model.layer == 1
    model.loss(toy_batch())
    labels_model = negatives[-1][:, 16:]
    is_one_hot = set(labels_model.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(labels_model.sum(1), torch.ones(10), atol=1e-6) and is_one_hot != label_probs
    model.on_epoch_start(2)  # PCD: the persistent chains keep sampled one-hot labels either way
    assert model.stage == "pcd"
    model.loss(toy_batch())
    chain_labels = model.top_chains[:, 16:]
    assert set(chain_labels.unique().tolist()) <= {0.0, 1.0} and torch.equal(chain_labels.sum(1), torch.ones(6))


def test_untying_keeps_the_generative_model():
    torch.manual_seed(0)
    model = DBN(DBNConfig(layers=(64, 16, 12, 20), n_labels=4, epochs_per_layer=(1,), updown_epochs=1))
    with torch.no_grad():
        for rbm in model.rbms:
            rbm.W.normal_(0.0, 0.3)
    before = model.sample(5, steps=3, label=1, generator=torch.Generator().manual_seed(0))
    model.untie()
    after = model.sample(5, steps=3, label=1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(before, after, atol=1e-6)


def test_labels_outside_the_range_are_config_errors():
    model = DBN(DBNConfig(layers=(64, 16), n_labels=10, epochs_per_layer=(1,)))
    for bad in (10, -1, 2.5, "seven", [1, 2]):
        with pytest.raises(ConfigError, match="label"):
            model.sample(3, label=bad, steps=1)
    unlabelled = DBN(DBNConfig(layers=(64, 16), n_labels=0, epochs_per_layer=(1,)))
    with pytest.raises(ConfigError, match="no label units"):
        unlabelled.sample(2, label=3, steps=1)
    with pytest.raises(ConfigError, match="unknown option"):
        model.sample(2, temperature=1.0)


# ---------------------------------------------------------------------------------------------- through the engine


def test_all_stages_through_the_trainer_resume_exactly_and_sample(tiny_images, tmp_path, capsys):
    stages = ["model.layers=[64,16,32]", "model.n_labels=4", "model.epochs_per_layer=[1]", "model.pcd_epochs=1",
              "model.n_chains=8", "model.updown_epochs=1", "model.sample_steps=5", "train.epochs=4",
              "train.checkpoint_every=10"]
    straight = train(run_config("dbn", tiny_images, tmp_path / "a", *stages))
    partial = train(run_config("dbn", tiny_images, tmp_path / "b", *stages, "train.max_steps=70"))  # in PCD
    train(run_config("dbn", tiny_images, tmp_path / "b", *stages), resume_dir=partial)
    for run in (straight, partial):
        assert ckpt.latest_checkpoint(run).name == "step-000000112"
    first, second = (ckpt.read_model_file(ckpt.latest_checkpoint(r) / ckpt.MODEL_FILE)[0] for r in (straight, partial))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    chains = [ckpt.load_train_state(ckpt.latest_checkpoint(r) / ckpt.STATE_FILE)["model_extra"]["top_chains"]
              for r in (straight, partial)]
    assert chains[0].shape == (8, 20) and torch.equal(chains[0], chains[1])
    assert list((straight / "samples").glob("samples-step*.png"))

    model, _ = load_model(straight)
    images = model.sample(6, label=2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 8, 8) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    start = toy_batch(3)[0]
    frames = model.sample_chain(3, steps=7, every=2, init=start, label=[0, 1, 3],
                                generator=torch.Generator().manual_seed(0))
    assert frames.shape == (4, 3, 1, 8, 8) and torch.equal(frames[0], start)
    metrics = model.evaluate([toy_batch(16)])
    assert {"test_error_pct", "test_recon_ce_nats", "n_test"} <= metrics.keys()

    assert main(["sample", str(straight), "--n", "4", "--label", "3", "--steps", "5",
                 "--out", str(tmp_path / "threes.png")]) == 0
    assert (tmp_path / "threes.png").is_file()
    assert main(["sample", str(straight), "--label", "12"]) == 2
    assert "label must be an integer in 0-3" in capsys.readouterr().err
    assert main(["sample", str(straight), "--n", "2", "--label", "1", "--label-gain", "2", "--steps", "3",
                 "--out", str(tmp_path / "ones.png")]) == 0
    assert main(["sample", str(straight), "--label", "1", "--label-gain", "-1"]) == 2
    assert "label_gain must be a finite number > 0" in capsys.readouterr().err
    assert main(["sample", str(straight), "--label-gain", "2", "--steps", "3"]) == 2
    assert "no label is clamped; pass a label too" in capsys.readouterr().err


def test_label_clamping_draws_the_clamped_class_on_a_toy_task(tiny_images, tmp_path):
    run = train(run_config("dbn", tiny_images, tmp_path, "model.layers=[64,32,128]", "model.n_labels=4",
                           "model.epochs_per_layer=[3,10]", "train.epochs=13", "model.sample_steps=5"))
    model, _ = load_model(run)
    generator = torch.Generator().manual_seed(0)
    accuracy = [bar_accuracy(model.sample(50, label=label, steps=1000, generator=generator), label)
                for label in range(4)]
    assert sum(accuracy) / 4 >= 0.9, accuracy


def test_classifier_finetuning_improves_accuracy_on_a_toy_task(tiny_images, tmp_path):
    run = train(run_config("dbn-classifier", tiny_images, tmp_path, "model.dbn.layers=[64,32,32]",
                           "model.dbn.n_labels=4", "model.dbn.epochs_per_layer=[1]", "model.dbn.sample_steps=5",
                           "train.epochs=8"))
    model, run_config_ = load_model(run)
    test = list(build_data(run_config_.data, seed=0, splits=("test",)).test)
    after = model.evaluate(test)
    pretrained_only = DBNClassifier(run_config_.model)
    pretrained_only.dbn.load_state_dict(model.dbn.state_dict())
    pretrained_only.copy_from_dbn()  # the network exactly as fine-tuning started
    before = pretrained_only.evaluate(test)
    assert after["test_error_pct"] <= before["test_error_pct"] - 20.0
    assert after["test_ce_nats"] < before["test_ce_nats"]
    assert before["test_generative_error_pct"] == after["test_generative_error_pct"]  # the DBN is kept as is
    assert model.sample(2, steps=3, label=1).shape == (2, 1, 8, 8)  # samples come from the kept DBN


def test_classifier_starts_from_a_dbn_run(tiny_images, tmp_path):
    dbn_run = train(run_config("dbn", tiny_images, tmp_path / "dbn", "model.layers=[64,16,24]", "model.n_labels=4",
                               "model.epochs_per_layer=[1]", "train.epochs=2", "model.sample_steps=5"))
    source, _ = load_model(dbn_run)
    run = train(run_config("dbn-classifier", tiny_images, tmp_path / "cls", f"model.init_from={dbn_run}",
                           "model.dbn.layers=[64,8]", "train.epochs=1", "train.max_steps=1"))
    model, config = load_model(run)
    assert tuple(config.model.dbn.layers) == (64, 16, 24)  # the architecture of the run it started from
    for key, value in source.state_dict().items():
        assert torch.equal(model.dbn.state_dict()[key], value), key
    assert model.evaluate([toy_batch(8)])["n_test"] == 8.0
    with pytest.raises(ConfigError, match="init_from"):
        DBNClassifier.adapt_config(DBNClassifierConfig(init_from=str(tmp_path / "missing")),
                                   DataInfo(kind="image", shape=(1, 8, 8), num_classes=4))


def test_fine_tuned_net_gets_no_weight_decay_and_a_classifier_run_can_seed_another(tiny_images, tmp_path):
    # The fine-tuning loss carries the (decaying) learning rate; a fixed weight decay on the net would not follow
    # it and would shrink the net as the scale falls, so only the DBN's pretraining parameters are decayed.
    first = train(run_config("dbn-classifier", tiny_images, tmp_path / "a", "model.dbn.layers=[64,8]",
                             "model.dbn.n_labels=4", "model.dbn.epochs_per_layer=[1]", "model.dbn.updown_epochs=0",
                             "model.dbn.pcd_epochs=0", "train.epochs=2", "model.dbn.sample_steps=5"))
    model, _ = load_model(first)
    groups = model.param_groups(0.01)
    assert all(group["weight_decay"] == 0.0 for group in groups), "no optimizer decay: the DBN's is in its loss"
    assert model.dbn.weight_decay == 0.01
    model.on_epoch_start(0)  # pretraining: the DBN's loss carries the L2 penalty; fine-tuning: none
    model.dbn.rbms[0].W.grad = None
    torch.manual_seed(0)
    model.loss(toy_batch(n_labels=4))[0].backward()
    with_decay = model.dbn.rbms[0].W.grad.clone()
    model.param_groups(0.0)
    model.dbn.rbms[0].W.grad = None
    torch.manual_seed(0)
    model.loss(toy_batch(n_labels=4))[0].backward()
    assert torch.allclose(with_decay - model.dbn.rbms[0].W.grad, 0.01 * model.dbn.rbms[0].W, atol=1e-7)
    second = train(run_config("dbn-classifier", tiny_images, tmp_path / "b", f"model.init_from={first}",
                              "train.epochs=1", "train.max_steps=1"))
    again, _ = load_model(second)
    for key, value in model.dbn.state_dict().items():
        assert torch.equal(again.dbn.state_dict()[key], value), key


def test_random_init_classifier_has_nothing_to_sample(tiny_images, tmp_path):
    run = train(run_config("dbn-classifier", tiny_images, tmp_path, "model.dbn.layers=[64,8]", "model.pretrain=false",
                           "model.dbn.n_labels=4", "train.epochs=1", "train.max_steps=1"))
    model, _ = load_model(run)
    with pytest.raises(ConfigError, match="random init"):
        model.sample(2)


@pytest.mark.slow
def test_hinton2006_benchmark_smoke_run(data_dir, tmp_path):
    from genlab.bench.dbn_bench import hinton2006_records

    records, notes, run_dir = hinton2006_records(
        tmp_path, data_dir=str(data_dir), samples_per_label=3, sample_steps=5, classifier_epochs=1,
        classifier_limit=1000, use_judge=False,
        overrides=["model.dbn.layers=[784,16,16,32]", "model.dbn.epochs_per_layer=[1]", "model.dbn.pcd_epochs=1",
                   "model.dbn.updown_epochs=1", "data.limit=500", "train.epochs=5", "model.dbn.sample_steps=5"])
    metrics = {record["metric"]: record for record in records}
    assert {"test_error_pct", "train_wall_s", "train_cpu_s", "label_recognised_pct",
            "label_recognised_pct_sampled_down", "label_recognised_pct_label_gain_2",
            "judge_test_accuracy_pct"} <= metrics.keys()
    assert "reference" not in metrics["label_recognised_pct_label_gain_2"]  # only the model's own is the target
    assert metrics["test_error_pct"]["reference"]["value"] == 1.25
    assert 0.0 <= metrics["label_recognised_pct"]["value"] <= 100.0
    assert any("per label" in note for note in notes)
    assert (run_dir / "label-clamped.png").is_file() and (run_dir / "label-clamped_label_gain_2.png").is_file()


def test_dbn_dropout_preset_is_hinton2006_with_dropout_fine_tuning():
    plain = compose_run_config(preset="dbn-hinton2006")
    dropout = compose_run_config(preset="dbn-dropout")
    assert dropout.model.dbn == plain.model.dbn and dropout.optim == plain.optim  # the same pretraining
    assert (dropout.model.finetune_input_dropout, dropout.model.finetune_dropout) == (0.1, 0.3)
    assert dropout.model.finetune_lr_decay == 0.98 and dropout.model.finetune_lr_scale == 10.0
    assert dropout.train.epochs - dropout.model.pretrain_epochs == 150


def test_the_dropout_benchmark_fine_tunes_the_newest_fully_pretrained_run(tmp_path):
    import json

    from genlab.bench.dbn_bench import pretrained_run

    def fake_run(name: str, rows: list[dict], tail: str = "", checkpoint: bool = True) -> Path:
        run = tmp_path / name
        (run / "checkpoints" / ("step-000000004" if checkpoint else "")).mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + tail)
        return run

    assert pretrained_run(tmp_path) is None
    pretraining = [{"step": 1, "split": "train", "layer": 0, "time": 10.0},
                   {"step": 2, "split": "val", "time": 11.0}, {"step": 3, "split": "train", "layer": 2, "time": 30.5}]
    finished = fake_run("dbn-classifier-mnist-20261207-010000",
                        pretraining + [{"step": 4, "split": "train", "ce_nats": 0.1, "time": 40.0}])
    fake_run("dbn-classifier-mnist-20261207-020000", pretraining, tail='{"step": 4, "spl')  # killed while pretraining
    fake_run("dbn-classifier-mnist-20261207-030000", pretraining + [{"step": 4, "split": "train", "ce_nats": 0.1}],
             checkpoint=False)  # no complete checkpoint kept
    assert pretrained_run(tmp_path) == (finished, 30.5)


def test_the_dropout_benchmark_counts_the_source_pretraining_and_keeps_its_own_records(monkeypatch, tmp_path):
    from genlab.bench import BenchContext, dbn_bench

    source = tmp_path / "dbn-hinton2006" / "dbn-classifier-mnist-20261207-010000"
    calls = []

    def fake_records(work_dir, *, preset, overrides, judge_samples, **_):
        calls.append((preset, list(overrides), judge_samples))
        common = {"model": "dbn-classifier 784-500-500-2000-10", "dataset": "mnist"}
        return ([{**common, "metric": "test_error_pct", "value": 0.99, "unit": "%", "wall_s": 100.0},
                 {**common, "metric": "train_wall_s", "value": 100.0, "unit": "s"},
                 {**common, "model": "dbn (generative, free energy)", "metric": "test_error_pct", "value": 3.5}],
                ["run directory x"], tmp_path)

    monkeypatch.setattr(dbn_bench, "hinton2006_records", fake_records)
    monkeypatch.setattr(dbn_bench, "pretrained_run", lambda root: (source, 1800.0))
    ctx = BenchContext(suite="full", device="cpu", data_dir=None, work_dir=tmp_path / "dbn-dropout")
    records = {record["metric"]: record for record in dbn_bench.dbn_dropout(ctx)}
    assert calls == [("dbn-dropout", [f"model.init_from={source}", "train.epochs=150"], False)]
    assert records["train_wall_s"]["value"] == 1900.0 and records["test_error_pct"]["wall_s"] == 1900.0
    assert records["test_error_pct"]["model"].endswith("+ dropout")  # the generative DBN's record is dropped
    assert records["test_error_pct"]["reference"]["value"] == 1.0
    assert ctx.notes[0] == "run directory x" and str(source) in ctx.notes[1]

    monkeypatch.setattr(dbn_bench, "pretrained_run", lambda root: None)  # nothing to fine-tune: from scratch
    calls.clear()
    ctx = BenchContext(suite="full", device="cpu", data_dir=None, work_dir=tmp_path / "dbn-dropout")
    records = dbn_bench.dbn_dropout(ctx)
    assert calls == [("dbn-dropout", [], False)]
    assert [record["model"] for record in records if record["metric"] == "test_error_pct"] == [
        "dbn-classifier 784-500-500-2000-10 + dropout", "dbn (generative, free energy)"]
    assert [record["value"] for record in records if record["metric"] == "train_wall_s"] == [100.0]  # unchanged
