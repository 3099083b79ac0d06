"""Trainer callbacks: progress bar, metrics.jsonl, sample grids and GIFs, checkpoints, TensorBoard.

Only rank 0 builds the writing callbacks. Every callback that writes per-step files knows how to drop what a
killed run wrote after its last checkpoint, so a resumed run leaves no duplicated rows or stale pictures.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

from genlab.errors import ConfigError
from genlab.training import checkpoint as ckpt


class Callback:
    def on_fit_start(self, trainer) -> None: ...
    def on_epoch_start(self, trainer) -> None: ...
    def on_step_end(self, trainer, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer, val_logs: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer) -> None: ...
    def on_fit_error(self, trainer, error: BaseException) -> None: ...


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class ProgressCallback(Callback):
    """A tqdm bar per epoch on a terminal; elsewhere (a log file, nohup) a line every ``every_s`` seconds."""

    def __init__(self, enabled: bool = True, every_s: float = 30.0):
        self.enabled = enabled and sys.stderr.isatty()
        self.lines = None
        if enabled and not self.enabled:
            from genlab.progress import Progress

            self.lines = lambda total, initial: Progress(total, "step", every_s=every_s, terminal=False,
                                                          initial=initial)
        self.log = None
        self.bar = None

    def on_epoch_start(self, trainer) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=trainer.steps_per_epoch, initial=trainer.batch_in_epoch,
                        desc=f"epoch {trainer.epoch + 1}/{trainer.config.train.epochs}", leave=False,
                        dynamic_ncols=True)

    def on_step_end(self, trainer, logs) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if trainer.step % 10 == 0:
                self.bar.set_postfix(loss=f"{logs['loss']:.4g}")
        elif self.lines is not None:
            if self.log is None:  # counted from this fit's first step, so a resumed run's estimate holds
                self.log = self.lines(trainer.total_steps, trainer.step - 1)
            self.log.update(trainer.step, f"(epoch {trainer.epoch + 1}/{trainer.config.train.epochs}) "
                                          f"loss {logs['loss']:.4g}")

    def on_epoch_end(self, trainer, val_logs) -> None:
        self._close()
        if self.enabled:
            shown = {"loss": trainer.last_loss, **{f"val_{k}": v for k, v in val_logs.items()}}
            text = "  ".join(f"{k} {v:.4g}" for k, v in list(shown.items())[:6])
            print(f"epoch {trainer.epoch}/{trainer.config.train.epochs}  step {trainer.step}  {text}",
                  file=sys.stderr)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_fit_end(self, trainer) -> None:
        self._close()

    def on_fit_error(self, trainer, error) -> None:
        self._close()


class MetricsCallback(Callback):
    """Appends rows to ``metrics.jsonl``: train rows averaged over ``log_every`` steps, val rows per epoch.

    Each figure is averaged over the steps that logged it (a GAN's generator loss comes every few steps)."""

    def __init__(self, path: Path, log_every: int):
        self.path = path
        self.log_every = log_every
        self.window: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.count = 0
        self.listeners: list = []  # called with each row written (TensorBoardCallback.add_row)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(json_safe(row)) + "\n")
            handle.flush()
        for listen in self.listeners:
            listen(row)

    def on_fit_start(self, trainer) -> None:
        if trainer.step > 0 and self.path.exists():
            self._truncate_after(trainer.step)

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn last line of a killed run
            if row.get("step", 0) <= step:
                kept.append(line)
        temporary = self.path.with_suffix(".jsonl.tmp")
        temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, self.path)

    def on_step_end(self, trainer, logs) -> None:
        for key, value in logs.items():
            self.window[key] = self.window.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.count += 1
        if trainer.step % self.log_every == 0 or trainer.finished:
            self._flush(trainer)

    def _flush(self, trainer) -> None:
        if not self.count:
            return
        row = {"step": trainer.step, "epoch": trainer.epoch, "split": "train",
               **{k: v / self.counts[k] for k, v in self.window.items()},
               "lr": trainer.last_lr, "time": round(trainer.elapsed, 3)}  # the lr of the row's last step
        self.write(row)
        self.window, self.counts, self.count = {}, {}, 0

    def on_epoch_end(self, trainer, val_logs) -> None:
        self._flush(trainer)
        if val_logs:
            self.write({"step": trainer.step, "epoch": trainer.epoch, "split": "val", **val_logs,
                        "time": round(trainer.elapsed, 3)})

    def on_fit_end(self, trainer) -> None:
        self._flush(trainer)


class SampleCallback(Callback):
    """Saves ``model.snapshots`` (sample grids, reconstructions, filters; or texts) and GIFs of their evolution.

    The same fixed generator seed is used every time, so the frames of a GIF show the model changing, not the noise.
    """

    _FRAME = re.compile(r"^(?P<name>.+)-step(?P<step>\d{9})\.png$")

    def __init__(self, samples_dir: Path, every: int, num_samples: int, seed: int):
        self.samples_dir = samples_dir
        self.every = every
        self.num_samples = num_samples
        self.seed = seed
        self.last_step = -1
        self.listeners: list = []  # called with (trainer, pictures) after each snapshot (TensorBoardCallback)

    def on_fit_start(self, trainer) -> None:
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        for path in self.samples_dir.glob("*-step*.png"):
            match = self._FRAME.match(path.name)
            if match and int(match["step"]) > trainer.step:
                path.unlink()
        self.fixed_batch = None
        loader = trainer.data.val or trainer.data.test
        if loader is not None:
            self.fixed_batch = next(iter(loader), None)

    def on_step_end(self, trainer, logs) -> None:
        if self.every and trainer.step % self.every == 0:
            self.snapshot(trainer)

    def on_epoch_end(self, trainer, val_logs) -> None:
        if not self.every:
            self.snapshot(trainer)

    def snapshot(self, trainer) -> None:
        if trainer.step == self.last_step:
            return
        self.last_step = trainer.step
        model = trainer.model
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=trainer.device).manual_seed(self.seed)
        batch = trainer._to_device(self.fixed_batch) if self.fixed_batch is not None else None
        with torch.no_grad(), torch.random.fork_rng(
                devices=[trainer.device] if trainer.device.type == "cuda" else []):
            pictures = model.snapshots(self.num_samples, generator=generator, batch=batch)
        model.train(was_training)
        from genlab.image_files import save_grid

        texts = []
        for name, value in pictures.items():
            if isinstance(value, str):
                texts.append((name, value))
            else:
                save_grid(value, self.samples_dir / f"{name}-step{trainer.step:09d}.png",
                          normalize_each=name == "filters",
                          value_range=trainer.data.info.value_range)
        if texts:
            with open(self.samples_dir.parent / "samples.md", "a", encoding="utf-8") as handle:
                handle.write(f"\n## step {trainer.step} (epoch {trainer.epoch})\n\n")
                for name, text in texts:
                    handle.write(f"### {name}\n\n```\n{text}\n```\n\n")
        for listen in self.listeners:
            listen(trainer, pictures)

    def on_fit_end(self, trainer) -> None:
        if self.last_step != trainer.step:
            self.snapshot(trainer)
        from genlab.image_files import save_gif

        frames: dict[str, list[tuple[int, Path]]] = {}
        for path in self.samples_dir.glob("*-step*.png"):
            match = self._FRAME.match(path.name)
            if match:
                frames.setdefault(match["name"], []).append((int(match["step"]), path))
        for name, items in frames.items():
            if len(items) > 1:
                save_gif([p for _, p in sorted(items)], self.samples_dir / f"{name}.gif", duration_ms=300)


class CheckpointCallback(Callback):
    """Writes an atomic checkpoint every ``every`` steps (0: each epoch) and at the end; keeps the last K."""

    def __init__(self, checkpoints_dir: Path | None, every: int, keep_last: int, minutes: float = 0.0):
        # None: a DDP rank other than 0, which writes nothing but hands its random and model state to rank 0.
        self.checkpoints_dir = checkpoints_dir
        self.every = every
        self.keep_last = keep_last
        self.minutes = minutes
        self.last_step = -1
        self.last_time = time.monotonic()

    def on_fit_start(self, trainer) -> None:
        self.last_step = trainer.step
        self.last_time = time.monotonic()
        if self.checkpoints_dir is not None:
            ckpt.remove_temporary_checkpoints(self.checkpoints_dir)  # left by a run killed while writing one
            existing = ckpt.list_checkpoints(self.checkpoints_dir)
            trainer.last_checkpoint = existing[-1] if existing else None

    def save(self, trainer) -> None:
        if trainer.step == self.last_step:
            return
        bad = [name for name, p in trainer.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            from genlab.errors import TrainingError

            raise TrainingError(f"parameters {', '.join(bad[:3])} became non-finite at step {trainer.step}; not "
                                f"saving them; {trainer.checkpoint_kept()}. Lower optim.lr and resume.")
        trainer.check_parameters()  # a diverged state never becomes the latest checkpoint
        state = trainer.state_dict()  # under DDP a collective, so every rank gets here
        if self.checkpoints_dir is not None:
            trainer.last_checkpoint = ckpt.save_checkpoint(self.checkpoints_dir, trainer.step, trainer.model,
                                                           trainer.config.to_dict(), state, self.keep_last,
                                                           data_info=getattr(trainer.data, "info", None))
        self.last_step = trainer.step
        self.last_time = time.monotonic()

    def on_step_end(self, trainer, logs) -> None:
        if trainer.batch_in_epoch == 0:
            return  # the epoch-end checkpoint comes next
        due = bool(self.every) and trainer.step % self.every == 0
        if not due and self.minutes > 0:
            due = time.monotonic() - self.last_time >= 60.0 * self.minutes
            if trainer.dist.enabled:  # every rank joins a checkpoint (a collective): one rank's clock decides
                from genlab.training.distributed import all_ranks_agree

                due = not all_ranks_agree(not due, trainer.device)
        if due:
            self.save(trainer)

    def on_epoch_end(self, trainer, val_logs) -> None:
        self.save(trainer)

    def on_fit_end(self, trainer) -> None:
        self.save(trainer)


class WallClockBudget(Callback):
    """Asks the trainer to stop once ``budget_s`` seconds of wall time have passed since ``started``
    (a ``time.perf_counter()`` value; default: when the fit starts). Benchmarks use it to train "for 30 minutes"."""

    def __init__(self, budget_s: float, started: float | None = None):
        self.budget_s = budget_s
        self.started = started
        self.stopped_early = False

    def on_fit_start(self, trainer) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def on_step_end(self, trainer, logs) -> None:
        if time.perf_counter() - self.started >= self.budget_s and not trainer.finished:
            trainer.stop_requested = True
            self.stopped_early = True


class TensorBoardCallback(Callback):
    """Mirrors a run into TensorBoard event files under ``log_dir``, for browsing runs side by side while they train;
    ``metrics.jsonl`` stays the record. It samples nothing itself: it listens to the metrics and sample callbacks,
    so TensorBoard shows exactly the rows and grids the run saved. Weight histograms come once per epoch.

    A resumed run hides what a killed run logged after its last checkpoint (``purge_step``), as metrics.jsonl does.
    """

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError('train.tensorboard=true needs TensorBoard: pip install "genlab[tensorboard]"') from None
        self.make_writer = SummaryWriter
        self.log_dir = log_dir
        self.writer = None
        self.histogram_step = -1

    def on_fit_start(self, trainer) -> None:
        self.writer = self.make_writer(str(self.log_dir), purge_step=trainer.step + 1 if trainer.step else None)
        self.value_range = trainer.data.info.value_range

    def add_row(self, row: dict[str, Any]) -> None:
        """A metrics.jsonl row: every number but its step becomes the scalar ``split/key`` (train/loss)."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key not in ("step", "split") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def add_pictures(self, trainer, pictures: dict[str, Any]) -> None:
        """A sample callback snapshot: image batches as the same grids as its PNGs (mapped to [0, 1]), texts as text."""
        from genlab.image_files import make_grid

        if self.writer is None:
            return
        for name, value in pictures.items():
            if isinstance(value, str):
                self.writer.add_text(f"samples/{name}", f"```\n{value}\n```", trainer.step)
            else:
                grid = make_grid(value, normalize_each=name == "filters", value_range=self.value_range)
                self.writer.add_image(f"samples/{name}", grid, trainer.step,
                                      dataformats="HW" if grid.ndim == 2 else "HWC")

    def add_histograms(self, trainer) -> None:
        if self.histogram_step == trainer.step:
            return
        self.histogram_step = trainer.step
        for name, parameter in trainer.model.named_parameters():
            values = parameter.detach().float().cpu().flatten()
            values = values[torch.isfinite(values)]
            if values.numel():
                self.writer.add_histogram(f"weights/{name}", values, trainer.step)

    def on_epoch_end(self, trainer, val_logs) -> None:
        self.add_histograms(trainer)

    def on_fit_end(self, trainer) -> None:
        self.add_histograms(trainer)  # a run stopped mid-epoch (max_steps) still shows its last weights
        self._close()

    def on_fit_error(self, trainer, error) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # flushes
            self.writer = None


def default_callbacks(run_dir: Path | None, trainer_config, is_main: bool,
                      checkpointing: bool = False) -> list[Callback]:
    """The standard set: progress everywhere it is wanted; files only from rank 0 with a run directory. Under DDP
    (``checkpointing`` on a rank other than 0) the other ranks join each checkpoint without writing."""
    callbacks: list[Callback] = [ProgressCallback(trainer_config.progress and is_main)]
    if checkpointing and not is_main:
        callbacks.append(CheckpointCallback(None, trainer_config.checkpoint_every, trainer_config.keep_last,
                                            trainer_config.checkpoint_minutes))
    if run_dir is not None and is_main:
        metrics = MetricsCallback(run_dir / "metrics.jsonl", trainer_config.log_every)
        samples = SampleCallback(run_dir / "samples", trainer_config.sample_every, trainer_config.num_samples,
                                 seed=trainer_config.seed + 777)
        callbacks += [metrics, samples]
        if trainer_config.tensorboard:  # after metrics and samples, so it closes after their last rows and grids
            board = TensorBoardCallback(run_dir / "tensorboard")
            metrics.listeners.append(board.add_row)
            samples.listeners.append(board.add_pictures)
            callbacks.append(board)
        callbacks.append(CheckpointCallback(run_dir / "checkpoints", trainer_config.checkpoint_every,
                                            trainer_config.keep_last, trainer_config.checkpoint_minutes))
    return callbacks
