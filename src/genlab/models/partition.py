"""Partition functions of Bernoulli-Bernoulli RBMs: exact enumeration and annealed importance sampling.

The RBM has energy ``E(v, h) = -v·b - h·c - h·W v`` with ``W`` of shape (n_hidden, n_visible), visible bias
``b`` (n_visible,) and hidden bias ``c`` (n_hidden,). Summing out one layer analytically gives

    log Z = logsumexp_h [ c·h + Σ_i softplus(b_i + (Wᵀh)_i) ]
          = logsumexp_v [ b·v + Σ_j softplus(c_j + (W v)_j) ],

so the exact value costs ``2^min(n_hidden, n_visible)`` terms (:func:`exact_log_partition`).

For MNIST-sized RBMs :func:`ais_log_partition` implements annealed importance sampling (Neal 2001, "Annealed
importance sampling") as used by Salakhutdinov & Murray (2008), "On the quantitative analysis of deep belief
networks", ICML: anneal from a base-rate model with zero weights to the RBM through

    log p*_β(v) = b_A·v + β (b - b_A)·v + Σ_j softplus(β (c_j + W_j·v)),

(the hidden units integrated out), moving with Gibbs sampling on the β-scaled RBM. ``exp(log w)`` of every
run is an unbiased estimate of ``Z``; the log of their mean is a stochastic *lower* bound on ``log Z`` in
expectation (Jensen), so AIS-based test log-likelihoods tend to be optimistic when the run count is small.

This module sits in the models layer so the RBM and DBN can use it; :mod:`genlab.eval.ais` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError

__all__ = [
    "ais_confidence",
    "ais_log_partition",
    "bernoulli",
    "default_betas",
    "exact_log_partition",
]

# Salakhutdinov & Murray (2008): 14,500 β spaced uniformly in steps of 1e-3 on [0, 0.5] (500 points),
# 1e-4 on [0.5, 0.9] (4,000) and 1e-5 on [0.9, 1.0] (10,000).
_SEGMENTS = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
_PAPER_TOTAL = sum(count for _, _, count in _SEGMENTS)  # 14,500


def bernoulli(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw independent Bernoulli(probs) units, exactly 0.0 or 1.0, with ``probs``' shape and dtype.

    One uniform number per unit is compared with the *probability* (not the pre-activation). ``generator``
    may live on another device than ``probs`` (e.g. a CPU generator for a CUDA model); ``None`` uses the
    global RNG of ``probs``' device, which the trainer checkpoints.
    """
    if generator is None or generator.device.type == probs.device.type:
        noise = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    else:
        noise = torch.rand(probs.shape, generator=generator, device=generator.device, dtype=probs.dtype)
        noise = noise.to(probs.device)
    return noise.lt_(probs.detach())  # in place: 1.0 where u < p, else 0.0 (no gradient)


def default_betas(n: int = _PAPER_TOTAL) -> Tensor:
    """The three-segment inverse-temperature schedule of Salakhutdinov & Murray (2008), scaled to ``n`` points.

    Returns a float64 tensor of shape (n,), non-decreasing from exactly 0.0 to exactly 1.0, with the paper's
    proportions (500 : 4000 : 10000, i.e. steps of 1e-3, 1e-4 and 1e-5) of points on [0, 0.5), [0.5, 0.9)
    and [0.9, 1]. ``n = 14500`` reproduces the paper; fewer than 4 points fall back to an even spacing.
    """
    if n < 2:
        raise ConfigError(f"AIS needs at least 2 inverse temperatures (0 and 1), got ais_betas={n}")
    if n < 4:
        return torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    counts = [max(1, round(n * count / _PAPER_TOTAL)) for _, _, count in _SEGMENTS[:2]]
    counts.append(n - sum(counts))
    parts = []
    for (lo, hi, _), count in zip(_SEGMENTS[:2], counts[:2]):
        parts.append(torch.linspace(lo, hi, count + 1, dtype=torch.float64)[:-1])  # right end starts the next
    lo, hi, _ = _SEGMENTS[2]
    parts.append(torch.linspace(lo, hi, counts[2], dtype=torch.float64))
    return torch.cat(parts)


def _check_betas(betas: Sequence[float] | Tensor) -> list[float]:
    values = [float(x) for x in torch.as_tensor(betas, dtype=torch.float64).flatten()]
    if len(values) < 2:
        raise ConfigError(f"AIS needs at least 2 inverse temperatures (0 and 1), got {len(values)}")
    if values[0] != 0.0 or values[-1] != 1.0:
        raise ConfigError(f"AIS inverse temperatures must start at 0 and end at 1, got {values[0]} .. {values[-1]}")
    if any(b < a for a, b in zip(values, values[1:])):
        raise ConfigError("AIS inverse temperatures must be non-decreasing")
    return values


def _log_partition_base(base_visible_logits: Tensor, n_hidden: int) -> float:
    """log Z of the base-rate RBM (zero weights, zero hidden biases): Σ_i softplus(b_A,i) + n_hidden·log 2."""
    return float(F.softplus(base_visible_logits.detach().double()).sum()) + n_hidden * math.log(2.0)


@torch.no_grad()
def ais_log_partition(W: Tensor, b: Tensor, c: Tensor, base_visible_logits: Tensor,
                      betas: Sequence[float] | Tensor, n_runs: int,
                      generator: torch.Generator | None = None, progress=None) -> tuple[float, Tensor]:
    """Estimate log Z of an RBM by annealed importance sampling (Salakhutdinov & Murray 2008).

    Args:
        W: weights, (n_hidden, n_visible). b: visible bias, (n_visible,). c: hidden bias, (n_hidden,).
        base_visible_logits: visible biases b_A of the base-rate model, (n_visible,); usually the logits of the
            training pixel marginals, which makes the first distributions close to the data.
        betas: inverse temperatures, non-decreasing from 0 to 1, e.g. :func:`default_betas`.
        n_runs: independent annealing runs, simulated in parallel as rows of a matrix.
        generator: RNG for the Bernoulli draws (``None``: the global RNG).
        progress: a :class:`genlab.progress.Progress` told of each temperature done (optional).

    Returns:
        ``(log_z, log_weights)``: the estimate ``log Z_A + logsumexp(log w) - log(n_runs)`` as a float, and the
        float64 tensor (n_runs,) of per-run estimates ``log Z_A + log w_r`` (each ``exp`` is unbiased for Z).

    Cost per inverse temperature: two (n_runs × n_visible × n_hidden) matmuls in W's dtype; the per-temperature
    log-weight terms are computed and accumulated in float64.
    """
    if n_runs < 1:
        raise ConfigError(f"AIS needs at least one run, got n_runs={n_runs}")
    schedule = _check_betas(betas)
    W = W.detach()
    b, c = b.detach().to(W), c.detach().to(W)
    base = base_visible_logits.detach().to(W)
    n_hidden, n_visible = W.shape
    delta_b = b - base  # (n_visible,)

    # v_1 ~ p_0: independent pixels with the base rates.
    v = bernoulli(torch.sigmoid(base).expand(n_runs, n_visible), generator)
    log_w = torch.zeros(n_runs, dtype=torch.float64, device=W.device)
    for k in range(1, len(schedule)):
        beta_prev, beta = schedule[k - 1], schedule[k]
        pre = torch.addmm(c, v, W.t())  # (n_runs, n_hidden): c + W v
        scaled = pre.mul_(beta)  # β(c + Wv), in place: pre itself is not needed again
        # log p*_β(v_k) - log p*_β'(v_k) = (β - β')(b - b_A)·v + Σ_j [softplus(β x_j) - softplus(β' x_j)].
        # The two softplus terms differ by about Δβ·x; in float64 their rounding does not add up over the
        # thousands of temperatures (in float32 it would drift by about 1e-2 nats).
        scaled64 = scaled.double()
        previous = F.softplus(scaled64 * (beta_prev / beta)) if beta > 0 else F.softplus(scaled64)
        log_w += torch.sub(F.softplus(scaled64), previous).sum(1)
        log_w += (beta - beta_prev) * (v @ delta_b).double()
        if k < len(schedule) - 1:
            # Gibbs transition leaving p_β invariant: h ~ σ(β(c + Wv)), v ~ σ(b_A + β(b - b_A + Wᵀh)).
            h = bernoulli(scaled.sigmoid_(), generator)
            v = bernoulli(torch.addmm(base + beta * delta_b, h, W, alpha=beta).sigmoid_(), generator)
        if progress is not None and k % 100 == 0:
            progress.update(k)
    log_weights = log_w + _log_partition_base(base, n_hidden)
    log_z = float(torch.logsumexp(log_weights, 0)) - math.log(n_runs)
    return log_z, log_weights.cpu()


def ais_confidence(log_weights: Tensor, n_std: float = 3.0) -> tuple[float, float]:
    """Log-space interval ``(log(m - 3σ̂), log(m + 3σ̂))`` around the AIS estimate of Z.

    ``m`` is the mean of the importance weights ``exp(log_weights)`` (n_runs,) and ``σ̂`` its standard error
    (sample std / sqrt(n_runs)), as Salakhutdinov & Murray (2008) report. Computed after subtracting the
    largest log weight, so it never overflows. The lower end is ``-inf`` when ``m - 3σ̂ <= 0``.
    """
    lw = torch.as_tensor(log_weights, dtype=torch.float64).flatten()
    n = lw.numel()
    if n == 0:
        raise ConfigError("ais_confidence needs at least one log weight")
    shift = float(lw.max())
    w = torch.exp(lw - shift)
    mean = float(w.mean())
    std_err = float(w.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    lower = mean - n_std * std_err
    lower_log = math.log(lower) + shift if lower > 0 else -math.inf
    upper_log = math.log(mean + n_std * std_err) + shift
    return lower_log, upper_log


@torch.no_grad()
def exact_log_partition(W: Tensor, b: Tensor, c: Tensor, max_hidden: int = 25, chunk: int = 4096) -> float:
    """Exact log Z by enumerating every state of the smaller layer, in float64.

    Args:
        W: (n_hidden, n_visible). b: (n_visible,). c: (n_hidden,).
        max_hidden: refuse (ConfigError) when the smaller layer has more units than this: 2^25 terms already
            take tens of seconds.
        chunk: states enumerated per block, bounding memory to about ``chunk × max(n_visible, n_hidden)`` floats.

    Enumerating hiddens: log Z = logsumexp_h [c·h + Σ_i softplus(b_i + (Wᵀh)_i)]; the visible side is symmetric.
    """
    n_hidden, n_visible = W.shape
    W64 = W.detach().double()
    if n_hidden <= n_visible:
        weights, own_bias, other_bias = W64, c.detach().double(), b.detach().double()  # enumerate h
    else:
        weights, own_bias, other_bias = W64.t(), b.detach().double(), c.detach().double()  # enumerate v
    n_enum = weights.shape[0]
    if n_enum > max_hidden:
        raise ConfigError(
            f"exact log partition function needs 2^{n_enum} terms (more than 2^{max_hidden}); "
            "use AIS (ais_log_partition / evaluate with ais_runs > 0) for an RBM this large"
        )
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    bit_values = 2 ** torch.arange(n_enum, device=W.device, dtype=torch.int64)  # (n_enum,)
    partial = []
    total = 2 ** n_enum
    for start in range(0, total, chunk):
        codes = torch.arange(start, min(start + chunk, total), device=W.device, dtype=torch.int64)
        states = ((codes[:, None] & bit_values) != 0).double()  # (chunk, n_enum)
        terms = states @ own_bias + F.softplus(torch.addmm(other_bias, states, weights)).sum(1)
        partial.append(torch.logsumexp(terms, 0))
    return float(torch.logsumexp(torch.stack(partial), 0))
