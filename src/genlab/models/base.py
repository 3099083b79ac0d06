"""The one model contract every genlab model follows.

A model is an ``nn.Module`` built from a typed config dataclass. The Trainer calls
``loss(batch) -> (loss, logs)``; samplers call ``sample(n)``. Models whose learning rule is not a plain
gradient (contrastive divergence for RBMs) express it as a surrogate loss whose gradient *is* the update,
so optimizers, DDP all-reduce and checkpoints need no special case.

Models that step several optimizers in turn (a GAN's discriminator and generator) declare them by name in
:meth:`GenerativeModel.optimizer_param_groups` and say which run at each step in
:meth:`GenerativeModel.training_phases`; the Trainer then calls ``forward(batch, phase=name, step=step)``, backs
the returned loss up and steps that optimizer, once per phase. One Trainer, one set of callbacks, checkpoints,
DDP and AMP serve both kinds.

Models that can tell from one training forward pass that their state went bad (an EBM whose energies exploded)
declare a :class:`RollbackPolicy` in :meth:`GenerativeModel.rollback_policy` and name the problem in
:meth:`GenerativeModel.step_problem`; the Trainer then keeps a snapshot of the last good state (weights, buffers,
``extra_state``, every optimizer's moments), restores it on a problem (on every process together), calls
:meth:`GenerativeModel.after_rollback` and redoes the step on the same batch (:mod:`genlab.training.rollback`).
A model never steps an optimizer or undoes a step itself.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genlab.data.info import DataInfo  # noqa: F401  (models are built from it; re-exported for them)
from genlab.errors import check_config

SINGLE_OPTIMIZER = "model"  # the name of the one optimizer of a model that does not declare several


def decay_groups(parameters, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups with weight decay on matrices (ndim >= 2) only, not on biases or scales."""
    parameters = [p for p in parameters if p.requires_grad]
    groups = [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay}]
    no_decay = [p for p in parameters if p.ndim < 2]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@dataclass(frozen=True)
class RollbackPolicy:
    """How the Trainer rolls a model back when :meth:`GenerativeModel.step_problem` names a problem.

    ``snapshot_every``: training steps between snapshots of the last good state (one is also taken when training
    starts). ``max_recoveries``: roll-backs allowed in a run; the next problem stops it with a TrainingError (0: the
    first problem stops it, and no snapshots are taken). ``advice``: the sentence that TrainingError ends with.
    """

    snapshot_every: int = 50
    max_recoveries: int = 3
    advice: str = "Lower optim.lr, then resume from the last checkpoint."

    def __post_init__(self) -> None:
        check_config(self.snapshot_every >= 1, f"a roll-back policy's snapshot_every must be >= 1, got "
                                               f"{self.snapshot_every}")
        check_config(self.max_recoveries >= 0, f"a roll-back policy's max_recoveries must be >= 0, got "
                                               f"{self.max_recoveries}")


class GenerativeModel(nn.Module, abc.ABC):
    """Base class. Subclasses set ``config`` (a dataclass) and implement ``loss`` and ``sample``."""

    registry_name: ClassVar[str] = ""
    kind: ClassVar[str] = "image"  # "image": sample() returns (n, C, H, W) in data range; "text": token ids
    # Whether bf16 autocast of training is safe for this model (CD statistics and AIS want full precision).
    supports_amp: ClassVar[bool] = False
    # Models that train only some parameters at a time (a DBN's current layer) tell DDP to expect unused ones.
    ddp_find_unused_parameters: ClassVar[bool] = False
    # Config fields that change how, not what, the model computes (same results): a run saved with other values
    # of them is still the same run to continue (``genlab bench --resume``).
    execution_only_config_keys: ClassVar[tuple[str, ...]] = ()

    # Facts the studio and the CLI read instead of probing the weights (override where they apply).
    @property
    def label_count(self) -> int:
        """How many class labels the model can be asked for (``--label``, the studio's class selector); 0: none."""
        return 0

    @property
    def unit_count(self) -> int:
        """A network of binary units (Hopfield): the number of units; 0 for other models."""
        return 0

    @property
    def vocab_size(self) -> int:
        """A text model: the size of its character vocabulary; 0 for other models."""
        return 0

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    @classmethod
    def adapt_config(cls, config: Any, info: DataInfo) -> Any:
        """Fill in or check data-dependent config fields (input size, vocabulary). Raise ConfigError on mismatch."""
        return config

    def forward(self, batch: Any, phase: str | None = None, step: int = 0) -> tuple[Tensor, dict[str, float]]:
        # DDP only synchronises gradients of work done inside forward(), so forward *is* the loss.
        if phase is None:
            return self.loss(batch)
        return self.phase_loss(batch, phase, step)

    def optimizer_param_groups(self, weight_decay: float) -> dict[str, list[dict]]:
        """The optimizers to build, by name, each with its parameter groups. The default is one optimizer,
        ``"model"``, over :meth:`param_groups`, trained on :meth:`loss`."""
        return {SINGLE_OPTIMIZER: self.param_groups(weight_decay)}

    def training_phases(self, step: int) -> tuple[str, ...]:
        """Names of the optimizers to step, in order, at training step ``step`` (0-based), each after the
        backward pass of ``phase_loss(batch, name, step)`` on the same batch. Must depend only on ``step`` and
        the config, so a resumed run takes the same phases."""
        return (SINGLE_OPTIMIZER,)

    def after_phase_step(self, phase: str) -> None:
        """Called after the optimizer of ``phase`` stepped (e.g. to update an average of the weights)."""

    def phase_loss(self, batch: Any, phase: str, step: int) -> tuple[Tensor, dict[str, float]]:
        """The loss whose gradient the optimizer ``phase`` follows: :meth:`loss` for the one optimizer of a model
        that declares no others; models that declare several override it."""
        if phase == SINGLE_OPTIMIZER:
            return self.loss(batch)
        raise TypeError(f"{type(self).__name__} declares the optimizer phase {phase!r} but does not override "
                        "phase_loss() to say what that optimizer minimises")

    @abc.abstractmethod
    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Scalar training loss for one batch and a dict of floats to log."""

    @abc.abstractmethod
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Draw ``n`` samples."""

    @torch.no_grad()
    def validate(self, batches: Any) -> dict[str, float]:
        """Average of ``loss`` logs over validation batches; models override for richer monitors."""
        totals: dict[str, float] = {}
        count = 0
        for batch in batches:
            loss, logs = self.loss(batch)
            logs = {"loss": float(loss), **logs}
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            count += 1
        return {key: value / max(count, 1) for key, value in totals.items()}

    def evaluate(self, test_batches: Any, *, generator: torch.Generator | None = None,
                 **options: Any) -> dict[str, float]:
        """Headline test metrics for ``genlab eval`` (names carry units, e.g. ``test_loglik_nats``)."""
        return {f"test_{k}": v for k, v in self.validate(test_batches).items()}

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for the optimizer; by default weight decay applies to matrices only."""
        return decay_groups(self.parameters(), weight_decay)

    def init_from_data(self, batches: Any) -> None:
        """Called once before training starts from scratch (not on resume): data-dependent initialisation."""

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """Pictures (image tensors) or texts (str) to save during training, keyed by name.

        ``batch`` is a fixed validation batch, for reconstructions. The default is ``n`` samples.
        """
        return {"samples": self.sample(n, generator=generator)}

    def extra_state(self) -> dict[str, Any]:
        """Training state outside the weights (persistent chains, replay buffers): tensors and plain values."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def divergence(self, logs: dict[str, float]) -> str | None:
        """A sentence naming a divergence this model can see in one training step's ``logs`` (what ``loss``
        returned) although the loss stayed finite, or None when healthy. The Trainer asks every
        ``train.log_every`` steps, after the update, beside its own parameter-norm check, and stops the run on
        one; the default sees nothing. (:meth:`step_problem` is the per-step check that rolls back instead.)"""
        return None

    def rollback_policy(self) -> RollbackPolicy | None:
        """How the Trainer guards each training step with :meth:`step_problem` and rolls back to the last good
        snapshot on a problem; None (the default): no guard, no snapshots."""
        return None

    def step_problem(self, phase: str, logs: dict[str, float]) -> str | None:
        """A sentence naming what went wrong in the training forward pass that just returned ``logs`` (for the
        optimizer ``phase``; ``"model"`` for a single-optimizer model), or None when healthy. Asked only under a
        :meth:`rollback_policy`, after every training forward pass and before its backward, so it judges the
        state the step started from; a problem on any process rolls every process back."""
        return None

    def after_rollback(self, problem: str) -> str:
        """Called after the Trainer restored the last good snapshot because of ``problem`` (gradients cleared),
        before it redoes the step on the same batch: the place to make the retry gentler (a smaller step size).
        What it changes is kept by later roll-backs (the snapshot is retaken with it). Returns a few words on the
        change for the Trainer's warning ("" for none)."""
        return ""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for per-epoch model state (e.g. annealed sampler settings)."""
