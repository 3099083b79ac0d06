"""genlab's judge classifiers from Python: the sample-quality figures of any images, as ``genlab judge score``.

    import genlab
    genlab.judge.score(images, dataset="mnist")   # {'judge_fd': ..., 'class_entropy_nats': ..., ...}

The judge of a dataset is a small conv net trained on its training set (cached after the first use, about a
minute on 2 CPU cores); FD and KID are measured in its feature space, so compare them only with other genlab
judge figures. The machinery is in :mod:`genlab.eval.judge`.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def score(images: Any, dataset: str = "mnist", *, value_range: tuple[float, float] | None = None,
          reference_size: int = 10000, seed: int = 0, device: str = "cpu",
          data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> dict:
    """Judge figures of ``images`` against ``reference_size`` training images of ``dataset``.

    ``images``: a numpy array or tensor of shape (n, 28, 28), (n, 1, 28, 28) or (n, 784) (32×32 padded images
    too), uint8 in 0..255 or floats in ``value_range`` (default [0, 1]; pass (-1, 1) for GAN outputs).
    Returns FD, KID (± its standard error), the judge's mean confidence and confident fraction, the class
    histogram and its entropy in nats (log 10 = 2.303 for ten equally used classes).
    """
    from genlab.eval import judge as judge_lib
    from genlab.training.run import resolve_device

    resolved = resolve_device(device)
    judge = judge_lib.load_judge(judge_lib.check_dataset(dataset), data_dir=data_dir, cache_dir=cache_dir,
                                 device=resolved)
    reference = judge_lib.reference_set(judge, limit=reference_size, data_dir=data_dir)
    quality = judge_lib.sample_quality(judge, images, reference, value_range=value_range,
                                       generator=torch.Generator().manual_seed(seed))
    return quality.summary()


def train(dataset: str = "mnist", *, epochs: int | None = None, seed: int = 0, device: str = "cpu",
          data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None):
    """Train (or retrain) the judge of ``dataset`` and cache it; returns it (``genlab judge train``)."""
    from genlab.eval import judge as judge_lib
    from genlab.training.run import resolve_device

    return judge_lib.train_judge(dataset, data_dir=data_dir, epochs=epochs, seed=seed, cache_dir=cache_dir,
                                 device=resolve_device(device))
