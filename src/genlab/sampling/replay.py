"""A replay buffer of Langevin samples: persistent short-run chains for energy-based-model training.

Each training batch of negatives starts from the buffer, except for a ``fresh_fraction`` of chains (5% in Du &
Mordatch 2019) restarted from uniform noise so the buffer keeps exploring. After Langevin the new samples go back
in, newest first, and the oldest fall out once ``capacity`` is reached (the seed keeps the newest 8192).

Storage is one preallocated (capacity, *shape) tensor used as a ring, so drawing and pushing are index
operations with no Python lists. The whole state is plain tensors and ints (:meth:`state_dict`), so a training
checkpoint restores it exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from genlab.errors import CheckpointError, ConfigError


class ReplayBuffer:
    """FIFO of up to ``capacity`` samples of shape ``shape`` with values in ``value_range``.

    ``draw(n)`` returns (n, *shape): each row independently is fresh uniform noise with probability
    ``fresh_fraction`` (so the fresh count is Binomial(n, fresh_fraction), as in the seed) and otherwise a uniformly
    chosen stored sample (with replacement). An empty buffer yields only fresh noise.
    """

    def __init__(self, capacity: int, shape: tuple[int, ...], *, fresh_fraction: float = 0.05,
                 value_range: tuple[float, float] = (-1.0, 1.0), device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"replay buffer size must be an integer >= 1, got {capacity!r}")
        if not (isinstance(fresh_fraction, (int, float)) and 0.0 <= float(fresh_fraction) <= 1.0):
            raise ConfigError(f"replay buffer fresh-noise fraction must be in [0, 1], got {fresh_fraction!r}")
        low, high = float(value_range[0]), float(value_range[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"replay buffer value range must be (low, high) with low < high, got {value_range!r}")
        self.capacity = capacity
        self.shape = tuple(int(s) for s in shape)
        self.fresh_fraction = float(fresh_fraction)
        self.low, self.high = low, high
        self.storage = torch.empty((0, *self.shape), device=device, dtype=dtype)  # allocated on first push
        self.size = 0  # filled slots
        self.head = 0  # the slot the next sample is written to; the newest sample is at head - 1

    # ------------------------------------------------------------------ sampling

    def uniform(self, n: int, *, device: torch.device | str | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """(n, *shape) i.i.d. uniform noise on the value range."""
        device = self.storage.device if device is None else torch.device(device)
        source = generator.device if generator is not None else device
        noise = torch.rand((n, *self.shape), generator=generator, device=source, dtype=self.storage.dtype)
        return (noise * (self.high - self.low) + self.low).to(device)

    def draw(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """(n, *shape) chain starts: fresh noise with probability ``fresh_fraction`` per row, else buffer rows."""
        if n < 1:
            raise ConfigError(f"cannot draw {n} samples from a replay buffer; need n >= 1")
        device = self.storage.device
        source = generator.device if generator is not None else device
        starts = self.uniform(n, generator=generator)
        if self.size == 0:
            return starts
        fresh = torch.rand(n, generator=generator, device=source) < self.fresh_fraction
        index = torch.randint(0, self.size, (n,), generator=generator, device=source)
        keep = ~fresh.to(device)
        starts[keep] = self.storage[index.to(device)[keep]]
        return starts

    def push(self, samples: Tensor) -> None:
        """Store ``samples`` (m, *shape); beyond ``capacity`` the oldest are overwritten (only the newest m kept
        when m > capacity)."""
        if tuple(samples.shape[1:]) != self.shape:
            raise ConfigError(f"replay buffer holds samples of shape {self.shape}, got {tuple(samples.shape[1:])}")
        samples = samples.detach()
        if self.storage.shape[0] != self.capacity:
            self.storage = torch.empty((self.capacity, *self.shape), device=samples.device, dtype=samples.dtype)
        samples = samples[-self.capacity:].to(device=self.storage.device, dtype=self.storage.dtype)
        slots = (self.head + torch.arange(samples.shape[0], device=self.storage.device)) % self.capacity
        self.storage[slots] = samples
        self.head = (self.head + samples.shape[0]) % self.capacity
        self.size = min(self.capacity, self.size + samples.shape[0])

    def newest(self, n: int) -> Tensor:
        """The ``min(n, size)`` most recently pushed samples, newest first, (k, *shape)."""
        k = min(n, self.size)
        slots = (self.head - 1 - torch.arange(k, device=self.storage.device)) % self.capacity
        return self.storage[slots].clone()

    def __len__(self) -> int:
        return self.size

    def to(self, device: torch.device | str) -> "ReplayBuffer":
        self.storage = self.storage.to(device)
        return self

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """The filled slots as a CPU tensor plus the ring position; restores exactly via :meth:`load_state_dict`."""
        return {"samples": self.storage[: self.size].detach().cpu().clone(), "head": int(self.head),
                "size": int(self.size), "capacity": int(self.capacity)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        samples = torch.as_tensor(state["samples"])
        size, head, capacity = int(state["size"]), int(state["head"]), int(state["capacity"])
        if capacity != self.capacity or tuple(samples.shape[1:]) != self.shape or samples.shape[0] != size:
            raise CheckpointError(
                f"replay buffer in the checkpoint ({capacity} slots of {tuple(samples.shape[1:])}, {size} filled) "
                f"does not fit this model's buffer ({self.capacity} slots of {self.shape})")
        if not 0 <= head < capacity or size > capacity:
            raise CheckpointError(f"replay buffer state is inconsistent (head {head}, size {size}, "
                                  f"capacity {capacity})")
        device, dtype = self.storage.device, self.storage.dtype
        self.storage = torch.empty((capacity, *self.shape), device=device, dtype=dtype) if size else \
            torch.empty((0, *self.shape), device=device, dtype=dtype)
        if size:
            self.storage[:size] = samples.to(device=device, dtype=dtype)
        self.size, self.head = size, head
