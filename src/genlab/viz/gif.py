"""Animated GIFs from a sequence of frames (PNG files or arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image


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
