"""From a RunConfig to a finished run directory: data, model, trainer, callbacks, resume."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from genlab import registry
from genlab.config import RunConfig, build_run_config, dump_yaml, load_yaml
from genlab.data.datasets import DataBundle, build_data
from genlab.device import resolve_device
from genlab.errors import CheckpointError, ConfigError
from genlab.training import checkpoint as ckpt
from genlab.training.callbacks import default_callbacks
from genlab.training.distributed import (
    DistInfo,
    init_distributed,
    max_replica_difference,
    shutdown_distributed,
)
from genlab.training.trainer import Trainer, seed_everything


def new_run_dir(config: RunConfig) -> Path:
    dataset = Path(config.data.dataset).stem if Path(config.data.dataset).suffix else config.data.dataset
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.train.out_dir) / f"{config.model_name}-{dataset}-{stamp}"
    candidate, suffix = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{suffix}")
        suffix += 1
    return candidate


def load_run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a genlab run directory (no config.yaml)")
    return load_yaml(path)


def resume_config(run_dir: Path) -> dict:
    """The config to continue ``run_dir`` with: the one stored in its newest checkpoint, which trained the state
    being resumed (config.yaml is rewritten by every start, also by one that then diverged); config.yaml when
    the run has no checkpoint yet."""
    load_run_config(run_dir)  # a clear error for a directory that is not a run
    try:
        latest = ckpt.latest_checkpoint(Path(run_dir))
    except CheckpointError:
        return load_run_config(run_dir)
    _, config = ckpt.read_model_file(latest / ckpt.MODEL_FILE)
    return config


def build_model(config: RunConfig, data: DataBundle):
    """Adapt the model config to the data (input size, vocabulary) and build the model."""
    entry = registry.get(config.model_name)
    model_config = entry.model_cls.adapt_config(config.model, data.info)
    config = dataclasses.replace(config, model=model_config)
    return entry.model_cls(model_config), config


@dataclasses.dataclass
class FitOutcome:
    """What :func:`fit` leaves behind: the run directory (None on non-main ranks or without writing), the
    trainer (its model, step and elapsed time), the model-adapted config, the data, and where a resumed run
    started from (step 0 and 0 s for a new run)."""

    run_dir: Path | None
    trainer: Trainer
    config: RunConfig
    data: DataBundle
    first_step: int
    first_elapsed: float


def train(config: RunConfig, *, resume_dir: Path | None = None, run_dir: Path | None = None,
          write: bool = True) -> Path | None:
    """Train (or resume) a run; returns the run directory (None on non-main ranks or when ``write`` is off)."""
    return fit(config, resume_dir=resume_dir, run_dir=run_dir, write=write).run_dir


def fit(config: RunConfig, *, resume_dir: Path | None = None, resume_matching_in: Path | None = None,
        run_dir: Path | None = None, write: bool = True, extra_callbacks: tuple = ()) -> FitOutcome:
    """Train (or resume) a run and return its :class:`FitOutcome`.

    ``resume_dir`` continues that run; ``resume_matching_in`` continues the newest run under that directory that
    trains the same thing (:func:`find_resumable_run`), or starts a new one when there is none, so wall-clock
    budgets spread over several calls add up. ``extra_callbacks`` go after the default ones (e.g. a
    :class:`~genlab.training.callbacks.WallClockBudget`)."""
    device = resolve_device(config.train.device)
    dist_info = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    try:
        outcome = _fit(config, device, dist_info, resume_dir, resume_matching_in, run_dir, write,
                       list(extra_callbacks))
    except BaseException:
        # No barrier: the other ranks may be waiting in a collective this rank will never join.
        shutdown_distributed(wait_for_others=False)
        raise
    shutdown_distributed()
    return outcome


def _fit(config: RunConfig, device: torch.device, dist_info: DistInfo, resume_dir: Path | None,
         resume_matching_in: Path | None, run_dir: Path | None, write: bool, extra_callbacks: list) -> FitOutcome:
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.train.seed)
    data = build_data(config.data, seed=config.train.seed, rank=dist_info.rank, world_size=dist_info.world_size)
    seed_everything(config.train.seed)
    model, config = build_model(config, data)
    if resume_dir is None and resume_matching_in is not None:
        # Matched against the adapted config, as the run saved it.
        resume_dir = find_resumable_run(resume_matching_in, config)
    state = None
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        state = load_latest_checkpoint(model, run_dir)
    else:
        model.init_from_data(data.train)
        if write and dist_info.is_main:
            run_dir = run_dir or new_run_dir(config)
    model.to(device)
    lock = ckpt.RunLock(run_dir) if write and dist_info.is_main and run_dir is not None else nullcontext()
    with lock:
        return _train_into(config, model, data, device, dist_info, run_dir, state, write, extra_callbacks)


def _train_into(config: RunConfig, model, data: DataBundle, device: torch.device, dist_info: DistInfo,
                run_dir: Path | None, state: dict | None, write: bool, extra_callbacks: list) -> FitOutcome:
    if write and dist_info.is_main and run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
    callbacks = default_callbacks(run_dir if write else None, config.train, dist_info.is_main,
                                  checkpointing=write and dist_info.enabled) + extra_callbacks
    trainer = Trainer(model, config, data, device=device, dist_info=dist_info, run_dir=run_dir,
                      callbacks=callbacks)
    if state is not None:
        trainer.load_state_dict(state)
        state = None  # every rank's chains and buffers: not kept for the whole run
    else:
        # Model initialisation used the shared seed; training noise gets a per-rank stream. Rank 0 keeps the seed
        # (a single process trains as before); the others get streams no other seed's rank 0 uses.
        seed_everything(training_noise_seed(config.train.seed, dist_info.rank))
    first_step, first_elapsed = trainer.step, trainer.elapsed
    trainer.fit()
    if dist_info.enabled:
        difference = max_replica_difference(model)
        if dist_info.is_main and write and run_dir is not None:
            with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": trainer.step, "event": "ddp_check",
                                         "world_size": dist_info.world_size,
                                         "max_param_diff": difference}) + "\n")
    return FitOutcome(run_dir=run_dir if dist_info.is_main else None, trainer=trainer, config=config, data=data,
                      first_step=first_step, first_elapsed=first_elapsed)


def training_noise_seed(seed: int, rank: int) -> int:
    """The seed of a rank's training noise: ``seed`` on rank 0; on the others a value above 2^40, which no
    ordinary seed reaches (with ``seed + rank``, rank 1 of seed s drew the noise of rank 0 of seed s + 1)."""
    return seed if rank == 0 else (2**40 + seed * 1_000_003 + rank) % 2**63


def load_latest_checkpoint(model: torch.nn.Module, run_dir: Path) -> dict:
    """Load the newest checkpoint of ``run_dir`` into ``model`` (built from the run's config); returns the
    trainer state to pass to :meth:`Trainer.load_state_dict`."""
    latest = ckpt.latest_checkpoint(run_dir)
    tensors, _ = ckpt.read_model_file(latest / ckpt.MODEL_FILE)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{latest}: weights do not fit this model: {str(exc).splitlines()[0]}") from None
    return ckpt.load_train_state(latest / ckpt.STATE_FILE)


# Sections of a run's config that decide what it learns; the rest (where data and runs live, threads, logging,
# checkpoint cadence) may differ between a run and the command that continues it.
_LEARNING_KEYS = ("model_name", "model", "optim")
_DATA_LOCATION_KEYS = ("data_dir", "download")
_TRAIN_KEYS = ("epochs", "max_steps", "seed", "amp")


def _learning_settings(config: dict) -> dict:
    config = json.loads(json.dumps(config))  # tuples -> lists, as in a config read back from YAML
    data = {k: v for k, v in (config.get("data") or {}).items() if k not in _DATA_LOCATION_KEYS}
    train = {k: v for k, v in (config.get("train") or {}).items() if k in _TRAIN_KEYS}
    settings = {**{k: config.get(k) for k in _LEARNING_KEYS}, "data": data, "train": train}
    if isinstance(settings.get("model"), dict):
        ignored = registry.get(str(config.get("model_name"))).model_cls.execution_only_config_keys
        settings["model"] = {k: v for k, v in settings["model"].items() if k not in ignored}
    return settings


def find_resumable_run(parent: Path, config: RunConfig) -> Path | None:
    """The newest run directory under ``parent`` that trains exactly what ``config`` trains (same model, data,
    optimiser, epochs and seed; locations, threads and logging may differ) and has a checkpoint to continue
    from; None when there is none. Benchmarks that train for a time budget use it to add budgets up."""
    wanted = _learning_settings(config.to_dict())
    candidates = sorted((p for p in Path(parent).glob("*/config.yaml")), key=lambda p: p.stat().st_mtime,
                        reverse=True)
    for config_file in candidates:
        run_dir = config_file.parent
        raw = None
        try:
            raw = load_run_config(run_dir)
            # Through the config classes, so a run saved before a field with a default existed still matches.
            saved = build_run_config(raw).to_dict()
            if _learning_settings(saved) != wanted or not ckpt.list_checkpoints(
                    run_dir / "checkpoints"):
                continue
        except (CheckpointError, ConfigError) as exc:
            # Starting afresh silently would throw away hours of a long run that only needs its config mended.
            if not isinstance(raw, dict) or raw.get("model_name") == config.model_name:
                warnings.warn(f"not resuming {run_dir}: its saved config is unreadable or no longer valid ({exc}); "
                              "mend its config.yaml to continue it", stacklevel=2)
            continue
        return run_dir
    return None
