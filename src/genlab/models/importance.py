"""Importance-weighted estimates of log p(x) for latent-variable models.

Burda, Grosse & Salakhutdinov (2015), "Importance weighted autoencoders", ICLR 2016. For a model p(x, z), a
proposal q(z | x) and z_1..z_k drawn independently from q(z | x), the log weights are
``log w_i = log p(x, z_i) - log q(z_i | x)`` and

    L_k(x) = log (1/k) Σ_i w_i              (computed as logsumexp_i(log w_i) - log k)

is a stochastic lower bound on the log marginal likelihood: E[L_k] <= log p(x) by Jensen's inequality. The
bound tightens with k (E[L_k] <= E[L_{k+1}], Burda et al. Theorem 1), E[L_1] is the evidence lower bound (ELBO),
and L_k -> log p(x) as k -> infinity when p(x, z) / q(z | x) is bounded. When q is the exact posterior every
weight equals p(x), so even L_1 is exact. Burda et al. report test NLL as -L_5000 averaged over the test set.

:func:`importance_weighted_estimate` streams the k samples in chunks (the log weights of one chunk at a time,
combined with ``logaddexp``), so k = 5000 needs the memory of one chunk only.

This module sits in the models layer so the VAE can use it; :mod:`genlab.eval.iwae` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.errors import ConfigError

__all__ = [
    "ImportanceWeightedEstimate",
    "diag_gaussian_log_density",
    "importance_weighted_estimate",
    "log_mean_exp",
    "mean_and_standard_error",
    "standard_normal_log_density",
]

LOG_2PI = math.log(2.0 * math.pi)


def diag_gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor | float) -> Tensor:
    """log N(x; mean, diag(exp(logvar))) summed over the last dimension; broadcasts, (..., D) -> (...)."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return -0.5 * (LOG_2PI + logvar + (x - mean).square() * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension, (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + z.square()).sum(-1)


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """log(mean(exp(values))) along ``dim`` without overflow: logsumexp - log n."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


@dataclass
class ImportanceWeightedEstimate:
    """Per-example results of :func:`importance_weighted_estimate`, each of shape (B,).

    ``log_marginal`` is L_k (the IWAE bound / estimate of log p(x)); ``elbo`` is the mean of the same k log
    weights, an unbiased estimate of the ELBO with k-fold lower variance than a single sample.
    """

    log_marginal: Tensor
    elbo: Tensor
    num_samples: int


def importance_weighted_estimate(log_weights: Callable[[int], Tensor], num_samples: int, *,
                                 chunk_size: int) -> ImportanceWeightedEstimate:
    """L_k and the ELBO of a batch from ``num_samples`` (k) importance samples, ``chunk_size`` at a time.

    ``log_weights(m)`` must draw m *fresh* samples z ~ q(z | x) for every example of the batch and return
    ``log p(x, z) - log q(z | x)`` as a tensor of shape (m, B). Chunks are combined exactly:
    ``logsumexp`` over all k weights equals ``logaddexp`` of the per-chunk ``logsumexp``.
    """
    if num_samples < 1:
        raise ConfigError(f"the importance-weighted estimate needs k >= 1 samples, got {num_samples}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1 sample, got {chunk_size}")
    running_lse: Tensor | None = None
    running_sum: Tensor | None = None
    remaining = num_samples
    while remaining > 0:
        m = min(chunk_size, remaining)
        chunk = log_weights(m)
        if chunk.dim() != 2 or chunk.shape[0] != m:
            raise ValueError(f"log_weights({m}) must return shape ({m}, B), got {tuple(chunk.shape)}")
        chunk_lse = torch.logsumexp(chunk, dim=0)
        chunk_sum = chunk.sum(0, dtype=torch.float64)
        running_lse = chunk_lse if running_lse is None else torch.logaddexp(running_lse, chunk_lse)
        running_sum = chunk_sum if running_sum is None else running_sum + chunk_sum
        remaining -= m
    assert running_lse is not None and running_sum is not None
    return ImportanceWeightedEstimate(log_marginal=running_lse - math.log(num_samples),
                                      elbo=(running_sum / num_samples).to(running_lse.dtype),
                                      num_samples=num_samples)


def mean_and_standard_error(values: Tensor) -> tuple[float, float]:
    """Mean of per-example values and its standard error ``std / sqrt(n)`` (sample std, n - 1); n = 1 gives nan."""
    values = values.detach().to(torch.float64).flatten()
    n = values.numel()
    if n == 0:
        raise ValueError("mean_and_standard_error needs at least one value")
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan
    return mean, float(values.std(unbiased=True)) / math.sqrt(n)
