"""The DBN as a classifier: a pretrained stack fine-tuned by backpropagation (``dbn-classifier``).

Hinton & Salakhutdinov (2006), "Reducing the dimensionality of data with neural networks", Science: the greedy
stack of :mod:`genlab.models.dbn` (pretrained in the same run, or loaded from a ``dbn`` run with
``model.init_from``) becomes a feed-forward ``n_0 - n_1 - ... - n_L - classes`` network trained by
cross-entropy, optionally with dropout (Srivastava et al. 2014), while the generative DBN is kept for sampling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import CheckpointError, ConfigError, DataError, check_config
from genlab.models.base import DataInfo, GenerativeModel
from genlab.models.dbn import DBN
from genlab.models.dbn_config import DBNConfig, _check_data, _images_and_labels, l2_penalty
from genlab.registry import register


@dataclass
class DBNClassifierConfig:
    """A DBN stack fine-tuned by backpropagation as a ``layers[0] - ... - layers[-1] - classes`` classifier."""

    dbn: DBNConfig = field(default_factory=DBNConfig)  # the stack; its epoch settings are the pretraining
    pretrain: bool = True  # greedy-pretrain (and up-down, if set) the DBN in this run before fine-tuning
    init_from: str | None = None  # a `dbn` run or checkpoint directory to start from instead of pretraining
    n_classes: int = 10  # set from the data
    finetune_lr_scale: float = 1.0  # multiplies the cross-entropy (with SGD: the fine-tuning learning rate)
    finetune_lr_decay: float = 1.0  # ... times this per fine-tuning epoch (the Trainer's schedule spans all stages)
    # Dropout while fine-tuning (Srivastava et al. 2014, section 6.1.1 fine-tunes pretrained DBNs this way): the
    # probability of dropping an input pixel and a hidden unit. Inverted dropout, so the pretrained weights need
    # no rescaling and evaluation uses them as they are.
    finetune_input_dropout: float = 0.0
    finetune_dropout: float = 0.0
    # L2 penalty (weight_decay / 2) * sum of squared weights added to the fine-tuning cross-entropy, so it is
    # scaled by the same learning rate (the optimiser's weight decay serves the pretraining stages only).
    finetune_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_config(self.n_classes >= 2, f"model.n_classes must be >= 2, got {self.n_classes}")
        check_config(self.finetune_lr_scale > 0.0, f"model.finetune_lr_scale must be > 0, got {self.finetune_lr_scale}")
        check_config(0.0 < self.finetune_lr_decay <= 1.0,
               f"model.finetune_lr_decay must be in (0, 1], got {self.finetune_lr_decay}")
        check_config(not self.init_from or str(self.init_from).strip(), "model.init_from must be a run directory")
        check_config(self.finetune_weight_decay >= 0.0,
               f"model.finetune_weight_decay must be >= 0, got {self.finetune_weight_decay}")
        for name in ("finetune_input_dropout", "finetune_dropout"):
            value = getattr(self, name)
            check_config(0.0 <= value < 1.0, f"model.{name} must be in [0, 1), got {value}")

    @property
    def pretrain_epochs(self) -> int:
        """Epochs of DBN training before backprop: none when starting from ``init_from`` or randomly."""
        return self.dbn.total_epochs if self.pretrain and not self.init_from else 0

    @property
    def has_generative(self) -> bool:
        return bool(self.pretrain or self.init_from)


def _dbn_checkpoint(path: str) -> tuple[DBNConfig, dict[str, Tensor]]:
    """The config and weights of the ``dbn`` run (or checkpoint) at ``path``."""
    from genlab.config import build_run_config
    from genlab import checkpoint_files as ckpt

    location = Path(path).expanduser()
    try:
        model_file = location if location.is_file() else ckpt.latest_checkpoint(location) / ckpt.MODEL_FILE
        tensors, run_config = ckpt.read_model_file(model_file)
        config = build_run_config(run_config)
    except (CheckpointError, ConfigError) as exc:
        raise ConfigError(f"model.init_from={path}: {exc}") from None
    if config.model_name == "dbn-classifier":
        # A classifier run keeps its pretrained generative DBN unchanged under ``dbn.``: fine-tune again from it.
        if not config.model.has_generative:
            raise ConfigError(f"model.init_from={path} is a dbn-classifier run without a pretrained DBN")
        return config.model.dbn, {k[len("dbn."):]: v for k, v in tensors.items() if k.startswith("dbn.")}
    if config.model_name != "dbn":
        raise ConfigError(f"model.init_from={path} is a {config.model_name} run; it must be a dbn or "
                          "dbn-classifier run")
    return config.model, tensors


@register("dbn-classifier", config=DBNClassifierConfig, default_dataset="mnist", default_preset="dbn-hinton2006",
          description="DBN pretraining + backprop fine-tuning as a classifier (784-500-500-2000-10); test error %")
class DBNClassifier(GenerativeModel):
    """``dbn`` (the generative :class:`DBN`, kept for sampling) and a feed-forward copy of its recognition
    path: ``hidden[l]`` = Linear(n_l, n_{l+1}) with sigmoid units, then ``head`` = Linear(n_L, n_classes).

    Phases by epoch: the first ``config.pretrain_epochs`` train the DBN (its own stages); then the feed-forward
    net is initialised from it (the top RBM's label weights give the head, as p(label | top) of the top RBM)
    and trained by cross-entropy. Without pretraining or ``init_from`` the net keeps its random init.
    """

    ddp_find_unused_parameters = True  # only the current stage's parameters get gradients

    kind = "image"
    supports_amp = False

    @property
    def label_count(self) -> int:
        return int(self.config.n_classes)

    def __init__(self, config: DBNClassifierConfig):
        super().__init__(config)
        layers = tuple(config.dbn.layers)
        self.dbn = DBN(config.dbn)
        self.hidden = nn.ModuleList([nn.Linear(layers[l], layers[l + 1]) for l in range(len(layers) - 1)])
        self.head = nn.Linear(layers[-1], config.n_classes)
        self.register_buffer("finetuning", torch.zeros((), dtype=torch.bool))
        self.pretraining = config.pretrain_epochs > 0
        self.loss_scale = config.finetune_lr_scale  # of the cross-entropy, set per epoch by on_epoch_start

    @classmethod
    def adapt_config(cls, config: DBNClassifierConfig, info: DataInfo) -> DBNClassifierConfig:
        """Adopt the architecture of ``init_from``'s DBN, check it against the data, take the class count."""
        dbn = _dbn_checkpoint(config.init_from)[0] if config.init_from else config.dbn
        _check_data(dbn.layers, dbn.n_labels, info, "DBN classifier")
        if info.num_classes < 2:
            raise ConfigError("the DBN classifier needs labelled data with at least 2 classes")
        return dataclasses.replace(config, dbn=dbn, n_classes=info.num_classes)

    @torch.no_grad()
    def init_from_data(self, batches: Iterable[Any]) -> None:
        if self.config.init_from:
            config, tensors = _dbn_checkpoint(self.config.init_from)
            if tuple(config.layers) != tuple(self.config.dbn.layers) or config.n_labels != self.config.dbn.n_labels:
                raise ConfigError(f"model.init_from={self.config.init_from} has layers {list(config.layers)} with "
                                  f"{config.n_labels} labels, not {list(self.config.dbn.layers)}")
            self.dbn.load_state_dict(tensors, strict=True)  # adapt_config gave self.dbn this architecture
        elif self.config.pretrain:
            self.dbn.init_from_data(batches)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay for the DBN's pretraining only. The fine-tuning loss is scaled by ``loss_scale`` (its
        learning rate), which a fixed decay term would not follow: it would shrink the net as the scale decays."""
        groups = self.dbn.param_groups(weight_decay)
        net = [p for name, p in self.named_parameters() if not name.startswith("dbn.") and p.requires_grad]
        groups.append({"params": net, "weight_decay": 0.0})
        return groups

    def extra_state(self) -> dict[str, Any]:
        return self.dbn.extra_state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.dbn.load_extra_state(state)

    def on_epoch_start(self, epoch: int) -> None:
        self.pretraining = epoch < self.config.pretrain_epochs
        finetune_epoch = max(0, epoch - self.config.pretrain_epochs)
        self.loss_scale = self.config.finetune_lr_scale * self.config.finetune_lr_decay ** finetune_epoch
        if self.pretraining:
            self.dbn.on_epoch_start(epoch)
        elif not bool(self.finetuning):
            if self.config.has_generative:
                self.copy_from_dbn()
            self.finetuning.fill_(True)

    @torch.no_grad()
    def copy_from_dbn(self) -> None:
        """Initialise the feed-forward net from the DBN's recognition weights (the top RBM without labels)."""
        pen = self.config.dbn.pen_size
        for layer, rbm in enumerate(self.dbn.rbms):
            self.hidden[layer].weight.copy_(rbm.W[:, : self.config.dbn.layers[layer]])  # top: without labels
            self.hidden[layer].bias.copy_(rbm.c)
        if self.config.dbn.n_labels == self.config.n_classes:
            # log p(label = k | h) = b_k + Σ_j W_jk h_j + const in the top RBM: the same affine map.
            self.head.weight.copy_(self.dbn.top.W[:, pen:].T)
            self.head.bias.copy_(self.dbn.top.b[pen:])

    def logits(self, x: Tensor) -> Tensor:
        """Class scores (B, n_classes) of images (B, ...) in [0, 1]; with dropout in training mode only."""
        h = x.reshape(x.shape[0], -1).to(self.head.weight.dtype)
        h = F.dropout(h, self.config.finetune_input_dropout, self.training)
        for layer in self.hidden:
            h = F.dropout(torch.sigmoid(layer(h)), self.config.finetune_dropout, self.training)
        return self.head(h)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """DBN pretraining loss, then ``finetune_lr_scale · finetune_lr_decay^(fine-tuning epoch)`` × (cross-entropy
        + the optional L2 penalty) (logs ``ce_nats``, ``error_pct``, ``l2_penalty``)."""
        if self.pretraining:
            return self.dbn.loss(batch)
        x, y = self._labelled(batch)
        logits = self.logits(x)
        ce = F.cross_entropy(logits, y)
        error = (logits.detach().argmax(1) != y).float().mean()
        logs = {"ce_nats": float(ce.detach()), "error_pct": 100.0 * float(error)}
        if self.config.finetune_weight_decay:
            weights = [layer.weight for layer in [*self.hidden, self.head]]
            penalty = l2_penalty(self.config.finetune_weight_decay, weights)
            logs["l2_penalty"] = float(penalty.detach())
            return self.loss_scale * (ce + penalty), logs
        return self.loss_scale * ce, logs

    def _labelled(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = _images_and_labels(batch, self.config.dbn.layers[0], "DBN classifier")
        if y is None or bool(((y < 0) | (y >= self.config.n_classes)).any()):
            raise DataError(f"the DBN classifier needs labels in 0..{self.config.n_classes - 1} with every image")
        return x.to(self.head.weight.device), y.to(self.head.weight.device).long()

    @torch.no_grad()
    def _classification(self, batches: Iterable[Any], generative: bool) -> dict[str, float]:
        ce = errors = generative_errors = 0.0
        count = 0
        for batch in batches:
            x, y = self._labelled(batch)
            logits = self.logits(x)
            ce += float(F.cross_entropy(logits, y, reduction="sum"))
            errors += float((logits.argmax(1) != y).sum())
            if generative:
                generative_errors += float((self.dbn.label_free_energies(x).argmin(1) != y).sum())
            count += x.shape[0]
        if count == 0:
            raise DataError("the DBN classifier got no examples to evaluate")
        result = {"ce_nats": ce / count, "error_pct": 100.0 * errors / count, "n": float(count)}
        if generative:
            result["generative_error_pct"] = 100.0 * generative_errors / count
        return result

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        if self.pretraining:
            return self.dbn.validate(batches)
        result = self._classification(batches, generative=False)
        result.pop("n")
        return result

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 **options: Any) -> dict[str, float]:
        """``test_error_pct`` and ``test_ce_nats`` of the fine-tuned net, ``n_test``, and
        ``test_generative_error_pct`` (free-energy classification by the DBN) when it has matching labels."""
        if options:
            raise ConfigError(f"DBNClassifier.evaluate takes no options, got {', '.join(sorted(options))}")
        generative = self.config.has_generative and self.config.dbn.n_labels == self.config.n_classes
        result = self._classification(test_batches, generative)
        return {f"test_{key}" if key != "n" else "n_test": value for key, value in result.items()}

    def _generative(self) -> DBN:
        if not self.config.has_generative:
            raise ConfigError("this dbn-classifier was trained from a random init, so it has no generative DBN to "
                              "sample from; pretrain it (model.pretrain=true) or start from model.init_from")
        return self.dbn

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Samples of the generative DBN the classifier was initialised from (see :meth:`DBN.sample`)."""
        return self._generative().sample(n, generator=generator, **kwargs)

    @torch.no_grad()
    def sample_chain(self, n: int, *, steps: int, **kwargs: Any) -> Tensor:
        """Gibbs chain frames of the generative DBN (see :meth:`DBN.sample_chain`)."""
        return self._generative().sample_chain(n, steps=steps, **kwargs)

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        if self.pretraining:
            return self.dbn.snapshots(n, generator=generator, batch=batch)
        weights = self.hidden[0].weight.detach()[:100]
        return {"filters": weights.reshape(weights.shape[0], *self.dbn.image_shape)}
