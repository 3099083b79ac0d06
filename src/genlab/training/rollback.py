"""Roll-back after a divergence: the last good snapshot of a model and its optimizers, kept by the Trainer.

A model that can tell from one training forward pass that its state went bad declares a
:class:`~genlab.models.base.RollbackPolicy`; the Trainer then keeps a :class:`Rollback` beside its optimizers.
A :class:`Snapshot` is the model's ``state_dict()`` (parameters and buffers), its ``extra_state()`` (replay
buffer, counters: this process's own), every optimizer's per-parameter state (Adam's moments, which after a
blow-up carry the exploded gradients) and the step it was taken at. The optimizers' param_groups (learning
rates) are not in it: they stay with the schedule. Restoring copies everything back in place, so the optimizers
keep their parameter references.

When: one snapshot before the first step, then one every ``snapshot_every`` steps right after a step's first
forward pass passed its check (before any update of that step: a check judges the state the step started from,
so the snapshot holds a state a check has passed, with that forward pass's side effects such as a replay-buffer
push). After a roll-back the snapshot is retaken with what ``after_rollback`` changed (a smaller step size), so
a second roll-back before the next snapshot builds on it.

The snapshot and the count of roll-backs are plain tensors and values (``torch.load(weights_only=True)`` reads
them), so they travel in the Trainer's checkpointed state and a resumed run rolls back exactly as an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.errors import CheckpointError
from genlab.models.base import GenerativeModel, RollbackPolicy
from genlab.training.tensor_tree import map_tensors


@dataclass
class Snapshot:
    """The state a roll-back returns to.

    ``step``: training steps the weights had taken when it was taken. ``model``: ``model.state_dict()`` (name ->
    tensor). ``extra``: ``model.extra_state()``. ``optimizers``: optimizer name -> its ``state_dict()["state"]``
    (parameter index -> per-parameter tensors such as ``exp_avg``; empty before its first step).
    """

    step: int
    model: dict[str, Tensor]
    extra: dict[str, Any]
    optimizers: dict[str, dict]


def _cloned(value: Any) -> Any:
    """A copy of ``value`` whose tensors share no memory with it (dicts, lists and tuples copied through)."""
    return map_tensors(lambda tensor: tensor.detach().clone(), value)


class Rollback:
    """The last good :class:`Snapshot` of ``model`` and ``optimizers`` (name -> optimizer) under ``policy``, and
    ``recoveries``: the roll-backs of this run so far."""

    def __init__(self, model: GenerativeModel, optimizers: dict[str, torch.optim.Optimizer],
                 policy: RollbackPolicy):
        self.model = model
        self.optimizers = optimizers
        self.policy = policy
        self.good: Snapshot | None = None
        self.recoveries = 0

    @property
    def exhausted(self) -> bool:
        """Whether the next problem stops the run (``max_recoveries`` roll-backs done; at once for 0)."""
        return self.recoveries >= self.policy.max_recoveries

    # -- snapshots -----------------------------------------------------------------------------------------
    def start(self, step: int) -> None:
        """Before a step: snapshot the state training starts from, unless a snapshot is held (or none is needed)."""
        if self.good is None and self.policy.max_recoveries > 0:
            self.good = self._capture(step)

    def passed(self, step: int) -> None:
        """The first forward pass of step ``step`` (0-based: the weights have taken ``step`` steps) passed its
        check: snapshot when due, i.e. at multiples of ``snapshot_every`` not yet held."""
        if self.policy.max_recoveries == 0 or step % self.policy.snapshot_every:
            return
        if self.good is None or self.good.step != step:
            self.good = self._capture(step)

    def _capture(self, step: int) -> Snapshot:
        return Snapshot(step=step, model=_cloned(self.model.state_dict()),
                        extra=_cloned(self.model.extra_state()),
                        optimizers={name: _cloned(optimizer.state_dict()["state"])
                                    for name, optimizer in self.optimizers.items()})

    # -- rolling back --------------------------------------------------------------------------------------
    def roll_back(self, problem: str) -> str:
        """Restore the last good snapshot, let the model adapt (``after_rollback(problem)``) and keep its changes
        in the snapshot. Returns the model's note on what it changed."""
        if self.good is None:
            raise RuntimeError("Rollback.roll_back before any snapshot: call start() before the first step")
        self._restore(self.good)
        self.recoveries += 1
        note = self.model.after_rollback(problem)
        self.good = self._capture(self.good.step)
        return note

    def _restore(self, snapshot: Snapshot) -> None:
        self.model.load_state_dict(snapshot.model)  # copies in place: the optimizers keep their parameters
        # Cloned: a model may keep what it is given and change it later (a replay buffer's storage).
        self.model.load_extra_state(_cloned(snapshot.extra))
        for name, optimizer in self.optimizers.items():
            groups = optimizer.state_dict()["param_groups"]  # this run's learning rates, where the schedule is
            optimizer.load_state_dict({"state": _cloned(snapshot.optimizers[name]), "param_groups": groups})
        for parameter in self.model.parameters():
            # The gradients are the bad step's; the redone step must not see them (e.g. as "the previous step's").
            parameter.grad = None

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What every process shares: ``recoveries`` and the snapshot's ``step``, ``model`` and ``optimizers``
        (None before the first snapshot). The snapshot's ``extra`` is per process: :meth:`rank_state_dict`."""
        good = self.good
        snapshot = None if good is None else {"step": good.step, "model": good.model, "optimizers": good.optimizers}
        return {"recoveries": self.recoveries, "snapshot": snapshot}

    def rank_state_dict(self) -> dict[str, Any] | None:
        """This process's part of the snapshot: the model's ``extra_state()`` it holds (None without one)."""
        return None if self.good is None else self.good.extra

    def load_state_dict(self, state: dict[str, Any] | None, rank_state: dict[str, Any] | None) -> None:
        """Restore what :meth:`state_dict` and :meth:`rank_state_dict` returned. ``state`` None: a checkpoint
        written without a roll-back policy or before the Trainer kept roll-backs; this run then takes its first
        snapshot when it continues and counts its roll-backs from 0."""
        if state is None:
            return
        self.recoveries = int(state["recoveries"])
        saved = state.get("snapshot")
        if saved is None:
            self.good = None
            return
        if set(saved["model"]) != set(self.model.state_dict()) or set(saved["optimizers"]) != set(self.optimizers):
            raise CheckpointError("the roll-back snapshot in the checkpoint does not match this model and its "
                                  "optimizers; it was written by another model. Start a new run")
        self.good = Snapshot(step=int(saved["step"]), model=saved["model"], extra=rank_state or {},
                             optimizers=saved["optimizers"])
