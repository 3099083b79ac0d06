"""Reading genlab checkpoints: the file names and format tag, manifest checks, a run's latest checkpoint and the
tensors + run config of a ``model.safetensors``.

Moved here from :mod:`genlab.training.checkpoint` (which re-exports every name and keeps writing, resuming and
rebuilding models) so that a model, e.g. ``dbn-classifier``'s ``model.init_from``, can read a checkpoint without
importing the training layer. Depends on nothing above :mod:`genlab.errors` and :mod:`genlab.data.info`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from genlab.data.info import DataInfo
from genlab.errors import CheckpointError


FORMAT = "genlab-1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
MANIFEST_FILE = "manifest.json"
DATA_INFO_KEY = "data_info"  # model.safetensors metadata: the DataInfo of the training data, as JSON
_STEP_DIR = re.compile(r"^step-(\d{9})$")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_against_manifest(path: Path) -> None:
    """CheckpointError if ``path`` (a checkpoint's model or state file) differs from the sha256 its directory's
    manifest recorded. Checkpoints written before manifests existed have none and are not checked."""
    manifest_path = Path(path).parent / MANIFEST_FILE
    if not manifest_path.is_file():
        return
    try:
        expected = json.loads(manifest_path.read_text(encoding="utf-8"))["sha256"][Path(path).name]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{manifest_path} is unreadable or does not list {Path(path).name}; the checkpoint "
                              "is damaged: resume from an earlier one or start again") from None
    if file_sha256(path) != expected:
        raise CheckpointError(f"{path} does not match the sha256 its checkpoint recorded (truncated or corrupt, or "
                              "tampered with); refusing to load it. Resume from an earlier checkpoint or start again")


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    if not checkpoints_dir.is_dir():
        return []
    found = [p for p in checkpoints_dir.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint directory of a run, or a CheckpointError explaining what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if (run_dir / MODEL_FILE).is_file():
        return run_dir  # a checkpoint directory given directly
    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise CheckpointError(f"{run_dir} has no checkpoints (expected {run_dir / 'checkpoints'}/step-*/); "
                              "train it first or pass a run directory that finished at least one checkpoint")
    return found[-1]


def _readable(path: Path, read):
    """``read()``, with a safetensors or file error turned into one CheckpointError naming ``path``."""
    try:
        return read()
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from None


def _verified_metadata(path: Path) -> dict[str, str]:
    """The metadata of the ``model.safetensors`` at ``path`` once the file matches its manifest (metadata edited
    after saving is refused like edited weights); CheckpointError if missing, tampered with or unreadable."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    verify_against_manifest(path)

    def metadata() -> dict[str, str]:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}

    return _readable(path, metadata)


def read_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and the run-config dict of a ``model.safetensors``; CheckpointError if unreadable."""
    path = Path(path)
    metadata = _verified_metadata(path)
    tensors = _readable(path, lambda: load_file(str(path)))
    if metadata.get("format") != FORMAT or "run_config" not in metadata:
        raise CheckpointError(f"{path} is not a genlab checkpoint (no genlab config in its metadata)")
    try:
        run_config = json.loads(metadata["run_config"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the config stored in its metadata is not valid JSON") from None
    return tensors, run_config


def read_data_info(path: Path) -> DataInfo | None:
    """The :class:`~genlab.data.info.DataInfo` saved with a checkpoint (a run or checkpoint directory, or a
    ``model.safetensors``); None for checkpoints written before it was saved. CheckpointError if malformed."""
    path = Path(path)
    if path.is_dir():
        path = latest_checkpoint(path) / MODEL_FILE
    stored = _verified_metadata(path).get(DATA_INFO_KEY)
    if stored is None:
        return None
    try:
        fields = json.loads(stored)
        fields["shape"] = tuple(int(d) for d in fields["shape"])
        fields["value_range"] = tuple(float(v) for v in fields["value_range"])
        return DataInfo(**fields)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: the data description stored in its metadata is malformed") from None


def samples_value_range(path: Path, run_config) -> tuple[float, float]:
    """The value range of a checkpoint's samples: from its saved DataInfo, or (older checkpoints) its config."""
    info = read_data_info(path)
    return tuple(info.value_range) if info is not None else run_config.data.value_range
