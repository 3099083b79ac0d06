"""The VAE: config checks, the objective against hand-written formulas, the NLL against quadrature, pictures,
training through the engine, the CLI paths and the benchmark helpers (tiny settings)."""

import json
import math

import pytest
import torch
from torch.distributions import Normal

from genlab.cli import main as cli_main
from genlab.config import apply_overrides, build_run_config, from_dict
from genlab.errors import ConfigError, DataError
from genlab.models.base import DataInfo
from genlab.models.vae import VAE, VAEConfig
from genlab.training.run import train
from genlab.viz import latent as latent_viz

SMALL = dict(input_shape=(1, 4, 4), hidden_sizes=(8,), latent_dim=1)


def binary_images(count: int, shape=(1, 4, 4), seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((count, *shape), 0.4), generator=torch.Generator().manual_seed(seed))


def small_vae(seed: int = 0, **overrides) -> VAE:
    torch.manual_seed(seed)
    model = VAE(VAEConfig(**{**SMALL, **overrides}))
    with torch.no_grad():  # sharper decoder than the default init, so the posterior is far from the prior
        for parameter in model.decoder.parameters():
            parameter.mul_(3.0)
    return model.double()


# ------------------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("overrides, message", [
    ({"latent_dim": 0}, "latent_dim"),
    ({"k": 0}, "model.k"),
    ({"k": -5}, "model.k"),
    ({"manifold_bounds": (4.0, -4.0)}, "reversed"),
    ({"manifold_bounds": (1.0, 1.0)}, "reversed"),
    ({"manifold_size": 1}, "grid size"),
    ({"manifold_spacing": "log"}, "spacing"),
    ({"beta": -1.0}, "beta"),
    ({"objective": "iwae", "beta": 0.5}, "beta"),
    ({"likelihood": "poisson"}, "likelihood"),
    ({"architecture": "conv", "input_shape": (1, 30, 30)}, "multiples of 4"),
    ({"hidden_sizes": (200, 0)}, "hidden_sizes"),
    ({"obs_std": 0.0}, "obs_std"),
    ({"kl": "numeric"}, "model.kl"),
])
def test_bad_config_values_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        VAEConfig(**overrides)


def test_config_from_yaml_style_dict_and_presets_build():
    config = from_dict(VAEConfig, {"hidden_sizes": "[512]", "latent_dim": "2", "manifold_bounds": [-3, 3]})
    assert config.hidden_sizes == (512,) and config.latent_dim == 2 and config.manifold_bounds == (-3.0, 3.0)
    for preset in ("vae-mlp-mnist", "vae-iwae-mnist", "vae-conv-mnist", "vae-mlp-fashion"):
        from genlab.config import load_yaml
        from genlab.preset_files import preset_path

        run_config = build_run_config(load_yaml(preset_path(preset)))
        assert run_config.model_name == "vae"
        VAE(run_config.model)
    with pytest.raises(ConfigError, match="model.k"):
        build_run_config(apply_overrides({"model_name": "vae"}, ["model.k=0"]))


def test_adapt_config_fills_the_shape_and_rejects_unusable_data():
    image = DataInfo(kind="image", shape=(1, 32, 32))
    assert VAE.adapt_config(VAEConfig(architecture="conv"), image).input_shape == (1, 32, 32)
    with pytest.raises(ConfigError, match="data.scale=unit"):
        VAE.adapt_config(VAEConfig(), DataInfo(kind="image", shape=(1, 28, 28), value_range=(-1.0, 1.0)))
    with pytest.raises(ConfigError, match="text"):
        VAE.adapt_config(VAEConfig(), DataInfo(kind="text", shape=(64,)))
    with pytest.raises(ConfigError, match="multiples of 4"):
        VAE.adapt_config(VAEConfig(architecture="conv"), DataInfo(kind="image", shape=(1, 30, 30)))


def test_bernoulli_needs_pixels_in_unit_range_and_the_right_size():
    model = VAE(VAEConfig(**SMALL))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.loss(torch.full((2, 1, 4, 4), 2.0))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.loss(torch.full((2, 1, 4, 4), math.nan))
    with pytest.raises(DataError, match="16 values"):
        model.loss(torch.zeros(2, 1, 5, 5))
    loss, _ = VAE(VAEConfig(**SMALL, likelihood="gaussian")).loss(torch.full((2, 1, 4, 4), 2.0))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("architecture, shape, latent", [("mlp", (1, 28, 28), 50), ("conv", (1, 28, 28), 2),
                                                         ("conv", (1, 32, 32), 7), ("mlp", (1, 8, 8), 1)])
def test_encode_decode_shapes(architecture, shape, latent):
    model = VAE(VAEConfig(architecture=architecture, input_shape=shape, latent_dim=latent, conv_channels=(4, 8)))
    mu, logvar = model.encode(torch.rand(3, *shape))
    assert mu.shape == logvar.shape == (3, latent)
    images = model.decode(torch.randn(5, latent)).detach()
    assert images.shape == (5, *shape) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert model.decode_logits(torch.randn(2, 5, latent)).shape == (2, 5, *shape)


# ------------------------------------------------------------------------------------------ the objective


def test_mse_loss_is_the_tfjs_seed_formula():
    model = VAE(VAEConfig(**{**SMALL, "latent_dim": 2}, likelihood="mse"))
    x = torch.rand(6, 1, 4, 4)
    torch.manual_seed(11)
    loss, logs = model.loss(x)
    torch.manual_seed(11)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(1, 6, 2)[0]
        squared_error = (x - model.decode(z)).square().flatten(1).sum(1)  # MSE x 784 for MNIST
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)
    torch.testing.assert_close(loss.detach(), (squared_error + kl).mean())
    # The logs report the proper Gaussian (variance 1/2) density: the seed's value plus (D/2) log pi.
    assert logs["neg_elbo_nats"] == pytest.approx(float(loss.detach()) + 8 * math.log(math.pi), rel=1e-5)


def test_bernoulli_elbo_matches_hand_written_bce_and_beta_weights_the_kl():
    x = binary_images(5)
    for beta in (1.0, 0.25):
        model = VAE(VAEConfig(**{**SMALL, "latent_dim": 3}, beta=beta))
        torch.manual_seed(3)
        loss, logs = model.loss(x)
        torch.manual_seed(3)
        with torch.no_grad():
            mu, logvar = model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(1, 5, 3)[0]
            recon = torch.nn.functional.binary_cross_entropy(model.decode(z), x, reduction="sum") / 5
            kl = float(model.analytic_kl(mu, logvar).mean())
        assert float(loss.detach()) == pytest.approx(float(recon) + beta * kl, rel=1e-5)
        assert logs["kl_nats"] == pytest.approx(kl, rel=1e-5)


def test_iwae_with_one_sample_is_the_monte_carlo_elbo():
    x = binary_images(5)
    elbo_mc = VAE(VAEConfig(**SMALL, kl="mc"))
    iwae = VAE(VAEConfig(**SMALL, objective="iwae", k=1))
    iwae.load_state_dict(elbo_mc.state_dict())
    torch.manual_seed(4)
    elbo_loss, _ = elbo_mc.loss(x)
    torch.manual_seed(4)
    iwae_loss, logs = iwae.loss(x)
    torch.testing.assert_close(iwae_loss.detach(), elbo_loss.detach())
    assert logs["neg_iwae_nats"] == pytest.approx(logs["neg_elbo_nats"], rel=1e-6)


def test_monte_carlo_kl_averages_to_the_analytic_kl():
    model = small_vae(latent_dim=3)
    mu, logvar = model.encode(binary_images(4))
    z = model._sample_posterior(mu, logvar, 200_000, torch.Generator().manual_seed(0))
    from genlab.eval.iwae import diag_gaussian_log_density, standard_normal_log_density

    mc = (diag_gaussian_log_density(z, mu, logvar) - standard_normal_log_density(z)).mean(0)
    torch.testing.assert_close(mc, model.analytic_kl(mu, logvar), rtol=0, atol=0.02)


# ------------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def quadrature(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x) and the ELBO of a latent_dim=1 VAE by a Riemann sum over z in [-12, 12] (float64)."""
    z = torch.linspace(-12.0, 12.0, 48_001, dtype=torch.float64).unsqueeze(1)  # (Z, 1)
    step = 24.0 / 48_000
    logits = model.decode_logits(z)  # (Z, 1, 4, 4)
    log_px_z = model.log_likelihood(x, logits.unsqueeze(1).expand(-1, len(x), *logits.shape[1:]))  # (Z, B)
    log_joint = log_px_z + Normal(0.0, 1.0).log_prob(z)  # (Z, B)
    log_marginal = torch.logsumexp(log_joint, 0) + math.log(step)
    mu, logvar = model.encode(x)
    q = Normal(mu[:, 0], torch.exp(0.5 * logvar[:, 0])).log_prob(z)  # (Z, B)
    elbo = (q.exp() * (log_joint - q)).sum(0) * step
    return log_marginal, elbo


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "mse"])
def test_evaluate_matches_quadrature_on_a_one_dimensional_latent(likelihood):
    model = small_vae(likelihood=likelihood, obs_std=0.3)
    x = binary_images(6) if likelihood == "bernoulli" else torch.rand(6, 1, 4, 4, generator=torch.Generator()
                                                                        .manual_seed(1)).double()
    log_marginal, elbo = quadrature(model, x)
    result = model.evaluate([(x, torch.zeros(6))], iw_samples=20_000, sample_chunk=3000)
    assert result["n_test"] == 6 and result["iw_samples"] == 20_000
    assert result["test_nll_nats"] == pytest.approx(-float(log_marginal.mean()), abs=0.03)
    assert result["test_neg_elbo_nats"] == pytest.approx(-float(elbo.mean()), abs=0.05)
    assert float(elbo.mean()) < float(log_marginal.mean()) - 0.05  # the check separates the two
    assert result["test_nll_nats"] <= result["test_neg_elbo_nats"]
    assert result["nll_is_density"] == (0.0 if likelihood == "bernoulli" else 1.0)


def test_evaluate_tightens_with_k_and_respects_test_limit():
    model = small_vae(latent_dim=2)
    x = binary_images(40)
    batches = [(x[:25], torch.zeros(25)), (x[25:], torch.zeros(15))]
    nlls = [model.evaluate(batches, iw_samples=k)["test_nll_nats"] for k in (1, 20, 400)]
    assert nlls[0] > nlls[1] > nlls[2]
    limited = model.evaluate(batches, iw_samples=4, test_limit=30)
    assert limited["n_test"] == 30 and limited["test_nll_nats_se"] > 0
    again = model.evaluate(batches, iw_samples=4, test_limit=30)
    assert again == limited  # fixed default generator: reproducible


def test_evaluate_rejects_bad_options_and_non_binary_bernoulli_data():
    model = small_vae()
    with pytest.raises(ConfigError, match="iw_samples"):
        model.evaluate([binary_images(2)], iw_samples=0)
    with pytest.raises(ConfigError, match="unknown option"):
        model.evaluate([binary_images(2)], ais_runs=3)
    with pytest.raises(DataError, match="binary"):
        model.evaluate([torch.full((2, 1, 4, 4), 0.5)], iw_samples=2)
    with pytest.raises(DataError, match="no test images"):
        model.evaluate([], iw_samples=2)


# ------------------------------------------------------------------------------------------ pictures


def test_latent_grid_layout_spacing_and_bad_bounds():
    grid = latent_viz.latent_grid(3, (-2.0, 2.0), "linear")
    assert grid.shape == (9, 2)
    assert grid[0].tolist() == [-2.0, 2.0] and grid[2].tolist() == [2.0, 2.0] and grid[8].tolist() == [2.0, -2.0]
    gaussian = latent_viz.latent_grid(5, (-1.6448536, 1.6448536), "gaussian")[:5, 0]
    masses = torch.special.ndtr(gaussian.double())
    torch.testing.assert_close(masses, torch.linspace(0.05, 0.95, 5, dtype=torch.float64), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="reversed"):
        latent_viz.latent_grid(4, (3.0, -3.0))
    with pytest.raises(ConfigError, match="tails"):
        latent_viz.latent_grid(4, (-50.0, 50.0), "gaussian")
    with pytest.raises(ConfigError, match="2-D latent"):
        latent_viz.decode_manifold(small_vae(latent_dim=3), 4)


def test_interpolation_end_points_are_the_reconstructions_and_pca_projection():
    model = small_vae(latent_dim=3)
    x = binary_images(2)
    row = latent_viz.interpolate(model, x[0], x[1:2], steps=5)
    assert row.shape == (5, 1, 4, 4)
    torch.testing.assert_close(row[[0, -1]], model.reconstruct(x))
    means = torch.randn(50, 3) * torch.tensor([5.0, 1.0, 0.1])
    coords, names = latent_viz.project_to_plane(means)
    assert coords.shape == (50, 2) and names[0].startswith("PC1")
    assert float(coords[:, 0].var()) > float(coords[:, 1].var())
    picture = latent_viz.figure_to_tensor(latent_viz.scatter_figure(means, torch.arange(50) % 4))
    assert picture.shape[0] == 3 and 0.0 <= float(picture.min()) and float(picture.max()) <= 1.0


def test_snapshots_are_fixed_by_the_generator_and_cover_every_picture():
    model = small_vae(latent_dim=2).float()
    batch = (binary_images(20).float(), torch.arange(20) % 3)
    first = model.snapshots(16, generator=torch.Generator().manual_seed(5), batch=batch)
    second = model.snapshots(16, generator=torch.Generator().manual_seed(5), batch=batch)
    assert set(first) == {"samples", "reconstructions", "interpolation", "manifold", "latent_scatter"}
    torch.testing.assert_close(first["samples"], second["samples"])
    assert first["manifold"].shape == (400, 1, 4, 4)
    assert first["interpolation"].shape == (64, 1, 4, 4)
    torch.testing.assert_close(first["reconstructions"][0::2], batch[0][:8])


def test_sample_options():
    model = small_vae(latent_dim=2)
    assert model.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.5).shape == (3, 1, 4, 4)
    with pytest.raises(ConfigError, match="steps"):
        model.sample(3, steps=10)
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(3, temperature=-1.0)


# ------------------------------------------------------------------------------------------ end to end


def tiny_run_config(dataset, out, *extra):
    overrides = [f"data.dataset={dataset}", "data.val_size=64", "data.batch_size=32", "data.binarize=dynamic",
                 "model.hidden_sizes=[32]", "model.latent_dim=2", "model.manifold_size=4", "optim.lr=1e-2",
                 "train.epochs=4", "train.num_samples=16", "train.progress=false", "train.device=cpu",
                 f"train.out_dir={out}", "train.log_every=5", *extra]
    return build_run_config(apply_overrides({"model_name": "vae"}, overrides))


def test_training_run_writes_pictures_learns_and_evaluates_from_the_cli(tiny_images, tmp_path, capsys):
    run_dir = train(tiny_run_config(tiny_images, tmp_path))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r.get("split") == "val"]
    assert len(val) == 4 and val[-1]["neg_elbo_nats"] < val[0]["neg_elbo_nats"] - 5.0
    samples = run_dir / "samples"
    for name in ("samples", "reconstructions", "interpolation", "manifold", "latent_scatter"):
        assert list(samples.glob(f"{name}-step*.png")), name
        assert (samples / f"{name}.gif").is_file(), name

    capsys.readouterr()
    assert cli_main(["eval", str(run_dir), "--json", "--device", "cpu", "--option", "iw_samples=200",
                     "--option", "test_limit=50"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_test"] == 50 and metrics["test_nll_nats"] <= metrics["test_neg_elbo_nats"]
    assert metrics["test_nll_nats"] < val[0]["neg_elbo_nats"]

    assert cli_main(["sample", str(run_dir), "--n", "9", "--device", "cpu"]) == 0
    assert cli_main(["latent", str(run_dir), "--size", "5", "--bounds", "-2", "2", "--device", "cpu"]) == 0
    for name in ("manifold", "latent_scatter", "interpolation"):
        assert (run_dir / "latent" / f"{name}.png").is_file()
    assert cli_main(["latent", str(run_dir), "--bounds", "2", "-2"]) == 2
    assert "reversed" in capsys.readouterr().err


def test_conv_and_iwae_variants_train_through_the_engine(tiny_images, tmp_path):
    conv = train(tiny_run_config(tiny_images, tmp_path / "conv", "model.architecture=conv",
                                 "model.conv_channels=[4,8]", "model.kl=mc", "train.epochs=1"))
    iwae = train(tiny_run_config(tiny_images, tmp_path / "iwae", "model.objective=iwae", "model.k=5",
                                 "model.latent_dim=3", "train.epochs=1"))
    for run_dir in (conv, iwae):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert not list((iwae / "samples").glob("manifold-*.png"))  # no manifold for a 3-D latent space


def test_benchmark_helpers_smoke(tiny_images, tmp_path):
    from genlab.bench import vae_bench

    tiny = [f"data.dataset={tiny_images}", "data.val_size=64", "model.hidden_sizes=[16]", "model.latent_dim=2",
            "data.batch_size=64", "train.progress=false", "train.device=cpu"]
    overhead = vae_bench.measure_overhead(vae_bench.run_config("vae-mlp-mnist", tiny), tmp_path, repeats=2)
    assert overhead["trainer_epoch_s"] > 0 and overhead["plain_epoch_s"] > 0 and overhead["overhead_ratio"] > 0
    result = vae_bench.train_and_evaluate("vae-mlp-mnist", budget_s=3.0, test_images=20, iw_samples=10,
                                          work_dir=tmp_path / "runs", overrides=tiny, max_epochs=3)
    assert 1 <= result["epochs_planned"] <= 3 and result["n_test"] == 20
    assert result["test_nll_nats"] <= result["test_neg_elbo_nats"]


def test_the_iwae_benchmark_trains_all_three_objectives_for_the_epochs_the_k50_model_reached(monkeypatch, tmp_path):
    from genlab.bench import BenchContext, vae_bench

    calls = []

    def fake_train_and_evaluate(preset, *, budget_s, overrides=(), max_epochs=None, **_):
        calls.append((preset, tuple(overrides), max_epochs))
        k50 = "model.k=50" in overrides
        epochs = 7.0 if k50 else float(max_epochs)
        nll = {"model.k=50": 95.0, "model.k=5": 96.0}.get(next(iter(overrides), ""), 97.5)
        return {"n_test": 10000, "iw_samples": 5000, "test_nll_nats": nll, "test_nll_nats_se": 0.2,
                "test_neg_elbo_nats": nll + 5, "test_neg_elbo_nats_se": 0.2, "full_test_neg_elbo_nats": nll + 5,
                "full_test_images": 10000, "epochs_trained": epochs, "train_s": 60.0 * epochs,
                "eval_s": 30.0, "stopped_early": 0.0, "run_dir": str(tmp_path)}

    monkeypatch.setattr(vae_bench, "train_and_evaluate", fake_train_and_evaluate)
    ctx = BenchContext(suite="full", device="cpu", data_dir=None, work_dir=tmp_path, train_budget_s=120.0)
    records = vae_bench.bench_iwae_nll(ctx)
    # The k=50 model sets the epochs; the others train exactly as many.
    assert calls == [("vae-iwae-mnist", ("model.k=50",), None), ("vae-iwae-mnist", ("model.k=5",), 7),
                     ("vae-mlp-mnist", (), 7)]
    nll = {r["model"]: r["value"] for r in records if r["metric"] == "test_nll_iwae_k5000_full"}
    assert nll == {"vae (IWAE k=50)": 95.0, "vae (IWAE k=5)": 96.0, "vae (ELBO)": 97.5}
    gains = {r["model"]: r["value"] for r in records if r["metric"] == "nll_gain_over_vae_equal_epochs"}
    assert gains == {"vae (IWAE k=5)": pytest.approx(1.5), "vae (IWAE k=50)": pytest.approx(2.5)}
    assert all(r.get("epochs") == 7 for r in records if "epochs" in r)
