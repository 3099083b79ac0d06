"""Bundled presets (``genlab/configs/*.yaml``): finding them by name or path, and a preset that ``extends``
another. :func:`genlab.config.compose_config` layers a preset between the model's defaults and the overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from genlab.config import SECTIONS, load_yaml
from genlab.errors import ConfigError


def preset_path(name: str | Path) -> Path:
    """A preset by name (``genlab/configs/NAME.yaml``) or by the path of a YAML file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    bundled = resources.files("genlab") / "configs" / f"{name}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    raise ConfigError(f"unknown preset {str(name)!r}; available: {', '.join(preset_names()) or 'none'}")


def preset_names() -> list[str]:
    """The bundled presets' names (``genlab/configs/*.yaml``)."""
    folder = resources.files("genlab") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def merge_sections(below: dict, above: dict) -> dict:
    """``above`` over ``below``, one level deep: a section (``model``, ``data``, ...) merges key by key."""
    merged = dict(below)
    for key, value in above.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def _checked_sections(loaded: dict, name: str | Path) -> dict:
    """``loaded`` with each section a mapping (an empty ``train:`` is no settings); ``model: 3`` is a ConfigError
    naming this preset, rather than a TypeError where a variant merges into it or an error about a field."""
    checked = dict(loaded)
    for section in SECTIONS:
        value = checked.get(section)
        if section in checked and value is None:
            checked[section] = {}
        elif section in checked and not isinstance(value, dict):
            raise ConfigError(f"preset {name}: {section!r} must be a block of settings (key: value lines indented "
                              f"under '{section}:'), got {value!r}")
    return checked


def load_preset(name: str | Path, *, _chain: tuple[str, ...] = ()) -> dict:
    """A preset's settings; one that names ``extends: OTHER`` gets OTHER's settings with its own on top (so a
    variant states only what differs, e.g. the same recipe on another dataset)."""
    path = preset_path(name)
    loaded = _checked_sections(load_yaml(path), name)
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"preset {name}: extends must name one preset, got {parent!r}")
    chain = (*_chain, str(path.resolve()))
    if str(preset_path(parent).resolve()) in chain:
        raise ConfigError(f"preset {name}: extends loops back to {parent}")
    return merge_sections(load_preset(parent, _chain=chain), loaded)
