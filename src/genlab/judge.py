"""genlab's judge classifiers from Python: the sample-quality figures of any images, as ``genlab judge score``.

    import genlab
    genlab.judge.score(images, dataset="mnist")   # {'judge_fd': ..., 'class_entropy_nats': ..., ...}

The judge of a dataset is a small conv net trained on its training set (cached after the first use, about a
minute on 2 CPU cores); FD and KID are measured in its feature space, so compare them only with other genlab
judge figures. The networks, their cache and the figures are in :mod:`genlab.eval.judge` (their training, by the one Trainer, in
:mod:`genlab.eval.judge_training`); this module adds
scoring of image files and of runs' samples (``genlab judge score``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.errors import ConfigError, DataError
from genlab.eval import judge as judge_lib


def score(images: Any, dataset: str = "mnist", *, value_range: tuple[float, float] | None = None,
          reference_size: int = 10000, seed: int = 0, device: str = "cpu",
          data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> dict:
    """Judge figures of ``images`` against ``reference_size`` training images of ``dataset``.

    ``images``: a numpy array or tensor of shape (n, 28, 28), (n, 1, 28, 28) or (n, 784) (32×32 padded images
    too), uint8 in 0..255 or floats in ``value_range`` (default [0, 1]; pass (-1, 1) for GAN outputs).
    Returns FD, KID (± its standard error), the judge's mean confidence and confident fraction, the class
    histogram and its entropy in nats (log 10 = 2.303 for ten equally used classes).
    """
    from genlab.device import resolve_device
    from genlab.eval import judge as judge_lib

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
    from genlab.device import resolve_device
    from genlab.eval.judge_training import train_judge

    return train_judge(dataset, data_dir=data_dir, epochs=epochs, seed=seed, cache_dir=cache_dir,
                       device=resolve_device(device))


# ------------------------------------------------------------------------------- scoring files and runs

_ARRAY_KEYS = ("samples", "images", "x", "x_test", "x_train")


def parse_value_range(text) -> tuple[float, float] | None:
    """"LOW,HIGH" (or a pair, or None) → (low, high); ConfigError otherwise."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        low, high = (float(part) for part in str(text).split(","))
    except ValueError:
        raise ConfigError(f"value range must be LOW,HIGH (e.g. 0,1 or -1,1), got {text!r}") from None
    if not high > low:
        raise ConfigError(f"value range must have LOW < HIGH, got {text!r}")
    return low, high


def load_image_file(path: str | os.PathLike) -> np.ndarray:
    """Images from a .npy file, or from an .npz file's first array among samples/images/x/x_test/x_train (or its
    only array). Never unpickles."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy/.npz file of numbers ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = list(loaded.files)
        key = next((k for k in _ARRAY_KEYS if k in names), names[0] if len(names) == 1 else None)
        if key is None:
            raise DataError(f"{path}: which array holds the images? name it one of {', '.join(_ARRAY_KEYS)} "
                            f"(found {', '.join(names) or 'no arrays'})")
        try:
            return loaded[key]
        except ValueError as exc:
            raise DataError(f"{path}[{key}]: unreadable ({exc})") from None


def sample_run(run_dir: str | os.PathLike, n: int, *, seed: int = 0,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, str, tuple[float, float]]:
    """(n samples, the run's dataset, their value range) from the latest checkpoint of an image-model run."""
    from genlab.training.checkpoint import load_model, samples_value_range

    model, config = load_model(Path(run_dir), device)
    if getattr(model, "kind", "image") != "image":
        raise ConfigError(f"{run_dir} is a {model.kind} model; the judge scores image models only")
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        images = model.sample(n, generator=generator)
    value_range = samples_value_range(Path(run_dir), config)
    return images.detach().float().cpu(), str(config.data.dataset), value_range


def score_source(source: str | os.PathLike, *, dataset: str | None = None, n: int = 1000, seed: int = 0,
                 value_range=None, reference_size: int = 10000, data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> judge_lib.SampleQuality:
    """Sample metrics of a .npy/.npz image file or of ``n`` samples of a run, against ``reference_size``
    training images of ``dataset`` (for a run, its own dataset by default)."""
    path = Path(source)
    value_range = parse_value_range(value_range)
    if path.is_dir():
        images, run_dataset, run_range = sample_run(path, n, seed=seed, device=device)
        dataset = dataset or run_dataset
        value_range = value_range or run_range
    elif path.suffix.lower() in (".npy", ".npz"):
        if not dataset:
            raise ConfigError(f"scoring {path}: pass --dataset ({' or '.join(judge_lib.JUDGE_DATASETS)}) to pick "
                              "the judge")
        images = load_image_file(path)
    else:
        raise DataError(f"{path}: give a run directory or a .npy/.npz file of images")
    judge = judge_lib.load_judge(judge_lib.check_dataset(dataset), data_dir=data_dir, cache_dir=cache_dir,
                                 device=device)
    reference = judge_lib.reference_set(judge, limit=reference_size, data_dir=data_dir)
    return judge_lib.sample_quality(judge, images, reference, value_range=value_range,
                                    generator=torch.Generator().manual_seed(seed))
