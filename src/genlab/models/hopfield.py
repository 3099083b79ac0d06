"""Hopfield network: ±1 units, Hebbian storage, asynchronous and synchronous recall, capacity.

Hopfield (1982), "Neural networks and physical systems with emergent collective computational abilities", PNAS:
N units with states s_i ∈ {-1, +1}, symmetric weights with zero diagonal and the energy

    E(s) = -½ Σ_ij W_ij s_i s_j = -½ sᵀ W s.

Hebbian storage of P patterns ξ^μ ∈ {-1, +1}^N sets W = (1/N) Σ_μ ξ^μ ξ^μᵀ with the diagonal zeroed. The
asynchronous update s_i ← sign(h_i), h_i = Σ_j W_ij s_j, of one unit at a time changes the energy by
ΔE = -Δs_i h_i ≤ 0, so asynchronous recall never increases E and ends in a fixed point. The synchronous
update s ← sign(W s) of all units at once has no such guarantee and may settle into a 2-cycle. A field of
zero leaves the unit as it is (sign(0) is undefined; keeping the state keeps ΔE = 0). Recall computes fields in
float64 and counts |h_i| <= :func:`zero_field_tolerance` as zero, so a field that is zero mathematically
(common with Hebbian weights, multiples of 1/N) is never turned into a flip by rounding, and every flip
lowers the energy strictly.

Capacity: Amit, Gutfreund & Sompolinsky (1985, 1987) showed that for random patterns the retrieval states
(fixed points with overlap m ≈ 1 to a stored pattern) exist up to a load α = P/N ≈ 0.138; beyond it they
vanish and recall collapses to spurious states with small overlap. :func:`capacity_curve` measures this.

Correlated patterns such as binarized MNIST digits (which share most of their background) defeat the Hebbian
rule after two or three patterns: the crosstalk of the common component swamps the field. The projection
(pseudo-inverse) rule of Personnaz, Guyon & Dreyfus (1985), W = Ξᵀ (Ξ Ξᵀ)⁺ Ξ with the diagonal zeroed, makes
every stored pattern a fixed point whatever the correlations (for P < N linearly independent patterns), and
is still symmetric with zero diagonal, so the energy argument above holds; ``rule="projection"`` selects it.

Training through the one Trainer (``genlab train hopfield``): each call of :meth:`Hopfield.loss` stores the
batch's examples that are still wanted (the first ``n_patterns``, or the first example of each class with
``one_per_class``) by the storage rule, applied directly to ``W`` under ``no_grad``. Storage is not a gradient
method, so the returned loss (the mean energy per unit of the batch's patterns, for monitoring) carries a
gradient of exactly zero and ``W`` sits in a parameter group without weight decay: SGD, Adam, AdamW and
RMSprop all leave ``W`` unchanged on a zero gradient, so the stored weights are exactly the rule's whatever
optimizer the run names. One pass over the data (``train.epochs=1``) stores everything; later batches store
nothing. Storage is per process: do not run it under DDP.

The storage rules, the energy, recall and the capacity curve are plain tensor functions in
:mod:`genlab.models.hopfield_math`, re-exported here; this module keeps :class:`HopfieldConfig` and the
registered :class:`Hopfield`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError, DataError, check_config
from genlab.models.base import DataInfo, GenerativeModel
from genlab.models.hopfield_math import (
    RECALL_MODES,
    RULES,
    _async_sweep,
    _check_spins,
    capacity_curve,
    corrupt,
    critical_load,
    energy,
    hebbian_weights,
    overlap,
    projection_weights,
    run_recall,
    zero_field_tolerance,
)
from genlab.registry import register

# Re-exported from genlab.models.hopfield_math, where the tensor math lives.
__all__ = [
    "RECALL_MODES", "RULES", "Hopfield", "HopfieldConfig", "capacity_curve", "corrupt", "critical_load", "energy",
    "hebbian_weights", "overlap", "projection_weights", "run_recall", "zero_field_tolerance",
]


@dataclass
class HopfieldConfig:
    """Hyper-parameters of a Hopfield network."""

    n_units: int = 784  # set from the data by adapt_config
    n_patterns: int = 5  # how many training examples `genlab train` stores
    rule: str = "hebbian"  # hebbian: W = (1/N) Σ ξξᵀ; projection: pseudo-inverse rule for correlated patterns
    one_per_class: bool = True  # store the first example of each class 0, 1, ... (needs n_patterns <= classes)
    corruption: float = 0.2  # fraction of flipped units in the corrupted copies for sample/eval/validation
    recall_steps: int = 10  # sweeps (async: N single-unit updates each) or parallel updates (sync)
    mode: str = "async"
    trials: int = 10  # corrupted copies per stored pattern in validation and evaluation
    success_overlap: float = 0.95  # a recall succeeds when the final overlap with the pattern reaches this
    value_range: tuple[float, float] = (0.0, 1.0)  # the data's range; set by adapt_config
    image_shape: tuple[int, ...] = ()  # one example's shape, for pictures; set by adapt_config

    def __post_init__(self) -> None:
        check_config(self.n_units >= 2, f"model.n_units must be >= 2, got {self.n_units}")
        check_config(self.n_patterns >= 1, f"model.n_patterns must be >= 1, got {self.n_patterns}")
        check_config(0.0 <= self.corruption <= 1.0, f"model.corruption must be a fraction in [0, 1], got {self.corruption}")
        check_config(self.recall_steps >= 1, f"model.recall_steps must be >= 1, got {self.recall_steps}")
        check_config(self.mode in RECALL_MODES, f"model.mode must be async or sync, got {self.mode!r}")
        check_config(self.rule in RULES, f"model.rule must be hebbian or projection, got {self.rule!r}")
        check_config(self.rule != "projection" or self.n_patterns < self.n_units,
              f"the projection rule stores fewer than N={self.n_units} patterns, got n_patterns={self.n_patterns}")
        check_config(self.trials >= 1, f"model.trials must be >= 1, got {self.trials}")
        check_config(0.0 < self.success_overlap <= 1.0,
              f"model.success_overlap must be in (0, 1], got {self.success_overlap}")
        check_config(len(self.value_range) == 2 and self.value_range[0] < self.value_range[1],
              f"model.value_range must be two increasing numbers, got {self.value_range}")
        check_config(not self.image_shape or math.prod(self.image_shape) == self.n_units,
              f"model.image_shape {self.image_shape} does not hold n_units={self.n_units} values")


@register("hopfield", config=HopfieldConfig, default_dataset="mnist", default_preset="hopfield-mnist",
          description="Hopfield network: Hebbian storage of ±1 patterns, async/sync recall, capacity ~0.14 N")
class Hopfield(GenerativeModel):
    """Hopfield network with Hebbian weights.

    ``W`` (N, N) is a parameter (so checkpoints and the Trainer treat it like any weight) that only the
    storage rule changes (see the module docstring). Buffers: ``memories`` (n_patterns, N) the stored
    patterns in order (rows past ``n_stored`` are zero), ``memory_labels`` (n_patterns,) their classes
    (-1 when unknown) and ``n_stored`` (a 0-d count). Images are turned into spins by :meth:`to_spins`.
    """

    kind = "image"
    supports_amp = False

    @property
    def unit_count(self) -> int:
        return int(self.config.n_units)

    def __init__(self, config: HopfieldConfig):
        super().__init__(config)
        n, p = config.n_units, config.n_patterns
        self.W = nn.Parameter(torch.zeros(n, n))
        self.register_buffer("memories", torch.zeros(p, n))
        self.register_buffer("memory_labels", torch.full((p,), -1, dtype=torch.long))
        self.register_buffer("n_stored", torch.zeros((), dtype=torch.long))

    @classmethod
    def adapt_config(cls, config: HopfieldConfig, info: DataInfo) -> HopfieldConfig:
        """Take N, the image shape and the value range from the data; check that the classes suffice."""
        if info.kind != "image":
            raise ConfigError(f"the Hopfield network stores images, not {info.kind!r} data")
        n_units = math.prod(info.shape) if info.shape else config.n_units
        if config.one_per_class and info.num_classes and config.n_patterns > info.num_classes:
            raise ConfigError(f"model.one_per_class stores one example per class, but model.n_patterns="
                              f"{config.n_patterns} exceeds the {info.num_classes} classes; lower n_patterns "
                              "or set model.one_per_class=false")
        return dataclasses.replace(config, n_units=n_units, image_shape=tuple(info.shape),
                                   value_range=tuple(float(v) for v in info.value_range))

    def param_groups(self, weight_decay: float) -> list[dict]:
        # Hebbian weights must never decay: see the module docstring.
        return [{"params": [self.W], "weight_decay": 0.0}]

    # ------------------------------------------------------------------ spins and images

    def to_spins(self, images: Tensor) -> Tensor:
        """Images (n, ...) in ``config.value_range`` -> (n, N) of ±1: +1 above the middle of the range."""
        x = images.reshape(images.shape[0], -1)
        if x.shape[1] != self.config.n_units:
            raise DataError(f"the Hopfield network has N={self.config.n_units} units but the images have "
                            f"{x.shape[1]} values each")
        middle = 0.5 * (self.config.value_range[0] + self.config.value_range[1])
        return torch.where(x.to(self.W.dtype).to(self.W.device) > middle, 1.0, -1.0)

    def to_images(self, spins: Tensor) -> Tensor:
        """Spins (..., N) -> images (..., *image_shape) in ``config.value_range`` (-1 -> low, +1 -> high)."""
        low, high = self.config.value_range
        shape = self.config.image_shape or (self.config.n_units,)
        return (low + (spins + 1.0) * 0.5 * (high - low)).reshape(*spins.shape[:-1], *shape)

    # ------------------------------------------------------------------ the shared capability API

    @property
    def stored(self) -> Tensor:
        """The stored patterns so far, (n_stored, N) of ±1."""
        return self.memories[: int(self.n_stored)]

    @torch.no_grad()
    def store(self, patterns: Tensor) -> None:
        """Add ``patterns`` (P, N) of ±1 by ``config.rule``: Hebbian W += (1/N) Σ ξξᵀ (diagonal kept at zero),
        or the projection rule recomputed over all stored patterns.

        Storing all patterns at once or in any split gives the same W. Raises ConfigError when the memory
        (``config.n_patterns`` rows) would overflow.
        """
        patterns = _check_spins(patterns.to(self.W.device, self.W.dtype), self.config.n_units, "patterns")
        self._store(patterns, torch.full((patterns.shape[0],), -1, dtype=torch.long, device=patterns.device))

    def _store(self, patterns: Tensor, labels: Tensor) -> None:
        start, count = int(self.n_stored), patterns.shape[0]
        if start + count > self.config.n_patterns:
            raise ConfigError(f"cannot store {count} more pattern(s): {start} of model.n_patterns="
                              f"{self.config.n_patterns} are used; build the network with a larger n_patterns")
        if count == 0:
            return
        self.memories[start:start + count] = patterns
        if self.config.rule == "hebbian":
            self.W.add_(hebbian_weights(patterns))
        else:
            self.W.copy_(projection_weights(self.memories[:start + count]))
        self.memory_labels[start:start + count] = labels.to(self.memory_labels.device)
        self.n_stored.fill_(start + count)

    def energy(self, state: Tensor) -> Tensor:
        """E(s) = -½ sᵀWs for state (n, N) -> (n,) or (N,) -> scalar."""
        return energy(self.W.detach(), state.to(self.W.device, self.W.dtype))

    @torch.no_grad()
    def recall(self, state: Tensor, *, steps: int | None = None, mode: str | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Run recall from ``state`` (n, N) of ±1; returns (states (steps+1, n, N), energies (steps+1, n)).

        ``mode`` is ``"async"`` (random-order sweeps; the energy never increases) or ``"sync"``; defaults
        come from the config.
        """
        state = _check_spins(state.to(self.W.device, self.W.dtype), self.config.n_units, "state")
        return run_recall(self.W.detach(), state, steps=self.config.recall_steps if steps is None else int(steps),
                          mode=mode or self.config.mode, generator=generator)

    # ------------------------------------------------------------------ training: one Hebbian pass

    def _wanted(self, labels: Tensor | None, count: int) -> Tensor:
        """Indices of the batch rows still to store (the first free slots; one per new class)."""
        free = self.config.n_patterns - int(self.n_stored)
        if free <= 0:
            return torch.zeros(0, dtype=torch.long)
        if not self.config.one_per_class or labels is None:
            return torch.arange(min(free, count))
        have = set(self.memory_labels[: int(self.n_stored)].tolist())
        chosen = []
        for index, label in enumerate(labels.tolist()):
            if label < self.config.n_patterns and label not in have:  # classes 0 .. n_patterns-1
                chosen.append(index)
                have.add(label)
        return torch.tensor(chosen, dtype=torch.long)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Store the batch rows still wanted (Hebbian, no gradient); loss = mean energy per unit of the batch.

        The loss's gradient is exactly zero (see the module docstring), so the optimizer never moves ``W``.
        Logs ``n_stored`` and ``energy_per_unit``.
        """
        x, labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        spins = self.to_spins(x)
        if self.config.one_per_class and labels is not None and bool((labels < 0).any()):
            labels = None  # unlabelled data: store the first examples instead
        with torch.no_grad():
            rows = self._wanted(labels, spins.shape[0]).to(spins.device)
            chosen_labels = labels[rows] if labels is not None else torch.full_like(rows, -1)
            self._store(spins[rows], chosen_labels)
            mean_energy = float(energy(self.W, spins).mean()) / self.config.n_units
        # Zero gradient, value = the monitored energy: the Trainer's backward/step leave W as stored.
        loss = (self.W * 0.0).sum() + mean_energy
        return loss, {"n_stored": float(self.n_stored), "energy_per_unit": mean_energy}

    # ------------------------------------------------------------------ recall quality

    @torch.no_grad()
    def recall_stats(self, *, corruption: float | None = None, steps: int | None = None, mode: str | None = None,
                     trials: int | None = None, generator: torch.Generator | None = None) -> dict[str, float]:
        """Recall of the stored patterns from ``trials`` corrupted copies each.

        Keys: ``recall_accuracy_pct`` (recalls ending exactly on the pattern), ``recall_success_pct`` (final
        overlap >= ``success_overlap``), ``overlap`` (mean final overlap), ``start_overlap`` (mean overlap of
        the corrupted starts), ``bit_error_pct`` (wrong units after recall), ``energy_drop_per_unit``,
        ``corruption``, ``n_stored``, ``load`` (P/N).
        """
        cfg = self.config
        stored = self.stored
        if stored.shape[0] == 0:
            raise ConfigError("the Hopfield network has no stored patterns yet; train it (genlab train "
                              "hopfield) or call store(patterns) first")
        corruption = cfg.corruption if corruption is None else float(corruption)
        trials = cfg.trials if trials is None else int(trials)
        if generator is None:
            generator = torch.Generator(device=self.W.device).manual_seed(0)
        targets = stored.repeat(trials, 1)
        start = corrupt(targets, corruption, generator)
        states, energies = self.recall(start, steps=steps, mode=mode, generator=generator)
        final = overlap(states[-1], targets)
        return {
            "recall_accuracy_pct": 100.0 * float((states[-1] == targets).all(1).float().mean()),
            "recall_success_pct": 100.0 * float((final >= cfg.success_overlap).float().mean()),
            "overlap": float(final.mean()),
            "start_overlap": float(overlap(start, targets).mean()),
            "bit_error_pct": 100.0 * float((states[-1] != targets).float().mean()),
            "energy_drop_per_unit": float((energies[0] - energies[-1]).mean()) / cfg.n_units,
            "corruption": corruption,
            "n_stored": float(stored.shape[0]),
            "load": stored.shape[0] / cfg.n_units,
        }

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        """Recall statistics of the stored patterns at ``config.corruption`` (fixed seed); the batches are
        not needed: a Hopfield network is judged on what it stored."""
        if int(self.n_stored) == 0:
            return {"n_stored": 0.0}
        return self.recall_stats()

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 **options: Any) -> dict[str, float]:
        """Corrupted-pattern recall of the stored patterns (see :meth:`recall_stats` for the keys).

        Options: ``corruption``, ``steps``, ``mode``, ``trials``. The test batches are not used.
        """
        unknown = set(options) - {"corruption", "steps", "mode", "trials"}
        if unknown:
            raise ConfigError(f"Hopfield.evaluate got unknown option(s): {', '.join(sorted(unknown))}; "
                              "valid: corruption, steps, mode, trials")
        return self.recall_stats(generator=generator, **options)

    # ------------------------------------------------------------------ sampling and pictures

    def _recall_from_memories(self, n: int, generator: torch.Generator | None, steps: int | None,
                              corruption: float | None, mode: str | None) -> tuple[Tensor, Tensor]:
        """Corrupted copies of the stored patterns (cycled to ``n``) and their recall trajectories."""
        if n < 1:
            raise ConfigError(f"number of samples must be >= 1, got {n}")
        stored = self.stored
        if stored.shape[0] == 0:
            raise ConfigError("the Hopfield network has no stored patterns to recall; train it first")
        targets = stored[torch.arange(n, device=stored.device) % stored.shape[0]]
        start = corrupt(targets, self.config.corruption if corruption is None else float(corruption), generator)
        return start, self.recall(start, steps=steps, mode=mode, generator=generator)[0]

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, steps: int | None = None,
               corruption: float | None = None, mode: str | None = None, **kwargs: Any) -> Tensor:
        """Recall results for ``n`` corrupted copies of the stored patterns (cycled), as images (n, *shape)."""
        if kwargs:
            raise ConfigError(f"Hopfield.sample got unknown option(s): {', '.join(sorted(kwargs))}; "
                              "valid: steps, corruption, mode")
        return self.to_images(self._recall_from_memories(n, generator, steps, corruption, mode)[1][-1])

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """Stored patterns, their corrupted copies and what recall made of them (one row per pattern)."""
        if int(self.n_stored) == 0:
            return {}
        count = min(n, int(self.n_stored))
        start, states = self._recall_from_memories(count, generator, None, None, None)
        return {"memories": self.to_images(self.stored[:count]), "corrupted": self.to_images(start),
                "recalled": self.to_images(states[-1])}
