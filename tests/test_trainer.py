"""The engine end to end with the first real model (the RBM) on a tiny structured image set."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import final_state
from torchrun_helpers import torchrun_two_processes

from genlab.config import apply_overrides, build_run_config
from genlab.errors import CheckpointError, TrainingError
from genlab.training import checkpoint as ckpt
from genlab.training.run import train


def tiny_config(dataset: Path, out: Path, *extra: str):
    base = {"model_name": "rbm"}
    overrides = [f"data.dataset={dataset}", "data.val_size=64", "data.batch_size=16", "data.binarize=dynamic",
                 "model.n_hidden=12", "model.persistent=true", "model.n_chains=16", "model.sample_steps=20",
                 "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.5", "optim.final_momentum=0.9",
                 "optim.momentum_switch_epochs=1", "optim.schedule=cosine", "train.epochs=3",
                 "train.num_samples=16", "train.progress=false", "train.device=cpu", f"train.out_dir={out}",
                 "train.checkpoint_every=7", "train.log_every=5", *extra]
    return build_run_config(apply_overrides(base, overrides))


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def metric_rows(run_dir: Path) -> list[dict]:
    def refuse(constant):
        raise AssertionError(f"non-JSON literal {constant} in metrics.jsonl")

    return [json.loads(line, parse_constant=refuse)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_run_directory_contents_and_determinism(tiny_images, tmp_path):
    first = train(tiny_config(tiny_images, tmp_path / "a"))
    second = train(tiny_config(tiny_images, tmp_path / "b"))
    assert_same(final_state(first), final_state(second))
    assert (first / "config.yaml").is_file()
    rows = metric_rows(first)
    assert any(r["split"] == "val" for r in rows) and any(r["split"] == "train" for r in rows)
    assert list((first / "samples").glob("samples-step*.png"))
    assert (first / "samples" / "samples.gif").is_file()
    assert len(ckpt.list_checkpoints(first / "checkpoints")) == 2  # keep_last default


def test_stop_and_resume_equals_one_straight_run(tiny_images, tmp_path):
    straight = train(tiny_config(tiny_images, tmp_path / "straight", "train.max_steps=60"))
    partial = train(tiny_config(tiny_images, tmp_path / "resumed", "train.max_steps=30"))
    assert ckpt.latest_checkpoint(partial).name == "step-000000030"
    resumed_config = tiny_config(tiny_images, tmp_path / "resumed", "train.max_steps=60")
    train(resumed_config, resume_dir=partial)
    assert_same(final_state(straight), final_state(partial))
    steps = [r["step"] for r in metric_rows(partial) if r["split"] == "train"]
    assert steps == sorted(set(steps)), "duplicated or out-of-order metric rows after resume"
    assert steps == [r["step"] for r in metric_rows(straight) if r["split"] == "train"]


def test_resume_uses_the_schedule_of_the_resuming_config_from_its_first_step(tiny_images, tmp_path):
    # The optimizer state stores the lr of the schedule that wrote it; a run continued with another schedule (e.g.
    # a decay added for its last epochs) must train its very first resumed step at the new schedule's lr.
    from genlab.training.run import fit
    from genlab.training.optim import lr_factor

    partial = train(tiny_config(tiny_images, tmp_path / "run", "train.max_steps=30", "optim.schedule=constant"))
    resumed = tiny_config(tiny_images, tmp_path / "run", "train.max_steps=30", "optim.schedule=step",
                          "optim.milestones=[1]", "optim.decay_rate=0.5")
    trainer = fit(resumed, resume_dir=partial).trainer
    assert trainer.step == 30
    factor = lr_factor(30, resumed.optim, trainer.total_steps, trainer.steps_per_epoch)
    assert factor == 0.5, "step 30 must lie past the milestone for this test to mean anything"
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * factor)


def test_resume_with_a_new_learning_rate_trains_at_it(tiny_images, tmp_path):
    from genlab.training.run import fit
    from genlab.training.optim import lr_factor

    partial = train(tiny_config(tiny_images, tmp_path / "run", "train.max_steps=30"))
    resumed = tiny_config(tiny_images, tmp_path / "run", "train.max_steps=31", "optim.lr=0.02")
    trainer = fit(resumed, resume_dir=partial).trainer
    assert trainer.step == 31 and trainer.scheduler.base_lrs == [0.02] * len(trainer.optimizer.param_groups)
    factor = lr_factor(31, resumed.optim, trainer.total_steps, trainer.steps_per_epoch)
    assert 0 < factor < 1, "the cosine schedule must be mid-way for this test to mean anything"
    assert all(group["lr"] == pytest.approx(0.02 * factor) for group in trainer.optimizer.param_groups)


def test_sigkill_mid_run_leaves_a_loadable_checkpoint_and_resume_matches(tiny_images, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "genlab", "train", "rbm", "--dataset", str(tiny_images), "--out", str(out),
            "--device", "cpu", "--epochs", "60", "--set", "data.val_size=64", "--set", "data.batch_size=16",
            "--set", "model.n_hidden=12", "--set", "model.persistent=true", "--set", "model.n_chains=16",
            "--set", "model.sample_steps=20", "--set", "optim.name=sgd", "--set", "optim.lr=0.05",
            "--set", "train.checkpoint_every=7", "--set", "train.progress=false", "--set", "train.threads=1",
            "--set", "data.binarize=dynamic"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline:
        found = list(out.glob("rbm-*/checkpoints/step-*")) if out.exists() else []
        if len(found) >= 2:
            run_dir = found[0].parents[1]
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert run_dir is not None, "training never wrote a checkpoint"
    killed_at = ckpt.latest_checkpoint(run_dir)
    final_epochs = 60
    assert int(killed_at.name.split("-")[1]) < final_epochs * 28, "the run finished before it was killed"
    ckpt.load_model(run_dir)  # the last checkpoint is complete and loadable
    resumed = subprocess.run([sys.executable, "-m", "genlab", "train", "--resume", str(run_dir), "--set",
                              "train.threads=1"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # The uninterrupted twin: the same resolved config (preset defaults included), another output directory.
    from genlab.config import load_yaml

    config = build_run_config(apply_overrides(load_yaml(run_dir / "config.yaml"),
                                              [f"train.out_dir={tmp_path / 'straight'}"]))
    straight = train(config)
    assert_same(final_state(straight), final_state(run_dir))
    rows = [r for r in metric_rows(run_dir) if r.get("split") == "train"]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps))


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tiny_images, tmp_path, monkeypatch):
    from genlab.models.rbm import RBM

    original = RBM.loss
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        loss, logs = original(self, batch)
        return (loss * float("nan") if calls["n"] > 20 else loss), logs

    monkeypatch.setattr(RBM, "loss", poisoned)
    config = tiny_config(tiny_images, tmp_path / "nan")
    with pytest.raises(TrainingError, match="non-finite"):
        train(config)
    run_dir = next((tmp_path / "nan").iterdir())
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest.name == "step-000000014"
    model, _ = ckpt.load_model(run_dir)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_in_train_state_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "train_state.pt"
    torch.save({"step": 1, "evil": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        ckpt.load_train_state(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"step": 1, "evil": _Payload(marker)}))
    with pytest.raises(CheckpointError):
        ckpt.load_train_state(path)
    assert not marker.exists()


def test_truncated_and_tampered_checkpoints_are_typed_errors(tiny_images, tmp_path):
    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=10"))
    latest = ckpt.latest_checkpoint(run_dir)
    model_file = latest / ckpt.MODEL_FILE
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_model(run_dir)
    model_file.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        ckpt.load_model(run_dir)
    state_file = latest / ckpt.STATE_FILE
    state_file.write_bytes(state_file.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        ckpt.load_train_state(state_file)
    with pytest.raises(CheckpointError, match="no checkpoints"):
        ckpt.latest_checkpoint(tmp_path)


def test_weights_that_do_not_match_their_config_are_refused(tiny_images, tmp_path):
    from safetensors.torch import save_file

    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=5"))
    model_file = ckpt.latest_checkpoint(run_dir) / ckpt.MODEL_FILE
    tensors, config = ckpt.read_model_file(model_file)
    config["model"]["n_hidden"] = 99
    save_file(tensors, str(model_file), metadata={"format": ckpt.FORMAT, "run_config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="does not match the sha256"):  # the manifest notices first
        ckpt.load_model(run_dir)
    (model_file.parent / ckpt.MANIFEST_FILE).unlink()  # as a checkpoint written before manifests
    with pytest.raises(CheckpointError, match="do not match"):
        ckpt.load_model(run_dir)


def test_optimizer_state_that_does_not_fit_is_a_checkpoint_error(tiny_images, tmp_path):
    from genlab.data.datasets import build_data
    from genlab.training.run import build_model, load_latest_checkpoint
    from genlab.training.trainer import Trainer

    config = tiny_config(tiny_images, tmp_path, "train.max_steps=2")
    run_dir = train(config)
    data = build_data(config.data, seed=0)
    model, config = build_model(config, data)
    state = load_latest_checkpoint(model, run_dir)
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"] * 2  # as from another version
    trainer = Trainer(model, config, data, device=torch.device("cpu"))
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        trainer.load_state_dict(state)


def _torchrun_two_gloo_processes(*genlab_args: str) -> None:
    result = torchrun_two_processes("-m", "genlab", "train", *genlab_args)
    assert result.returncode == 0, result.stderr[-3000:]


def _ddp_rbm_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["rbm", "--dataset", str(dataset), "--out", str(out), "--device", "cpu", "--epochs", "2",
            "--set", "data.val_size=64", "--set", "data.batch_size=16", "--set", "model.n_hidden=12",
            "--set", "model.persistent=true", "--set", "train.threads=1", "--set", "model.sample_steps=20",
            "--set", "optim.name=sgd", "--set", "optim.lr=0.05", *extra]


def test_two_gloo_processes_stay_identical(tiny_images, tmp_path):
    _torchrun_two_gloo_processes(*_ddp_rbm_args(tiny_images, tmp_path))
    run_dirs = list(tmp_path.glob("rbm-*"))
    assert len(run_dirs) == 1, "only rank 0 may write a run directory"
    rows = metric_rows(run_dirs[0])
    check = [r for r in rows if r.get("event") == "ddp_check"]
    assert check and check[0]["world_size"] == 2 and check[0]["max_param_diff"] == 0.0
    # (448 train images / 2 ranks) // 16 = 14 steps per epoch
    assert ckpt.latest_checkpoint(run_dirs[0]).name == "step-000000028"


def test_the_logged_lr_is_the_one_each_step_trained_with(tiny_images, tmp_path):
    run = train(tiny_config(tiny_images, tmp_path, "train.max_steps=30", "train.log_every=1", "optim.schedule=step",
                            "optim.milestones=[1]", "optim.decay_rate=0.5"))
    lrs = {row["step"]: row["lr"] for row in metric_rows(run) if row["split"] == "train"}
    # 448 training images in batches of 16: steps 1-28 are epoch 0 (before the milestone), 29 is the first decayed.
    assert lrs[28] == pytest.approx(0.05) and lrs[29] == pytest.approx(0.025)


def test_a_run_whose_saved_config_is_no_longer_valid_is_not_resumed_silently(tiny_images, tmp_path):
    from genlab.config import dump_yaml, load_yaml
    from genlab.training.run import find_resumable_run

    run = train(tiny_config(tiny_images, tmp_path, "train.max_steps=3"))
    config = build_run_config(load_yaml(run / "config.yaml"))  # as adapted to the data, which is what is matched
    assert find_resumable_run(tmp_path, config) == run
    saved = load_yaml(run / "config.yaml")
    saved["model"]["n_hidden"] = -3
    (run / "config.yaml").write_text(dump_yaml(saved))
    with pytest.warns(UserWarning, match=f"not resuming {run}: .*n_hidden"):
        assert find_resumable_run(tmp_path, config) is None


def test_two_gloo_processes_stopped_and_resumed_equal_one_straight_run(tiny_images, tmp_path):
    # Each rank has its own random stream and its own persistent chains; resuming must give each its own back.
    _torchrun_two_gloo_processes(*_ddp_rbm_args(tiny_images, tmp_path / "straight"))
    _torchrun_two_gloo_processes(*_ddp_rbm_args(tiny_images, tmp_path / "resumed", "--set", "train.max_steps=10"))
    (partial,) = list((tmp_path / "resumed").glob("rbm-*"))
    _torchrun_two_gloo_processes("--resume", str(partial), "--set", "train.max_steps=0")
    (straight,) = list((tmp_path / "straight").glob("rbm-*"))
    assert_same(final_state(straight), final_state(partial))
    states = [ckpt.load_train_state(ckpt.latest_checkpoint(run) / ckpt.STATE_FILE) for run in (straight, partial)]
    for state in states:
        assert len(state["ranks"]) == 2
        assert not torch.equal(state["ranks"][0]["rng"]["torch"], state["ranks"][1]["rng"]["torch"])
    for rank in (0, 1):
        assert torch.equal(states[0]["ranks"][rank]["model_extra"]["pcd_chains"],
                           states[1]["ranks"][rank]["model_extra"]["pcd_chains"])
        assert torch.equal(states[0]["ranks"][rank]["rng"]["torch"], states[1]["ranks"][rank]["rng"]["torch"])


def test_a_checkpoint_resumes_only_with_the_number_of_processes_that_wrote_it():
    from types import SimpleNamespace

    from genlab.training.distributed import DistInfo
    from genlab.training.trainer import Trainer

    def own(state, **dist):
        return Trainer._own_rank_state(SimpleNamespace(dist=DistInfo(**dist)), state)

    state = {"rng": "rank 0", "world_size": 2, "ranks": [{"rng": "rank 0"}, {"rng": "rank 1"}]}
    assert own(state, rank=1, world_size=2) == {"rng": "rank 1"}
    for dist in ({}, {"rank": 2, "world_size": 3}):
        with pytest.raises(CheckpointError, match="written by 2 training process.*torchrun --nproc_per_node=2"):
            own(state, **dist)
    assert own({"rng": "alone", "world_size": 1}, rank=0, world_size=1) == {"rng": "alone", "world_size": 1}
    older = {"rng": "rank 0"}  # written before the process count and every rank's state were kept
    with pytest.warns(UserWarning, match="continues from rank 0's"):
        assert own(older, rank=1, world_size=2) is older


def test_execution_only_model_options_do_not_stop_a_run_from_being_resumed():
    from genlab.training.run import _learning_settings

    base = {"model_name": "ebm", "model": {"step_size": 10.0, "cuda_graphs": False}, "optim": {"lr": 1e-4}}
    graphed = {**base, "model": {"step_size": 10.0, "cuda_graphs": True}}
    assert _learning_settings(base) == _learning_settings(graphed)
    assert _learning_settings(base) != _learning_settings({**base, "model": {"step_size": 5.0, "cuda_graphs": False}})


def test_a_stop_requested_on_one_process_stops_every_process_at_the_same_step(tiny_images, tmp_path):
    # A wall-clock budget is checked on each rank's own clock; had rank 0 gone on, both would hang in a collective.
    args = _ddp_rbm_args(tiny_images, tmp_path)
    overrides = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"] + [
        f"data.dataset={tiny_images}", f"train.out_dir={tmp_path}", "train.device=cpu", "train.epochs=2",
        "train.progress=false"]
    script = tmp_path / "stop_on_rank_one.py"
    script.write_text(f"""
import torch.distributed as dist
from genlab.config import apply_overrides, build_run_config
from genlab.training.callbacks import Callback
from genlab.training.run import fit

class StopOnRankOne(Callback):
    def on_step_end(self, trainer, logs):
        if dist.get_rank() == 1 and trainer.step == 3:
            trainer.stop_requested = True

overrides = {overrides!r}
config = build_run_config(apply_overrides({{"model_name": "rbm"}}, overrides))
outcome = fit(config, extra_callbacks=(StopOnRankOne(),))
print(f"stopped at {{outcome.trainer.step}};", flush=True)
""")
    result = torchrun_two_processes(str(script), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("stopped at 3;") == 2, result.stdout
    (run,) = list(tmp_path.glob("rbm-*"))
    assert ckpt.latest_checkpoint(run).name == "step-000000003"


def test_each_rank_draws_training_noise_no_other_seed_draws():
    from genlab.training.run import training_noise_seed

    assert training_noise_seed(5, 0) == 5  # one process trains as it always did
    seeds = {(seed, rank): training_noise_seed(seed, rank) for seed in range(50) for rank in range(8)}
    assert len(set(seeds.values())) == len(seeds)
    assert all(value >= 2**40 for (seed, rank), value in seeds.items() if rank > 0)


def test_the_default_phase_loss_is_the_loss_and_an_undeclared_phase_is_a_clear_error():
    from genlab.models.base import SINGLE_OPTIMIZER, GenerativeModel

    class OneOptimizer(GenerativeModel):
        def __init__(self):
            super().__init__(config=None)
            self.weight = torch.nn.Parameter(torch.tensor(2.0))

        def loss(self, batch):
            return (self.weight * batch).sum(), {}

        def sample(self, n, **options):
            return torch.zeros(n)

    model = OneOptimizer()
    assert float(model(torch.ones(3), SINGLE_OPTIMIZER, 0)[0].detach()) == 6.0
    with pytest.raises(TypeError, match="phase 'generator'.*phase_loss"):
        model(torch.ones(3), "generator", 0)


def flaky_model(phased: bool = False, fail_at=(), max_recoveries: int = 2):
    """A toy model that declares a roll-back policy: its forward pass number n reports a problem for n in
    ``fail_at``; ``seen`` (forward passes behind the state) is extra state, ``scale`` a buffer that after_rollback
    halves. ``phased=True``: ``a`` and ``b`` are trained by two optimizers, one phase each."""
    from genlab.models.base import GenerativeModel, RollbackPolicy

    class Model(GenerativeModel):
        def __init__(self):
            super().__init__(config=None)
            self.a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
            self.b = torch.nn.Parameter(torch.tensor([0.5, 3.0]))
            self.register_buffer("scale", torch.tensor(1.0))
            self.fail_at, self.forwards, self.seen, self.problems = set(fail_at), 0, 0, []

        def optimizer_param_groups(self, weight_decay):
            if not phased:
                return super().optimizer_param_groups(weight_decay)
            return {"first": [{"params": [self.a]}], "second": [{"params": [self.b]}]}

        def training_phases(self, step):
            return ("first", "second") if phased else super().training_phases(step)

        def loss(self, batch):
            self.forwards += 1
            self.seen += 1
            return self.scale * (self.a.square().sum() + self.b.square().sum()) * batch.mean(), {}

        def phase_loss(self, batch, phase, step):
            return self.loss(batch) if phased else super().phase_loss(batch, phase, step)

        def sample(self, n, **options):
            return torch.zeros(n)

        def extra_state(self):
            return {"seen": torch.tensor(self.seen)}

        def load_extra_state(self, state):
            self.seen = int(state["seen"])

        def rollback_policy(self):
            return RollbackPolicy(snapshot_every=2, max_recoveries=max_recoveries, advice="Toy advice.")

        def step_problem(self, phase, logs):
            return f"forward pass {self.forwards} ({phase}) blew up" if self.forwards in self.fail_at else None

        def after_rollback(self, problem):
            self.problems.append(problem)
            self.scale.mul_(0.5)
            return "more gently"

    return Model()


def _toy_trainer(model, tiny_images, tmp_path):
    from genlab.data.datasets import build_data
    from genlab.training.trainer import Trainer

    config = tiny_config(tiny_images, tmp_path, "optim.schedule=constant")  # SGD with momentum: per-parameter state
    return Trainer(model, config, build_data(config.data, seed=0), device=torch.device("cpu"))


def _toy_steps(trainer, count):
    for _ in range(count):
        trainer.train_step(torch.ones(3))
        trainer.step += 1


@pytest.mark.parametrize("phased", [False, True])
def test_the_trainer_rolls_back_any_model_that_declares_a_policy(tiny_images, tmp_path, phased):
    per_step = 2 if phased else 1
    # Step 4's last forward pass blows up: with two phases, after the first optimizer already stepped.
    model = flaky_model(phased, fail_at={4 * per_step})
    trainer = _toy_trainer(model, tiny_images, tmp_path)
    _toy_steps(trainer, 3)  # snapshots: the start, then the state step 3's first forward pass saw (2 steps taken)
    good = trainer.rollback.good
    assert good.step == 2 and good.extra["seen"] == 2 * per_step + 1
    assert set(good.optimizers) == set(trainer.optimizers) and all(good.optimizers.values())
    lrs = [opt.param_groups[0]["lr"] for opt in trainer.optimizers.values()]
    with pytest.warns(RuntimeWarning, match=r"blew up at step 4 \(epoch 1\); rolled back to the state of step 2 "
                                            r"more gently \(roll-back 1/2\)"):
        _toy_steps(trainer, 1)
    assert model.problems == [f"forward pass {4 * per_step} ({'second' if phased else 'model'}) blew up"]
    assert float(model.scale) == 0.5 and trainer.rollback.recoveries == 1
    assert model.seen == good.extra["seen"] + per_step, "extra state restored, then the step redone"
    # The redone step: one (momentum) step from the snapshot's weights and moments, at the schedule's lr.
    for name, optimizer in trainer.optimizers.items():
        assert optimizer.param_groups[0]["lr"] in lrs
        for index, parameter in enumerate(p for group in optimizer.param_groups for p in group["params"]):
            param_name = next(n for n, p in model.named_parameters() if p is parameter)
            momentum = 0.5 * good.optimizers[name][index]["momentum_buffer"] + 2 * 0.5 * good.model[param_name]
            expected = good.model[param_name] - optimizer.param_groups[0]["lr"] * momentum
            torch.testing.assert_close(parameter.detach(), expected)
    model.fail_at = {model.forwards + per_step, model.forwards + 2 * per_step}
    with pytest.warns(RuntimeWarning, match=r"roll-back 2/2"), pytest.raises(
            TrainingError, match=r"blew up at step 5 \(epoch 1\), after 2 roll-back\(s\); training stopped; no "
                                 r"checkpoint had been written yet.*Toy advice"):
        _toy_steps(trainer, 1)


def test_a_models_roll_back_snapshot_survives_a_checkpoint(tiny_images, tmp_path):
    trainer = _toy_trainer(flaky_model(phased=True), tiny_images, tmp_path)
    _toy_steps(trainer, 3)
    path = tmp_path / "state.pt"
    torch.save(trainer.state_dict(), path)
    twin = _toy_trainer(flaky_model(phased=True), tiny_images, tmp_path)
    twin.load_state_dict(torch.load(path, weights_only=True))
    ours, theirs = trainer.rollback.good, twin.rollback.good
    assert theirs.step == ours.step == 2 and theirs.extra == ours.extra
    assert_same(ours.model, theirs.model)
    for name in ours.optimizers:
        for index, moments in ours.optimizers[name].items():
            assert_same(moments, theirs.optimizers[name][index])
    older = trainer.state_dict()
    del older["rollback"], older["rollback_extra"]  # as written before the Trainer kept roll-backs
    fresh = _toy_trainer(flaky_model(phased=True), tiny_images, tmp_path)
    fresh.load_state_dict(older)
    assert fresh.rollback.good is None and fresh.rollback.recoveries == 0
    fresh.train_step(torch.ones(3))
    assert fresh.rollback.good.step == 3, "a snapshot is taken when such a run continues"


def test_a_blow_up_on_one_of_two_gloo_processes_rolls_both_back_and_they_stay_equal(tiny_images, tmp_path):
    overrides = [f"data.dataset={tiny_images}", "data.scale=symmetric", "data.val_size=64", "data.batch_size=32",
                 "model.channels=[4,8]", "model.kernel_sizes=[3,3]", "model.strides=[2,2]", "model.dense=[8]",
                 "model.langevin_steps=3", "model.buffer_size=64", "model.sample_steps=2", "model.step_size=1.0",
                 "model.snapshot_every=2", "train.max_steps=5", "train.num_samples=4", "train.progress=false",
                 "train.device=cpu", f"train.out_dir={tmp_path}", "train.threads=1", "train.sample_every=0"]
    script = tmp_path / "blow_up_on_rank_one.py"
    script.write_text(f"""
import os
import warnings

import torch
from genlab.config import apply_overrides, build_run_config
from genlab.models.ebm import EBM
from genlab.training.run import fit

rank, original, calls = int(os.environ["RANK"]), EBM.loss, [0]

def sabotaged(self, batch):  # rank 1's 4th forward pass (step 4) blows up; rank 0 stays healthy
    calls[0] += 1
    if rank == 1 and calls[0] == 4:
        with torch.no_grad():
            self.net.out.weight.mul_(1e7)
            self.net.out.bias.fill_(1e7)
    return original(self, batch)

EBM.loss = sabotaged
config = build_run_config(apply_overrides({{"model_name": "ebm"}}, {overrides!r}))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = fit(config).trainer.model
said = [str(w.message) for w in caught if "rolled back" in str(w.message)]
print(f"rank {{rank}}: rollbacks {{model.rollbacks}}, step size {{float(model.current_step_size)}}, {{said}}",
      flush=True)
""")
    result = torchrun_two_processes(str(script), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    # torchrun merges the two processes' output, so one line may hold both reports: split before each.
    lines = sorted(part.strip() for part in re.split(r"(?=rank \d: rollbacks)", result.stdout)
                   if part.startswith("rank "))
    assert len(lines) == 2 and all("rollbacks 1, step size 0.5" in line for line in lines), result.stdout
    assert "energies exploded" in lines[1] and "another training process saw its model diverge" in lines[0]
    (run,) = list(tmp_path.glob("ebm-*"))
    check = [r for r in metric_rows(run) if r.get("event") == "ddp_check"]
    assert check and check[0]["max_param_diff"] == 0.0, "both replicas rolled back to the same weights"
    state = ckpt.load_train_state(ckpt.latest_checkpoint(run) / ckpt.STATE_FILE)
    assert state["rollback"]["recoveries"] == 1 and len(state["ranks"]) == 2
    assert not torch.equal(*(rank["rollback_extra"]["buffer"]["samples"] for rank in state["ranks"]))


def test_a_roll_back_policy_refuses_impossible_settings():
    from genlab.errors import ConfigError
    from genlab.models.base import RollbackPolicy

    with pytest.raises(ConfigError, match="snapshot_every must be >= 1"):
        RollbackPolicy(snapshot_every=0)
    with pytest.raises(ConfigError, match="max_recoveries must be >= 0"):
        RollbackPolicy(max_recoveries=-1)


@pytest.mark.parametrize("native", [False, True])
def test_cpu_autocast_only_where_the_cpu_computes_bf16_natively(monkeypatch, native):
    from genlab.training import trainer

    class AmpModel:
        supports_amp = True

    class PlainModel:
        supports_amp = False

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    with trainer.training_autocast(True, cpu, AmpModel()):
        assert torch.is_autocast_enabled("cpu") == native  # emulated bf16 would be ~20x slower: float32 instead
    with trainer.training_autocast(True, cpu, PlainModel()):
        assert not torch.is_autocast_enabled("cpu")
    with trainer.training_autocast(False, cpu, AmpModel()):
        assert not torch.is_autocast_enabled("cpu")


def test_a_torch_without_the_bf16_probe_counts_as_float32(monkeypatch):
    from genlab.training import trainer

    class NoProbe:
        def __getattr__(self, name):
            raise AttributeError(name)

    monkeypatch.setattr(torch.ops, "mkldnn", NoProbe())
    assert trainer.cpu_has_native_bf16() is False
