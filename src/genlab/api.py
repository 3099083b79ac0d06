"""genlab from Python: train, resume, load, sample and evaluate runs, as the CLI does (the CLI calls these).

    import genlab
    run = genlab.train("rbm", epochs=5)                 # the model's default preset, like `genlab train rbm`
    images = run.sample(16)                             # (16, 1, 28, 28) in [0, 1]
    genlab.evaluate(run.path)                           # {'test_loglik_nats': ..., ...}
    model = genlab.load("runs/rbm-mnist-...")           # the nn.Module, with .sample(n, generator=...)

Configs are composed exactly as on the command line (:func:`genlab.config.compose_run_config`): the model's
defaults, its default preset (or ``preset=``), then ``overrides``. Errors are the CLI's typed
:class:`~genlab.errors.GenlabError` subclasses, raised, never ``sys.exit``. In-memory data is accepted:
``dataset=`` a numpy array or torch tensor of images (or an ``(images, labels)`` pair), or a str holding the
text itself (a str with a line break; without one it is a dataset name or path). It is checked as a file would
be and kept beside the runs (``<out>/.data/``), so the run can be resumed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.config import RunConfig, compose_run_config
from genlab.errors import ConfigError, DataError


@dataclass
class Run:
    """A run directory and what was trained into it.

    ``path`` is the run directory, ``config`` the config it was trained with; ``model`` (loaded on first use,
    on the CPU) is the newest checkpoint's model in eval mode.
    """

    path: Path
    config: RunConfig
    _model: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load(self.path, device="cpu")
        return self._model

    def metrics(self, split: str | None = None) -> list[dict]:
        """The rows of metrics.jsonl (one dict per log line), optionally only those of ``split`` (train, val)."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [row for row in rows if split is None or row.get("split") == split]

    def sample(self, n: int, *, seed: int = 0, **options: Any) -> torch.Tensor:
        """``n`` samples of the model (images (n, C, H, W) in the data's range; token ids for text), drawn with
        a generator seeded by ``seed``; ``options`` are the model's (``steps``, ``label``, ``temperature``...)."""
        return sample(self.model, n, seed=seed, **options)

    def evaluate(self, **options: Any) -> dict:
        """:func:`evaluate` of this run."""
        return evaluate(self.path, **options)


def models() -> dict[str, Any]:
    """The registry: model name -> its entry (``description``, ``default_dataset``, ``default_preset``,
    ``config_cls``, ``model_cls``)."""
    from genlab import registry

    return {entry.name: entry for entry in registry.entries()}


def presets() -> list[str]:
    """Names of the bundled presets (``preset=`` of :func:`train`)."""
    from genlab.preset_files import preset_names

    return preset_names()


def train(model: str, *, preset: str | None = None, dataset: Any = None, epochs: int | None = None,
          overrides: Mapping[str, Any] | Sequence[str] | None = None, out: str | Path = "runs",
          seed: int | None = None, device: str | None = None) -> Run | None:
    """Train ``model`` (a name from :func:`models`) and return the :class:`Run`.

    ``preset``: a preset name or YAML path (default: the model's default preset). ``dataset``: a dataset name
    (``"mnist"``, ``"Fashion_MNIST"``), a file path, an image array/tensor (or ``(images, labels)``), or text.
    ``overrides``: ``{"optim.lr": 0.01}`` or ``["optim.lr=0.01"]``, applied last. Ctrl-C writes a checkpoint
    and raises :class:`~genlab.errors.TrainingInterrupted`; :func:`resume` continues. Under torchrun, the
    ranks other than 0 return None.
    """
    if not isinstance(model, str):
        raise ConfigError(f"model must be a model name such as 'rbm' (see genlab.models()), got {model!r}")
    from genlab import registry

    registry.get(model)  # an unknown model is refused before any data is stored
    settings: dict[str, Any] = {"train.out_dir": str(out)}
    if dataset is not None:
        settings["data.dataset"] = dataset_source(dataset, Path(out))
    for key, value in (("train.epochs", epochs), ("train.seed", seed), ("train.device", device)):
        if value is not None:
            settings[key] = value
    config = compose_run_config(model, preset=preset, overrides=_merge(settings, overrides))
    return run_training(config)


def resume(run_dir: str | Path, overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Run | None:
    """Continue ``run_dir`` from its newest checkpoint, with the config that checkpoint was trained with
    (plus ``overrides``, e.g. ``{"train.epochs": 20}``); the result equals an uninterrupted run."""
    from genlab.training.run import resume_config

    run_dir = Path(run_dir)
    config = compose_run_config(base=resume_config(run_dir), overrides=_merge({}, overrides))
    return run_training(config, resume_dir=run_dir)


def run_training(config: RunConfig, *, resume_dir: Path | None = None) -> Run | None:
    """Train (or resume) ``config`` with the health monitors it asks for and draw its curves; the CLI's
    ``genlab train`` and :func:`train` both end here. None on the other ranks of a torchrun run (rank 0
    writes the run directory)."""
    from genlab.eval.monitor import health_callbacks
    from genlab.training.run import fit
    from genlab.viz.plots import plot_metrics

    outcome = fit(config, resume_dir=resume_dir, extra_callbacks=tuple(health_callbacks(config)))
    run_dir = outcome.run_dir
    if run_dir is None:
        return None
    if (run_dir / "metrics.jsonl").is_file():
        plot_metrics(run_dir / "metrics.jsonl", run_dir / "curves.png")
    return Run(path=run_dir, config=outcome.config)


def load(run_dir: str | Path, device: str = "auto") -> torch.nn.Module:
    """The trained model of a run directory (its newest checkpoint), a checkpoint directory or a
    ``model.safetensors`` file, in eval mode on ``device`` (auto: CUDA, then MPS, then CPU)."""
    from genlab.device import resolve_device
    from genlab.training.checkpoint import load_model

    model, _ = load_model(Path(run_dir), resolve_device(device))
    return model


def sample(model: torch.nn.Module, n: int, *, seed: int = 0, **options: Any) -> torch.Tensor:
    """``model.sample(n, ...)`` without gradients, with a generator on the model's device seeded by ``seed``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    with torch.no_grad():
        return model.sample(n, generator=generator, **options)


def evaluate(run_dir: str | Path, *, seed: int = 0, device: str = "auto", data_dir: str | None = None,
             write: bool = True, **options: Any) -> dict:
    """Test metrics of a run (``genlab eval``): AIS log-likelihood for an RBM, importance-weighted NLL for a
    VAE, bits/char for text... Keys carry their units. ``options`` are the model's (``ais_runs=...``).
    ``write`` keeps them in RUN/eval.json as the CLI does."""
    from dataclasses import replace

    from genlab.data.datasets import build_data
    from genlab.device import resolve_device
    from genlab.training.callbacks import json_safe
    from genlab.training.checkpoint import load_model

    run_dir = Path(run_dir)
    model, config = load_model(run_dir, resolve_device(device))
    data_config = replace(config.data, data_dir=data_dir) if data_dir else config.data
    data = build_data(data_config, seed=config.train.seed, splits=("val", "test"))
    test = data.test or data.val
    if test is None:
        raise ConfigError(f"{run_dir}: its dataset has no test or validation split to evaluate on")
    model_device = next(model.parameters()).device
    generator = torch.Generator(device=model_device).manual_seed(seed)
    batches = ((x.to(model_device), y.to(model_device)) for x, y in test)
    metrics = model.evaluate(batches, generator=generator, **options)
    metrics = {"model": config.model_name, "dataset": config.data.dataset, **metrics}
    if write and (run_dir / "config.yaml").is_file():
        (run_dir / "eval.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8")
    return metrics


def latent_pictures(run_dir: str | Path, *, out_dir: str | Path | None = None, size: int | None = None,
                    bounds: Sequence[float] | None = None, spacing: str | None = None, limit: int = 5000,
                    pairs: int = 8, steps: int = 10, device: str = "auto",
                    data_dir: str | None = None) -> dict[str, Path]:
    """``genlab latent RUN``: a VAE run's manifold, latent scatter and interpolation pictures of its test split
    (validation if it has none), written into ``out_dir`` (default RUN/latent); returns {name: path}. Grid
    settings default to the model config's."""
    from dataclasses import replace

    from genlab.data.datasets import build_data
    from genlab.device import resolve_device
    from genlab.training.checkpoint import load_model
    from genlab.viz.latent import write_latent_pictures

    run_dir = Path(run_dir)
    model, config = load_model(run_dir, resolve_device(device))
    if not hasattr(model, "encode"):
        raise ConfigError(f"{run_dir} is a {config.model_name} run; latent pictures need a VAE")
    data_config = replace(config.data, data_dir=data_dir) if data_dir else config.data
    data = build_data(data_config, seed=config.train.seed, splits=("val", "test"))
    loader = data.test or data.val
    if loader is None:
        raise ConfigError(f"{run_dir}: its dataset has no test or validation split to draw the latent space of")
    cfg = model.config
    return write_latent_pictures(model, iter(loader), Path(out_dir) if out_dir else run_dir / "latent",
                                 size=size or cfg.manifold_size, bounds=bounds or cfg.manifold_bounds,
                                 spacing=spacing or cfg.manifold_spacing, limit=limit, pairs=pairs, steps=steps)


# ---------------------------------------------------------------------------------------------- in-memory data


def dataset_source(dataset: Any, out: Path) -> str:
    """A ``data.dataset`` value for ``dataset``: names and paths as they are; arrays, tensors and text checked
    as their files would be and written once (named by their content's hash) under ``out/.data/``."""
    if isinstance(dataset, Path):
        return str(dataset)
    if isinstance(dataset, str):
        if "\n" not in dataset:
            return dataset
        from genlab.data.text import decode_text

        text = decode_text(dataset.encode("utf-8"), "the text passed as dataset")
        return str(_store(out, "text", ".txt", text.encode("utf-8")))
    images, labels = dataset if isinstance(dataset, tuple) and len(dataset) == 2 else (dataset, None)
    arrays = {"images": _image_array(images, "the images passed as dataset")}
    if labels is not None:
        from genlab.data.images import _normalize_labels

        arrays["labels"] = _normalize_labels(_as_numpy(labels, "the labels passed as dataset"),
                                             arrays["images"].shape[0], "the labels passed as dataset")
    buffer = _npz_bytes(arrays)
    return str(_store(out, "array", ".npz", buffer))


def _as_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise DataError(f"{what}: expected a numpy array or a torch tensor (or a dataset name, a path, or text with "
                    f"line breaks), got {type(value).__name__}")


def _image_array(value: Any, what: str) -> np.ndarray:
    from genlab.data.images import _normalize_images

    return _normalize_images(_as_numpy(value, what), what)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _store(out: Path, kind: str, suffix: str, content: bytes) -> Path:
    folder = out / ".data"
    path = folder / f"{kind}-{hashlib.sha256(content).hexdigest()[:16]}{suffix}"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(suffix + ".partial")
        partial.write_bytes(content)
        partial.replace(path)
    return path


def _merge(settings: dict[str, Any], overrides: Mapping[str, Any] | Sequence[str] | None):
    """``settings`` (dotted keys) followed by the user's overrides, in the one form apply_overrides takes."""
    if overrides is None:
        return settings
    if isinstance(overrides, Mapping):
        return {**settings, **overrides}
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(f"overrides must be a mapping or a list of KEY=VALUE strings, got the string "
                          f"{overrides!r}; wrap it in a list")
    from genlab.config import parse_override

    parsed = {".".join(parts): value for parts, value in map(parse_override, overrides)}
    return {**settings, **parsed}
