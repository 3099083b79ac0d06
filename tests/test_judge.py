"""genlab's judge and its sample-quality metrics: the estimators against closed forms, the judge on real data
(real held-out images score near zero, noise badly, degraded copies in between), its cache and its CLI."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import real_data_dir

from genlab import judge as genlab_judge
from genlab.cli import main
from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.eval import judge as J
from genlab.eval.judge_training import train_judge

# ------------------------------------------------------------------------------------- metric mathematics


def _random_spd(d, generator, scale=1.0):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64))


def test_fd_of_a_set_with_itself_is_zero():
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)) * 5 + 3
    assert J.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_fd_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float((mu1 - mu2).square().sum() + (var1.sqrt() - var2.sqrt()).square().sum())  # 10 + 4 + 1 + 0
    assert J.frechet_distance_from_stats(mu1, torch.diag(var1), mu2, torch.diag(var2)) == pytest.approx(expected)
    assert expected == pytest.approx(15.0)


def test_fd_closed_form_for_scaled_covariance():
    # Σ2 = c²Σ1 commutes with Σ1: tr(Σ1 + Σ2 - 2(Σ1Σ2)^½) = (1 - c)² tr Σ1.
    g = torch.Generator().manual_seed(1)
    sigma = _random_spd(6, g)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    c = 2.5
    expected = float((mu1 - mu2).square().sum() + (1 - c) ** 2 * torch.trace(sigma))
    assert J.frechet_distance_from_stats(mu1, sigma, mu2, c * c * sigma) == pytest.approx(expected, rel=1e-9)


def test_fd_agrees_with_scipy_sqrtm_for_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(2)
    s1, s2 = _random_spd(8, g), _random_spd(8, g, scale=3.0)
    mu1, mu2 = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = 8.0 + float(np.trace(s1.numpy() + s2.numpy() - 2 * root))
    assert J.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_is_stable_for_singular_covariances():
    # Dead ReLU units give all-zero feature columns: covariances are singular, FD must still be exact.
    g = torch.Generator().manual_seed(3)
    live_a, live_b = torch.randn(400, 5, generator=g), torch.randn(400, 5, generator=g) * 2 + 1
    dead = torch.zeros(400, 7)
    with_dead = J.frechet_distance(torch.cat([live_a, dead], 1), torch.cat([live_b, dead], 1))
    assert math.isfinite(with_dead) and with_dead == pytest.approx(J.frechet_distance(live_a, live_b), rel=1e-9)
    rank_one = torch.randn(300, 1, generator=g) @ torch.ones(1, 10)
    assert J.frechet_distance(rank_one, rank_one) == pytest.approx(0.0, abs=1e-8)


def test_fd_estimated_from_gaussian_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(4)
    s1, s2 = _random_spd(4, g), _random_spd(4, g, scale=2.0)
    mu1, mu2 = torch.zeros(4, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)
    n = 40000
    a = mu1 + torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    b = mu2 + torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    exact = J.frechet_distance_from_stats(mu1, s1, mu2, s2)
    assert J.frechet_distance(a, b) == pytest.approx(exact, rel=0.03)


def test_fd_rejects_too_few_or_mismatched_features():
    with pytest.raises(DataError, match="at least 2"):
        J.frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(DataError, match="mismatched"):
        J.frechet_distance(torch.randn(5, 3), torch.randn(5, 4))


def test_mmd2_unbiased_matches_its_definition():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)

    def k(u, v):
        return (float(u @ v) / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert J.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def _expected_cubic_kernel(mu_a, sigma_a, mu_b, sigma_b):
    """E k(x, y) for independent x ~ N(mu_a, sigma_a), y ~ N(mu_b, sigma_b), k = (xᵀy/d + 1)³, via Gaussian moments:
    E(xᵀy) = μaᵀμb, E(xᵀy)² = Σ Ma∘Mb with M = Σ + μμᵀ, E(xᵀy)³ = Σ Ta∘Tb with third moments
    T_ijk = μiμjμk + μiΣjk + μjΣik + μkΣij."""
    d = mu_a.numel()

    def third(mu, sigma):
        return (torch.einsum("i,j,k->ijk", mu, mu, mu) + torch.einsum("i,jk->ijk", mu, sigma)
                + torch.einsum("j,ik->ijk", mu, sigma) + torch.einsum("k,ij->ijk", mu, sigma))

    m1 = float(mu_a @ mu_b)
    m2 = float(((sigma_a + torch.outer(mu_a, mu_a)) * (sigma_b + torch.outer(mu_b, mu_b))).sum())
    m3 = float((third(mu_a, sigma_a) * third(mu_b, sigma_b)).sum())
    return 1 + 3 * m1 / d + 3 * m2 / d ** 2 + m3 / d ** 3


def test_kid_matches_the_closed_form_mmd_between_gaussians():
    g = torch.Generator().manual_seed(6)
    d = 3
    mu_a, mu_b = torch.tensor([0.5, -0.5, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0],
                                                                                     dtype=torch.float64)
    s_a, s_b = _random_spd(d, g), _random_spd(d, g, scale=0.5)
    exact = (_expected_cubic_kernel(mu_a, s_a, mu_a, s_a) + _expected_cubic_kernel(mu_b, s_b, mu_b, s_b)
             - 2 * _expected_cubic_kernel(mu_a, s_a, mu_b, s_b))
    n = 4000
    a = mu_a + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s_a).T
    b = mu_b + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s_b).T
    kid = J.kernel_distance(a, b, subsets=10, generator=g)
    assert kid.subsets == 10 and kid.subset_size == 400
    assert exact > 0.1 and kid.stderr > 0
    assert abs(kid.value - exact) < 4 * kid.stderr, (kid, exact)


def test_kid_between_samples_of_one_distribution_is_zero_within_its_standard_error():
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    kid = J.kernel_distance(a, b, generator=g)
    assert abs(kid.value) < 4 * kid.stderr


def test_kid_shrinks_subsets_for_small_sets_and_rejects_tiny_ones():
    g = torch.Generator().manual_seed(8)
    kid = J.kernel_distance(torch.randn(9, 2, generator=g), torch.randn(50, 2, generator=g), generator=g)
    assert (kid.subsets, kid.subset_size) == (4, 2)
    with pytest.raises(DataError, match="at least 4"):
        J.kernel_distance(torch.randn(3, 2), torch.randn(50, 2))
    with pytest.raises(DataError, match="same d"):
        J.kernel_distance(torch.randn(10, 2), torch.randn(10, 3))


def test_confidence_histogram_and_entropy():
    probabilities = torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.05, 0.95], [0.2, 0.8]], dtype=torch.float64)
    mean_top, confident = J.confidence(probabilities)
    assert mean_top == pytest.approx((0.95 + 0.5 + 0.95 + 0.8) / 4) and confident == pytest.approx(0.5)
    uniform = torch.eye(10).repeat(7, 1)
    assert J.class_histogram(uniform).tolist() == [7] * 10
    assert J.histogram_entropy_nats(J.class_histogram(uniform)) == pytest.approx(math.log(10))
    assert J.histogram_entropy_nats(torch.tensor([0, 12, 0])) == 0.0
    assert J.histogram_entropy_nats(torch.tensor([1, 1, 2])) == pytest.approx(1.5 * math.log(2))


# ------------------------------------------------------------------------------------------ image input


def test_prepare_images_accepts_the_documented_formats():
    g = torch.Generator().manual_seed(9)
    images = torch.rand(4, 1, 28, 28, generator=g)
    padded_symmetric = F.pad(images, (2, 2, 2, 2)) * 2 - 1  # what data.pad_to=32 + data.scale=symmetric give
    assert torch.allclose(J.prepare_images(padded_symmetric), images, atol=1e-6)
    assert torch.allclose(J.prepare_images(images.reshape(4, 784).numpy()), images)
    assert torch.allclose(J.prepare_images(images[:, 0]), images)
    as_bytes = (images * 255).round().to(torch.uint8)
    assert torch.allclose(J.prepare_images(as_bytes), as_bytes.float() / 255)
    padded_unit = F.pad(images, (2, 2, 2, 2))
    assert torch.allclose(J.prepare_images(padded_unit, value_range=(0, 1)), images)


@pytest.mark.parametrize("bad,message", [
    (torch.rand(2, 3, 28, 28), "grey-scale"),
    (torch.rand(2, 1, 20, 20), "grey-scale"),
    (torch.rand(0, 1, 28, 28), "empty"),
    (torch.rand(2, 1, 28, 28) * 2 - 1, "value_range"),
    (torch.full((2, 1, 28, 28), float("nan")), "NaN"),
])
def test_prepare_images_rejects_bad_input_clearly(bad, message):
    with pytest.raises(DataError, match=message):
        J.prepare_images(bad)


def test_value_range_parsing():
    assert genlab_judge.parse_value_range("-1,1") == (-1.0, 1.0)
    for text in ("1,0", "0", "a,b"):
        with pytest.raises(ConfigError):
            genlab_judge.parse_value_range(text)


def test_unknown_judge_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="mnist, fashion-mnist"):
        J.judge_path("cifar10", "0" * 16)


# ---------------------------------------------------------------------------------- the judge on real data


@pytest.fixture(scope="module")
def data():
    found = real_data_dir()
    if found is None:
        pytest.skip("real datasets not found (set GENLAB_DATA)")
    return found


@pytest.fixture(scope="module")
def quick_judge(data):
    """A judge trained for one epoch on 3,000 MNIST images (seconds); the real one is checked in a slow test."""
    torch.set_num_threads(2)
    return train_judge("mnist", data_dir=data, epochs=1, max_train=3000, max_test=2000, save=False,
                         log=lambda _: None)


@pytest.fixture(scope="module")
def scored(quick_judge, data):
    reference = J.reference_set(quick_judge, split="train", limit=1000, seed=1, data_dir=data)
    test_images, _ = J.load_split("mnist", "test", data)
    real = test_images[:1000].float() / 255
    candidates = {
        "real": real,
        "binarized": (real >= 0.5).float(),
        "blur3": F.avg_pool2d(real, 3, stride=1, padding=1),
        "blur5": F.avg_pool2d(real, 5, stride=1, padding=2),
        "noise": torch.rand(real.shape, generator=torch.Generator().manual_seed(0)),
    }
    return {name: J.sample_quality(quick_judge, images, reference, generator=torch.Generator().manual_seed(0))
            for name, images in candidates.items()}


def test_quick_judge_learns_and_records_what_it_was_trained_on(quick_judge):
    info = quick_judge.info
    assert info.test_accuracy_pct > 70.0  # chance is 10%; the full judge's target is checked in a slow test
    assert info.test_examples == 2000 and info.train_examples == 3000 and info.epochs == 1
    assert set(info.train_md5) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}
    assert len(info.checksum) == 16


def test_real_held_out_images_score_near_zero_and_noise_badly(scored):
    real, noise = scored["real"], scored["noise"]
    assert real.fd < 0.05 * noise.fd
    assert real.kid < 0.02 * noise.kid
    assert real.class_entropy_nats > 2.1 > noise.class_entropy_nats
    assert sum(real.class_counts) == real.images == 1000


@pytest.mark.parametrize("metric", ["fd", "kid"])
def test_degraded_copies_land_between_real_and_noise(scored, metric):
    value = {name: getattr(quality, metric) for name, quality in scored.items()}
    assert value["real"] < value["binarized"] < value["noise"]
    assert value["real"] < value["blur3"] < value["blur5"] < value["noise"]  # more blur, further away


def test_judge_cache_round_trip_and_lookup_by_checksum(quick_judge, data, tmp_path):
    path = J.judge_path("mnist", quick_judge.info.checksum, tmp_path)
    J.save_judge(quick_judge, path)
    loaded = J.load_judge("mnist", data_dir=data, cache_dir=tmp_path, train_if_missing=False)
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.features(images), quick_judge.features(images))
    assert loaded.info.test_accuracy_pct == quick_judge.info.test_accuracy_pct
    with pytest.raises(DataError, match="genlab judge train --dataset fashion-mnist"):
        J.load_judge("fashion-mnist", data_dir=data, cache_dir=tmp_path, train_if_missing=False)


def test_corrupt_or_foreign_judge_files_are_clear_errors(quick_judge, data, tmp_path):
    path = J.judge_path("mnist", quick_judge.info.checksum, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="corrupt"):
        J.load_judge("mnist", data_dir=data, cache_dir=tmp_path, train_if_missing=False)
    J.save_judge(J.Judge(quick_judge.net, J.JudgeInfo(**{**quick_judge.info.__dict__, "dataset": "fashion-mnist"})),
                 path)
    with pytest.raises(CheckpointError, match="not mnist"):
        J.load_judge("mnist", data_dir=data, cache_dir=tmp_path, train_if_missing=False)


def test_cli_scores_an_image_file_and_rejects_bad_input(quick_judge, data, tmp_path, capsys):
    J.save_judge(quick_judge, J.judge_path("mnist", quick_judge.info.checksum, tmp_path / "judges"))
    test_images, _ = J.load_split("mnist", "test", data)
    samples = tmp_path / "samples.npz"
    np.savez(samples, samples=(test_images[:200].numpy().astype(np.float32) / 255))
    common = ["--data-dir", str(data), "--cache-dir", str(tmp_path / "judges"), "--reference-size", "500"]
    assert main(["judge", "score", str(samples), "--dataset", "mnist", "--json", *common]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 200 and result["judge_fd"] >= 0 and len(result["class_counts"]) == 10
    for args, message in ((["judge", "score", str(samples), *common], "pass --dataset"),
                          (["judge", "score", str(tmp_path / "x.txt"), "--dataset", "mnist"], "run directory"),
                          (["judge", "train"], "pass --dataset"),
                          (["judge", "train", "--dataset", "cifar10"], "judges for"),
                          (["judge"], "name an action")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


class _PaddedSymmetricModel(torch.nn.Module):
    """Stands in for a trained EBM run: samples are 32x32 in [-1, 1] (data.pad_to=32, data.scale=symmetric)."""

    kind = "image"

    def __init__(self, images):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.images = images

    def sample(self, n, *, generator=None):
        return F.pad(self.images[:n], (2, 2, 2, 2)) * 2 - 1


def test_score_a_run_samples_it_in_its_own_range(quick_judge, data, tmp_path, monkeypatch):
    import types

    from genlab.training import checkpoint

    J.save_judge(quick_judge, J.judge_path("mnist", quick_judge.info.checksum, tmp_path))
    test_images, _ = J.load_split("mnist", "test", data)
    real = test_images[:300].float() / 255
    config = types.SimpleNamespace(data=types.SimpleNamespace(dataset="mnist", scale="symmetric",
                                                              value_range=(-1.0, 1.0)))
    monkeypatch.setattr(checkpoint, "load_model", lambda path, device: (_PaddedSymmetricModel(real), config))
    # No checkpoint on disk: the range the config gives.
    monkeypatch.setattr(checkpoint, "samples_value_range", lambda path, run_config: run_config.data.value_range)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from_run = genlab_judge.score_source(run_dir, n=300, reference_size=500, data_dir=data, cache_dir=tmp_path)
    reference = J.reference_set(quick_judge, limit=500, data_dir=data)
    direct = J.sample_quality(quick_judge, real, reference, generator=torch.Generator().manual_seed(0))
    assert from_run.images == 300 and from_run.fd == pytest.approx(direct.fd, rel=1e-5)
    assert from_run.class_counts == direct.class_counts


def test_the_public_score_is_the_clis_figures_of_any_array(quick_judge, data, tmp_path):
    import genlab

    J.save_judge(quick_judge, J.judge_path("mnist", quick_judge.info.checksum, tmp_path))
    test_images, _ = J.load_split("mnist", "test", data)
    uint8 = test_images[:300].numpy().astype("uint8")[:, 0]
    scored = genlab.judge.score(uint8, dataset="MNIST", reference_size=500, data_dir=data, cache_dir=tmp_path)
    reference = J.reference_set(quick_judge, limit=500, data_dir=data)
    direct = J.sample_quality(quick_judge, test_images[:300].float() / 255, reference,
                              generator=torch.Generator().manual_seed(0))
    assert scored["images"] == 300 and scored["judge_fd"] == pytest.approx(direct.fd, rel=1e-5)
    assert scored["class_counts"] == direct.class_counts and scored["judge"].startswith("mnist-")
    with pytest.raises(ConfigError, match="judges for mnist, fashion-mnist only"):
        genlab.judge.score(uint8, dataset="tinyshakespeare", data_dir=data, cache_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", J.JUDGE_DATASETS)
def test_full_judges_reach_their_accuracy_targets(data, dataset, tmp_path):
    judge = J.load_judge(dataset, data_dir=data, cache_dir=tmp_path, log=lambda _: None)
    assert judge.info.test_accuracy_pct >= J.TARGET_ACCURACY_PCT[dataset]
    assert J.judge_path(dataset, judge.info.checksum, tmp_path).is_file()


# ------------------------------------------------------------------------------- training by the Trainer


def _reference_judge_loop(images, labels, *, epochs, batch_size, max_lr, flip, seed):
    """The loop every cached judge was trained with before the Trainer trained judges, kept here verbatim as
    the ground truth the Trainer path must reproduce bitwise."""
    net = J.JudgeNet().train()
    steps_per_epoch = images.shape[0] // batch_size
    optimizer = torch.optim.Adam(net.parameters(), lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * batch_size:(step + 1) * batch_size]
            x = images[index].float().div_(255.0)
            if flip:
                mirrored = torch.rand(x.shape[0], generator=generator) < 0.5
                x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(net(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def _small_training_set(count=520):
    generator = torch.Generator().manual_seed(3)
    images = (torch.rand(count, 1, 28, 28, generator=generator) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return images, labels


@pytest.mark.parametrize("flip", [False, True])
def test_the_trainer_trains_a_judge_bitwise_as_the_old_loop_did(flip):
    from genlab.eval.judge_training import fit_judge, judge_run_config

    images, labels = _small_training_set()  # 4 batches of 128 per epoch; the last 8 images are dropped
    torch.manual_seed(5)
    expected = _reference_judge_loop(images, labels, epochs=2, batch_size=128, max_lr=3e-3, flip=flip, seed=5)
    config = judge_run_config("mnist", epochs=2, seed=5, batch_size=128, max_lr=3e-3)
    torch.manual_seed(5)
    lines = []
    trained = fit_judge(images, labels, config=config, flip=flip, device=torch.device("cpu"), log=lines.append)
    for (name, value), reference in zip(trained.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(value, reference), name
    assert len(lines) == 2 and lines[1].startswith("[judge] epoch 2/2: train cross-entropy")


def test_judge_batches_resume_mid_epoch_with_the_batches_an_uninterrupted_epoch_has():
    from genlab.eval.judge_training import JudgeBatches

    images, labels = _small_training_set()
    batches = JudgeBatches(images, labels, 128, seed=1, flip=True)
    batches.set_epoch(1)
    whole = list(batches.iter_from(0))
    batches.set_epoch(1)
    resumed = list(batches.iter_from(2))
    assert len(whole) == len(batches) == 4 and len(resumed) == 2
    for (x, y), (rx, ry) in zip(whole[2:], resumed):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert whole[0][0].dtype == torch.float32 and float(whole[0][0].max()) <= 1.0


def test_a_judge_objective_refuses_to_sample():
    from genlab.eval.judge_training import JudgeNetConfig, JudgeObjective

    with pytest.raises(TypeError, match="classifier"):
        JudgeObjective(JudgeNetConfig()).sample(4)


def test_onecycle_refuses_settings_it_replaces():
    from genlab.config import OptimConfig

    for bad in ({"warmup_steps": 10}, {"min_lr_ratio": 0.1}, {"final_momentum": 0.9}):
        with pytest.raises(ConfigError, match="onecycle"):
            OptimConfig(schedule="onecycle", **bad)


def test_fused_false_keeps_torchs_default_adam():
    from genlab.config import OptimConfig
    from genlab.training.optim import make_optimizer

    groups = [{"params": [torch.nn.Parameter(torch.zeros(3))]}]
    assert make_optimizer(groups, OptimConfig()).defaults["fused"] is True
    assert not make_optimizer(groups, OptimConfig(fused=False)).defaults["fused"]


def _judge_trainer(images, labels, **optim):
    import dataclasses

    from genlab.data.datasets import DataBundle
    from genlab.data.info import DataInfo
    from genlab.eval.judge_training import JudgeBatches, JudgeObjective, judge_run_config
    from genlab.training.trainer import Trainer

    config = judge_run_config("mnist", epochs=2, seed=0, batch_size=128, max_lr=3e-3)
    config.optim = dataclasses.replace(config.optim, **optim)
    objective = JudgeObjective(config.model)
    data = DataBundle(DataInfo("image", (1, 28, 28), 10), JudgeBatches(images, labels, 128, seed=0, flip=False),
                      None, None)
    return Trainer(objective, config, data, device=torch.device("cpu"))


def test_a_onecycle_run_resumes_exactly_and_refuses_a_changed_peak_or_length():
    images, labels = _small_training_set()
    torch.manual_seed(0)
    whole = _judge_trainer(images, labels)
    whole.fit()
    torch.manual_seed(0)
    first = _judge_trainer(images, labels, lr=3e-3)
    first.config.train.max_steps = 3
    first.fit()
    state = {key: value for key, value in first.state_dict().items()}
    weights = first.model.state_dict()
    resumed = _judge_trainer(images, labels)
    resumed.model.load_state_dict(weights)
    resumed.load_state_dict(state)
    resumed.fit()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, whole.model.state_dict()[name]), name
    assert resumed.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]
    with pytest.raises(CheckpointError, match="one-cycle schedule cannot change"):
        _judge_trainer(images, labels, lr=1e-3).load_state_dict(state)
    with pytest.raises(CheckpointError, match="one-cycle"):
        _judge_trainer(images, labels, schedule="cosine").load_state_dict(state)
