"""Model registry: name -> (model class, config class). The CLI lists and builds models only through it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from genlab.errors import ConfigError

# The model families; importing one registers its models. Listed here (not discovered) so import order is fixed.
MODEL_MODULES = (
    "genlab.models.rbm",
    "genlab.models.dbn",
    "genlab.models.dbn_classifier",
    "genlab.models.hopfield",
    "genlab.models.vae",
    "genlab.models.char_rnn",
    "genlab.models.ebm",
    "genlab.models.gan",
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model_cls: type
    config_cls: type
    description: str
    default_dataset: str
    default_preset: str | None = None


_ENTRIES: dict[str, ModelEntry] = {}


def register(name: str, *, config: type, description: str, default_dataset: str = "mnist",
             default_preset: str | None = None):
    """Class decorator: ``@register("rbm", config=RBMConfig, description=...)``."""

    def decorate(model_cls: type) -> type:
        if name in _ENTRIES and _ENTRIES[name].model_cls is not model_cls:
            raise RuntimeError(f"model name {name!r} registered twice")
        _ENTRIES[name] = ModelEntry(name, model_cls, config, description, default_dataset, default_preset)
        model_cls.registry_name = name
        return model_cls

    return decorate


def _load_all() -> None:
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a missing dependency inside the module is a real error
                raise


def entries() -> list[ModelEntry]:
    _load_all()
    return [_ENTRIES[k] for k in sorted(_ENTRIES)]


def get(name: str) -> ModelEntry:
    _load_all()
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_ENTRIES))}") from None
