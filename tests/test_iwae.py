"""The importance-weighted estimator against closed forms: a linear-Gaussian model whose marginal is known.

p(z) = N(0, I), p(x | z) = N(Wz + b, σ²I)  =>  p(x) = N(b, WWᵀ + σ²I) and
p(z | x) = N(Σ Wᵀ(x - b) / σ², Σ) with Σ = (I + WᵀW / σ²)⁻¹.
"""

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from genlab.errors import ConfigError
from genlab.eval.iwae import (
    diag_gaussian_log_density,
    importance_weighted_estimate,
    log_mean_exp,
    mean_and_standard_error,
    standard_normal_log_density,
)

SIGMA = 0.5


def linear_gaussian(orthogonal: bool = False, seed: int = 0):
    """W (3, 2), b (3,), and 4 observations x (4, 3), float64."""
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    if orthogonal:  # orthogonal columns make WᵀW, hence the posterior covariance, diagonal
        W = torch.linalg.qr(W).Q * torch.tensor([1.5, 0.7], dtype=torch.float64)
    b = torch.randn(3, generator=generator, dtype=torch.float64)
    x = torch.randn(4, 3, generator=generator, dtype=torch.float64) * 1.5 + b
    return W, b, x


def exact_log_marginal(W, b, x):
    covariance = W @ W.T + SIGMA ** 2 * torch.eye(3, dtype=torch.float64)
    return MultivariateNormal(b, covariance_matrix=covariance).log_prob(x)


def exact_posterior(W, b, x):
    covariance = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + W.T @ W / SIGMA ** 2)
    means = (x - b) @ W @ covariance / SIGMA ** 2  # (B, 2); Σ is symmetric
    return means, covariance


def log_joint(W, b, x, z):
    """log p(x, z) for z (k, B, 2) -> (k, B)."""
    mean = z @ W.T + b
    return diag_gaussian_log_density(x, mean, math.log(SIGMA ** 2)) + standard_normal_log_density(z)


def gaussian_proposal(W, b, x, mean, logvar, generator):
    """A log-weights callable for the diagonal proposal q(z | x) = N(mean, diag(exp(logvar)))."""

    def log_weights(m):
        noise = torch.randn(m, *mean.shape, generator=generator, dtype=torch.float64)
        z = mean + torch.exp(0.5 * logvar) * noise
        return log_joint(W, b, x, z) - diag_gaussian_log_density(z, mean, logvar)

    return log_weights


def test_density_helpers_match_torch_distributions():
    generator = torch.Generator().manual_seed(1)
    x, mean = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    logvar = torch.randn(5, 4, generator=generator)
    expected = Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(diag_gaussian_log_density(x, mean, logvar), expected)
    torch.testing.assert_close(standard_normal_log_density(x), Normal(0.0, 1.0).log_prob(x).sum(-1))
    values = torch.tensor([[1000.0, -5.0], [1000.0, -7.0]])
    torch.testing.assert_close(log_mean_exp(values, 0),
                               torch.tensor([1000.0, math.log((math.exp(-5) + math.exp(-7)) / 2)]))


def test_exact_with_one_sample_when_the_proposal_is_the_posterior_full_covariance():
    W, b, x = linear_gaussian()
    means, covariance = exact_posterior(W, b, x)
    posterior = MultivariateNormal(means, covariance_matrix=covariance)
    generator = torch.Generator().manual_seed(2)

    def log_weights(m):
        noise = torch.randn(m, *means.shape, generator=generator, dtype=torch.float64)
        z = means + noise @ torch.linalg.cholesky(covariance).T
        return log_joint(W, b, x, z) - posterior.log_prob(z)

    estimate = importance_weighted_estimate(log_weights, 1, chunk_size=1)
    torch.testing.assert_close(estimate.log_marginal, exact_log_marginal(W, b, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(estimate.elbo, exact_log_marginal(W, b, x), rtol=0, atol=1e-10)


def test_exact_with_one_sample_for_a_diagonal_posterior():
    W, b, x = linear_gaussian(orthogonal=True)
    means, covariance = exact_posterior(W, b, x)
    assert abs(float(covariance[0, 1])) < 1e-12
    logvar = torch.log(torch.diagonal(covariance)).expand_as(means)
    log_weights = gaussian_proposal(W, b, x, means, logvar, torch.Generator().manual_seed(3))
    estimate = importance_weighted_estimate(log_weights, 1, chunk_size=1)
    torch.testing.assert_close(estimate.log_marginal, exact_log_marginal(W, b, x), rtol=0, atol=1e-10)


def test_converges_to_the_closed_form_with_large_k_from_a_poor_proposal():
    W, b, x = linear_gaussian()
    exact = exact_log_marginal(W, b, x)
    # The prior widened a little is a poor but valid proposal (bounded weights).
    mean = torch.zeros(4, 2, dtype=torch.float64)
    logvar = torch.full((4, 2), math.log(1.5), dtype=torch.float64)
    log_weights = gaussian_proposal(W, b, x, mean, logvar, torch.Generator().manual_seed(4))
    estimate = importance_weighted_estimate(log_weights, 200_000, chunk_size=50_000)
    torch.testing.assert_close(estimate.log_marginal, exact, rtol=0, atol=0.02)
    assert bool((estimate.elbo < exact - 0.1).all()), "a poor proposal's ELBO must be clearly below log p(x)"


def test_bound_is_at_least_the_elbo_and_tightens_with_k_in_expectation():
    W, b, x = linear_gaussian()
    exact = exact_log_marginal(W, b, x)
    means, covariance = exact_posterior(W, b, x)
    # A mismatched diagonal proposal: shifted mean, variances too small.
    mean = means + 0.3
    logvar = torch.log(torch.diagonal(covariance) * 0.5).expand_as(means)
    # Independent replicates of the 4 examples side by side in the batch dimension.
    replicates = 1000
    x_rep, mean_rep, logvar_rep = (t.repeat(replicates, 1) for t in (x, mean, logvar))
    generator = torch.Generator().manual_seed(5)
    averages = {}
    for k in (1, 5, 50):
        estimate = importance_weighted_estimate(gaussian_proposal(W, b, x_rep, mean_rep, logvar_rep, generator), k,
                                                chunk_size=16)
        assert bool((estimate.log_marginal >= estimate.elbo - 1e-12).all())  # Jensen on the same samples
        if k == 1:
            torch.testing.assert_close(estimate.log_marginal, estimate.elbo)  # L_1 is the one-sample ELBO
        values = estimate.log_marginal.reshape(replicates, 4)
        averages[k] = values.mean(0)
        standard_error = values.std(0) / math.sqrt(replicates)
        assert bool((averages[k] <= exact + 3 * standard_error + 1e-9).all()), f"E[L_{k}] above log p(x)"
    gaps = {k: float((exact - averages[k]).mean()) for k in averages}
    assert gaps[1] > gaps[5] > gaps[50] >= -0.01, gaps
    assert gaps[50] < 0.5 * gaps[1], gaps


def test_chunking_gives_the_same_value_as_one_logsumexp():
    generator = torch.Generator().manual_seed(6)
    weights = torch.randn(103, 7, generator=generator, dtype=torch.float64) * 30.0 - 500.0
    expected = torch.logsumexp(weights, 0) - math.log(103)

    def stream():
        position = 0

        def log_weights(m):
            nonlocal position
            position += m
            return weights[position - m:position]

        return log_weights

    for chunk in (1, 10, 103, 1000):
        estimate = importance_weighted_estimate(stream(), 103, chunk_size=chunk)
        torch.testing.assert_close(estimate.log_marginal, expected, rtol=0, atol=1e-9)
        torch.testing.assert_close(estimate.elbo, weights.mean(0), rtol=0, atol=1e-9)


@pytest.mark.parametrize("k, chunk", [(0, 1), (-3, 1), (5, 0)])
def test_bad_sample_counts_are_config_errors(k, chunk):
    with pytest.raises(ConfigError):
        importance_weighted_estimate(lambda m: torch.zeros(m, 2), k, chunk_size=chunk)


def test_mean_and_standard_error_match_numpy():
    values = np.random.default_rng(0).normal(size=37)
    mean, se = mean_and_standard_error(torch.from_numpy(values))
    assert mean == pytest.approx(values.mean())
    assert se == pytest.approx(values.std(ddof=1) / math.sqrt(37))
    assert math.isnan(mean_and_standard_error(torch.tensor([2.0]))[1])
