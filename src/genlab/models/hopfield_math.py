"""The Hopfield network's math on plain tensors: the Hebbian and projection storage rules, the energy,
asynchronous and synchronous recall, corruption and overlap of ±1 patterns, and the capacity curve.

Split out of :mod:`genlab.models.hopfield` (which re-exports every name here and keeps the config and the
registered model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from genlab.errors import ConfigError, DataError


RECALL_MODES = ("async", "sync")
RULES = ("hebbian", "projection")


def hebbian_weights(patterns: Tensor) -> Tensor:
    """W = (1/N) Σ_μ ξ^μ ξ^μᵀ with zero diagonal; patterns (P, N) of ±1 -> (N, N), symmetric."""
    n_units = patterns.shape[1]
    weights = patterns.T @ patterns / n_units
    weights.fill_diagonal_(0.0)
    return weights


def projection_weights(patterns: Tensor) -> Tensor:
    """W = Ξᵀ (Ξ Ξᵀ)⁺ Ξ with zero diagonal (Personnaz, Guyon & Dreyfus 1985); patterns Ξ (P, N) -> (N, N).

    Ξᵀ(ΞΞᵀ)⁺Ξ projects onto the span of the patterns, so W ξ^μ = ξ^μ - diag(W) ξ^μ and every stored pattern
    is a fixed point as long as its diagonal entries are below 1. Computed in float64 for the pseudo-inverse.
    """
    xi = patterns.double()
    weights = xi.T @ torch.linalg.pinv(xi @ xi.T, hermitian=True) @ xi
    weights = 0.5 * (weights + weights.T)  # exact symmetry despite rounding
    weights.fill_diagonal_(0.0)
    return weights.to(patterns.dtype)


def energy(weights: Tensor, state: Tensor) -> Tensor:
    """E(s) = -½ sᵀ W s; state (n, N) -> (n,), or (N,) -> scalar."""
    return -0.5 * ((state @ weights) * state).sum(-1)


def zero_field_tolerance(weights: Tensor) -> float:
    """Fields with |h| at most this count as zero: 1e-9 · N · max|W_ij|, far above float64 rounding of a sum
    of N terms and far below any field that is non-zero in exact arithmetic."""
    return 1e-9 * weights.shape[0] * float(weights.abs().max()) if weights.numel() else 0.0


def _check_spins(state: Tensor, n_units: int, what: str) -> Tensor:
    if state.dim() != 2 or state.shape[1] != n_units:
        raise DataError(f"{what} must have shape (n, {n_units}), got {tuple(state.shape)}")
    if not bool(((state == 1) | (state == -1)).all()):
        raise DataError(f"{what} must contain only -1 and +1 (binarize images with to_spins)")
    return state


def _uniform(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) noise of ``shape`` on ``like``'s device, drawn from ``generator`` wherever it lives."""
    device = generator.device if generator is not None else like.device
    return torch.rand(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def _random_orders(n: int, n_units: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One independent random permutation of the units per state: (n, N) long (argsort of uniform noise)."""
    return _uniform((n, n_units), like, generator).argsort(dim=1)


def _async_sweep(weights: Tensor, state: Tensor, order: Tensor) -> Tensor:
    """Update every unit once, one at a time in ``order`` (n, N) — each state has its own order.

    Exactly the sequential sweep, computed event by event: a unit whose sign already agrees with its field
    (or whose field is zero) does not change when its turn comes, so only the next *unstable* unit after the
    current position matters. Each iteration flips that unit in every state that has one and updates the
    fields incrementally (h += Δs_i W_i·, W symmetric with zero diagonal), so a sweep costs one iteration
    per flip instead of one per unit.
    """
    state = state.clone()
    n, n_units = state.shape
    tolerance = zero_field_tolerance(weights)
    field = state @ weights  # recomputed every sweep, so incremental rounding cannot accumulate
    rows = torch.arange(n, device=state.device)
    positions = torch.arange(n_units, device=state.device).expand(n, n_units)
    pointer = torch.zeros(n, dtype=torch.long, device=state.device)
    while True:
        # A unit is unstable when its field is non-zero and of the other sign: h_i s_i < 0.
        candidates = ((field * state).gather(1, order) < -tolerance) & (positions >= pointer[:, None])
        found = candidates.any(1)
        if not bool(found.any()):
            return state
        first = candidates.to(torch.uint8).argmax(1)  # the earliest unstable position still to visit
        active = rows[found]
        units = order[active, first[found]]
        delta = -2.0 * state[active, units]
        state[active, units] += delta
        field[active] += delta[:, None] * weights[units]
        pointer[active] = first[found] + 1
        pointer[~found] = n_units


def _sync_update(weights: Tensor, state: Tensor) -> Tensor:
    """All units at once: s ← sign(W s), keeping units whose field is zero."""
    tolerance = zero_field_tolerance(weights)
    field = state @ weights  # W is symmetric
    return torch.where(field > tolerance, 1.0, torch.where(field < -tolerance, -1.0, state))


def run_recall(weights: Tensor, state: Tensor, *, steps: int, mode: str = "async",
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Recall from ``state`` (n, N) of ±1: returns states (steps+1, n, N) and energies (steps+1, n).

    Step 0 is the start. An asynchronous step is one sweep of N single-unit updates in a fresh random order
    per state (drawn from ``generator``); a synchronous step updates all units at once. Fields and energies
    are computed in float64; states come back in ``state``'s dtype.
    """
    if mode not in RECALL_MODES:
        raise ConfigError(f"recall mode must be async or sync, got {mode!r}")
    if steps < 0:
        raise ConfigError(f"recall steps must be >= 0, got {steps}")
    dtype = state.dtype
    weights, state = weights.double(), state.double()
    states = [state]
    for _ in range(steps):
        if mode == "async":
            order = _random_orders(state.shape[0], state.shape[1], weights, generator)
            updated = _async_sweep(weights, state, order)
        else:
            updated = _sync_update(weights, state)
        if torch.equal(updated, state):
            # A fixed point of either dynamics stays fixed: repeat it instead of sweeping again.
            states.extend([state] * (steps + 1 - len(states)))
            break
        state = updated
        states.append(state)
    stacked = torch.stack(states)
    return stacked.to(dtype), energy(weights, stacked).to(dtype)


def corrupt(patterns: Tensor, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Flip exactly round(fraction · N) randomly chosen units of each row of ``patterns`` (n, N)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"corruption must be a fraction in [0, 1], got {fraction}")
    n, n_units = patterns.shape
    flips = round(fraction * n_units)
    chosen = _random_orders(n, n_units, patterns, generator)[:, :flips]
    sign = torch.ones_like(patterns)
    sign.scatter_(1, chosen, -1.0)
    return patterns * sign


def overlap(state: Tensor, patterns: Tensor) -> Tensor:
    """m = ξ·s / N per row; state and patterns (..., N) -> (...). 1 means identical, -1 inverted."""
    return (state * patterns).sum(-1) / state.shape[-1]


def capacity_curve(n_units: int, loads: Sequence[float], *, trials: int = 1, corruption: float = 0.0,
                   steps: int = 20, success_overlap: float = 0.95,
                   generator: torch.Generator | None = None) -> dict[str, list[float]]:
    """Recall success against load α = P/N for random ±1 patterns (Amit, Gutfreund & Sompolinsky 1985).

    For each load, P = max(1, round(α N)) random patterns are stored (``trials`` independent networks) and
    recall starts from every stored pattern with ``corruption`` of its units flipped; ``steps`` asynchronous
    sweeps follow. Returns lists (one entry per load): ``load``, ``patterns``, ``mean_overlap`` (final overlap
    with the pattern), ``success`` (fraction of recalls with overlap >= ``success_overlap``) and
    ``exact`` (fraction recalled without a single wrong unit).
    """
    result: dict[str, list[float]] = {"load": [], "patterns": [], "mean_overlap": [], "success": [], "exact": []}
    for load in loads:
        count = max(1, round(load * n_units))
        overlaps = []
        for _ in range(trials):
            patterns = torch.where(_uniform((count, n_units), torch.empty(0), generator) < 0.5, -1.0, 1.0)
            weights = hebbian_weights(patterns)
            start = corrupt(patterns, corruption, generator)
            final = run_recall(weights, start, steps=steps, mode="async", generator=generator)[0][-1]
            overlaps.append(overlap(final, patterns))
        values = torch.cat(overlaps)
        result["load"].append(float(load))
        result["patterns"].append(float(count))
        result["mean_overlap"].append(float(values.mean()))
        result["success"].append(float((values >= success_overlap).float().mean()))
        result["exact"].append(float((values == 1.0).float().mean()))
    return result


def critical_load(loads: Sequence[float], success: Sequence[float], level: float = 0.5) -> float:
    """The load where ``success`` first falls below ``level``, linearly interpolated; NaN if it never does."""
    for index in range(len(loads)):
        if success[index] < level:
            if index == 0:
                return float(loads[0])
            x0, x1, y0, y1 = loads[index - 1], loads[index], success[index - 1], success[index]
            return float(x0 + (y0 - level) * (x1 - x0) / (y0 - y1))
    return math.nan
