"""Benchmarks of genlab's judge networks, and the helper every image-model benchmark uses for sample metrics.

* ``judge_accuracy``: each judge's test accuracy (target ≥ 99.0% MNIST, ≥ 91% Fashion-MNIST) and the wall time
  its training took (trained now on first use, else read from the cached judge's metadata).
* ``judge_floor``: held-out test images against the training-image reference: the FD/KID floor a generator that
  has not memorised its training set can reach; blurred test images and uniform noise beside it show the scale.

Image benchmarks call :func:`sample_quality_records` with their samples to get the standard records.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from genlab.bench import BenchContext, benchmark
from genlab.eval import judge as judge_lib

METRIC_UNITS = {
    "judge_confidence_mean": "probability",
    "judge_confident_frac": "fraction",
    "class_entropy_nats": "nats",
    "judge_fd": "FD (genlab judge)",
    "judge_kid": "KID (genlab judge)",
}
# Judges and reference features are reused by every benchmark in one `genlab bench` process.
_JUDGES: dict[tuple, judge_lib.Judge] = {}
_REFERENCES: dict[tuple, judge_lib.ReferenceSet] = {}


def get_judge(dataset: str, *, data_dir: str | os.PathLike | None = None, device: str = "cpu") -> judge_lib.Judge:
    """The cached judge for ``dataset`` (trained now if there is none), memoised for this process."""
    key = (dataset, str(data_dir), str(device))
    if key not in _JUDGES:
        _JUDGES[key] = judge_lib.load_judge(dataset, data_dir=data_dir, device=device)
    return _JUDGES[key]


def get_reference(judge: judge_lib.Judge, *, data_dir: str | os.PathLike | None = None) -> judge_lib.ReferenceSet:
    """The standard reference: judge features of 10,000 seeded-random training images, memoised."""
    key = (judge.info.dataset, judge.info.checksum, str(data_dir))
    if key not in _REFERENCES:
        _REFERENCES[key] = judge_lib.reference_set(judge, split="train", limit=10000, seed=0, data_dir=data_dir)
    return _REFERENCES[key]


def quality_records(model: str, dataset: str, quality: judge_lib.SampleQuality, **fields) -> list[dict]:
    """Standard records (one per figure) for a :class:`~genlab.eval.judge.SampleQuality`."""
    common = {"model": model, "dataset": dataset, "images": quality.images, "reference": quality.reference,
              "judge": quality.judge, **fields}
    values = quality.as_dict()
    records = []
    for metric, unit in METRIC_UNITS.items():
        record = {**common, "metric": metric, "value": values[metric], "unit": unit}
        if metric == "judge_kid":
            record.update(stderr=quality.kid_stderr, kid_subsets=quality.kid_subsets,
                          kid_subset_size=quality.kid_subset_size)
        if metric == "class_entropy_nats":
            record["class_counts"] = quality.class_counts
        records.append(record)
    return records


def sample_quality_records(model: str, dataset: str, images, *, data_dir: str | os.PathLike | None = None,
                           device: str = "cpu", value_range=None, seed: int = 0, **fields) -> list[dict]:
    """Judge confidence, class entropy, FD and KID (± standard error) of ``images`` (any batch the judge accepts,
    e.g. (n, 1, 28, 28) in [0, 1] or (n, 1, 32, 32) in [-1, 1]) against the training-image reference of
    ``dataset``, as bench records. Extra ``fields`` (e.g. ``sampler_steps=1000``) are copied into each record."""
    judge = get_judge(dataset, data_dir=data_dir, device=device)
    quality = judge_lib.sample_quality(judge, images, get_reference(judge, data_dir=data_dir),
                                       value_range=value_range, generator=torch.Generator().manual_seed(seed))
    return quality_records(model, dataset, quality, **fields)


def _judge_and_training_time(dataset: str, ctx: BenchContext) -> tuple[judge_lib.Judge, bool]:
    checksum, _ = judge_lib.training_checksum(dataset, ctx.data_dir)
    cached = judge_lib.judge_path(dataset, checksum).is_file()
    return get_judge(dataset, data_dir=ctx.data_dir, device=ctx.device), not cached


@benchmark("judge_accuracy", suites=("quick", "full"),
           description="test accuracy of genlab's judge classifiers and their training wall time")
def judge_accuracy(ctx: BenchContext) -> list[dict]:
    records = []
    for dataset in judge_lib.JUDGE_DATASETS:
        judge, trained_now = _judge_and_training_time(dataset, ctx)
        info = judge.info
        where = "in this run" if trained_now else f"earlier (cached, {info.trained_with.get('device', '?')})"
        ctx.notes.append(f"{dataset} judge {info.checksum}: trained {where}, {info.epochs} epochs on "
                         f"{info.train_examples} training images, {info.train_wall_s:.1f} s, torch "
                         f"{info.trained_with.get('torch', '?')}, {info.trained_with.get('threads', '?')} threads")
        common = {"model": "judge-cnn", "dataset": dataset, "judge": f"{dataset}-{info.checksum}",
                  "train_wall_s": info.train_wall_s, "trained_now": trained_now}
        records.append({**common, "metric": "test_accuracy_pct", "value": info.test_accuracy_pct, "unit": "%",
                        "target": judge_lib.TARGET_ACCURACY_PCT[dataset], "meets_target": info.meets_target})
        records.append({**common, "metric": "train_wall_s", "value": info.train_wall_s, "unit": "s"})
    return records


def _blurred(images: torch.Tensor) -> torch.Tensor:
    """A 3×3 box blur (zero padding), the in-between case of the floor table."""
    return F.avg_pool2d(images, kernel_size=3, stride=1, padding=1, count_include_pad=True)


@benchmark("judge_floor", suites=("quick", "full"),
           description="FD/KID of held-out test images vs the training-image reference (the floor), with "
                       "blurred test images and uniform noise for scale")
def judge_floor(ctx: BenchContext) -> list[dict]:
    records = []
    for dataset in judge_lib.JUDGE_DATASETS:
        judge = get_judge(dataset, data_dir=ctx.data_dir, device=ctx.device)
        reference = get_reference(judge, data_dir=ctx.data_dir)
        test_images, _ = judge_lib.load_split(dataset, "test", ctx.data_dir)
        test_images = test_images.float().div_(255.0)
        noise = torch.rand(test_images.shape, generator=torch.Generator().manual_seed(0))
        for name, images in (("real test images (floor)", test_images),
                             ("blurred test images (3x3 box)", _blurred(test_images)),
                             ("uniform noise", noise)):
            started = time.perf_counter()
            quality = judge_lib.sample_quality(judge, images, reference, generator=torch.Generator().manual_seed(0))
            records += quality_records(name, dataset, quality, wall_s=round(time.perf_counter() - started, 2))
    ctx.notes.append("FD and KID here use genlab's judge features, not Inception-v3: they compare only with other "
                     "genlab-judge numbers for the same dataset, never with published FID/KID.")
    return records
