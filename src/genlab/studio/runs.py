"""The runs directory as the studio sees it: safe name resolution, scanning, and per-run summaries.

A run is named by its path relative to the runs directory (``rbm-mnist-20261122-031500`` or
``sweeps/vae-mnist-...``). Names come from the network, so :meth:`RunsIndex.resolve` accepts only plain relative
segments and then checks that the *resolved* path (symlinks followed) still lies inside the runs directory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.studio.errors import StudioError

# A name segment: starts with a letter, digit or underscore (so never "." or ".."), then a conservative alphabet.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$")
_MAX_NAME = 512
# Scanning depth below the runs directory: runs/<name> and runs/<group>/<name>.
_MAX_DEPTH = 2
_SAMPLE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\.(png|gif)$")
_FRAME = re.compile(r"^(?P<name>.+)-step(?P<step>\d{9})\.png$")
# Metric-row keys that are bookkeeping, not measurements.
_NOT_METRICS = {"step", "epoch", "split", "time", "lr", "event"}
_MAX_TEXT_SAMPLES = 20_000  # characters of samples.md shown in the Runs panel (its tail)

CAPABILITIES = {
    # capability name -> methods a model class must have (beyond the base contract)
    "latent": ("encode", "decode"),
    "text": ("stream",),
    "chain": ("sample_chain",),
    "hopfield": ("recall", "energy"),
    "gan": ("generate", "sample_z", "prior_range", "check_label", "interpolate"),
}


def model_capabilities(model_cls: type) -> list[str]:
    """Capability names whose methods ``model_cls`` has (checked with hasattr, so any family can opt in)."""
    found = [name for name, methods in CAPABILITIES.items() if all(hasattr(model_cls, m) for m in methods)]
    if getattr(model_cls, "kind", "image") == "image":
        found.append("sample")
    return found


@dataclass(frozen=True)
class RunRef:
    """A validated run: its name (relative path, '/'-separated) and resolved directory."""

    name: str
    path: Path


class RunsIndex:
    """Finds runs below ``root`` and summarises them; never reads or serves anything outside ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise StudioError(404, f"runs directory {root} does not exist; train a model first "
                                   "(genlab train ...) or pass the directory that holds your runs")
        self._summaries: dict[Path, tuple[tuple, dict]] = {}

    # ------------------------------------------------------------------ names

    def resolve(self, name: str) -> RunRef:
        """The run called ``name``; 400 for a malformed name, 404 for one that is not a run inside the root."""
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
            raise StudioError(400, f"run names are 1 to {_MAX_NAME} characters")
        segments = name.split("/")
        if "\\" in name or any(not _SEGMENT.match(segment) for segment in segments):
            raise StudioError(400, f"invalid run name {name!r}: use the name listed by /api/runs (relative "
                                   "path segments of letters, digits, '.', '_', '+', '-'; no '..', no leading '/')")
        candidate = self.root.joinpath(*segments)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise StudioError(404, f"no run named {name!r} in {self.root}") from None
        if not resolved.is_relative_to(self.root) or not self._is_run(resolved):
            raise StudioError(404, f"no run named {name!r} in {self.root}")
        return RunRef(name, resolved)

    @staticmethod
    def _is_run(path: Path) -> bool:
        return path.is_dir() and (path / "config.yaml").is_file()

    def names(self) -> list[str]:
        """Run names below the root (depth <= 2), newest first by directory modification time."""
        found: list[tuple[float, str, Path, bool]] = []

        def walk(directory: Path, prefix: str, depth: int) -> None:
            try:
                children = sorted(directory.iterdir())
            except OSError:
                return
            for child in children:
                if not _SEGMENT.match(child.name) or not child.is_dir():
                    continue
                name = f"{prefix}{child.name}"
                try:
                    inside = child.resolve().is_relative_to(self.root)
                except (OSError, RuntimeError):
                    continue
                if not inside:
                    continue  # a symlink leading out of the runs directory is not listed (nor served)
                if self._is_run(child):
                    found.append((child.stat().st_mtime, name, child.resolve(), child.is_symlink()))
                elif depth < _MAX_DEPTH:
                    walk(child, name + "/", depth + 1)

        walk(self.root, "", 1)
        # A symlink to a run inside the root names that run again: list each run once, under its real name.
        chosen: dict[Path, tuple[float, str, Path, bool]] = {}
        for entry in sorted(found, key=lambda item: (item[3], item[1])):
            chosen.setdefault(entry[2], entry)
        return [entry[1] for entry in sorted(chosen.values(), key=lambda item: (-item[0], item[1]))]

    def sample_file(self, run: RunRef, filename: str) -> Path:
        """A PNG/GIF in the run's ``samples/`` folder, checked like a run name."""
        if not _SAMPLE_FILE.match(filename or ""):
            raise StudioError(400, f"invalid sample file name {filename!r}: expected NAME.png or NAME.gif")
        path = run.path / "samples" / filename
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise StudioError(404, f"run {run.name} has no samples/{filename}") from None
        if not resolved.is_relative_to(run.path) or not resolved.is_file():
            raise StudioError(404, f"run {run.name} has no samples/{filename}")
        return resolved

    # ------------------------------------------------------------------ summaries

    def summary(self, run: RunRef) -> dict[str, Any]:
        """Model, dataset, capabilities, key metrics and picture files of a run (cached until its files change)."""
        stamp = tuple(_mtime(run.path / part) for part in
                      ("config.yaml", "metrics.jsonl", "eval.json", "samples", "checkpoints", "samples.md"))
        cached = self._summaries.get(run.path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        summary = _summarise(run)
        self._summaries[run.path] = (stamp, summary)
        return summary


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1.0


def _summarise(run: RunRef) -> dict[str, Any]:
    from genlab import registry
    from genlab.config import load_yaml
    from genlab.errors import GenlabError
    from genlab.training.checkpoint import list_checkpoints

    summary: dict[str, Any] = {"name": run.name, "model": None, "dataset": None, "kind": None,
                               "capabilities": [], "error": None}
    try:
        config = load_yaml(run.path / "config.yaml")
    except GenlabError as exc:
        summary["error"] = str(exc)
        config = {}
    model_name = config.get("model_name")
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    summary["model"] = model_name
    dataset = str(data.get("dataset", "")) if data.get("dataset") is not None else None
    summary["dataset"] = Path(dataset).stem if dataset and Path(dataset).suffix else dataset
    if model_name:
        try:
            entry = registry.get(str(model_name))
            summary["kind"] = getattr(entry.model_cls, "kind", "image")
            summary["capabilities"] = model_capabilities(entry.model_cls)
            summary["description"] = entry.description
        except GenlabError as exc:
            summary["error"] = f"model {model_name!r} is not available in this genlab install ({exc})"
    checkpoints = list_checkpoints(run.path / "checkpoints")
    summary["checkpoint"] = checkpoints[-1].name if checkpoints else None
    if not checkpoints and summary["error"] is None:
        summary["error"] = "no checkpoint yet: the studio can show files but not load the model"
    summary.update(_metrics_summary(run.path))
    summary["samples"] = _sample_files(run.path / "samples")
    summary["has_text_samples"] = (run.path / "samples.md").is_file()
    return summary


def _finite_numbers(row: dict) -> dict[str, float]:
    return {key: float(value) for key, value in row.items()
            if key not in _NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def _metrics_summary(path: Path) -> dict[str, Any]:
    """Step, last train and val rows (numeric values only) and eval.json, whichever exist."""
    import json

    from genlab.errors import GenlabError
    from genlab.viz.plots import read_metrics

    result: dict[str, Any] = {"step": None, "train": {}, "val": {}, "eval": {}, "has_metrics": False}
    if (path / "metrics.jsonl").is_file():
        try:
            rows = read_metrics(path / "metrics.jsonl")
        except (GenlabError, OSError, UnicodeDecodeError):
            rows = []
        result["has_metrics"] = any(row.get("split") in ("train", "val") for row in rows if isinstance(row, dict))
        for row in rows:
            if not isinstance(row, dict):
                continue
            if isinstance(row.get("step"), int):
                result["step"] = row["step"]
            if row.get("split") in ("train", "val"):
                result[row["split"]] = _finite_numbers(row)
    if (path / "eval.json").is_file():
        try:
            document = json.loads((path / "eval.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            document = {}
        if isinstance(document, dict):
            result["eval"] = _finite_numbers(document)
    return result


def _sample_files(folder: Path) -> list[dict[str, Any]]:
    """The newest PNG grid per picture name, and each GIF, as {name, file, step}."""
    if not folder.is_dir():
        return []
    newest: dict[str, tuple[int, str]] = {}
    gifs = []
    for child in sorted(folder.iterdir()):
        if not _SAMPLE_FILE.match(child.name):
            continue
        match = _FRAME.match(child.name)
        if match:
            step = int(match["step"])
            if step >= newest.get(match["name"], (-1, ""))[0]:
                newest[match["name"]] = (step, child.name)
        elif child.suffix == ".gif":
            gifs.append({"name": child.stem, "file": child.name, "step": None})
        else:
            newest.setdefault(child.stem, (-1, child.name))
    pictures = [{"name": name, "file": file, "step": step if step >= 0 else None}
                for name, (step, file) in sorted(newest.items())]
    return pictures + gifs


def text_samples_tail(run: RunRef) -> str:
    """The end of the run's ``samples.md`` (text models write their samples there)."""
    path = run.path / "samples.md"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[-_MAX_TEXT_SAMPLES:]
