"""Tiny datasets and tiny trained runs, to try the studio in seconds and to test and benchmark it.

``bars_dataset`` writes 8×8 binary "vertical bar" images in four classes (the same structure as the test suite's
``tiny_images`` fixture), ``tiny_text`` a short repetitive UTF-8 text; :func:`train_tiny_run` trains a small model
of any registered family on one of them through the ordinary :func:`genlab.training.run.train`, so the run directory
is exactly what ``genlab train`` writes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

# Per family: small-model overrides for the 8×8, 4-class bars data, applied only where the family's config has
# the key (a family that names a size differently still trains, at its default size).
TINY_SETTINGS: dict[str, dict[str, object]] = {
    "rbm": {"model.n_hidden": 16, "model.sample_steps": 20, "data.binarize": "dynamic"},
    "dbn": {"model.layers": "64,16,16", "model.n_labels": 4, "model.epochs_per_layer": 1,
            "model.sample_steps": 20, "data.binarize": "dynamic"},
    "hopfield": {"model.n_patterns": 4, "data.binarize": "threshold"},
    "vae": {"model.latent_dim": 2, "model.hidden_sizes": "32", "model.architecture": "mlp",
            "data.binarize": "dynamic"},
    "ebm": {"model.channels": "8,8", "model.kernel_sizes": "3,3", "model.strides": "2,2", "model.dense": "16",
            "model.langevin_steps": 10, "model.sample_steps": 20, "model.buffer_size": 128,
            "data.scale": "symmetric"},
}
TEXT_SETTINGS: dict[str, object] = {"model.layers": "32", "model.embedding_dim": 16, "data.seq_len": 32}


def bars_dataset(path: Path, *, n_train: int = 512, n_test: int = 128, seed: int = 0) -> Path:
    """An ``.npz`` of 8×8 uint8 images: a 2-pixel vertical bar per class (4 classes) and 5% flipped pixels."""
    rng = np.random.default_rng(seed)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        images = np.zeros((count, 8, 8), dtype=np.uint8)
        labels = rng.integers(0, 4, size=count)
        for i, label in enumerate(labels):
            images[i, :, 2 * label:2 * label + 2] = 255
            noise = rng.random((8, 8)) < 0.05
            images[i][noise] = 255 - images[i][noise]
        return images, labels

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def tiny_text(path: Path, *, repeats: int = 60) -> Path:
    """A short UTF-8 text with obvious structure (a char-LSTM learns its words in a few hundred steps)."""
    verse = ("ROMEO: the rose is red and the night is long.\n"
             "JULIET: the moon is pale and the day is near.\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verse * repeats, encoding="utf-8")
    return path


def _applicable(model_name: str, overrides: dict[str, object]) -> list[str]:
    """``key=value`` strings for the overrides whose ``model.*`` key exists in the family's config."""
    from genlab import registry

    fields = {f.name for f in dataclasses.fields(registry.get(model_name).config_cls)}
    chosen = []
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section == "model" and name not in fields:
            continue
        chosen.append(f"{key}={value}")
    return chosen


def train_tiny_run(model_name: str, dataset: Path, out_dir: Path, *, epochs: int = 2, seed: int = 0,
                   extra: tuple[str, ...] = ()) -> Path:
    """Train a small ``model_name`` on ``dataset`` into ``out_dir``; returns the run directory."""
    from genlab import registry
    from genlab.config import NO_PRESET, compose_run_config
    from genlab.data.datasets import dataset_kind
    from genlab.training.run import train

    entry = registry.get(model_name)
    kind = dataset_kind(str(dataset))
    settings = TEXT_SETTINGS if kind == "text" else TINY_SETTINGS.get(entry.name, {})
    overrides = [f"data.dataset={dataset}", "data.batch_size=32", f"train.epochs={epochs}", f"train.seed={seed}",
                 "train.num_samples=16", "train.progress=false", "train.device=cpu", f"train.out_dir={out_dir}",
                 "train.log_every=5", "train.threads=1"]
    overrides += ["data.val_size=64"] if kind == "image" else ["data.val_fraction=0.1"]
    overrides += _applicable(entry.name, settings) + list(extra)
    config = compose_run_config(entry.name, preset=NO_PRESET, overrides=overrides)
    run_dir = train(config)
    if run_dir is None:
        raise RuntimeError(f"training {model_name} wrote no run directory")
    return run_dir
