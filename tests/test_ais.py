"""Partition functions: exact enumeration against brute force, AIS against exact, the β schedule, intervals."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.eval.ais import (
    ais_confidence,
    ais_log_partition,
    bernoulli,
    default_betas,
    exact_log_partition,
)
from genlab.models.rbm import RBM, RBMConfig


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: one intra-op thread avoids two threads fighting over busy cores on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def all_states(n: int) -> torch.Tensor:
    """Every binary vector of length n, (2^n, n) float64."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def brute_log_z(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    """log Σ_v Σ_h exp(v·b + h·c + h·W v), enumerating both layers."""
    V, H = all_states(W.shape[1]), all_states(W.shape[0])
    neg_energy = (V @ b)[:, None] + (H @ c)[None, :] + V @ W.t() @ H.t()
    return float(torch.logsumexp(neg_energy.flatten(), 0))


def random_rbm(n_hidden: int, n_visible: int, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_hidden, n_visible, generator=g, dtype=torch.float64) * scale
    b = torch.randn(n_visible, generator=g, dtype=torch.float64) * scale
    c = torch.randn(n_hidden, generator=g, dtype=torch.float64) * scale
    return W, b, c


@pytest.mark.parametrize("n_hidden,n_visible", [(4, 6), (6, 4), (5, 5)])
@pytest.mark.parametrize("chunk", [3, 4096])
def test_exact_log_partition_matches_joint_enumeration(n_hidden, n_visible, chunk):
    # (4, 6) enumerates the hiddens, (6, 4) the visibles; chunk=3 does not divide 2^n.
    W, b, c = random_rbm(n_hidden, n_visible, scale=1.5, seed=n_hidden * 10 + n_visible)
    assert exact_log_partition(W, b, c, chunk=chunk) == pytest.approx(brute_log_z(W, b, c), abs=1e-9)


def test_exact_log_partition_refuses_large_layers_and_suggests_ais():
    W = torch.zeros(30, 40)
    with pytest.raises(ConfigError, match="AIS"):
        exact_log_partition(W, torch.zeros(40), torch.zeros(30), max_hidden=25)


def test_default_betas_follow_the_paper_schedule():
    betas = default_betas(14500)
    assert betas.dtype == torch.float64 and betas.shape == (14500,)
    assert betas[0] == 0.0 and betas[-1] == 1.0
    assert bool((betas[1:] >= betas[:-1]).all())
    steps = betas.diff()
    assert int((betas < 0.5).sum()) == 500
    assert torch.allclose(steps[:500], torch.full((500,), 1e-3, dtype=torch.float64))
    assert int(((betas >= 0.5) & (betas < 0.9)).sum()) == 4000
    assert torch.allclose(steps[500:4500], torch.full((4000,), 1e-4, dtype=torch.float64))
    assert int((betas >= 0.9).sum()) == 10000
    assert torch.allclose(steps[4500:], torch.full((9999,), 1e-1 / 9999, dtype=torch.float64))
    small = default_betas(145)  # scaled proportionally
    assert small.shape == (145,) and int((small < 0.5).sum()) == 5 and int((small >= 0.9).sum()) == 100
    for n in (2, 3, 4, 5):
        tiny = default_betas(n)
        assert tiny.shape == (n,) and tiny[0] == 0.0 and tiny[-1] == 1.0
        assert bool((tiny[1:] >= tiny[:-1]).all())
    with pytest.raises(ConfigError):
        default_betas(1)


def test_ais_rejects_bad_schedules():
    W, b, c = torch.zeros(3, 4), torch.zeros(4), torch.zeros(3)
    for betas in ([0.0, 0.5], [0.1, 1.0], [0.0, 0.6, 0.5, 1.0], [1.0]):
        with pytest.raises(ConfigError):
            ais_log_partition(W, b, c, b, betas, 4, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError):
        ais_log_partition(W, b, c, b, [0.0, 1.0], 0, torch.Generator().manual_seed(0))


def test_ais_is_exact_when_the_rbm_has_no_weights():
    # With W = 0 and the base rates equal to b, every importance weight equals Z: the estimator has no variance,
    # so any bookkeeping error (missing n_hidden·log 2, off-by-one temperatures) shows up exactly.
    g = torch.Generator().manual_seed(1)
    b = torch.randn(12, generator=g)
    c = torch.randn(7, generator=g) * 2
    W = torch.zeros(7, 12)
    log_z, log_weights = ais_log_partition(W, b, c, b, default_betas(50), 16, g)
    expected = exact_log_partition(W, b, c)
    assert log_weights.dtype == torch.float64 and log_weights.shape == (16,)
    assert torch.allclose(log_weights, torch.full((16,), expected, dtype=torch.float64), atol=1e-4)
    assert log_z == pytest.approx(expected, abs=1e-4)


def test_ais_with_a_wrong_base_is_still_unbiased_on_an_independent_model():
    # Base rates far from the model: weights now vary, but the estimate must still converge to log Z.
    g = torch.Generator().manual_seed(2)
    b = torch.randn(10, generator=g)
    c = torch.randn(5, generator=g)
    W = torch.zeros(5, 10)
    log_z, _ = ais_log_partition(W, b, c, torch.zeros(10), default_betas(500), 200, g)
    assert log_z == pytest.approx(exact_log_partition(W, b, c), abs=0.02)


def structured_binary_data(n: int, seed: int) -> torch.Tensor:
    """n 8x8 images: one of four random prototypes with 5% of the pixels flipped; (n, 64) float32."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 64, generator=g) < 0.4).float()
    labels = torch.randint(0, 4, (n,), generator=g)
    flips = (torch.rand(n, 64, generator=g) < 0.05).float()
    return (prototypes[labels] - flips).abs()


def train_small_rbm(n_hidden: int = 15, steps: int = 400, seed: int = 0) -> tuple[RBM, torch.Tensor]:
    data = structured_binary_data(1000, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RBM(RBMConfig(n_visible=64, n_hidden=n_hidden, init_std=0.1))
        model.init_from_data([(data, None)])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
        for step in range(steps):
            start = (step * 50) % 1000
            loss, _ = model.loss((data[start:start + 50], None))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, data


def test_ais_agrees_with_exact_log_z_on_a_trained_rbm():
    model, _ = train_small_rbm()
    exact = exact_log_partition(model.W, model.b, model.c)
    g = torch.Generator().manual_seed(3)
    log_z, log_weights = ais_log_partition(model.W, model.b, model.c, model.base_rate_logits,
                                           default_betas(3000), 100, g)
    # The trained model is far from the base rates (otherwise this test would prove little).
    base_log_z = float(torch.nn.functional.softplus(model.base_rate_logits.double()).sum()) + 15 * math.log(2)
    assert abs(exact - base_log_z) > 5.0
    assert abs(log_z - exact) < 0.5
    lower, upper = ais_confidence(log_weights)
    assert lower <= log_z <= upper


def test_ais_accepts_a_generator_on_the_cpu_and_is_reproducible():
    model, _ = train_small_rbm(steps=50)
    args = (model.W, model.b, model.c, model.base_rate_logits, default_betas(200), 20)
    first = ais_log_partition(*args, torch.Generator().manual_seed(5))
    second = ais_log_partition(*args, torch.Generator().manual_seed(5))
    assert first[0] == second[0] and torch.equal(first[1], second[1])


def test_ais_confidence_is_mean_plus_minus_three_standard_errors_in_log_space():
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    shift = 5000.0  # exp(5000) overflows: the interval must be computed after shifting
    lower, upper = ais_confidence(torch.log(weights) + shift)
    std_err = 1.0 / math.sqrt(3.0)
    assert lower == pytest.approx(math.log(2.0 - 3 * std_err) + shift, abs=1e-9)
    assert upper == pytest.approx(math.log(2.0 + 3 * std_err) + shift, abs=1e-9)
    lower, upper = ais_confidence(torch.tensor([0.0, -50.0, -50.0, -50.0], dtype=torch.float64))
    assert lower == -math.inf and math.isfinite(upper)
    lower, upper = ais_confidence(torch.full((4,), 7.0, dtype=torch.float64))
    assert lower == pytest.approx(7.0) and upper == pytest.approx(7.0)


def test_bernoulli_draws_are_binary_and_use_one_uniform_per_unit():
    probs = torch.tensor([0.1, 0.5, 0.9]).expand(40000, 3)
    draws = bernoulli(probs, torch.Generator().manual_seed(0))
    assert draws.dtype == probs.dtype and set(draws.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(draws.mean(0), torch.tensor([0.1, 0.5, 0.9]), atol=0.01)
    # Independent units: P(both on) = p1·p2, not min(p1, p2) as one shared uniform per row would give.
    assert float((draws[:, 1] * draws[:, 2]).mean()) == pytest.approx(0.45, abs=0.01)
