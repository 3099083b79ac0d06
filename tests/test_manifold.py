"""genlab.eval.manifold against brute-force numpy/scipy references, plus the metrics' defining behaviours."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from genlab.errors import ConfigError
from genlab.eval import manifold
from genlab.eval.manifold import (
    density_coverage,
    kth_neighbour_radii,
    memorisation,
    nearest_distances,
    precision_recall,
)

# ------------------------------------------------------------------------------------ brute-force references

def bf_radii(x: np.ndarray, k: int) -> np.ndarray:
    dist = cdist(x, x)
    np.fill_diagonal(dist, np.inf)
    return np.sort(dist, axis=1)[:, k - 1]


def bf_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    real_r, fake_r = bf_radii(real, k), bf_radii(fake, k)
    dist = cdist(fake, real)  # (m, n)
    precision = (dist <= real_r[None, :]).any(axis=1).mean()
    recall = (dist <= fake_r[:, None]).any(axis=0).mean()
    return float(precision), float(recall)


def bf_density_coverage(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    real_r = bf_radii(real, k)
    dist = cdist(fake, real)
    density = (dist <= real_r[None, :]).sum() / (k * fake.shape[0])
    coverage = (dist.min(axis=0) <= real_r).mean()
    return float(density), float(coverage)


def np64(x: torch.Tensor) -> np.ndarray:
    return x.double().reshape(x.shape[0], -1).numpy()


def gaussian(rng, n, d, shift=0.0, scale=1.0, dtype=torch.float64):
    return torch.from_numpy(rng.normal(size=(n, d)) * scale + shift).to(dtype)


@pytest.fixture
def small_sets():
    rng = np.random.default_rng(0)
    return gaussian(rng, 200, 8), gaussian(rng, 150, 8, shift=0.3, scale=1.2)


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Force row chunks of 16 and column blocks of 3 columns inside the metrics, so every merge path runs."""
    monkeypatch.setattr(manifold, "DEFAULT_CHUNK", 16)
    monkeypatch.setattr(manifold, "_BLOCK_ELEMENTS", 48)


# --------------------------------------------------------------------------------------------- radii, nearest

@pytest.mark.parametrize("chunk", [1024, 64, 7, 1])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_kth_neighbour_radii_matches_bruteforce(small_sets, chunk, k):
    real, _ = small_sets
    radii = kth_neighbour_radii(real, k, chunk=chunk)
    assert radii.shape == (200,) and radii.dtype == torch.float64
    np.testing.assert_allclose(radii.numpy(), bf_radii(real.numpy(), k), rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [1, 4, 9])
def test_kth_neighbour_radii_with_column_blocks_narrower_than_k(small_sets, monkeypatch, k):
    real, _ = small_sets
    monkeypatch.setattr(manifold, "_BLOCK_ELEMENTS", 13 * 4)  # chunk 13 -> column blocks of 4 (< k for k = 9)
    radii = kth_neighbour_radii(real, k, chunk=13)
    np.testing.assert_allclose(radii.numpy(), bf_radii(real.numpy(), k), rtol=1e-12, atol=0)


def test_kth_neighbour_radii_float32_keeps_dtype_and_counts_duplicates():
    rng = np.random.default_rng(1)
    x = gaussian(rng, 60, 5, dtype=torch.float32)
    x = torch.cat([x, x[:10]])  # rows 0..9 now have an exact duplicate
    radii = kth_neighbour_radii(x, 1, chunk=16)
    assert radii.dtype == torch.float32
    assert torch.equal(radii[:10], torch.zeros(10)) and torch.equal(radii[60:], torch.zeros(10))
    np.testing.assert_allclose(radii.numpy(), bf_radii(np64(x), 1), rtol=1e-6)


@pytest.mark.parametrize("chunk", [1024, 33, 1])
def test_nearest_distances_matches_bruteforce(small_sets, chunk):
    real, fake = small_sets
    dist = nearest_distances(fake, real, chunk=chunk)
    assert dist.shape == (150,)
    np.testing.assert_allclose(dist.numpy(), cdist(fake.numpy(), real.numpy()).min(axis=1), rtol=1e-12, atol=0)


def test_nearest_distances_column_blocks_and_exact_zero_for_copies(small_sets, monkeypatch):
    real, fake = small_sets
    monkeypatch.setattr(manifold, "_BLOCK_ELEMENTS", 10 * 7)
    queries = torch.cat([fake, real[50:60]])
    dist = nearest_distances(queries, real, chunk=10)
    np.testing.assert_allclose(dist.numpy(), cdist(queries.numpy(), real.numpy()).min(axis=1), rtol=1e-12, atol=0)
    assert torch.equal(dist[150:], torch.zeros(10, dtype=torch.float64))  # copies are at distance exactly 0


# ----------------------------------------------------------------------------- precision/recall, density/coverage

CASES = [  # (seed, n_real, n_fake, dim, shift, scale)
    (0, 200, 150, 8, 0.3, 1.2),
    (1, 120, 200, 8, 0.8, 0.7),
    (2, 200, 200, 3, 1.0, 1.0),
]


@pytest.mark.parametrize("blocks", ["default", "tiny"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("case", CASES)
def test_metrics_match_bruteforce(request, blocks, k, case):
    if blocks == "tiny":
        request.getfixturevalue("tiny_blocks")
    seed, n, m, d, shift, scale = case
    rng = np.random.default_rng(seed)
    real, fake = gaussian(rng, n, d), gaussian(rng, m, d, shift=shift, scale=scale)
    p, r = precision_recall(real, fake, k=k)
    dens, cov = density_coverage(real, fake, k=k)
    assert all(type(v) is float for v in (p, r, dens, cov))
    bp, br = bf_precision_recall(real.numpy(), fake.numpy(), k)
    bd, bc = bf_density_coverage(real.numpy(), fake.numpy(), k)
    assert (p, r) == pytest.approx((bp, br), abs=1e-12)
    assert (dens, cov) == pytest.approx((bd, bc), abs=1e-12)
    assert 0.0 < p < 1.0 and 0.0 < r < 1.0 and 0.0 < cov < 1.0  # a non-trivial case


def test_defaults_are_the_papers_k(small_sets):
    real, fake = small_sets
    assert precision_recall(real, fake) == pytest.approx(bf_precision_recall(real.numpy(), fake.numpy(), 3))
    assert density_coverage(real, fake) == pytest.approx(bf_density_coverage(real.numpy(), fake.numpy(), 5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_identical_sets(dtype, offset):
    """Every real k-th neighbour lies exactly on a ball boundary here: ties must count as inside."""
    rng = np.random.default_rng(3)
    real = gaussian(rng, 200, 8, shift=offset, dtype=dtype)
    k = 5
    p, r = precision_recall(real, real.clone(), k=3)
    dens, cov = density_coverage(real, real.clone(), k=k)
    assert (p, r, cov) == (1.0, 1.0, 1.0)
    # Each real ball holds its centre and its k nearest neighbours, so density = (k + 1) / k, not 1.
    assert dens == pytest.approx(bf_density_coverage(np64(real), np64(real), k)[0], abs=1e-12)
    assert dens == pytest.approx((k + 1) / k, abs=1e-12)


def test_large_common_offset_matches_bruteforce():
    """Features far from the origin (where ||x||² + ||y||² - 2xᵀy cancels badly without centring)."""
    rng = np.random.default_rng(4)
    real = gaussian(rng, 150, 8, shift=1e6, scale=1e-2)
    fake = gaussian(rng, 150, 8, shift=1e6 + 2e-3, scale=1.2e-2)
    assert precision_recall(real, fake) == pytest.approx(bf_precision_recall(real.numpy(), fake.numpy(), 3),
                                                         abs=1e-12)
    assert density_coverage(real, fake) == pytest.approx(bf_density_coverage(real.numpy(), fake.numpy(), 5),
                                                         abs=1e-12)


def test_same_distribution_density_near_one():
    rng = np.random.default_rng(5)
    real, fake = gaussian(rng, 1000, 8), gaussian(rng, 1000, 8)
    dens, cov = density_coverage(real, fake)
    assert 0.85 < dens < 1.15 and cov > 0.9


def test_far_apart_sets_score_zero(small_sets):
    real, _ = small_sets
    rng = np.random.default_rng(6)
    fake = gaussian(rng, 180, 8, shift=100.0)
    assert precision_recall(real, fake) == (0.0, 0.0)
    assert density_coverage(real, fake) == (0.0, 0.0)


def test_mode_dropping_lowers_recall_and_coverage_not_precision():
    rng = np.random.default_rng(7)
    d = 4
    centre = np.zeros(d)
    centre[0] = 10.0

    def cluster(n, sign):
        return torch.from_numpy(rng.normal(size=(n, d)) + sign * centre)

    real = torch.cat([cluster(300, -1), cluster(300, +1)])
    dropped = cluster(300, -1)  # generates only the first of the two real modes
    both = torch.cat([cluster(300, -1), cluster(300, +1)])
    p, r = precision_recall(real, dropped)
    dens, cov = density_coverage(real, dropped)
    assert p > 0.85 and dens > 0.8  # fidelity stays high
    assert 0.4 < r <= 0.5 and 0.4 < cov <= 0.5  # the second mode is never recalled or covered
    p_full, r_full = precision_recall(real, both)
    _, cov_full = density_coverage(real, both)
    assert r_full > 0.85 and cov_full > 0.9 and abs(p_full - p) < 0.1


def test_density_coverage_accepts_a_single_fake_row(small_sets):
    real, fake = small_sets
    dens, cov = density_coverage(real, fake[:1])
    assert (dens, cov) == pytest.approx(bf_density_coverage(real.numpy(), fake[:1].numpy(), 5), abs=1e-12)


# --------------------------------------------------------------------------------------------------- memorisation

def bf_memorisation(samples, test, train):
    s_nn = cdist(np64(samples), np64(train)).min(axis=1)
    t_nn = cdist(np64(test), np64(train)).min(axis=1)
    threshold = np.percentile(t_nn, 1)
    return {
        "sample_nn_train_median": float(np.median(s_nn)),
        "test_nn_train_median": float(np.median(t_nn)),
        "nn_ratio": float(np.median(s_nn) / np.median(t_nn)),
        "copied_frac": float(((s_nn < threshold) | (s_nn == 0)).mean()),
    }


@pytest.fixture
def images():
    rng = np.random.default_rng(8)

    def draw(n):
        return torch.from_numpy(rng.random((n, 1, 8, 8))).float()  # "pixel images" in [0, 1]

    return draw


def test_memorisation_exact_copies(images):
    train, test = images(600), images(200)
    samples = train[torch.randperm(600, generator=torch.Generator().manual_seed(0))[:150]]
    out = memorisation(samples, test, train)
    assert set(out) == {"sample_nn_train_median", "test_nn_train_median", "nn_ratio", "copied_frac"}
    assert all(type(v) is float for v in out.values())
    assert out["copied_frac"] == 1.0 and out["nn_ratio"] == 0.0 and out["sample_nn_train_median"] == 0.0
    assert out == pytest.approx(bf_memorisation(samples, test, train), rel=1e-6)


def test_memorisation_fresh_samples(images):
    train, test, samples = images(600), images(200), images(200)
    out = memorisation(samples, test, train)
    assert 0.9 < out["nn_ratio"] < 1.1 and out["copied_frac"] < 0.06
    assert out == pytest.approx(bf_memorisation(samples, test, train), rel=1e-6)


def test_memorisation_near_copies(images):
    train, test = images(600), images(200)
    samples = (train[:200] + 0.02 * torch.randn(200, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    out = memorisation(samples, test, train)
    assert out["nn_ratio"] < 0.2 and out["copied_frac"] > 0.9
    assert out == pytest.approx(bf_memorisation(samples, test, train), rel=1e-6)


# -------------------------------------------------------------------------------------------------- bad inputs

def _data():
    rng = np.random.default_rng(9)
    return gaussian(rng, 20, 4), gaussian(rng, 20, 4)


def _with(x, index, value):
    x = x.clone()
    x[index] = value
    return x


R, F = _data()
BAD = [
    (lambda: precision_recall(R.numpy(), F), "torch.Tensor"),
    (lambda: precision_recall(R[:, :, None], F), "2-D"),
    (lambda: precision_recall(R, F[:, 0]), "2-D"),
    (lambda: density_coverage(R, F[:, :3]), "same feature dimension"),
    (lambda: precision_recall(R[:3], F, k=3), "more than 3 rows in real"),
    (lambda: precision_recall(R, F[:3], k=3), "more than 3 rows in fake"),
    (lambda: density_coverage(R[:5], F, k=5), "more than 5 rows in real"),
    (lambda: precision_recall(R, _with(F, (2, 1), math.nan)), "fake has 1 non-finite"),
    (lambda: density_coverage(_with(R, (0, 0), math.inf), F), "real has 1 non-finite"),
    (lambda: precision_recall(R, F, k=0), "k must be an integer >= 1"),
    (lambda: density_coverage(R, F, k=2.5), "k must be an integer"),
    (lambda: density_coverage(R, F, k=True), "k must be an integer"),
    (lambda: precision_recall(torch.empty(0, 4), F), "no rows"),
    (lambda: precision_recall(torch.empty(20, 0), torch.empty(20, 0)), "no feature columns"),
    (lambda: precision_recall(R.to(torch.complex128), F.to(torch.complex128)), "real numbers"),
    (lambda: kth_neighbour_radii(R, 20), "more than 20 rows in features"),
    (lambda: kth_neighbour_radii(R, 3, chunk=0), "chunk must be an integer >= 1"),
    (lambda: kth_neighbour_radii(_with(R, (1, 1), -math.inf), 3), "non-finite"),
    (lambda: nearest_distances(R, F[:, :2]), "same feature dimension"),
    (lambda: nearest_distances(R, F, chunk=-1), "chunk must be"),
    (lambda: nearest_distances(R, torch.empty(0, 4)), "references has no rows"),
    (lambda: memorisation(R[:, 0], R, F), "at least 2 dimensions"),
    (lambda: memorisation(R, R, F[:, :3]), "same feature dimension"),
    (lambda: memorisation(R, _with(R, (0, 0), math.nan), F), "test has 1 non-finite"),
    (lambda: memorisation(R, F.clone(), F), "not held out"),
]


@pytest.mark.parametrize("call, message", BAD, ids=[m for _, m in BAD])
def test_bad_inputs_raise_config_error(call, message):
    with pytest.raises(ConfigError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_devices_raise_config_error():
    real, fake = _data()
    with pytest.raises(ConfigError, match="same device"):
        precision_recall(real, fake.cuda())


# ------------------------------------------------------------------------------------------------------- scale

def test_ten_thousand_128d_features():
    """The intended scale: 10k real vs 10k fake 128-d features, streamed in chunks (no timing assertion)."""
    g = torch.Generator().manual_seed(10)
    real = torch.randn(10_000, 128, generator=g)
    fake = 1.05 * torch.randn(10_000, 128, generator=g) + 0.05
    p, r = precision_recall(real, fake)
    dens, cov = density_coverage(real, fake)
    assert all(0.0 <= v <= 1.0 for v in (p, r, cov))
    assert math.isfinite(dens) and dens >= 0.0


def test_near_duplicates_are_ranked_by_the_direct_distance():
    """A reference 1e-9 away from an exact copy is indistinguishable by the Gram expansion; re-ranking fixes it."""
    rng = np.random.default_rng(11)
    train = gaussian(rng, 50, 16, shift=10.0)
    near = train[:20].clone()
    near[:, 0] += 1e-9  # squared gap 1e-18: far below the expansion's rounding error (~1e-14 here)
    references = torch.cat([near, train])
    dist = nearest_distances(train[:20], references)
    assert torch.equal(dist, torch.zeros(20, dtype=torch.float64))
    radii = kth_neighbour_radii(references, 1)
    np.testing.assert_allclose(radii.numpy(), bf_radii(references.numpy(), 1), rtol=1e-9, atol=0)
