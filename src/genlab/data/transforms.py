"""Pure tensor transforms for image batches of shape (N, C, H, W). None of them keeps state."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import DataError


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 in [0, 1] by dividing by 255 (so 255 -> 1.0 exactly); floats pass through."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if x.dtype == torch.bool:
        return x.to(torch.float32)
    if x.is_floating_point():
        return x
    raise DataError(f"to_unit_float: expected uint8 or floating-point images, got {x.dtype}")


def threshold_binarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """1.0 where ``x >= threshold`` else 0.0 (float; same dtype as ``x`` when it is floating-point)."""
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return (x >= threshold).to(dtype)


def stochastic_binarize(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """A Bernoulli(x) sample per pixel, drawn with ``generator`` (dynamic binarization); x must be in [0, 1]."""
    if not x.is_floating_point():
        raise DataError(f"stochastic_binarize: expected probabilities as floats, got {x.dtype}")
    # The same uniform draws torch.bernoulli makes on the CPU (bitwise equal samples, tested), compared in one
    # vectorised pass: 2.3x faster on a 100x784 batch in a one-off timing (1.41 -> 0.61 ms), where bernoulli
    # took ~10 % of a VAE training step.
    device = x.device if generator is None else generator.device
    uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)
    return (uniform < x).to(x.dtype)


def pad_to(x: Tensor, size: int) -> Tensor:
    """Zero-pad the last two dims (H, W) centrally to ``size`` x ``size`` (extra odd pixel goes bottom/right)."""
    if x.ndim < 2:
        raise DataError(f"pad_to: expected images (..., H, W), got shape {tuple(x.shape)}")
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if height > size or width > size:
        raise DataError(f"pad_to: cannot pad {height}x{width} images to the smaller size {size}x{size}")
    if height == size and width == size:
        return x
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(x, (left, size - width - left, top, size - height - top), mode="constant", value=0.0)


def to_symmetric(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def from_symmetric(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (the inverse of :func:`to_symmetric`)."""
    return (x + 1.0) * 0.5


def flatten(x: Tensor) -> Tensor:
    """(N, ...) -> (N, D)."""
    return torch.flatten(x, start_dim=1)


def check_unit_range(x: Tensor, what: str) -> None:
    """DataError if ``x`` has a non-finite value or one outside [0, 1]; ``what`` names the data in the message."""
    if x.numel() == 0:
        return
    values = x if x.is_floating_point() else x.to(torch.float32)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise DataError(f"{what}: {bad} value(s) are NaN or infinite; expected values in [0, 1]")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise DataError(f"{what}: values must be in [0, 1], found {low:g}..{high:g}")


def pixel_marginals(images: Iterable[Tensor], eps: float = 1e-3) -> Tensor:
    """Mean of each pixel over all images of all batches, clamped to [eps, 1 - eps] so its logit is finite.

    ``images``: batches of shape (B, ...) in [0, 1]; returns (...) in float64. Used to set Bernoulli output
    biases to the data's base rates (Hinton's practical guide, section 8).
    """
    total, count = None, 0
    for batch in images:
        batch_sum = batch.sum(0, dtype=torch.float64)
        total = batch_sum if total is None else total + batch_sum
        count += batch.shape[0]
    if count == 0:
        raise DataError("no examples to compute pixel marginals from")
    return (total / count).clamp(eps, 1.0 - eps)
