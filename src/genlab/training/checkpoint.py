"""Checkpoints: ``model.safetensors`` (weights + config) and ``train_state.pt`` (everything else).

``model.safetensors`` is what sample/eval/serve load: plain tensors plus the run config and the
data's description (:class:`~genlab.data.info.DataInfo`: shape, classes, value range, vocabulary) as JSON
metadata, so a checkpoint rebuilds its own model and says what its samples are. ``train_state.pt`` holds
optimizer, scheduler, step, RNG states and model state such as persistent chains; it is read with ``torch.load(weights_only=True)``, so a tampered file can
never execute code. Each checkpoint is written into a temporary directory, fsynced and renamed into place,
so a process killed at any moment leaves either the previous checkpoint or the new one, never half of one; a
temporary directory such a kill leaves behind is removed when the run starts again. ``manifest.json``, written
last, holds the sha256 of both files, and every load checks it, so flipped bytes inside tensor data are a
CheckpointError naming the file rather than silently different weights.

Reading (the file names, manifest checks, :func:`latest_checkpoint`, :func:`list_checkpoints`,
:func:`read_model_file`) lives in :mod:`genlab.checkpoint_files`, below the models layer, and is re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from genlab.checkpoint_files import (
    DATA_INFO_KEY,
    FORMAT,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    file_sha256,
    latest_checkpoint,
    list_checkpoints,
    read_data_info,
    read_model_file,
    samples_value_range,
    verify_against_manifest,
)
from genlab.data.info import DataInfo
from genlab.errors import CheckpointError, ConfigError

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "RunLock",
    "file_sha256",
    "latest_checkpoint",
    "list_checkpoints",
    "load_model",
    "load_train_state",
    "read_data_info",
    "read_model_file",
    "remove_temporary_checkpoints",
    "save_checkpoint",
    "samples_value_range",
    "save_model_file",
    "verify_against_manifest",
]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())


def save_model_file(path: Path, model: torch.nn.Module, run_config: dict, data_info: DataInfo | None = None) -> None:
    """Weights as plain tensors; the run config and the description of the data the model was trained on
    (:class:`~genlab.data.info.DataInfo`: shape, classes, value range, vocabulary) as JSON metadata."""
    tensors = {name: tensor.detach().contiguous().cpu().clone() for name, tensor in model.state_dict().items()}
    metadata = {"format": FORMAT, "run_config": json.dumps(run_config)}
    if data_info is not None:
        metadata[DATA_INFO_KEY] = json.dumps(dataclasses.asdict(data_info))
    save_file(tensors, str(path), metadata=metadata)


def save_checkpoint(checkpoints_dir: Path, step: int, model: torch.nn.Module, run_config: dict,
                    train_state: dict[str, Any], keep_last: int, data_info: DataInfo | None = None) -> Path:
    """Atomically write ``checkpoints_dir/step-NNNNNNNNN/`` and prune to the newest ``keep_last``."""
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / f"step-{step:09d}"
    temporary = checkpoints_dir / f".tmp-step-{step:09d}-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    save_model_file(temporary / MODEL_FILE, model, run_config, data_info)
    torch.save(train_state, temporary / STATE_FILE)
    for name in (MODEL_FILE, STATE_FILE):
        _fsync_file(temporary / name)
    manifest = {"format": FORMAT,
                "sha256": {name: file_sha256(temporary / name) for name in (MODEL_FILE, STATE_FILE)}}
    (temporary / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    _fsync_file(temporary / MANIFEST_FILE)
    _fsync_dir(temporary)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    _fsync_dir(checkpoints_dir)
    for old in list_checkpoints(checkpoints_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_temporary_checkpoints(checkpoints_dir: Path) -> None:
    """Delete ``.tmp-step-*`` directories a process killed while writing a checkpoint left behind."""
    if checkpoints_dir.is_dir():
        for leftover in checkpoints_dir.glob(".tmp-step-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def load_model(path: Path, device: str | torch.device = "cpu"):
    """Rebuild a model from a checkpoint directory, run directory or ``model.safetensors`` file.

    Returns ``(model, run_config)``; the model is in eval mode on ``device``.
    """
    from genlab import registry
    from genlab.config import build_run_config

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: pass a run directory (runs/<model>-<dataset>-<time>), "
                              "one of its checkpoints/step-N directories, or a model.safetensors file")
    if path.is_dir():
        path = latest_checkpoint(path) / MODEL_FILE
    tensors, config_dict = read_model_file(path)
    try:
        run_config = build_run_config(config_dict)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its stored config is invalid: {exc}") from None
    entry = registry.get(run_config.model_name)
    model = entry.model_cls(run_config.model)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the {entry.name} model they claim to be: {first}") from None
    return model.to(device).eval(), run_config


def load_train_state(path: Path) -> dict[str, Any]:
    """Load ``train_state.pt`` with ``weights_only=True``; anything else than plain data is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    verify_against_manifest(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, TypeError, KeyError, IndexError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is corrupt, truncated or not a plain-data train state "
                              f"(refused to load: {message[:200]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a genlab train state")
    return state


class RunLock:
    """An exclusive lock on a run directory while a process trains into it, so two ``--resume`` of one run
    cannot interleave its checkpoints and metrics. The second gets a CheckpointError naming the holder's pid.
    The lock is the kernel's (flock), so a killed holder releases it; where flock is missing it is a no-op."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.handle = None

    def __enter__(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise CheckpointError(f"{self.path.parent} is being trained by another process (pid {holder}); wait for "
                                  "it to finish or stop it before resuming this run") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the flock
            self.handle = None
