"""Every model family on a CUDA device: trains through the engine, resumes exactly, samples, evaluates, and its
checkpoints load on the CPU. The estimators' ground-truth checks are repeated on the device.

Skipped where torch sees no CUDA device (CI has none). On a GPU machine: ``python -m pytest tests/test_cuda.py``.
"""

import json
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import final_state
from test_char_rnn import corpus
from test_char_rnn import run_config as char_config
from test_dbn import run_config as dbn_config
from test_ebm import tiny_model as ebm_model
from test_ebm import tiny_run_config as ebm_config
from test_gan import tiny_config as gan_config
from test_hopfield import hopfield_config
from test_trainer import tiny_config as rbm_config
from test_vae import tiny_run_config as vae_config

from genlab.cli import main
from genlab.errors import ConfigError
from genlab.eval.ais import ais_log_partition, default_betas, exact_log_partition
from genlab.sampling.langevin import CudaGraphLangevin, langevin
from genlab.training import checkpoint as ckpt
from genlab.training.run import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = ["train.device=cuda"]
DBN_STAGES = ["model.layers=[64,16,32]", "model.n_labels=4", "model.epochs_per_layer=[1]", "model.pcd_epochs=1",
              "model.n_chains=8", "model.updown_epochs=1", "model.sample_steps=5", "train.epochs=4"]


def family_config(name: str, images: Path, text: Path, out: Path, *extra: str):
    """A tiny run of one model family on the device (later overrides win)."""
    builders = {
        "rbm": lambda: rbm_config(images, out, *CUDA, *extra),
        "dbn": lambda: dbn_config("dbn", images, out, *DBN_STAGES, *CUDA, *extra),
        "dbn-classifier": lambda: dbn_config("dbn-classifier", images, out, "model.dbn.layers=[64,8]",
                                             "model.dbn.n_labels=4", "model.dbn.epochs_per_layer=[1]",
                                             "model.dbn.sample_steps=5", "train.epochs=3", *CUDA, *extra),
        "hopfield": lambda: hopfield_config(images, out, *CUDA, *extra),
        "vae": lambda: vae_config(images, out, "train.epochs=2", *CUDA, *extra),
        "vae-amp": lambda: vae_config(images, out, "train.epochs=2", "train.amp=true", *CUDA, *extra),
        "ebm": lambda: ebm_config(images, out, "train.max_steps=6", *CUDA, *extra),
        "ebm-graphs": lambda: ebm_config(images, out, "train.max_steps=6", "model.cuda_graphs=true", *CUDA, *extra),
        "char-lstm": lambda: char_config(text, out, *CUDA, *extra),
        "dcgan": lambda: gan_config(images, out, "dcgan", "train.max_steps=10", *CUDA, *extra),
        "dcgan-amp": lambda: gan_config(images, out, "dcgan", "train.max_steps=10", "train.amp=true", *CUDA, *extra),
        "wgan-gp": lambda: gan_config(images, out, "wgan-gp", "train.max_steps=10", *CUDA, *extra),
        "cgan": lambda: gan_config(images, out, "cgan", "train.max_steps=10", "model.g_ema=0.99", *CUDA, *extra),
    }
    return builders[name]()


FAMILIES = ["rbm", "dbn", "dbn-classifier", "hopfield", "vae", "vae-amp", "ebm", "ebm-graphs", "char-lstm", "dcgan",
            "dcgan-amp", "wgan-gp", "cgan"]


def finite_metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                assert value == value and abs(value) != float("inf"), (key, row)
    return rows


@pytest.fixture
def deterministic_cudnn(monkeypatch):
    """cuDNN may pick a nondeterministic convolution algorithm; the EBM's bit-for-bit checks pin it."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


@pytest.mark.parametrize("family", FAMILIES)
def test_trains_on_the_device_and_the_checkpoint_samples_on_both(family, tiny_images, tmp_path):
    run_dir = train(family_config(family, tiny_images, corpus(tmp_path), tmp_path / "runs"))
    assert any(row.get("split") == "train" for row in finite_metrics(run_dir))
    for device in ("cuda", "cpu"):
        model, _ = ckpt.load_model(run_dir, device)
        assert next(model.parameters()).device.type == device
        generator = torch.Generator(device=device).manual_seed(0)
        samples = model.sample(3, generator=generator)
        assert samples.device.type == device
        if samples.is_floating_point():
            assert torch.isfinite(samples).all()


@pytest.mark.parametrize("family", ["rbm", "dbn", "ebm", "ebm-graphs", "char-lstm", "dcgan", "wgan-gp", "cgan"])
def test_stop_and_resume_on_the_device_equals_one_straight_run(family, tiny_images, tmp_path, deterministic_cudnn):
    text = corpus(tmp_path)
    straight = train(family_config(family, tiny_images, text, tmp_path / "straight"))
    last_step = int(ckpt.latest_checkpoint(straight).name.split("-")[1])
    stop = max(1, last_step // 2)
    partial = train(family_config(family, tiny_images, text, tmp_path / "resumed", f"train.max_steps={stop}"))
    train(family_config(family, tiny_images, text, tmp_path / "resumed"), resume_dir=partial)
    a, b = final_state(straight), final_state(partial)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_eval_on_the_device_matches_the_cpu(tiny_images, tmp_path, capsys):
    """The RBM's log-likelihood (exact log Z for 12 hidden units) and the VAE's IWAE bound, by the CLI."""
    for family, options in (("rbm", ["--option", "ais_runs=0"]), ("vae", [])):
        run_dir = train(family_config(family, tiny_images, corpus(tmp_path), tmp_path / family))
        results = {}
        for device in ("cpu", "cuda"):
            assert main(["eval", str(run_dir), "--json", "--device", device, *options]) == 0
            results[device] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        if family == "rbm":
            assert results["cuda"]["test_loglik_nats"] == pytest.approx(results["cpu"]["test_loglik_nats"],
                                                                        abs=1e-3)
        else:  # different random draws on each device: agreement within the estimators' noise
            cpu, cuda = results["cpu"], results["cuda"]
            assert cuda["test_nll_nats"] <= cuda["test_neg_elbo_nats"] + 1e-4
            assert cuda["test_nll_nats"] == pytest.approx(cpu["test_nll_nats"], rel=0.02)


def test_ais_on_the_device_agrees_with_exact_enumeration():
    generator = torch.Generator().manual_seed(0)
    n_visible, n_hidden = 20, 10
    W = 0.5 * torch.randn(n_hidden, n_visible, generator=generator, dtype=torch.float64)
    b = 0.3 * torch.randn(n_visible, generator=generator, dtype=torch.float64)
    c = 0.3 * torch.randn(n_hidden, generator=generator, dtype=torch.float64)
    exact = exact_log_partition(W, b, c)
    device = torch.device("cuda")
    log_z, log_weights = ais_log_partition(W.float().to(device), b.float().to(device), c.float().to(device),
                                           torch.zeros(n_visible, device=device), default_betas(2000), n_runs=200,
                                           generator=torch.Generator(device=device).manual_seed(1))
    assert log_weights.shape == (200,)
    assert log_z == pytest.approx(exact, abs=0.05)


def test_the_cuda_graph_langevin_chain_is_the_eager_chain(deterministic_cudnn):
    model = ebm_model().cuda()
    settings = {"steps": 7, "step_size": 1.0, "noise_std": 0.01, "grad_clip": 0.03, "bounds": (-1.0, 1.0)}
    start = torch.rand(5, *model.image_shape, device="cuda") * 2 - 1
    torch.cuda.manual_seed(3)
    eager = [langevin(model._sampling_energy, start, **settings) for _ in range(2)]
    after_eager = torch.randn(3, device="cuda")
    torch.cuda.manual_seed(3)
    graphed = CudaGraphLangevin(model._sampling_energy, start, parameters=tuple(model.parameters()), **settings)
    replays = [graphed(start) for _ in range(2)]
    after_replays = torch.randn(3, device="cuda")
    for a, b in zip(eager, replays):
        assert torch.equal(a.samples, b.samples) and torch.equal(a.grad_norm, b.grad_norm)
    assert not torch.equal(replays[0].samples, replays[1].samples)  # fresh noise at every replay
    assert torch.equal(after_eager, after_replays)  # the global stream moved on exactly as in eager mode
    with torch.no_grad():  # an in-place parameter update is seen by the next replay (both change ∇ₓE)
        model.net.out.weight.mul_(2.0)
        model.net.convs[0].weight.mul_(3.0)
    torch.cuda.manual_seed(4)
    expected = langevin(model._sampling_energy, start, **settings)
    torch.cuda.manual_seed(4)
    assert torch.equal(graphed(start).samples, expected.samples)
    with pytest.raises(ConfigError, match=r"takes \(5, 1, 8, 8\).*got \(1, 1, 8, 8\)"):
        graphed(start[:1])


def test_the_model_keeps_one_graph_per_batch_shape_and_drops_stale_ones(deterministic_cudnn):
    model = ebm_model(cuda_graphs=True).cuda()
    for batch in (8, 7, 8, 6, 5, 4, 8):
        model._negatives(torch.rand(batch, *model.image_shape, device="cuda") * 2 - 1)
    assert [key[0][0] for key in model._graphs] == [6, 5, 4, 8]  # at most 4: the oldest (8, then 7) went first
    model.current_step_size.fill_(0.5)  # as after a roll-back: the old step size's graphs never replay again
    model._negatives(torch.rand(8, *model.image_shape, device="cuda"))
    assert len(model._graphs) == 1


def test_training_with_cuda_graphs_equals_eager_training(tiny_images, tmp_path, deterministic_cudnn, monkeypatch):
    text = corpus(tmp_path)
    # Batches of 30 from 448 images: every 15th batch is short (28), so two graphs alternate.
    short = ("data.batch_size=30", "train.max_steps=17")
    eager = train(family_config("ebm", tiny_images, text, tmp_path / "eager", *short))
    replays = []
    original = CudaGraphLangevin.__call__
    monkeypatch.setattr(CudaGraphLangevin, "__call__", lambda self, x0: replays.append(x0.shape[0]) or
                        original(self, x0))
    graphed = train(family_config("ebm-graphs", tiny_images, text, tmp_path / "graphed", *short))
    assert replays == [30] * 14 + [28] + [30] * 2, "every training chain must come from a replayed graph"
    a, b = final_state(eager), final_state(graphed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
