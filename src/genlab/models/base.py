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
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genlab.data.info import DataInfo  # noqa: F401  (models are built from it; re-exported for them)

SINGLE_OPTIMIZER = "model"  # the name of the one optimizer of a model that does not declare several


def decay_groups(parameters, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups with weight decay on matrices (ndim >= 2) only, not on biases or scales."""
    parameters = [p for p in parameters if p.requires_grad]
    groups = [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay}]
    no_decay = [p for p in parameters if p.ndim < 2]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class GenerativeModel(nn.Module, abc.ABC):
    """Base class. Subclasses set ``config`` (a dataclass) and implement ``loss`` and ``sample``."""

    registry_name: ClassVar[str] = ""
    kind: ClassVar[str] = "image"  # "image": sample() returns (n, C, H, W) in data range; "text": token ids
    # Whether bf16 autocast on CUDA is safe for this model (CD statistics and AIS want full precision).
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

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called by the Trainer with the optimizer it steps. Models that roll themselves back after a divergence
        keep it to roll its state (e.g. Adam's moments) back too; the default ignores it."""

    def divergence(self, logs: dict[str, float]) -> str | None:
        """A sentence naming a divergence this model can see in one training step's ``logs`` (what ``loss``
        returned) although the loss stayed finite, or None when healthy. The Trainer asks every
        ``train.log_every`` steps, beside its own parameter-norm check; the default sees nothing."""
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for per-epoch model state (e.g. annealed sampler settings)."""
