"""The judge watching a training run: every ``train.judge_every`` steps the judge classifies a fixed-z batch of
samples, and its class histogram and entropy go into metrics.jsonl (``"split": "judge"`` rows). Mode collapse
shows here first: a generator that makes one or two digits has a class entropy far below log 10 = 2.30 nats.
Below ``train.min_class_entropy`` the run stops cleanly (TrainingError, exit 1) and names the checkpoint to
resume from; the collapsed state is never checkpointed.

It is wired in by the callers that own a run (the CLI's ``genlab train``, the benchmarks) through
:func:`health_callbacks`, since the judge lives above the training loop.
"""

from __future__ import annotations

import json

import torch

from genlab.config import RunConfig
from genlab.errors import ConfigError, TrainingError
from genlab.eval import judge as judge_lib
from genlab.training.callbacks import Callback, json_safe

# Samples drawn from a seed no training randomness uses, so the watched batch is the same every time.
MONITOR_SEED_OFFSET = 4242


class JudgeMonitor(Callback):
    """Scores ``n`` samples of a fixed seed with ``judge`` every ``every`` steps; stops below ``min_entropy``.

    Rows go to the run's metrics.jsonl from rank 0 (every rank checks, so all stop at the same step)."""

    def __init__(self, judge: judge_lib.Judge, *, every: int, n: int, seed: int, min_entropy: float):
        self.judge = judge
        self.every = every
        self.n = n
        self.seed = seed
        self.min_entropy = min_entropy
        self.last: dict | None = None

    def on_step_end(self, trainer, logs) -> None:
        if trainer.step % self.every == 0:
            self.check(trainer)

    def check(self, trainer) -> dict:
        model = trainer.model
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=trainer.device).manual_seed(self.seed)
        with torch.no_grad(), torch.random.fork_rng(
                devices=[trainer.device] if trainer.device.type == "cuda" else []):
            images = model.sample(self.n, generator=generator)
        model.train(was_training)
        probabilities = self.judge.probabilities(images, value_range=trainer.data.info.value_range)
        counts = judge_lib.class_histogram(probabilities)
        entropy = judge_lib.histogram_entropy_nats(counts)
        _, confident = judge_lib.confidence(probabilities)
        row = {"step": trainer.step, "epoch": trainer.epoch, "split": "judge", "class_entropy_nats": entropy,
               "judge_confident_frac": confident, "class_counts": [int(c) for c in counts]}
        if trainer.run_dir is not None and trainer.dist.is_main and trainer.run_dir.is_dir():
            with open(trainer.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(json_safe(row)) + "\n")
        self.last = row
        if entropy < self.min_entropy:
            raise TrainingError(
                f"mode collapse: the judge's class entropy of {self.n} fixed-z samples fell to {entropy:.3f} nats "
                f"(< train.min_class_entropy = {self.min_entropy:g}; 10 even classes give 2.303) at step "
                f"{trainer.step}, class counts {row['class_counts']}; training stopped; "
                f"{trainer.checkpoint_kept()}. Lower optim.lr or change the loss, then resume.")
        return row


def health_callbacks(config: RunConfig, *, judge: judge_lib.Judge | None = None) -> list[Callback]:
    """The judge monitor for ``config`` (none when ``train.judge_every`` is 0). The judge of the run's dataset
    is loaded from the cache (trained now, a few minutes, when there is none) unless ``judge`` is given."""
    cfg = config.train
    if not cfg.judge_every:
        return []
    dataset = str(config.data.dataset)
    if judge is None:
        if dataset not in judge_lib.JUDGE_DATASETS:
            raise ConfigError(f"train.judge_every needs a judge for the dataset; genlab has judges for "
                              f"{', '.join(judge_lib.JUDGE_DATASETS)}, not {dataset!r}: set train.judge_every=0")
        judge = judge_lib.load_judge(dataset, data_dir=config.data.data_dir)
    return [JudgeMonitor(judge, every=cfg.judge_every, n=cfg.judge_samples, seed=cfg.seed + MONITOR_SEED_OFFSET,
                         min_entropy=cfg.min_class_entropy)]
