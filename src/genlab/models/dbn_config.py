"""The deep belief net's configuration (:class:`DBNConfig`, its stage schedule by epoch), the checks of its data
and batches, and the weight-decay penalty it shares with ``dbn-classifier``.

Split out of :mod:`genlab.models.dbn` (which re-exports every name here); see that module for the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.errors import ConfigError, DataError, check_config
from genlab.models.base import DataInfo


@dataclass
class DBNConfig:
    """Hyper-parameters of a deep belief net (the defaults are Hinton et al. 2006's MNIST model)."""

    layers: tuple[int, ...] = (784, 500, 500, 2000)  # data, hidden 1, ..., top; at least 2 sizes
    n_labels: int = 10  # softmax label units joined to the top RBM's visible layer; 0: none
    epochs_per_layer: tuple[int, ...] = (10,)  # greedy CD epochs per RBM: one value for all, or one per RBM
    cd_k: int = 1  # Gibbs steps of CD for the lower RBMs
    top_cd_k: int = 1  # ... and for the top RBM
    pcd_epochs: int = 0  # persistent-CD epochs on the top RBM after greedy pretraining (better samples)
    pcd_lr_scale: float = 0.1  # multiplies the PCD loss (with SGD: the PCD learning rate)
    n_chains: int = 100  # persistent fantasy particles of the top RBM
    init_std: float = 0.01
    sample_steps: int = 1000  # alternating Gibbs steps in the top RBM before the down pass
    updown_epochs: int = 0  # up-down (contrastive wake-sleep) fine-tuning after pretraining; 0: none
    # Gibbs steps in the top RBM during up-down: one value, or a schedule whose values take equal consecutive
    # shares of the up-down epochs (Hinton et al. 2006: 3, then 6, then 10, a hundred epochs each).
    updown_cd_k: tuple[int, ...] = (3,)
    # The top RBM's CD negative phase (greedy and up-down, not the PCD chains) uses the label units' softmax
    # probabilities (mean-field labels) instead of a sampled one-hot, as Hinton et al. 2006's up-down code does
    # (here the greedy top stage too): less noise in the label statistics, a slightly different estimate (the
    # hidden units see the averaged label), and cd_gap is not comparable with sampled-label runs.
    label_probs_in_negative: bool = True
    updown_lr_scale: float = 1.0  # multiplies the up-down loss (with SGD: the up-down learning rate)
    # Generation. mean_field_down decodes the top RBM's last state deterministically: the penultimate
    # probabilities go down through the directed layers' probabilities (no binary samples on the way), a less
    # noisy picture of the same state. label_gain is the value of the clamped label unit (1: the model's own
    # p(image | label)); > 1 strengthens the label's pull on the chain, a tempered conditional, not the model's.
    mean_field_down: bool = True
    label_gain: float = 1.0

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        check_config(len(layers) >= 2, f"model.layers needs at least 2 sizes (data and one hidden layer), got "
                                 f"{list(layers)}; e.g. model.layers=[784,500,500,2000]")
        check_config(all(size >= 1 for size in layers),
               f"model.layers sizes must all be positive, got {list(layers)}")
        check_config(self.n_labels >= 0, f"model.n_labels must be >= 0 (0: no label units), got {self.n_labels}")
        check_config(self.n_labels != 1, "model.n_labels=1 is a softmax group with one unit, always on; use 0 or >= 2")
        n_rbms = len(layers) - 1
        check_config(len(self.epochs_per_layer) in (1, n_rbms),
               f"model.epochs_per_layer needs one value or one per RBM ({n_rbms}), got {list(self.epochs_per_layer)}")
        check_config(all(epochs >= 1 for epochs in self.epochs_per_layer),
               f"model.epochs_per_layer values must be >= 1, got {list(self.epochs_per_layer)}")
        check_config(self.cd_k >= 1 and self.top_cd_k >= 1,
               f"model.cd_k and top_cd_k must be >= 1, got {self.cd_k}, {self.top_cd_k}")
        if isinstance(self.updown_cd_k, int):
            self.updown_cd_k = (self.updown_cd_k,)
        check_config(len(self.updown_cd_k) >= 1 and all(k >= 1 for k in self.updown_cd_k),
               f"model.updown_cd_k needs one value >= 1 or a schedule of them (e.g. [3,6,10]), got "
               f"{list(self.updown_cd_k)}")
        check_config(self.n_chains >= 1, f"model.n_chains must be >= 1, got {self.n_chains}")
        check_config(self.init_std > 0.0, f"model.init_std must be > 0, got {self.init_std}")
        check_config(self.sample_steps >= 0, f"model.sample_steps must be >= 0, got {self.sample_steps}")
        check_config(self.updown_epochs >= 0, f"model.updown_epochs must be >= 0, got {self.updown_epochs}")
        check_config(not self.updown_epochs or len(self.updown_cd_k) <= self.updown_epochs,
               f"model.updown_cd_k has {len(self.updown_cd_k)} values but model.updown_epochs={self.updown_epochs}; "
               "each value needs at least one up-down epoch")
        check_config(self.updown_lr_scale > 0.0, f"model.updown_lr_scale must be > 0, got {self.updown_lr_scale}")
        check_config(self.pcd_epochs >= 0, f"model.pcd_epochs must be >= 0, got {self.pcd_epochs}")
        check_config(self.pcd_lr_scale > 0.0, f"model.pcd_lr_scale must be > 0, got {self.pcd_lr_scale}")
        check_config(math.isfinite(self.label_gain) and self.label_gain > 0.0,
               f"model.label_gain must be a finite number > 0 (1: the model's own conditional), got "
               f"{self.label_gain}")

    @property
    def n_rbms(self) -> int:
        return len(self.layers) - 1

    @property
    def pen_size(self) -> int:
        """Units of the penultimate layer (the top RBM's visible layer without the labels)."""
        return self.layers[-2]

    @property
    def layer_epochs(self) -> tuple[int, ...]:
        """Greedy epochs of each RBM, bottom first."""
        values = tuple(self.epochs_per_layer)
        return values * self.n_rbms if len(values) == 1 else values

    @property
    def pretrain_epochs(self) -> int:
        return sum(self.layer_epochs)

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole schedule: greedy pretraining, PCD on the top RBM, up-down fine-tuning."""
        return self.pretrain_epochs + self.pcd_epochs + self.updown_epochs

    def updown_cd_k_of_epoch(self, epoch: int) -> int:
        """Top-RBM Gibbs steps of up-down in ``epoch`` (0-based over the whole run): the schedule's value for the
        share of the up-down epochs it falls in (epochs past the end keep the last value)."""
        schedule = tuple(self.updown_cd_k)
        updown_epoch = epoch - self.pretrain_epochs - self.pcd_epochs
        if updown_epoch < 0 or not self.updown_epochs:
            return schedule[0]
        return schedule[min(updown_epoch * len(schedule) // self.updown_epochs, len(schedule) - 1)]

    def stage_of_epoch(self, epoch: int) -> tuple[str, int]:
        """(stage, RBM index) that trains in ``epoch`` (0-based): ("greedy", l), ("pcd", top), ("updown", top).

        Epochs past :attr:`total_epochs` continue the last stage.
        """
        top = self.n_rbms - 1
        end = 0
        for layer, epochs in enumerate(self.layer_epochs):
            end += epochs
            if epoch < end:
                return "greedy", layer
        if epoch < end + self.pcd_epochs or (self.pcd_epochs and not self.updown_epochs):
            return "pcd", top
        return ("updown", top) if self.updown_epochs else ("greedy", top)


def _check_data(layers: Sequence[int], n_labels: int, info: DataInfo, what: str) -> None:
    """The data must be images in [0, 1] with ``layers[0]`` values each and enough classes for the labels."""
    if info.kind != "image":
        raise ConfigError(f"the {what} models images, not {info.kind!r} data")
    low, high = info.value_range
    if low < 0.0 or high > 1.0:
        raise ConfigError(f"the {what} needs data in [0, 1], got range {info.value_range}; use data.scale=unit")
    size = math.prod(info.shape) if info.shape else layers[0]
    if size != layers[0]:
        raise ConfigError(f"model.layers starts with {layers[0]} units but the data has {size} values per example "
                          f"(shape {tuple(info.shape)}); set model.layers=[{size},{','.join(map(str, layers[1:]))}]")
    if n_labels and info.num_classes == 0:
        raise ConfigError(f"model.n_labels={n_labels} needs labelled data, but the dataset has no labels; "
                          "set model.n_labels=0")
    if n_labels and info.num_classes > n_labels:
        raise ConfigError(f"the dataset has {info.num_classes} classes but model.n_labels={n_labels}; "
                          f"set model.n_labels={info.num_classes}")


def l2_penalty(weight_decay: float, weights: Sequence[Tensor]) -> Tensor:
    """``weight_decay / 2 · Σ ||W||²``: its gradient is SGD's weight-decay term ``weight_decay · W``, but inside a
    loss it is scaled with the loss (a stage's or fine-tuning's learning-rate scale), which optimizer decay is not."""
    if not weight_decay:
        return weights[0].new_zeros(())
    return 0.5 * weight_decay * sum((w ** 2).sum() for w in weights)


def _images_and_labels(batch: Any, n_visible: int, what: str) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` or ``x`` -> x (B, n_visible) checked to lie in [0, 1], and y (B,) or None."""
    x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise DataError(f"{what} batches must be tensors of shape (B, ...) or (x, y) pairs")
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != n_visible:
        raise DataError(f"{what} expects {n_visible} values per example (model.layers[0]), got {x.shape[1]}")
    if x.numel():
        low, high = torch.aminmax(x)
        if not (float(low) >= 0.0 and float(high) <= 1.0):
            raise DataError(f"{what} data must lie in [0, 1], got values in [{float(low):g}, {float(high):g}]; "
                            "use data.scale=unit")
    return x, y
