"""Discriminator rejection sampling (Azadi, Olsson, Darrell, Goodfellow & Odena 2019, "Discriminator Rejection
Sampling", ICLR): keep each of a generator's samples with a probability that grows with the discriminator's logit.

Why it works: the optimal discriminator of the standard GAN loss has logit D(x) = log p_data(x) / p_g(x), so
accepting a sample x ~ p_g with probability exp(D(x) - D_M), D_M the largest logit, draws exactly from p_data.
A trained discriminator is not optimal and that probability is tiny for most samples, so the paper accepts with
sigmoid(F(x) - gamma), where F(x) = D(x) - D_M - log(1 - exp(D(x) - D_M - eps)) is the logit of the exact
acceptance probability and the shift gamma, a percentile of F over burn-in samples, sets how selective it is.
D_M starts as the burn-in maximum and rises whenever a larger logit appears (the paper's Algorithm 1).

This module is the model-free part: a proposal function gives samples with their logits.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from genlab.errors import ConfigError, GenlabError

# A proposal: ``propose(m)`` -> (m samples, their discriminator logits, shape (m,)).
PAPER_PERCENTILE = 95.0  # Azadi et al.'s shift gamma: the 95th percentile of F over the burn-in
Proposal = Callable[[int], tuple[Tensor, Tensor]]


def acceptance_logits(logits: Tensor, max_logit: float, epsilon: float = 1e-6) -> Tensor:
    """F(x) of each logit (same shape): the logit of exp(D(x) - D_M - eps), computed as D - D_M - log(-expm1(.))
    so it stays finite at D(x) = D_M. ``max_logit`` must be at least every logit (the caller keeps it so)."""
    difference = logits.double() - max_logit
    return (difference - torch.log(-torch.expm1(difference - epsilon))).to(logits.dtype)


def check_percentile(percentile: float) -> None:
    if not 0.0 <= percentile < 100.0:
        raise ConfigError(f"the rejection percentile must be in [0, 100) (the paper uses {PAPER_PERCENTILE:g}; 0 "
                          f"keeps every sample with probability >= 1/2), got {percentile}")


def rejection_sample(propose: Proposal, n: int, *, percentile: float = PAPER_PERCENTILE, gamma: float | None = None,
                     burn_in: int = 10_000, batch_size: int = 1_000, max_proposals: int | None = None,
                     generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """``n`` accepted samples (in proposal order) and facts about the run: ``acceptance_rate``, ``proposals``,
    ``gamma`` and ``max_logit``. The burn-in samples set D_M and gamma (the ``percentile`` of their F, unless
    ``gamma`` is given: 0 keeps the exact rule, acceptance exp(D - D_M)) and are then judged like the rest.
    ``generator`` draws the acceptance uniforms (seed the proposal's own generator for repeatable latents).
    GenlabError when fewer than ``n`` are accepted in ``max_proposals`` (default 100 n) proposals."""
    check_percentile(percentile)
    if n < 1 or burn_in < 1 or batch_size < 1:
        raise ConfigError(f"rejection sampling needs n, burn_in and batch_size >= 1, got {n}, {burn_in}, "
                          f"{batch_size}")
    max_proposals = max_proposals if max_proposals is not None else 100 * n
    pending: list[tuple[Tensor, Tensor]] = []
    proposed = 0
    while proposed < burn_in:
        samples, logits = propose(min(batch_size, burn_in - proposed))
        pending.append((samples, logits))
        proposed += logits.shape[0]
    burn_in_logits = torch.cat([logits for _, logits in pending])
    max_logit = float(burn_in_logits.max())
    if gamma is None:
        gamma = float(torch.quantile(acceptance_logits(burn_in_logits, max_logit).double(), percentile / 100.0))
    accepted: list[Tensor] = []
    count = 0
    while True:
        for samples, logits in pending:
            max_logit = max(max_logit, float(logits.max()))
            probability = torch.sigmoid(acceptance_logits(logits, max_logit) - gamma)
            keep = torch.rand(logits.shape, generator=generator, device=logits.device) < probability
            accepted.append(samples[keep])
            count += int(keep.sum())
        if count >= n:
            break
        if proposed >= max_proposals:
            raise GenlabError(f"rejection sampling accepted only {count} of the {n} samples asked for in {proposed} "
                              f"proposals; use a lower percentile than {percentile} (more samples pass)")
        size = min(batch_size, max_proposals - proposed)
        pending = [propose(size)]
        proposed += size
    facts = {"acceptance_rate": count / proposed, "proposals": float(proposed), "gamma": gamma,
             "max_logit": max_logit}
    return torch.cat(accepted)[:n], facts
