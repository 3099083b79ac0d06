"""genlab: a workbench for classic generative models (RBM, DBN, Hopfield, VAE, char-LSTM, EBM, GANs).

The public API, documented in the README and in :mod:`genlab.api`::

    genlab.train(model, *, preset=None, dataset=None, epochs=None, overrides=None, out="runs", seed=None,
                 device=None) -> Run
    genlab.resume(run_dir, overrides=None) -> Run
    genlab.load(run_dir, device="auto") -> the model (an nn.Module with .sample(n, generator=...))
    genlab.evaluate(run_dir, **options) -> dict
    genlab.sample(model, n, seed=0, **options) -> Tensor
    genlab.models() -> {name: registry entry};  genlab.presets() -> [names]
    genlab.judge.score(images, dataset="mnist") -> dict

Nothing is imported until a name is used, so ``import genlab`` is instant and pulls in no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("Run", "evaluate", "load", "presets", "resume", "sample", "train")
__all__ = [*_API, "judge", "models", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("genlab.api"), name)
    if name in ("judge", "models"):  # modules: genlab.judge.score(...); genlab.models() is callable
        return importlib.import_module(f"genlab.{name}")
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
