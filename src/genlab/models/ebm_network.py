"""The image EBM's configuration (:class:`EBMConfig`) and its energy network (:class:`EnergyNet`: a conv stack,
dense layers and one linear output), with the input-gradient-only convolution Langevin sampling uses, and
:func:`auroc`, the rank statistic that scores the network's energies on out-of-distribution data.

Split out of :mod:`genlab.models.ebm` (which re-exports these names); see that module for training and sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import DataError, check_config


ACTIVATIONS = {"swish": F.silu, "relu": F.relu, "leaky_relu": F.leaky_relu, "elu": F.elu}


@dataclass
class EBMConfig:
    """Hyper-parameters; the defaults are the seed's recipe (Foster 2023, ch. 7)."""

    # Energy network: conv layers (same-style padding k // 2), then dense layers, then one linear output.
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    dense: tuple[int, ...] = (64,)
    activation: str = "swish"  # swish (x·σ(x)) | relu | leaky_relu | elu
    # SGLD: add N(0, noise_std²), clip, step ``step_size`` along -∇E with ∇E clipped to ±grad_clip, clip.
    step_size: float = 10.0
    noise_std: float = 0.005
    grad_clip: float = 0.03  # element-wise; 0: off
    langevin_steps: int = 60  # per training batch
    sample_steps: int = 1000  # for sample() / snapshots, from uniform noise
    # Langevin's input gradient through the first conv layer by matmul + fold: same energies, gradient equal only
    # up to float32 rounding, much faster on CPU. Off by default because results are then not bit-identical to
    # plain autograd; turn on for speed.
    fast_input_grad: bool = False
    # On CUDA, the training negatives' Langevin chain is captured once as a CUDA graph and replayed: the same
    # kernels on the same random stream, so the same samples as eager mode (bit for bit with deterministic
    # cuDNN), with one launch instead of thousands per step. Off by default: new; turn on for speed on a GPU
    # (ignored on other devices).
    cuda_graphs: bool = False
    # Replay buffer of negatives.
    buffer_size: int = 8192
    fresh_fraction: float = 0.05  # chains restarted from uniform noise per batch
    # Loss.
    alpha: float = 0.1  # weight of the energy-magnitude regulariser mean(E_real² + E_fake²)
    data_noise: float = 0.005  # std of the Gaussian noise added to real images
    # Health (divergence guard: the EBM diagnoses, the Trainer rolls back; see genlab.training.rollback).
    health: str = "recover"  # recover: roll back + smaller step | stop: TrainingError | off
    max_energy: float = 1000.0  # |E| above this on any image is divergence
    max_grad_norm: float = 1000.0  # Langevin input-gradient or parameter-gradient L2 norm above this is divergence
    max_collapsed: float = 0.5  # fraction of negatives collapsed to blank/white images above this is divergence
    health_warmup: int = 100  # steps before the collapse check starts (early negatives are often blank)
    snapshot_every: int = 50  # training steps between the Trainer's in-memory roll-back snapshots
    recovery_factor: float = 0.5  # Langevin step size multiplier on each roll-back
    max_recoveries: int = 3  # roll-backs allowed before training stops
    # Filled from the data by adapt_config.
    image_shape: tuple[int, ...] = ()  # (C, H, W)
    value_range: tuple[float, ...] = ()  # (low, high) of the pixel values, e.g. (-1, 1)

    def __post_init__(self) -> None:
        layers = len(self.channels)
        check_config(layers >= 1, "model.channels needs at least one conv layer, e.g. [16, 32, 64, 64]")
        check_config(len(self.kernel_sizes) == layers and len(self.strides) == layers,
              f"model.kernel_sizes ({len(self.kernel_sizes)}) and model.strides ({len(self.strides)}) need one "
              f"entry per conv layer in model.channels ({layers})")
        check_config(all(c >= 1 for c in self.channels + self.dense),
              f"model.channels and model.dense must be positive, got {self.channels} and {self.dense}")
        check_config(all(k >= 1 for k in self.kernel_sizes) and all(s >= 1 for s in self.strides),
              f"model.kernel_sizes and model.strides must be >= 1, got {self.kernel_sizes} and {self.strides}")
        check_config(self.activation in ACTIVATIONS,
              f"model.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        check_config(self.step_size >= 0.0, f"model.step_size (Langevin) must be >= 0, got {self.step_size}")
        check_config(self.noise_std >= 0.0, f"model.noise_std (Langevin noise) must be >= 0, got {self.noise_std}")
        check_config(self.grad_clip >= 0.0, f"model.grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip}")
        check_config(self.langevin_steps >= 1, f"model.langevin_steps must be >= 1, got {self.langevin_steps}")
        check_config(self.sample_steps >= 1, f"model.sample_steps must be >= 1, got {self.sample_steps}")
        check_config(self.buffer_size >= 1, f"model.buffer_size (replay buffer) must be >= 1, got {self.buffer_size}")
        check_config(0.0 <= self.fresh_fraction <= 1.0,
              f"model.fresh_fraction (fresh noise per batch) must be in [0, 1], got {self.fresh_fraction}")
        check_config(self.alpha >= 0.0, f"model.alpha must be >= 0, got {self.alpha}")
        check_config(self.data_noise >= 0.0, f"model.data_noise must be >= 0, got {self.data_noise}")
        check_config(self.health in ("recover", "stop", "off"),
              f"model.health must be recover, stop or off, got {self.health!r}")
        check_config(self.max_energy > 0.0 and self.max_grad_norm > 0.0,
              f"model.max_energy and model.max_grad_norm must be > 0, got {self.max_energy}, {self.max_grad_norm}")
        check_config(0.0 < self.max_collapsed <= 1.0, f"model.max_collapsed must be in (0, 1], got {self.max_collapsed}")
        check_config(self.health_warmup >= 0, f"model.health_warmup must be >= 0, got {self.health_warmup}")
        check_config(self.snapshot_every >= 1, f"model.snapshot_every must be >= 1, got {self.snapshot_every}")
        check_config(0.0 < self.recovery_factor < 1.0,
              f"model.recovery_factor must be in (0, 1), got {self.recovery_factor}")
        check_config(self.max_recoveries >= 0, f"model.max_recoveries must be >= 0, got {self.max_recoveries}")
        check_config(self.image_shape == () or (len(self.image_shape) == 3 and min(self.image_shape) >= 1),
              f"model.image_shape must be (C, H, W) or empty (filled from the data), got {self.image_shape}")
        check_config(self.value_range == () or (len(self.value_range) == 2 and self.value_range[0] < self.value_range[1]),
              f"model.value_range must be (low, high) with low < high or empty, got {self.value_range}")

    def conv_output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size after the conv stack (padding k // 2)."""
        for kernel, stride in zip(self.kernel_sizes, self.strides):
            height = (height + 2 * (kernel // 2) - kernel) // stride + 1
            width = (width + 2 * (kernel // 2) - kernel) // stride + 1
        return height, width


class _ConvInputGrad(torch.autograd.Function):
    """``F.conv2d`` whose backward returns only the input gradient, as a matmul + ``F.fold`` (col2im).

    Why: oneDNN's backward-data kernel for the first layer of an image EBM (one input channel, 5×5, stride 2) is
    about 5× slower on CPU than this, and Langevin sampling runs it 60 times per training step. The forward is the
    same ``F.conv2d`` call, so energies are bit-identical; the gradient equals autograd's up to float32 rounding
    (checked in tests). Weight and bias get no gradient: use it only where the parameters are constants.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, stride: tuple[int, int],
                padding: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.geometry = (tuple(x.shape[-2:]), tuple(weight.shape[-2:]), stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (weight,) = ctx.saved_tensors
        size, kernel, stride, padding = ctx.geometry
        out_channels = weight.shape[0]
        # d out[o, p] / d patch[c·k·k, p] = weight[o, c·k·k]; fold scatters the patch gradients back to pixels.
        columns = torch.matmul(weight.reshape(out_channels, -1).t(), grad_out.flatten(2))
        grad_x = F.fold(columns, size, kernel, padding=padding, stride=stride)
        return grad_x, None, None, None, None


class EnergyNet(nn.Module):
    """Conv stack -> flatten -> dense layers -> one linear output: x (B, C, H, W) -> E(x) (B,).

    Weights start Glorot-uniform with zero biases, Keras' defaults, as in the seed.
    """

    def __init__(self, config: EBMConfig):
        super().__init__()
        channels, height, width = config.image_shape
        self.activation = ACTIVATIONS[config.activation]
        convs = []
        for out_channels, kernel, stride in zip(config.channels, config.kernel_sizes, config.strides):
            convs.append(nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=kernel // 2))
            channels = out_channels
        self.convs = nn.ModuleList(convs)
        out_height, out_width = config.conv_output_size(height, width)  # >= 1: padding k // 2 never empties
        features = channels * out_height * out_width
        dense = []
        for size in config.dense:
            dense.append(nn.Linear(features, size))
            features = size
        self.dense = nn.ModuleList(dense)
        self.out = nn.Linear(features, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, *, input_grad_only: bool = False) -> Tensor:
        """E(x), (B,). ``input_grad_only=True`` (Langevin sampling) gives the same values but a backward pass that
        yields ∇ₓE only (the parameters get no gradient), with the first layer's input gradient computed by
        :class:`_ConvInputGrad`."""
        for index, conv in enumerate(self.convs):
            if index == 0 and input_grad_only:
                x = self.activation(_ConvInputGrad.apply(x, conv.weight.detach(), conv.bias.detach(),
                                                         conv.stride, conv.padding))
            else:
                x = self.activation(conv(x))
        x = x.flatten(1)
        for layer in self.dense:
            x = self.activation(layer(x))
        return self.out(x).squeeze(1)


def auroc(positive: Tensor | np.ndarray, negative: Tensor | np.ndarray) -> float:
    """Area under the ROC curve for scores where higher means "positive": P(s⁺ > s⁻) + ½ P(s⁺ = s⁻).

    Computed from ranks (the Mann–Whitney U statistic, Hanley & McNeil 1982) with tied scores given their average
    rank, in float64: ``U = Σ rank(positives) - n⁺(n⁺ + 1)/2``, AUROC = U / (n⁺ n⁻). O(n log n).
    """
    pos = np.asarray(torch.as_tensor(positive).detach().cpu().double().flatten())
    neg = np.asarray(torch.as_tensor(negative).detach().cpu().double().flatten())
    if pos.size == 0 or neg.size == 0:
        raise DataError(f"AUROC needs at least one positive and one negative score, got {pos.size} and {neg.size}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise DataError("AUROC got non-finite scores (NaN or infinity)")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average rank of each run of ties: runs start where the sorted value changes.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    counts = np.diff(np.r_[starts, scores.size])
    average_rank = starts + (counts + 1) / 2.0  # 1-based ranks
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(average_rank, counts)
    n_pos, n_neg = pos.size, neg.size
    u_statistic = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))
