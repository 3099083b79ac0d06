"""What a model needs to know about its data before it is built; saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data before it is built."""

    kind: str  # "image" or "text"
    shape: tuple[int, ...] = ()  # one example: (C, H, W) for images
    num_classes: int = 0
    value_range: tuple[float, float] = (0.0, 1.0)
    binary: bool = False
    vocab: str = ""  # text: the characters, in index order
