"""Faults genlab survives, one test each: signals, kills while checkpointing, flipped bytes, two processes on one
run. Read the test names for the list; each says what happens and what is kept."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import final_state

from genlab.config import apply_overrides, build_run_config, load_yaml
from genlab.errors import CheckpointError, TrainingInterrupted
from genlab.training import checkpoint as ckpt
from genlab.training.callbacks import Callback
from genlab.training.run import fit, train

RBM_ARGS = ["--preset", "rbm-quick", "--device", "cpu", "--set", "data.val_size=64", "--set", "data.batch_size=16", "--set",
            "model.n_hidden=12", "--set", "model.persistent=true", "--set", "model.n_chains=16", "--set",
            "model.sample_steps=20", "--set", "optim.name=sgd", "--set", "optim.lr=0.05", "--set",
            "train.progress=false", "--set", "train.threads=1", "--set", "data.binarize=dynamic"]


def tiny_config(dataset: Path, out: Path, *extra: str):
    overrides = [f"data.dataset={dataset}", "data.val_size=64", "data.batch_size=16", "data.binarize=dynamic",
                 "model.n_hidden=12", "model.persistent=true", "model.n_chains=16", "model.sample_steps=20",
                 "optim.name=sgd", "optim.lr=0.05", "train.epochs=2", "train.num_samples=16",
                 "train.progress=false", "train.device=cpu", f"train.out_dir={out}", *extra]
    return build_run_config(apply_overrides({"model_name": "rbm"}, overrides))


def _start_and_signal(dataset: Path, out: Path, signum: int) -> tuple[subprocess.CompletedProcess, Path]:
    """Start a long CLI training run, send ``signum`` once it has trained a while, wait for it to exit."""
    args = [sys.executable, "-m", "genlab", "train", "rbm", "--dataset", str(dataset), "--out", str(out),
            "--epochs", "200", "--set", "train.log_every=1", *RBM_ARGS]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = list(out.glob("rbm-*/metrics.jsonl")) if out.exists() else []
        if metrics and len(metrics[0].read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    (run_dir,) = list(out.glob("rbm-*"))
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr), run_dir


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_writes_a_checkpoint_exits_128_plus_signal_and_resumes_exactly(tiny_images, tmp_path,
                                                                                       signum, code):
    result, run_dir = _start_and_signal(tiny_images, tmp_path / "stopped", signum)
    assert result.returncode == code, result.stderr
    assert f"resume with: genlab train --resume {run_dir}" in result.stderr
    assert "Traceback" not in result.stderr
    stopped_at = ckpt.latest_checkpoint(run_dir)
    step = int(stopped_at.name.split("-")[1])
    assert 0 < step < 200 * 28 and f"at step {step} " in result.stderr, "a checkpoint at the step it stopped"
    # Continue to the end of epoch 2 and compare with a straight run of the same config.
    resumed = subprocess.run([sys.executable, "-m", "genlab", "train", "--resume", str(run_dir), "--set",
                              "train.epochs=2"] if step < 56 else ["true"], capture_output=True, text=True,
                             timeout=300)
    if step >= 56:
        pytest.skip("the machine was too fast: the run passed epoch 2 before the signal")
    assert resumed.returncode == 0, resumed.stderr
    config = build_run_config(apply_overrides(load_yaml(run_dir / "config.yaml"),
                                              ["train.epochs=2", f"train.out_dir={tmp_path / 'straight'}"]))
    straight = train(config)
    a, b = final_state(straight), final_state(run_dir)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_temporary_directory_of_a_kill_during_a_checkpoint_is_removed_on_the_next_start(tiny_images, tmp_path):
    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=5"))
    leftover = run_dir / "checkpoints" / ".tmp-step-000000009-12345"
    leftover.mkdir()
    (leftover / ckpt.MODEL_FILE).write_bytes(b"half")
    train(tiny_config(tiny_images, tmp_path, "train.max_steps=8"), resume_dir=run_dir)
    assert not leftover.exists()
    assert [p.name for p in ckpt.list_checkpoints(run_dir / "checkpoints")][-1] == "step-000000008"


@pytest.mark.parametrize("name", [ckpt.MODEL_FILE, ckpt.STATE_FILE])
def test_a_flipped_byte_inside_tensor_data_is_a_checkpoint_error_naming_the_file(tiny_images, tmp_path, name):
    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=5"))
    path = ckpt.latest_checkpoint(run_dir) / name
    data = bytearray(path.read_bytes())
    data[-200] ^= 0x01  # inside the tensors, where the format itself cannot notice
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{name} does not match the sha256"):
        if name == ckpt.MODEL_FILE:
            ckpt.load_model(run_dir)
        else:
            ckpt.load_train_state(path)
    with pytest.raises(CheckpointError, match="sha256"):
        train(tiny_config(tiny_images, tmp_path, "train.max_steps=8"), resume_dir=run_dir)


def test_the_manifest_is_written_last_and_lists_both_files(tiny_images, tmp_path):
    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=3"))
    latest = ckpt.latest_checkpoint(run_dir)
    manifest = json.loads((latest / ckpt.MANIFEST_FILE).read_text())
    assert manifest["sha256"] == {n: ckpt.file_sha256(latest / n) for n in (ckpt.MODEL_FILE, ckpt.STATE_FILE)}


def test_a_second_process_on_the_same_run_is_refused_naming_the_holder(tiny_images, tmp_path):
    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=3"))
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"h = open({str(run_dir / '.lock')!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
                               "h.seek(0); h.truncate(); h.write(str(os.getpid())); h.flush()\n"
                               "print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"being trained by another process \\(pid {holder.pid}\\)"):
            train(tiny_config(tiny_images, tmp_path, "train.max_steps=6"), resume_dir=run_dir)
    finally:
        holder.kill()
        holder.wait()
    train(tiny_config(tiny_images, tmp_path, "train.max_steps=6"), resume_dir=run_dir)  # free again
    assert ckpt.latest_checkpoint(run_dir).name == "step-000000006"


def test_checkpoints_also_come_by_wall_time(tiny_images, tmp_path, monkeypatch):
    from genlab.training import callbacks

    clock = {"now": 0.0}
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock["now"])

    class Tick(Callback):
        def on_step_end(self, trainer, logs):
            clock["now"] += 7.0  # seconds per step

    # Every 30 s of a 7-s step: the checkpoint callback (before Tick) sees 7·(k-1) s at step k, so steps 6
    # (35 s) and 11 (70 s, 35 after the last), then the end of the run at 12 (epochs are 28 steps).
    config = tiny_config(tiny_images, tmp_path, "train.max_steps=12", "train.checkpoint_minutes=0.5",
                         "train.keep_last=10")
    outcome = fit(config, extra_callbacks=(Tick(),))
    steps = [int(p.name.split("-")[1]) for p in ckpt.list_checkpoints(outcome.run_dir / "checkpoints")]
    assert steps[:2] == [6, 11] and steps[-1] == 12


def test_an_interrupt_inside_python_raises_a_typed_error_after_the_checkpoint(tiny_images, tmp_path):
    class Interrupt(Callback):
        def on_step_end(self, trainer, logs):
            if trainer.step == 4:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="SIGINT at step 4.*step-000000004 written") as caught:
        fit(tiny_config(tiny_images, tmp_path), extra_callbacks=(Interrupt(),))
    assert caught.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the handler is given back"


def test_a_huge_learning_rate_is_caught_though_the_loss_stays_finite_and_never_checkpointed(tiny_images, tmp_path):
    from genlab.errors import TrainingError

    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=10"))
    with pytest.raises(TrainingError, match=r"diverged: the parameters' norm grew .*step-000000010, was kept"):
        train(tiny_config(tiny_images, tmp_path, "train.max_steps=40", "optim.lr=1e9", "train.log_every=5",
                          "train.checkpoint_every=5"), resume_dir=run_dir)
    assert ckpt.latest_checkpoint(run_dir).name == "step-000000010", "the diverged state was not saved"


def test_an_rbm_sees_its_own_divergence_in_reconstruction_error_and_free_energy_gap(tiny_images, tmp_path):
    from genlab.errors import TrainingError

    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=10"))
    with pytest.raises(TrainingError, match=r"diverged: the reconstruction cross-entropy rose .* base-rate model"):
        train(tiny_config(tiny_images, tmp_path, "train.max_steps=40", "optim.lr=1e9", "train.log_every=5",
                          "train.max_param_growth=0", "train.checkpoint_every=5"), resume_dir=run_dir)
    assert ckpt.latest_checkpoint(run_dir).name == "step-000000010", "the diverged state was not saved"


def test_rbm_divergence_check_is_quiet_for_healthy_logs_and_names_each_monitor():
    from genlab.models.rbm import RBM, RBMConfig

    rbm = RBM(RBMConfig(n_visible=4, n_hidden=3))
    rbm.base_rate_logits.fill_(0.0)  # a coin per pixel: 4 log 2 = 2.77 nats per image
    assert rbm.divergence({"recon_ce_nats": 2.0, "cd_gap": 3.0}) is None
    assert "reconstruction cross-entropy rose to 6" in rbm.divergence({"recon_ce_nats": 6.0, "cd_gap": 0.0})
    assert "free-energy gap" in rbm.divergence({"recon_ce_nats": 1.0, "cd_gap": -41.0})


def test_a_plain_resume_after_a_diverged_one_continues_with_the_last_good_config(tiny_images, tmp_path):
    from genlab.cli import main

    run_dir = train(tiny_config(tiny_images, tmp_path, "train.max_steps=10"))
    assert main(["train", "--resume", str(run_dir), "--set", "optim.lr=1e9", "--set", "train.max_steps=40",
                 "--set", "train.log_every=5"]) == 1
    assert load_yaml(run_dir / "config.yaml")["optim"]["lr"] == 1e9  # what the diverged start wrote
    assert main(["train", "--resume", str(run_dir), "--set", "train.max_steps=20"]) == 0
    assert ckpt.latest_checkpoint(run_dir).name == "step-000000020"
    assert load_yaml(run_dir / "config.yaml")["optim"]["lr"] == 0.05


@pytest.mark.parametrize("args, message", [
    (["train", "rbm", "--seed", str(2**70)], "a seed must be in"),
    (["sample", "RUN", "--seed", "-1"], "a seed must be in"),
])
def test_bad_seeds_are_one_line(args, message, capsys):
    from genlab.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_out_naming_a_file_and_bad_sample_outputs_are_refused_before_any_work(tiny_images, tmp_path, capsys):
    from genlab.cli import main

    existing = tmp_path / "a-file"
    existing.write_text("x")
    assert main(["train", "rbm", "--dataset", str(tiny_images), "--out", str(existing)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    run_dir = train(tiny_config(tiny_images, tmp_path / "runs", "train.max_steps=2"))
    for out in (tmp_path, tmp_path / "x.jpeg"):
        assert main(["sample", str(run_dir), "--out", str(out)]) == 2
        assert ".png grid, or as uint8 arrays in .npz" in capsys.readouterr().err
    assert main(["sample", str(run_dir), "--n", "100000000"]) == 2
    assert "a grid holds at most 10000 images" in capsys.readouterr().err
    assert main(["sample", str(run_dir), "--n", "100000000", "--out", str(tmp_path / "s.npz")]) == 2
    assert "a sample file holds at most 200000 images" in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()


def test_training_into_a_log_file_prints_progress_lines_and_curves_png_is_written(tiny_images, tmp_path):
    args = [sys.executable, "-m", "genlab", "train", "rbm", "--dataset", str(tiny_images), "--out",
            str(tmp_path), "--epochs", "1",
            *["train.progress=true" if a == "train.progress=false" else a for a in RBM_ARGS]]
    code = ("import sys, genlab.training.callbacks as c; c.ProgressCallback.__init__.__defaults__ = (True, 0.0); "
            "from genlab.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, *args[3:]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "[genlab] step 1/28 (epoch 1/1)" in result.stderr and "min left" in result.stderr
    (run_dir,) = list(tmp_path.glob("rbm-*"))
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_long_evaluation_without_a_terminal_prints_progress_with_the_time_left_and_a_hint(capsys):
    from genlab.eval.ais import ais_log_partition, default_betas
    from genlab.progress import Progress

    torch.manual_seed(0)
    W, b, c = torch.randn(6, 10) * 0.1, torch.zeros(10), torch.zeros(6)
    betas = default_betas(1000)
    progress = Progress(len(betas) - 1, "AIS temperature", every_s=0.0, terminal=False, hint="--option ais_runs=N")
    ais_log_partition(W, b, c, torch.zeros(10), betas, 4, torch.Generator().manual_seed(0), progress=progress)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[genlab] AIS")]
    assert len(lines) >= 5 and "min left" in lines[-1] and "--option ais_runs=N" in lines[-1]
