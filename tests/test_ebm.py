"""The energy-based model: config errors, replay buffer, AUROC, loss and sign, health guard, sampling, engine, OOD."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_helpers import final_state
from sklearn.metrics import roc_auc_score

from genlab.cli import main
from genlab.config import (
    DataConfig,
    apply_overrides,
    build_run_config,
    dump_yaml,
    load_yaml,
)
from genlab.errors import ConfigError, DataError, TrainingError
from genlab.models.base import SINGLE_OPTIMIZER, DataInfo
from genlab.models.ebm import EBM, EBMConfig, auroc
from genlab.preset_files import preset_path
from genlab.sampling.replay import ReplayBuffer
from genlab.training import checkpoint as ckpt
from genlab.training.run import train

TINY = {"channels": (4, 8), "kernel_sizes": (3, 3), "strides": (2, 2), "dense": (8,), "langevin_steps": 5,
        "sample_steps": 6, "buffer_size": 64, "step_size": 1.0, "noise_std": 0.01}


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    torch.set_num_threads(1)  # tiny convolutions: a second thread only adds synchronisation


def tiny_model(shape=(1, 8, 8), **overrides) -> EBM:
    config = EBM.adapt_config(EBMConfig(**{**TINY, **overrides}),
                              DataInfo(kind="image", shape=shape, value_range=(-1.0, 1.0)))
    torch.manual_seed(0)
    return EBM(config)


def seed_model() -> EBM:
    config = EBM.adapt_config(EBMConfig(), DataInfo(kind="image", shape=(1, 32, 32), value_range=(-1.0, 1.0)))
    torch.manual_seed(0)
    return EBM(config)


def tiny_run_config(dataset, out, *extra):
    overrides = [f"data.dataset={dataset}", "data.scale=symmetric", "data.val_size=64", "data.batch_size=32",
                 "model.channels=[4,8]", "model.kernel_sizes=[3,3]", "model.strides=[2,2]", "model.dense=[8]",
                 "model.langevin_steps=5", "model.sample_steps=6", "model.buffer_size=100", "model.step_size=1.0",
                 "model.noise_std=0.01", "optim.lr=1e-3", "train.epochs=1", "train.num_samples=8",
                 "train.progress=false", "train.device=cpu", f"train.out_dir={out}", "train.log_every=1",
                 "train.threads=1", *extra]
    return build_run_config(apply_overrides({"model_name": "ebm"}, overrides))


def bars(count: int, seed: int = 0) -> torch.Tensor:
    """Vertical-bar images (count, 1, 8, 8) in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    images = -torch.ones(count, 1, 8, 8)
    for i, column in enumerate(torch.randint(0, 4, (count,), generator=generator).tolist()):
        images[i, :, :, 2 * column:2 * column + 2] = 1.0
    return images


# ---------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("override, message", [
    ("model.step_size=-1", "step_size"),
    ("model.noise_std=-0.005", "noise_std"),
    ("model.buffer_size=0", "buffer_size"),
    ("model.fresh_fraction=1.5", "fresh_fraction"),
    ("model.fresh_fraction=-0.1", "fresh_fraction"),
    ("model.grad_clip=-0.03", "grad_clip"),
    ("model.kernel_sizes=[5,3]", "kernel_sizes"),
    ("model.activation=tanh", "activation"),
    ("model.health=maybe", "health"),
])
def test_bad_config_values_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        build_run_config(apply_overrides({"model_name": "ebm"}, [override]))


def test_the_ebm_refuses_text_data_and_mismatched_image_shapes():
    with pytest.raises(ConfigError, match="image_shape"):
        EBM.adapt_config(EBMConfig(image_shape=(1, 28, 28)),
                         DataInfo(kind="image", shape=(1, 32, 32), value_range=(-1.0, 1.0)))
    with pytest.raises(ConfigError, match="images"):
        EBM.adapt_config(EBMConfig(), DataInfo(kind="text", shape=(64,)))


def test_preset_is_the_seed_recipe_and_the_network_has_the_seeds_parameter_count():
    config = build_run_config(load_yaml(preset_path("ebm-mnist")))
    model = config.model
    assert (model.step_size, model.noise_std, model.grad_clip, model.alpha, model.data_noise) == (10, 0.005, 0.03,
                                                                                                 0.1, 0.005)
    assert (model.langevin_steps, model.sample_steps, model.buffer_size, model.fresh_fraction) == (60, 1000, 8192,
                                                                                                  0.05)
    assert (config.data.pad_to, config.data.scale, config.data.batch_size) == (32, "symmetric", 128)
    assert (config.optim.name, config.optim.lr) == ("adam", 1e-4)
    # Keras summary of the seed: conv 416 + 4,640 + 18,496 + 36,928, dense 16,448 + 65.
    assert sum(p.numel() for p in seed_model().parameters()) == 76_993


# ---------------------------------------------------------------------------------------------- replay buffer


def test_replay_buffer_draws_the_fresh_noise_fraction():
    buffer = ReplayBuffer(1000, (1, 4, 4), fresh_fraction=0.05)
    buffer.push(torch.zeros(1000, 1, 4, 4))
    draws = buffer.draw(20_000, generator=torch.Generator().manual_seed(0))
    fresh = (draws.flatten(1) != 0).any(1).float().mean().item()
    assert abs(fresh - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 20_000)
    assert float(draws.min()) >= -1.0 and float(draws.max()) <= 1.0
    for fraction, expected in ((0.0, 0.0), (1.0, 1.0)):
        edge = ReplayBuffer(10, (1, 4, 4), fresh_fraction=fraction)
        edge.push(torch.zeros(10, 1, 4, 4))
        assert (edge.draw(500).flatten(1) != 0).any(1).float().mean().item() == expected
    empty = ReplayBuffer(10, (1, 4, 4), fresh_fraction=0.0)
    assert (empty.draw(50).flatten(1) != 0).any(1).all(), "an empty buffer must start every chain from noise"


def test_replay_buffer_is_a_fifo_of_the_newest_samples():
    buffer = ReplayBuffer(5, (1,))
    buffer.push(torch.tensor([[0.0], [1.0], [2.0]]))
    buffer.push(torch.tensor([[3.0], [4.0], [5.0], [6.0]]))
    assert len(buffer) == 5
    assert buffer.newest(10).flatten().tolist() == [6.0, 5.0, 4.0, 3.0, 2.0]
    buffer.push(torch.arange(10.0, 17.0).unsqueeze(1))  # more than the capacity: only the newest 5 stay
    assert buffer.newest(5).flatten().tolist() == [16.0, 15.0, 14.0, 13.0, 12.0]


def test_replay_buffer_round_trips_through_a_checkpoint_exactly(tmp_path):
    original = ReplayBuffer(7, (2, 3), fresh_fraction=0.3)
    source = torch.Generator().manual_seed(0)
    for _ in range(3):  # wraps around the ring
        original.push(torch.rand(3, 2, 3, generator=source) * 2 - 1)
    torch.save(original.state_dict(), tmp_path / "buffer.pt")
    restored = ReplayBuffer(7, (2, 3), fresh_fraction=0.3)
    restored.load_state_dict(torch.load(tmp_path / "buffer.pt", weights_only=True))
    for buffer in (original, restored):
        buffer.push(torch.full((2, 2, 3), 0.5))
    first = original.draw(50, generator=torch.Generator().manual_seed(1))
    second = restored.draw(50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    assert torch.equal(original.newest(7), restored.newest(7))
    with pytest.raises(Exception, match="does not fit"):
        ReplayBuffer(8, (2, 3)).load_state_dict(original.state_dict())


@pytest.mark.parametrize("arguments, message", [
    ({"capacity": 0}, "size"),
    ({"capacity": 4, "fresh_fraction": -0.1}, "fraction"),
    ({"capacity": 4, "fresh_fraction": 1.01}, "fraction"),
])
def test_replay_buffer_rejects_bad_settings(arguments, message):
    with pytest.raises(ConfigError, match=message):
        ReplayBuffer(shape=(1, 2, 2), **arguments)


# ---------------------------------------------------------------------------------------------- AUROC


@pytest.mark.parametrize("seed", range(4))
def test_auroc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n_pos, n_neg = rng.integers(1, 300, size=2)
    positive = rng.integers(0, 12, size=n_pos).astype(float) + (seed % 2) * rng.normal(size=n_pos)
    negative = rng.integers(-3, 9, size=n_neg).astype(float)
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    expected = roc_auc_score(labels, np.r_[positive, negative])
    assert auroc(torch.tensor(positive), negative) == pytest.approx(expected, abs=1e-12)


def test_auroc_extremes_and_errors():
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(DataError):
        auroc([], [1.0])
    with pytest.raises(DataError):
        auroc([float("nan")], [1.0])


# ---------------------------------------------------------------------------------------------- energy and loss


def test_fast_input_gradient_gives_the_same_energies_and_autograds_gradient():
    model = seed_model()
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fast_x, plain_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fast = model.net(fast_x, input_grad_only=True)
    plain = model.net(plain_x)
    assert torch.equal(fast, plain)
    (fast_grad,) = torch.autograd.grad(fast.sum(), fast_x)
    (plain_grad,) = torch.autograd.grad(plain.sum(), plain_x)
    torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())


def test_loss_is_contrastive_divergence_plus_regulariser_and_training_lowers_data_energy():
    model = tiny_model(alpha=0.1)
    data = bars(64)
    loss, logs = model.loss((data, None))
    assert float(loss.detach()) == pytest.approx(logs["cdiv"] + logs["reg"], rel=1e-5, abs=1e-7)
    assert logs["cdiv"] == pytest.approx(logs["energy_data"] - logs["energy_samples"], rel=1e-4, abs=1e-6)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        loss, logs = model.loss((data, None))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gap = model.validate([(data, None)])
    # genlab's sign: low energy = likely, so data must end up below uniform noise.
    assert gap["energy_gap"] > 0 and gap["energy_data"] < gap["energy_noise"]
    assert len(model.buffer) == 64


# ---------------------------------------------------------------------------------------------- health guard


def blow_up(model: EBM) -> None:
    with torch.no_grad():
        model.net.out.weight.mul_(1e7)
        model.net.out.bias.fill_(1e7)


def tiny_trainer(dataset, out, *extra):
    """A Trainer of the tiny EBM (as ``genlab train`` builds it), stepped by hand with :func:`steps`."""
    from genlab.data.datasets import build_data
    from genlab.training.run import build_model
    from genlab.training.trainer import Trainer

    config = tiny_run_config(dataset, out, *extra)
    data = build_data(config.data, seed=0)
    model, config = build_model(config, data)
    return Trainer(model, config, data, device=torch.device("cpu"))


def steps(trainer, batch, count: int = 1) -> dict:
    """``count`` training steps on ``batch``, counted as the fit loop counts them; the last step's logs."""
    for _ in range(count):
        logs = trainer.train_step(batch)
        trainer.step += 1
    return logs


def test_the_trainer_rolls_a_divergence_back_to_the_last_good_state_with_a_smaller_step(tiny_images, tmp_path):
    trainer = tiny_trainer(tiny_images, tmp_path, "model.snapshot_every=2")
    model, batch = trainer.model, (bars(32), None)
    steps(trainer, batch, 3)  # step 3's check passed on the weights after 2 steps: the last good snapshot
    good = trainer.rollback.good
    assert good.step == 2 and trainer.optimizer.state_dict()["state"], "Adam has moments to roll back"
    seen = {}
    adapt = model.after_rollback

    def spy(problem):  # the state right after the restore, before the EBM adapts and the step is redone
        seen.update(problem=problem, weight=model.net.out.weight.detach().clone(),
                    buffer=model.buffer.state_dict(), optimizer=copy.deepcopy(trainer.optimizer.state_dict()),
                    grads=[p.grad for p in model.parameters()])
        return adapt(problem)

    model.after_rollback = spy
    trainer.optimizer.param_groups[0]["lr"] = 5e-4  # a schedule moved on meanwhile
    blow_up(model)
    with pytest.warns(RuntimeWarning, match="energies exploded .* at step 4 .*rolled back to the state of step 2 with "
                                            r"Langevin step size 0.5 \(roll-back 1/3\)"):
        logs = steps(trainer, batch)
    assert seen["problem"].startswith("energies exploded")
    assert torch.equal(seen["weight"], good.model["net.out.weight"])
    assert torch.equal(seen["buffer"]["samples"], good.extra["buffer"]["samples"]), "the buffer was rolled back too"
    assert seen["buffer"]["head"] == good.extra["buffer"]["head"]
    restored = seen["optimizer"]["state"]
    assert restored.keys() == good.optimizers["model"].keys()
    for index, moments in good.optimizers["model"].items():
        for key, value in moments.items():
            assert torch.equal(restored[index][key], value), f"optimizer state {index}/{key} was not rolled back"
    assert seen["optimizer"]["param_groups"][0]["lr"] == 5e-4, "the learning rate stays with the trainer's schedule"
    assert all(grad is None for grad in seen["grads"]), "the bad step's gradients are not checked again"
    assert math.isfinite(logs["loss"]) and abs(logs["energy_data"]) < 100
    assert logs["rollbacks"] == 1.0 and logs["step_size"] == 0.5 and logs["param_grad_norm"] == 0.0
    assert model.extra_state()["rollbacks"] == 1 and float(model.state_dict()["current_step_size"]) == 0.5
    assert trainer.rollback.recoveries == 1
    # The snapshot is retaken with the smaller step: a second roll-back before the next snapshot halves it again.
    assert float(trainer.rollback.good.model["current_step_size"]) == 0.5 and trainer.rollback.good.step == 2


def test_the_trainer_guards_the_ebm_as_model_health_says(tiny_images, tmp_path):
    policy = tiny_trainer(tiny_images, tmp_path, "model.snapshot_every=7", "model.max_recoveries=2").rollback.policy
    assert (policy.snapshot_every, policy.max_recoveries) == (7, 2)
    assert tiny_trainer(tiny_images, tmp_path, "model.health=stop").rollback.policy.max_recoveries == 0
    assert tiny_trainer(tiny_images, tmp_path, 'model.health="off"').rollback is None


def test_divergence_stops_with_a_training_error_when_asked_or_out_of_retries(tiny_images, tmp_path):
    batch = (bars(16), None)
    stopper = tiny_trainer(tiny_images, tmp_path, "model.health=stop")
    steps(stopper, batch)
    assert stopper.rollback.good is None, "a run that never rolls back keeps no snapshot"
    blow_up(stopper.model)
    with pytest.raises(TrainingError, match="energies exploded .* at step 2 .*no checkpoint had been written yet.*"
                                            "model.health=stop"):
        steps(stopper, batch)
    patient = tiny_trainer(tiny_images, tmp_path, "model.max_recoveries=1", "model.snapshot_every=1")
    steps(patient, batch)
    blow_up(patient.model)
    with pytest.warns(RuntimeWarning, match="roll-back 1/1"):
        steps(patient, batch)
    blow_up(patient.model)
    with pytest.raises(TrainingError, match=r"energies exploded .* at step 3 \(epoch 1\), after 1 roll-back"):
        steps(patient, batch)
    relaxed = tiny_model(health="off")
    assert relaxed.rollback_policy() is None
    blow_up(relaxed)
    relaxed.loss(batch)  # no guard, no error


def test_collapsed_samples_and_exploding_parameter_gradients_are_detected(monkeypatch):
    collapsing = tiny_model(health_warmup=0, grad_clip=0.0)
    monkeypatch.setattr(collapsing, "_sampling_energy", lambda x: -100.0 * x.flatten(1).sum(1))
    _, logs = collapsing.loss((bars(16), None))
    assert "collapsed to blank or saturated" in collapsing.step_problem(SINGLE_OPTIMIZER, logs)
    warming_up = tiny_model(health_warmup=5, grad_clip=0.0)
    monkeypatch.setattr(warming_up, "_sampling_energy", lambda x: -100.0 * x.flatten(1).sum(1))
    _, logs = warming_up.loss((bars(16), None))
    assert warming_up.step_problem(SINGLE_OPTIMIZER, logs) is None, "early blank negatives are not a collapse"
    exploding = tiny_model()
    for parameter in exploding.parameters():
        parameter.grad = torch.full_like(parameter, 1e4)
    _, logs = exploding.loss((bars(16), None))
    assert "parameter gradients exploded" in exploding.step_problem(SINGLE_OPTIMIZER, logs)
    healthy = tiny_model()
    _, logs = healthy.loss((bars(16), None))
    assert healthy.step_problem(SINGLE_OPTIMIZER, logs) is None


def test_a_checkpoint_with_the_ebms_own_old_roll_back_state_still_loads():
    model = tiny_model()
    model.loss((bars(16), None))
    state = model.extra_state()
    # As written while the EBM rolled itself back: its last good weights, buffer and optimizer moments.
    state["good"] = {"params": {name: p.detach().clone() for name, p in model.named_parameters()},
                     "buffer": model.buffer.state_dict(), "train_steps": 1, "optimizer": {}}
    twin = tiny_model()
    twin.load_extra_state(state)  # ignored: the Trainer takes its own snapshot when the run continues
    assert twin.train_steps == 1 and torch.equal(twin.buffer.newest(16), model.buffer.newest(16))


# ---------------------------------------------------------------------------------------------- sampling


def test_sample_and_chain_shapes_ranges_and_options():
    model = tiny_model()
    images = model.sample(5, generator=torch.Generator().manual_seed(0), steps=3)
    assert images.shape == (5, 1, 8, 8) and float(images.abs().max()) <= 1.0
    again = model.sample(5, generator=torch.Generator().manual_seed(0), steps=3)
    assert torch.equal(images, again)
    start = bars(3)
    chain = model.sample_chain(3, steps=7, init=start, every=2, generator=torch.Generator().manual_seed(0))
    assert chain.shape == (7 // 2 + 1, 3, 1, 8, 8)
    assert torch.equal(chain[0], start)
    assert model.chain_picture(steps=7).shape == (64, 1, 8, 8)
    # 10 steps in 4 frames: frames every 3 steps stop at step 9; the strip still ends on the final sample.
    strip = model.chain_picture(steps=10, chains=4, generator=torch.Generator().manual_seed(1))
    final = model.sample(4, steps=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(strip.reshape(4, 4, 1, 8, 8)[:, -1], final)
    with pytest.raises(ConfigError, match="unknown option"):
        model.sample(2, temperature=0.5)
    with pytest.raises(ConfigError):
        model.sample(2, steps=3, step_size=-1.0)


# ---------------------------------------------------------------------------------------------- engine


def test_training_through_the_engine_writes_pictures_and_monitors(tiny_images, tmp_path):
    run_dir = train(tiny_run_config(tiny_images, tmp_path, "train.max_steps=2"))
    names = {path.name.split("-step")[0] for path in (run_dir / "samples").glob("*-step*.png")}
    assert names == {"samples", "buffer", "chain"}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert {"cdiv", "reg", "energy_data", "energy_samples", "step_size", "rollbacks"} <= set(train_rows[-1])
    state = ckpt.load_train_state(ckpt.latest_checkpoint(run_dir) / ckpt.STATE_FILE)
    assert state["model_extra"]["buffer"]["size"] == 64
    model, _ = ckpt.load_model(run_dir)
    assert model.sample(2, steps=2).shape == (2, 1, 8, 8)


def test_cuda_graphs_are_ignored_off_cuda(tiny_images, tmp_path):
    plain = train(tiny_run_config(tiny_images, tmp_path / "plain", "train.max_steps=3"))
    asked = train(tiny_run_config(tiny_images, tmp_path / "asked", "train.max_steps=3", "model.cuda_graphs=true"))
    a, b = (ckpt.read_model_file(ckpt.latest_checkpoint(run) / ckpt.MODEL_FILE)[0] for run in (plain, asked))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_stop_and_resume_equals_one_straight_run(tiny_images, tmp_path):
    straight = train(tiny_run_config(tiny_images, tmp_path / "straight", "train.max_steps=6"))
    partial = train(tiny_run_config(tiny_images, tmp_path / "resumed", "train.max_steps=3"))
    train(tiny_run_config(tiny_images, tmp_path / "resumed", "train.max_steps=6"), resume_dir=partial)

    def final(run_dir):
        latest = ckpt.latest_checkpoint(run_dir)
        weights, _ = ckpt.read_model_file(latest / ckpt.MODEL_FILE)
        return weights, ckpt.load_train_state(latest / ckpt.STATE_FILE)["model_extra"]

    (weights_a, extra_a), (weights_b, extra_b) = final(straight), final(partial)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert torch.equal(extra_a["buffer"]["samples"], extra_b["buffer"]["samples"])
    assert extra_a["buffer"]["head"] == extra_b["buffer"]["head"] and extra_a["train_steps"] == 6

    def grad_norms(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["param_grad_norm"] for r in rows if r.get("split") == "train"}

    # The first step after the resume checks (and logs) the previous step's gradient norm, as straight through.
    assert grad_norms(partial)[4] == pytest.approx(grad_norms(straight)[4], rel=1e-6) and grad_norms(straight)[4] > 0


def test_a_forced_blow_up_mid_run_is_rolled_back_and_logged(tiny_images, tmp_path, monkeypatch):
    original = EBM.loss
    calls = {"n": 0}

    def sabotaged(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            blow_up(self)
        return original(self, batch)

    monkeypatch.setattr(EBM, "loss", sabotaged)
    with pytest.warns(RuntimeWarning, match="rolled back"):
        run_dir = train(tiny_run_config(tiny_images, tmp_path, "train.max_steps=5", "model.snapshot_every=2"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows if r["split"] == "train"}
    assert steps[3]["rollbacks"] == 0 and steps[4]["rollbacks"] == 1 and steps[5]["step_size"] == 0.5
    assert all(abs(r["energy_data"]) < 100 for r in steps.values())


def test_a_run_resumed_between_its_snapshot_and_a_blow_up_rolls_back_as_a_straight_run(tiny_images, tmp_path,
                                                                                        monkeypatch):
    original = EBM.loss
    calls = {"n": 0}

    def sabotaged(self, batch):  # the 5th forward pass of each run blows up (step 5: after its resume)
        calls["n"] += 1
        if calls["n"] == 5:
            blow_up(self)
        return original(self, batch)

    monkeypatch.setattr(EBM, "loss", sabotaged)
    settings = ("model.snapshot_every=3", "train.log_every=100")
    with pytest.warns(RuntimeWarning, match="rolled back to the state of step 3"):
        straight = train(tiny_run_config(tiny_images, tmp_path / "straight", "train.max_steps=7", *settings))
    calls["n"] = 0
    partial = train(tiny_run_config(tiny_images, tmp_path / "resumed", "train.max_steps=4", *settings))
    saved = ckpt.load_train_state(ckpt.latest_checkpoint(partial) / ckpt.STATE_FILE)
    assert saved["rollback"]["snapshot"]["step"] == 3 and saved["rollback_extra"]["train_steps"] == 4
    with pytest.warns(RuntimeWarning, match="rolled back to the state of step 3"):
        train(tiny_run_config(tiny_images, tmp_path / "resumed", "train.max_steps=7", *settings), resume_dir=partial)
    a, b = final_state(straight), final_state(partial)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    extras = [ckpt.load_train_state(ckpt.latest_checkpoint(run) / ckpt.STATE_FILE)["model_extra"]
              for run in (straight, partial)]
    assert torch.equal(extras[0]["buffer"]["samples"], extras[1]["buffer"]["samples"])
    assert extras[0]["rollbacks"] == extras[1]["rollbacks"] == 1


# ---------------------------------------------------------------------------------------------- evaluation


def test_evaluate_scores_likely_images_by_low_energy():
    model = tiny_model()
    test = [(bars(100), None)]  # mean pixel about -0.5; uniform noise has mean 0
    model.energy = lambda x: -x.flatten(1).mean(1)  # bright = likely
    bright = model.evaluate(iter(test), generator=torch.Generator().manual_seed(0))
    model.energy = lambda x: x.flatten(1).mean(1)  # dark = likely
    dark = model.evaluate(iter(test), generator=torch.Generator().manual_seed(0))
    assert bright["auroc_noise"] < 0.05 and dark["auroc_noise"] > 0.95
    assert dark["energy_gap"] == pytest.approx(dark["energy_noise"] - dark["energy_test"])
    assert dark["n_test"] == 100.0
    with pytest.raises(ConfigError, match="ood"):
        model.evaluate(iter(test), oops=1)


def test_ood_batches_match_the_data_layer_and_auroc_against_fashion_mnist(data_dir):
    from genlab.data import datasets
    from genlab.data.images import load_images

    model = seed_model()
    config = DataConfig(dataset="mnist", pad_to=32, scale="symmetric")
    # The data layer's own test-image transform (pad, then scale) must equal the OOD loader's.
    reference = datasets._output_scale(datasets._prepare_images(
        load_images("mnist", "test", data_dir=data_dir).images, config), config)
    assert torch.equal(torch.cat(list(model._ood_batches("mnist", str(data_dir)))), reference)
    test = [(reference[i:i + 1000], None) for i in range(0, len(reference), 1000)]
    # A cheap stand-in energy, the mean brightness: MNIST digits are darker on average than Fashion-MNIST items.
    model.energy = lambda x: x.flatten(1).mean(1)
    result = model.evaluate(iter(test), ood="fashion-mnist", data_dir=str(data_dir))
    assert result["n_fashion_mnist"] == 10_000.0 and result["n_test"] == 10_000.0
    mnist = torch.cat([x.flatten(1).mean(1).double() for x, _ in test])
    fashion = torch.cat([x.flatten(1).mean(1).double() for x in model._ood_batches("fashion-mnist", str(data_dir))])
    assert result["auroc_fashion_mnist"] == pytest.approx(roc_auc_score(
        np.r_[np.ones(len(mnist)), np.zeros(len(fashion))], np.r_[-mnist.numpy(), -fashion.numpy()]), abs=1e-6)
    assert result["auroc_fashion_mnist"] > 0.6
    assert result["auroc_noise"] > 0.99  # padded digits are far darker than uniform noise


def test_cli_eval_with_an_ood_option(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("GENLAB_DATA", str(data_dir))
    rng = np.random.default_rng(0)
    images = (rng.random((96, 28, 28)) < 0.2).astype(np.uint8) * 255
    dataset = tmp_path / "blobs.npz"
    np.savez(dataset, x_train=images[:64], x_test=images[64:])
    run_dir = train(tiny_run_config(dataset, tmp_path / "runs", "train.max_steps=1", "data.val_size=16",
                                    "data.pad_to=32", "model.kernel_sizes=[5,3]"))
    assert main(["eval", str(run_dir), "--json", "--device", "cpu", "--option", "ood=fashion-mnist"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["auroc_fashion_mnist"] <= 1.0 and metrics["n_fashion_mnist"] == 10_000
    assert main(["eval", str(run_dir), "--device", "cpu", "--option", "ood=imagenet"]) == 2


# ---------------------------------------------------------------------------------------------- benchmarks


def test_step_time_benchmark_runs_with_smoke_settings(data_dir):
    from genlab.bench.ebm_bench import measure_step_time

    result = measure_step_time(threads=1, data_dir=str(data_dir), steps=2, warmup=1,
                               overrides=["data.batch_size=8", "data.limit=64", "model.langevin_steps=2"])
    assert result["wall_s_per_step"] > 0 and result["cpu_s_per_step"] > 0
    assert (result["batch_size"], result["langevin_steps"], result["steps"]) == (8, 2, 2)
    assert torch.get_num_threads() == 1, "the benchmark must restore the caller's thread count"


@pytest.mark.slow
def test_sample_quality_benchmark_runs_with_smoke_settings(data_dir, tmp_path):
    from genlab.bench.ebm_bench import train_and_judge
    from genlab.eval.judge_training import train_judge

    judge = train_judge("mnist", data_dir=data_dir, epochs=1, max_train=1000, save=False, log=lambda _: None)
    result = train_and_judge(budget_s=2, work_dir=tmp_path, data_dir=str(data_dir), n_samples=20, sample_steps=3,
                             judge=judge, overrides=["data.limit=300", "data.val_size=50", "data.batch_size=32",
                                                     "model.langevin_steps=2", "model.sample_steps=3",
                                                     "train.num_samples=4", "model.buffer_size=64"])
    assert 0.0 <= result["auroc_fashion_mnist"] <= 1.0 and result["steps"] >= 1
    assert sum(result["judge"]["samples_class_counts"]) == 20
    run_dir = Path(result["run_dir"])
    assert (run_dir / "chain.gif").is_file() and (run_dir / "chain-strip.png").is_file()


def test_budgeted_training_resumes_its_newest_matching_run_exactly(data_dir, tmp_path):
    from genlab.bench.ebm_bench import train_for_budget

    small = ["data.limit=96", "data.val_size=0", "data.batch_size=16", "model.langevin_steps=2",
             "model.buffer_size=64", "train.log_every=1"]
    model, _, _, first = train_for_budget(1e-6, work_dir=tmp_path / "budget", data_dir=str(data_dir),
                                          overrides=small)
    assert (first["steps"], first["resumed_from_step"]) == (1, 0)
    # A run saved before a config field with a default existed (here optim.min_lr_ratio) still matches.
    config_file = next((tmp_path / "budget").glob("*/config.yaml"))
    saved = load_yaml(config_file)
    del saved["optim"]["min_lr_ratio"]
    config_file.write_text(dump_yaml(saved))
    model, _, _, second = train_for_budget(1e-6, work_dir=tmp_path / "budget", data_dir=str(data_dir),
                                           overrides=small, resume=True)
    assert (second["steps"], second["resumed_from_step"], second["session_steps"]) == (2, 1, 1)
    assert second["train_s"] >= first["train_s"], "training time adds up over the resumed budgets"
    assert len(list((tmp_path / "budget").iterdir())) == 1, "resume continues the run instead of starting one"

    straight, _, _, facts = train_for_budget(1e3, work_dir=tmp_path / "straight", data_dir=str(data_dir),
                                             overrides=[*small, "train.max_steps=2"])
    assert facts["steps"] == 2
    for (name, resumed), (_, uninterrupted) in zip(model.state_dict().items(), straight.state_dict().items()):
        assert torch.equal(resumed, uninterrupted), f"{name} differs after a resumed budget"

    # A run of other settings is not continued.
    _, _, _, other = train_for_budget(1e-6, work_dir=tmp_path / "budget", data_dir=str(data_dir),
                                      overrides=[*small, "optim.lr=0.001"], resume=True)
    assert other["resumed_from_step"] == 0 and len(list((tmp_path / "budget").iterdir())) == 2
