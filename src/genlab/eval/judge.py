"""genlab's judge networks and the sample-quality figures computed with them (the math: eval/sample_metrics.py).

A *judge* is a small CNN classifier trained by genlab on the **training set only** of MNIST or Fashion-MNIST
(never on generated data), saved as safetensors in a cache directory and looked up by the MD5 checksum of the
training files it was trained on (:mod:`genlab.eval.judge_training` trains it, with the one Trainer). Its
penultimate layer (128 features after a ReLU) plays the role Inception-v3's pool features play in FID/KID:

* **classifier confidence**: the mean of max-class probability and the fraction of images whose max-class
  probability exceeds 0.9 (how often the judge "recognises" a sample). Never read it alone: like most
  classifiers, the MNIST judge is confidently wrong on out-of-distribution input (uniform noise gets
  near-certain votes for a single class), which the class entropy and FD expose;
* **class histogram** of the judge's argmax labels and its **entropy in nats** (log 10 = 2.303 nats for ten
  equally frequent classes; mode collapse lowers it);
* **Fréchet distance** (FD) between Gaussians fitted to judge features of two image sets (Heusel et al. 2017,
  "GANs trained by a two time-scale update rule converge to a local Nash equilibrium");
* **KID**, the unbiased estimate of the squared MMD with the cubic polynomial kernel
  k(x, y) = (xᵀy / d + 1)³ (Bińkowski et al. 2018, "Demystifying MMD GANs"), averaged over disjoint subsets,
  with its standard error.

**FD and KID values computed here compare only with other values computed with the same genlab judge** (same
dataset, same training-file checksum). They are *not* FID/KID: the features are not Inception-v3's, so numbers
are on a different scale and must never be put beside published FID/KID numbers.

Images given to the judge are (n, 1, 28, 28) floats in [0, 1]. Also accepted (see :func:`prepare_images`):
(n, 28, 28) and (n, 784) arrays, uint8 images in 0..255, and 32×32 images in [-1, 1] (the EBM's padded
format), which are centre-cropped to 28×28 (removing the 2-pixel border that ``data.pad_to=32`` adds) and
mapped to [0, 1] by (x + 1) / 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from genlab.data.sources import dataset_name, names_of_kind
from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.eval.sample_metrics import (  # noqa: F401  (the judge's metrics, also used as judge.<name>)
    CONFIDENT_PROBABILITY,
    KIDResult,
    class_histogram,
    confidence,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    histogram_entropy_nats,
    kernel_distance,
    mmd2_unbiased,
)

JUDGE_DATASETS = names_of_kind("image")  # one judge per image dataset of the table
NUM_CLASSES = 10
# Test accuracy each judge must reach (the bar); `genlab judge train` says whether it did.
TARGET_ACCURACY_PCT = {"mnist": 99.0, "fashion-mnist": 91.0}
# Epochs that reach the target with margin (measured: MNIST 99.2% after 3, Fashion-MNIST 91.8% after 6 with
# flips), about 20 s per epoch on one CPU core.
DEFAULT_EPOCHS = {"mnist": 4, "fashion-mnist": 7}
# Fashion-MNIST garments are left-right symmetric as classes; digits are not, so only Fashion-MNIST is flipped.
FLIP_AUGMENT = {"mnist": False, "fashion-mnist": True}
FORMAT = "genlab-judge-1"
CACHE_ENV = "GENLAB_JUDGE_DIR"

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ network


class JudgeNet(nn.Module):
    """conv3×3(c1)-BN-ReLU-pool2 → conv3×3(c2)-BN-ReLU-pool2 → dense(feature_dim)-ReLU → dropout → dense(10).

    Input (n, 1, 28, 28) in [0, 1]; :meth:`features` returns the (n, feature_dim) penultimate activations used
    for FD/KID, :meth:`forward` the (n, 10) class logits.
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), feature_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        c1, c2 = channels
        self.channels = (int(c1), int(c2))
        self.feature_dim = int(feature_dim)
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * 7 * 7, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


# ------------------------------------------------------------------------------------------- image input


def prepare_images(images, value_range: tuple[float, float] | None = None) -> Tensor:
    """Any accepted image batch → float32 (n, 1, 28, 28) in [0, 1] on the CPU.

    Accepted shapes: (n, 1, H, W), (n, H, W) or (n, H·W) with H = W = 28 or 32. ``value_range`` is the range
    the values are in; by default (0, 255) for uint8, (0, 1) for 28×28 floats and (-1, 1) for 32×32 floats.
    Values are mapped linearly from ``value_range`` to [0, 1]; 32×32 images are centre-cropped to 28×28.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images).detach().cpu()
    if x.ndim == 2 and x.shape[1] in (28 * 28, 32 * 32):
        side = int(math.isqrt(int(x.shape[1])))
        x = x.reshape(-1, 1, side, side)
    elif x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) not in ((28, 28), (32, 32)):
        raise DataError(f"the judge needs grey-scale images of shape (n, 1, 28, 28) or (n, 1, 32, 32) "
                        f"(or (n, 28, 28), (n, 784)); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError("the judge got an empty image batch; give at least one image")
    size = int(x.shape[-1])
    if value_range is None:
        value_range = (0.0, 255.0) if x.dtype == torch.uint8 else ((0.0, 1.0) if size == 28 else (-1.0, 1.0))
    low, high = float(value_range[0]), float(value_range[1])
    if not high > low:
        raise ConfigError(f"value_range must be (low, high) with low < high, got {value_range}")
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise DataError("images contain NaN or infinite values; the judge needs finite pixel values")
    slack = 1e-4 * (high - low)
    found_low, found_high = float(x.min()), float(x.max())
    if found_low < low - slack or found_high > high + slack:
        raise DataError(f"{size}x{size} images expected in [{low:g}, {high:g}] but found values in "
                        f"[{found_low:g}, {found_high:g}]; pass value_range=(low, high) for other ranges "
                        f"(e.g. (-1, 1) for data.scale=symmetric, (0, 1) for padded images in [0, 1])")
    x = ((x - low) / (high - low)).clamp_(0.0, 1.0).to(torch.float32)
    if size == 32:
        x = x[:, :, 2:30, 2:30]  # undo data.pad_to=32 (2 pixels each side)
    return x.contiguous()


# ------------------------------------------------------------------------------------------------ judge


@dataclass
class JudgeInfo:
    """What a judge was trained on and how well it does; saved as JSON metadata in its safetensors file."""

    dataset: str
    checksum: str  # the lookup key: md5 of the training files' md5s (see training_checksum)
    train_md5: dict[str, str]  # file name -> md5 of its uncompressed content
    test_accuracy_pct: float
    train_wall_s: float
    epochs: int
    seed: int
    train_examples: int
    test_examples: int = 10000
    channels: tuple[int, int] = (16, 32)
    feature_dim: int = 128
    trained_with: dict = field(default_factory=dict)  # torch version, cpu, threads, device

    @property
    def meets_target(self) -> bool:
        return self.test_accuracy_pct >= TARGET_ACCURACY_PCT.get(self.dataset, 0.0)


class Judge:
    """A trained :class:`JudgeNet` in eval mode with its :class:`JudgeInfo`; every method takes any image batch
    that :func:`prepare_images` accepts and works in chunks of ``batch_size``."""

    def __init__(self, net: JudgeNet, info: JudgeInfo, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.info = info

    @torch.no_grad()
    def outputs(self, images, *, value_range=None, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
        """(features (n, feature_dim) float64, class probabilities (n, 10) float64), on the CPU."""
        x = prepare_images(images, value_range)
        features, probabilities = [], []
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size].to(self.device)
            hidden = self.net.features(chunk)
            features.append(hidden.double().cpu())
            probabilities.append(torch.softmax(self.net.head(hidden).double(), dim=1).cpu())
        return torch.cat(features), torch.cat(probabilities)

    def features(self, images, **kw) -> Tensor:
        return self.outputs(images, **kw)[0]

    def probabilities(self, images, **kw) -> Tensor:
        return self.outputs(images, **kw)[1]

    def accuracy_pct(self, images, labels, **kw) -> float:
        predicted = self.probabilities(images, **kw).argmax(dim=1)
        labels = torch.as_tensor(np.asarray(labels)).long()
        return 100.0 * float((predicted == labels).double().mean())


# ------------------------------------------------------------------------------------ cache and checksum


def judge_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$GENLAB_JUDGE_DIR``, else ``$XDG_CACHE_HOME/genlab/judges`` or
    ``~/.cache/genlab/judges``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from genlab.data.sources import cache_root

    return cache_root() / "judges"


def check_dataset(dataset: str) -> str:
    """The canonical name of a dataset that has a judge; ConfigError otherwise."""
    key = dataset_name(dataset) or str(dataset)
    if key not in JUDGE_DATASETS:
        raise ConfigError(f"genlab has judges for {', '.join(JUDGE_DATASETS)} only, not {dataset!r}")
    return key


def training_checksum(dataset: str, data_dir: str | os.PathLike | None = None) -> tuple[str, dict[str, str]]:
    """(lookup key, {file name: md5}) of the training images and labels of ``dataset`` as found on disk.

    The key is the first 16 hex digits of the md5 of "images_md5 labels_md5", so a judge is found again only
    for exactly the training data it was trained on.
    """
    from genlab.data import sources

    dataset = check_dataset(dataset)
    directory = sources.locate(dataset, data_dir)
    digests = {}
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        path = sources.resolve_file(directory, name)
        if path is None:
            raise DataError(f"{directory}: {name} disappeared")
        digests[name] = sources.MD5_CACHE.md5(path)
    key = hashlib.md5(" ".join(digests[n] for n in sorted(digests)).encode()).hexdigest()[:16]
    return key, digests


def judge_path(dataset: str, checksum: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return judge_cache_dir(cache_dir) / f"judge-{check_dataset(dataset)}-{checksum}.safetensors"


def save_judge(judge: Judge, path: str | os.PathLike) -> Path:
    """Write weights + :class:`JudgeInfo` (JSON metadata) atomically to ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in judge.net.state_dict().items()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(temporary), metadata={"format": FORMAT, "info": json.dumps(asdict(judge.info))})
    os.replace(temporary, path)
    return path


def load_judge_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> Judge:
    """Read a judge saved by :func:`save_judge`; CheckpointError (saying how to recover) if it is unusable."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    advice = f"delete {path} and run `genlab judge train --dataset <dataset>` again"
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"judge file {path} not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"judge file {path} is corrupt or truncated ({exc}); {advice}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a genlab judge file (format {metadata.get('format')!r}, "
                              f"expected {FORMAT!r}); {advice}")
    try:
        raw = json.loads(metadata["info"])
        raw["channels"] = tuple(raw["channels"])
        info = JudgeInfo(**raw)
        net = JudgeNet(info.channels, info.feature_dim)
        net.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"judge file {path} has unusable metadata or weights ({exc}); {advice}") from None
    return Judge(net, info, device)


def load_judge(dataset: str, *, data_dir: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               train_if_missing: bool = True, log: Log = print) -> Judge:
    """The cached judge for the training data of ``dataset`` found on disk (looked up by its checksum).

    If none is cached, one is trained now (a few minutes on CPU) and cached when ``train_if_missing``; otherwise
    DataError naming the command that trains it.
    """
    dataset = check_dataset(dataset)
    checksum, _ = training_checksum(dataset, data_dir)
    path = judge_path(dataset, checksum, cache_dir)
    if path.is_file():
        judge = load_judge_file(path, device)
        if judge.info.dataset != dataset or judge.info.checksum != checksum:
            raise CheckpointError(f"{path} holds a judge for {judge.info.dataset} (checksum "
                                  f"{judge.info.checksum}), not {dataset} ({checksum}); delete it and run "
                                  f"`genlab judge train --dataset {dataset}`")
        return judge
    if not train_if_missing:
        raise DataError(f"no {dataset} judge for training data {checksum} in {path.parent}; train it with "
                        f"`genlab judge train --dataset {dataset}` (a few minutes on CPU)")
    log(f"[judge] no cached {dataset} judge in {path.parent}; training one now "
        f"(or run `genlab judge train --dataset {dataset}` beforehand)")
    from genlab.eval.judge_training import train_judge  # it trains with the Trainer, which this module needn't load

    return train_judge(dataset, data_dir=data_dir, cache_dir=cache_dir, device=device, log=log)


# ------------------------------------------------------------------------------------------------ data


def load_split(dataset: str, split: str, data_dir=None) -> tuple[Tensor, Tensor]:
    """(uint8 images (N, 1, 28, 28), int64 labels (N,)) of split "train" or "test" of ``dataset``."""
    from genlab.data.images import load_images

    arrays = load_images(dataset, split, data_dir)
    return torch.from_numpy(arrays.images), torch.from_numpy(arrays.labels)


# -------------------------------------------------------------------------------------- sample quality


@dataclass
class ReferenceSet:
    """Judge features of real images that samples are compared with, and their Gaussian statistics."""

    name: str
    features: Tensor  # (n, d) float64
    mean: Tensor
    covariance: Tensor

    @classmethod
    def from_features(cls, name: str, features: Tensor) -> "ReferenceSet":
        return cls(name, features.double(), *feature_statistics(features))


def reference_set(judge: Judge, *, split: str = "train", limit: int | None = 10000, seed: int = 0,
                  data_dir: str | os.PathLike | None = None) -> ReferenceSet:
    """Features of (a seeded random subset of ``limit``) real ``split`` images of the judge's dataset.

    genlab's convention: samples are compared with **training** images, and held-out test images against the
    same reference give the floor any generator that has not memorised its training set can reach.
    """
    images, _ = load_split(judge.info.dataset, split, data_dir)
    if limit is not None and limit < images.shape[0]:
        chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
        images = images[chosen.sort().values]
    return ReferenceSet.from_features(f"{judge.info.dataset} {split} ({images.shape[0]} images)",
                                      judge.features(images))


@dataclass
class SampleQuality:
    """Sample-quality figures of one image set under one judge (FD/KID comparable only within that judge)."""

    images: int
    confidence_mean: float
    confident_frac: float
    class_counts: list[int]
    class_entropy_nats: float
    fd: float
    kid: float
    kid_stderr: float
    kid_subsets: int
    kid_subset_size: int
    reference: str
    judge: str  # "<dataset>-<checksum>"

    def as_dict(self) -> dict[str, float]:
        """Flat floats with units in the names, e.g. for ``genlab eval --json``."""
        return {"judge_confidence_mean": self.confidence_mean, "judge_confident_frac": self.confident_frac,
                "class_entropy_nats": self.class_entropy_nats, "judge_fd": self.fd, "judge_kid": self.kid,
                "judge_kid_stderr": self.kid_stderr}

    def summary(self) -> dict:
        """:meth:`as_dict` plus the counts and the names of the reference and the judge."""
        return {**self.as_dict(), "images": self.images, "class_counts": self.class_counts,
                "kid_subsets": self.kid_subsets, "kid_subset_size": self.kid_subset_size,
                "reference": self.reference, "judge": self.judge}


def sample_quality(judge: Judge, images, reference: ReferenceSet, *, value_range=None, kid_subsets: int = 10,
                   generator: torch.Generator | None = None) -> SampleQuality:
    """All sample metrics of ``images`` (any batch :func:`prepare_images` accepts) against ``reference``."""
    features, probabilities = judge.outputs(images, value_range=value_range)
    mean_top, confident = confidence(probabilities)
    counts = class_histogram(probabilities)
    mean, covariance = feature_statistics(features)
    kid = kernel_distance(features, reference.features, subsets=kid_subsets, generator=generator)
    return SampleQuality(images=int(features.shape[0]), confidence_mean=mean_top, confident_frac=confident,
                         class_counts=[int(c) for c in counts], class_entropy_nats=histogram_entropy_nats(counts),
                         fd=frechet_distance_from_stats(mean, covariance, reference.mean, reference.covariance),
                         kid=kid.value, kid_stderr=kid.stderr, kid_subsets=kid.subsets,
                         kid_subset_size=kid.subset_size, reference=reference.name,
                         judge=f"{judge.info.dataset}-{judge.info.checksum}")
