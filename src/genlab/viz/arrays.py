"""Samples as arrays for the user's own metrics: uint8 images (and labels) in .npz / .npy, text as UTF-8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.errors import ConfigError

ARRAY_SUFFIXES = (".npz", ".npy")


def to_uint8(images: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """Images (N, C, H, W) with values in ``value_range`` -> uint8 0..255, (N, H, W) when C = 1, else (N, C, H, W)."""
    low, high = value_range
    scaled = ((images.detach().float().cpu() - low) / (high - low)).clamp_(0.0, 1.0)
    array = torch.round(scaled * 255.0).to(torch.uint8).numpy()
    return array[:, 0] if array.ndim == 4 and array.shape[1] == 1 else array


def save_arrays(path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write ``images`` (and ``labels``) to ``path``: .npz with keys ``images`` and ``labels``, or .npy (the
    images alone; labels need an .npz). Written to a temporary name and renamed, so a partial file never shows."""
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ConfigError(f"{path}: arrays are written as .npz or .npy")
    if suffix == ".npy" and labels is not None:
        raise ConfigError(f"{path}: these samples have labels; write an .npz to keep them with the images")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        if suffix == ".npy":
            np.save(handle, images)
        else:
            np.savez(handle, images=images, **({"labels": labels} if labels is not None else {}))
    partial.replace(path)
    return path
