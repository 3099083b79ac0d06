"""Sample-quality math on classifier outputs and features: confidence, class histogram and its entropy, the
Fréchet distance (Heusel et al. 2017) and KID (Bińkowski et al. 2018). Pure tensor functions, independent of
which network made the features; :mod:`genlab.eval.judge` applies them with genlab's judges."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.errors import DataError

CONFIDENT_PROBABILITY = 0.9


def confidence(probabilities: Tensor, threshold: float = CONFIDENT_PROBABILITY) -> tuple[float, float]:
    """(mean of max-class probability, fraction of rows whose max-class probability exceeds ``threshold``)
    for an (n, classes) probability matrix."""
    top = probabilities.max(dim=1).values
    return float(top.mean()), float((top > threshold).double().mean())


def class_histogram(probabilities: Tensor) -> Tensor:
    """Counts (classes,) of argmax labels of an (n, classes) probability matrix."""
    return torch.bincount(probabilities.argmax(dim=1), minlength=probabilities.shape[1])


def histogram_entropy_nats(counts: Tensor) -> float:
    """Entropy (nats) of the distribution ``counts / counts.sum()``, with 0·log 0 = 0; log(K) when uniform."""
    p = counts.double() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log()).sum()) + 0.0  # + 0.0 turns -0.0 (one class) into 0.0


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (d,), unbiased covariance (d, d)) in float64 of an (n, d) feature matrix, n ≥ 2."""
    x = features.double()
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataError(f"Fréchet distance needs at least 2 feature vectors (n, d); got shape {tuple(x.shape)}")
    mean = x.mean(dim=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix by eigendecomposition; eigenvalues that
    rounding pushed slightly below zero are clamped to zero."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> float:
    """tr((Σ1 Σ2)^½) = tr((Σ1^½ Σ2 Σ1^½)^½), computed from eigenvalues of the symmetric PSD matrix
    Σ1^½ Σ2 Σ1^½ (stable for singular covariances, unlike a general sqrtm of the non-symmetric product)."""
    root = _sqrt_psd(sigma1.double())
    inner = root @ sigma2.double() @ root
    return float(torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum())


def frechet_distance_from_stats(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½): the squared 2-Wasserstein (Fréchet) distance between
    N(μ1, Σ1) and N(μ2, Σ2). Clamped at 0 (rounding can give −1e-12)."""
    mu1, mu2, sigma1, sigma2 = mu1.double(), mu2.double(), sigma1.double(), sigma2.double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise DataError(f"Fréchet distance: mismatched statistics, means {tuple(mu1.shape)} / "
                        f"{tuple(mu2.shape)}, covariances {tuple(sigma1.shape)} / {tuple(sigma2.shape)}")
    value = float((mu1 - mu2).square().sum()) + float(torch.trace(sigma1) + torch.trace(sigma2)) \
        - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(value, 0.0)


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (n, d) feature sets (genlab-judge FD when the
    features are a judge's; comparable only with other values from the same judge)."""
    return frechet_distance_from_stats(*feature_statistics(features_a), *feature_statistics(features_b))


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x, y) = (xᵀy / d + 1)³ for rows of (n, d) and (m, d): the KID kernel (Bińkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² estimate with :func:`polynomial_kernel`: mean over i≠j of k(x_i, x_j) plus the same for y,
    minus twice the mean of k(x_i, y_j). Needs at least 2 rows in each set."""
    x, y = x.double(), y.double()
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


@dataclass(frozen=True)
class KIDResult:
    value: float  # mean of the subset estimates of MMD² (unbiased)
    stderr: float  # standard deviation of the subset estimates / sqrt(subsets)
    subsets: int
    subset_size: int


def kernel_distance(features_a: Tensor, features_b: Tensor, *, subsets: int = 10, max_subset_size: int = 1000,
                    generator: torch.Generator | None = None) -> KIDResult:
    """KID: unbiased polynomial-kernel MMD² between two feature sets, averaged over ``subsets`` *disjoint*
    random subsets of each set (size min(n_a, n_b) // subsets, at most ``max_subset_size``).

    Disjoint subsets make the subset estimates independent, so their standard deviation / √subsets is an honest
    standard error of the mean (Bińkowski et al. draw overlapping subsets, whose spread understates it). With
    fewer than 2·subsets rows the number of subsets is reduced (at least 2 subsets of at least 2 rows).
    """
    a, b = features_a.double(), features_b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"KID needs two (n, d) feature sets with the same d; got {tuple(a.shape)} and "
                        f"{tuple(b.shape)}")
    smallest = min(a.shape[0], b.shape[0])
    if smallest < 4 or subsets < 1 or max_subset_size < 2:
        raise DataError(f"KID needs at least 4 images in each set (got {a.shape[0]} and {b.shape[0]}), "
                        f"subsets >= 1 and max_subset_size >= 2")
    count = max(2, min(subsets, smallest // 2))
    size = min(max_subset_size, smallest // count)
    order_a = torch.randperm(a.shape[0], generator=generator)
    order_b = torch.randperm(b.shape[0], generator=generator)
    estimates = torch.tensor([mmd2_unbiased(a[order_a[i * size:(i + 1) * size]],
                                            b[order_b[i * size:(i + 1) * size]]) for i in range(count)])
    return KIDResult(value=float(estimates.mean()), stderr=float(estimates.std(unbiased=True) / math.sqrt(count)),
                     subsets=count, subset_size=size)
