"""Picture files every layer may write: image grids (a batch of images -> one PNG mosaic) and animated GIFs
from a sequence of frames. Below the training layer (its callbacks save sample grids and their GIF), above
nothing in genlab; ``genlab.viz`` builds its plots on top."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image


def to_image_batch(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Coerce (N, D) with square D, (N, H, W) or (N, C, H, W) to float (N, C, H, W) in [0, 1]."""
    images = images.detach().float().cpu()
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"cannot draw vectors of length {images.shape[1]} as square images")
        images = images.reshape(-1, 1, side, side)
    elif images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    low, high = value_range
    return ((images - low) / (high - low)).clamp(0.0, 1.0)


def make_grid(images: torch.Tensor, *, ncol: int | None = None, padding: int = 2,
              value_range: tuple[float, float] = (0.0, 1.0), normalize_each: bool = False) -> np.ndarray:
    """Tile images into an (H', W') or (H', W', 3) uint8 array; ``normalize_each`` rescales every tile (filters)."""
    batch = images.detach().float().cpu()
    if normalize_each:
        flat = batch.reshape(batch.shape[0], -1)
        low = flat.min(dim=1, keepdim=True).values
        high = flat.max(dim=1, keepdim=True).values
        batch = ((flat - low) / (high - low).clamp_min(1e-12)).reshape(batch.shape)
        value_range = (0.0, 1.0)
    batch = to_image_batch(batch, value_range)
    n, channels, height, width = batch.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = max(1, math.ceil(n / ncol))
    canvas = torch.ones(channels, nrow * (height + padding) + padding, ncol * (width + padding) + padding) * 0.5
    for index in range(n):
        row, col = divmod(index, ncol)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        canvas[:, top:top + height, left:left + width] = batch[index]
    array = (canvas.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return array[:, :, 0] if channels == 1 else array


def save_grid(images: torch.Tensor, path: str | Path, *, scale: int = 2, **kwargs) -> Path:
    """Write a grid PNG (nearest-neighbour upscaled so 28x28 digits are visible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(make_grid(images, **kwargs))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
    return path


def save_gif(frames: Iterable[np.ndarray | Image.Image | str | Path], path: str | Path, *,
             duration_ms: int = 200, loop: int = 0) -> Path | None:
    """Write an animated GIF; returns None when there are no frames."""
    pictures = []
    for frame in frames:
        if isinstance(frame, (str, Path)):
            with Image.open(frame) as opened:
                frame = opened.convert("L" if opened.mode in ("L", "1") else "RGB")
                frame.load()
        elif isinstance(frame, np.ndarray):
            frame = Image.fromarray(frame)
        pictures.append(frame)
    if not pictures:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = pictures[0].size
    pictures = [p if p.size == size else p.resize(size, Image.NEAREST) for p in pictures]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=duration_ms, loop=loop)
    return path
