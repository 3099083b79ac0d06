"""Typed run configuration: dataclasses <-> YAML, strict.

A run is described by one :class:`RunConfig` whose sections are dataclasses. Loading from YAML or from
``--set section.key=value`` overrides goes through :func:`from_dict`, which rejects unknown keys and coerces
values to the declared field types. Coercion matters because YAML 1.1 reads ``1e-3`` as a *string*.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from genlab.errors import ConfigError, check_config

NO_PRESET = "none"  # compose_run_config(preset=NO_PRESET): the model's defaults only, not its default preset
SECTIONS = ("model", "data", "optim", "train")

_NONE_WORDS = {"none", "null", "~", ""}
MAX_SEED = 2**63  # torch's generators take seeds below this


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerce ``value`` to ``annotation`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            value = [] if not text else [yaml.safe_load(part) for part in text.split(",")]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"false", "no", "off", "0"}:
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.strip().replace("_", ""))
            except ValueError:
                number = math.nan
            if math.isfinite(number) and number.is_integer():
                return int(number)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        else:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be finite, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {annotation!r}")


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a plain dict, recursively, rejecting unknown keys."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys: {', '.join(prefix + k for k in known)}"
        )
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = from_dict(annotation, value, key)
        else:
            kwargs[name] = _coerce(value, annotation, key)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML/JSON-safe dict (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value`` into (["a", "b"], value) with YAML scalar parsing."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set optim.lr=1e-3")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict, overrides: Sequence[str] | Mapping[str, Any]) -> dict:
    """Return a copy of ``data`` with overrides applied (validated later by from_dict).

    ``overrides`` is a list of ``--set`` strings (``"optim.lr=1e-3"``, values parsed as YAML scalars) or a
    mapping from dotted keys to Python values (``{"optim.lr": 1e-3}``, values kept as given; a nested mapping
    such as ``{"optim": {"lr": 1e-3}}`` means the same)."""
    result = _deep_copy(data)
    if isinstance(overrides, Mapping):
        pairs = [(key.split("."), value, f"{key}={value!r}") for key, value in _flatten(overrides).items()]
    elif isinstance(overrides, (str, bytes)):
        raise ConfigError(f"overrides must be a list of KEY=VALUE strings or a mapping, got the string "
                          f"{overrides!r}; wrap it in a list")
    else:
        pairs = [(*parse_override(text), text) for text in overrides]
    for parts, value, text in pairs:
        if not all(parts):
            raise ConfigError(f"override {text!r}: empty key")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"override keys are dotted strings such as 'optim.lr', got {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name in SECTIONS:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


@dataclass
class DataConfig:
    """Which data, how it is transformed, and how it is batched."""

    dataset: str = "mnist"
    data_dir: str | None = None
    download: bool = True
    # none | threshold (>= 0.5, the TF CVAE tutorial) | dynamic (fresh Bernoulli sample per epoch)
    binarize: str = "none"
    # The test split for likelihoods is always a *fixed* stochastic binarization with this seed when binarize != none.
    test_binarize_seed: int = 1234
    pad_to: int = 0  # pad images to this square size (32 for the EBM seed); 0 keeps 28x28
    scale: str = "unit"  # unit: [0,1]; symmetric: [-1,1]
    val_size: int = 5000  # images carved from the end of the training set for validation; 0: none
    limit: int = 0  # use only the first N training examples (smoke tests); 0: all
    batch_size: int = 100
    seq_len: int = 256  # text: characters per training sequence
    val_fraction: float = 0.1  # text: the last fraction of the corpus is validation (nanoGPT split)
    # text: shuffled = independent seq_len windows in a fresh random order each epoch; streams = batch_size
    # contiguous streams of the corpus read in order (row b of batch i+1 continues row b of batch i), for
    # truncated BPTT with the recurrent state carried between batches
    text_order: str = "shuffled"
    # text: keep the last partial validation sequence, its missing targets set to -100 (cross-entropy's
    # ignore_index), so evaluation covers every validation character
    text_val_tail: bool = False

    @property
    def value_range(self) -> tuple[float, float]:
        """The range of the images a model sees and samples: (0, 1) for scale=unit, (-1, 1) for symmetric."""
        return (-1.0, 1.0) if self.scale == "symmetric" else (0.0, 1.0)

    def __post_init__(self) -> None:
        from genlab.data.sources import (
            dataset_name,  # the data layer's table of names (below config)
        )

        self.dataset = dataset_name(self.dataset) or self.dataset  # one spelling in config.yaml: MNIST -> mnist
        check_config(self.binarize in {"none", "threshold", "dynamic"},
               f"data.binarize must be none, threshold or dynamic, got {self.binarize!r}")
        check_config(self.scale in {"unit", "symmetric"}, f"data.scale must be unit or symmetric, got {self.scale!r}")
        check_config(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        check_config(self.val_size >= 0, f"data.val_size must be >= 0, got {self.val_size}")
        check_config(self.limit >= 0, f"data.limit must be >= 0, got {self.limit}")
        check_config(self.seq_len >= 2, f"data.seq_len must be >= 2, got {self.seq_len}")
        check_config(0.0 <= self.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        check_config(self.text_order in {"shuffled", "streams"},
               f"data.text_order must be shuffled or streams, got {self.text_order!r}")
        check_config(self.pad_to == 0 or self.pad_to >= 28, f"data.pad_to must be 0 or >= 28, got {self.pad_to}")


# Learning-rate schedules. onecycle is torch's OneCycleLR (Smith & Topin 2018) with its defaults and peak optim.lr.
SCHEDULES = ("constant", "linear", "cosine", "exponential", "step", "onecycle")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    name: str = "adam"  # sgd | adam | adamw | rmsprop
    lr: float = 1e-3
    momentum: float = 0.0
    # Hinton's practical guide: momentum 0.5 at first, then final_momentum after momentum_switch_epochs.
    final_momentum: float | None = None
    momentum_switch_epochs: int = 5
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    alpha: float = 0.99  # RMSProp smoothing
    grad_clip: float = 0.0  # max global grad norm; 0: off
    schedule: str = "constant"  # one of SCHEDULES
    decay_rate: float = 1.0  # exponential: lr multiplied by this each epoch; step: at each milestone
    milestones: tuple[int, ...] = ()  # step: epochs at which the lr is multiplied by decay_rate
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    fused: bool = True  # Adam/AdamW: torch's fused kernel; False: its default per-tensor update

    def __post_init__(self) -> None:
        check_config(self.name in {"sgd", "adam", "adamw", "rmsprop"},
               f"optim.name must be sgd, adam, adamw or rmsprop, got {self.name!r}")
        check_config(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        check_config(0 <= self.momentum < 1, f"optim.momentum must be in [0, 1), got {self.momentum}")
        check_config(self.final_momentum is None or 0 <= self.final_momentum < 1,
               f"optim.final_momentum must be in [0, 1), got {self.final_momentum}")
        check_config(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        check_config(self.grad_clip >= 0, f"optim.grad_clip must be >= 0, got {self.grad_clip}")
        check_config(self.schedule in SCHEDULES,
               f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        check_config(self.schedule != "onecycle" or (self.warmup_steps == 0 and self.min_lr_ratio == 0
                                                     and self.final_momentum is None),
               "optim.schedule=onecycle sets its own warm-up, floor and momentum cycle (torch's OneCycleLR with "
               "peak optim.lr); drop optim.warmup_steps, optim.min_lr_ratio and optim.final_momentum")
        check_config(self.schedule != "step" or len(self.milestones) >= 1,
               "optim.schedule=step needs optim.milestones, the epochs at which the lr is multiplied by "
               "optim.decay_rate, e.g. optim.milestones=[48,54] optim.decay_rate=0.3")
        check_config(not self.milestones or self.schedule == "step",
               f"optim.milestones only apply to optim.schedule=step (got schedule {self.schedule!r}); set "
               "optim.schedule=step or drop optim.milestones")
        check_config(list(self.milestones) == sorted(set(self.milestones)) and all(m >= 1 for m in self.milestones),
               f"optim.milestones must be increasing epochs >= 1, got {list(self.milestones)}")
        check_config(0 < self.decay_rate <= 1, f"optim.decay_rate must be in (0, 1], got {self.decay_rate}")
        check_config(self.schedule != "step" or self.decay_rate < 1,
               "optim.schedule=step with optim.decay_rate=1 never lowers the lr; set optim.decay_rate below 1, "
               "e.g. 0.3")
        check_config(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        check_config(0 <= self.min_lr_ratio <= 1, f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainConfig:
    """The training loop: length, seed, device, logging, sampling, checkpoints."""

    epochs: int = 1
    max_steps: int = 0  # stop after this many optimizer steps; 0: run all epochs
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: bool = False  # bfloat16 autocast (CUDA, or a CPU with native bf16) for models that allow it
    log_every: int = 50
    sample_every: int = 0  # steps between sample grids; 0: once per epoch
    num_samples: int = 64
    checkpoint_every: int = 0  # steps between checkpoints; 0: once per epoch
    checkpoint_minutes: float = 10.0  # also a checkpoint after this many minutes of wall time; 0: off
    # Stop (diverged) when the weights' norm exceeds this many times its value at the start; 0: off (the model's
    # own check of its logs, e.g. an RBM's reconstruction error, still runs).
    max_param_growth: float = 1000.0
    keep_last: int = 2
    validate: bool = True
    progress: bool = True
    out_dir: str = "runs"
    threads: int = 0  # torch intra-op threads on CPU; 0: torch's default
    # The judge watching image samples (genlab.eval.monitor): every judge_every steps it classifies
    # judge_samples fixed-seed samples into metrics.jsonl; below min_class_entropy nats the run stops (collapse).
    judge_every: int = 0
    judge_samples: int = 500
    min_class_entropy: float = 0.0
    tensorboard: bool = False  # also write TensorBoard event files under RUN/tensorboard; needs genlab[tensorboard]

    def __post_init__(self) -> None:
        check_config(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        check_config(0 <= self.seed < MAX_SEED, f"train.seed must be in [0, 2^63), got {self.seed}")
        check_config(self.max_steps >= 0, f"train.max_steps must be >= 0, got {self.max_steps}")
        check_config(self.log_every >= 1, f"train.log_every must be >= 1, got {self.log_every}")
        check_config(self.sample_every >= 0, f"train.sample_every must be >= 0, got {self.sample_every}")
        check_config(1 <= self.num_samples <= 1024, f"train.num_samples must be in [1, 1024], got {self.num_samples}")
        check_config(self.checkpoint_every >= 0, f"train.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        check_config(self.checkpoint_minutes >= 0,
               f"train.checkpoint_minutes must be >= 0 (0: off), got {self.checkpoint_minutes}")
        check_config(self.max_param_growth == 0 or self.max_param_growth > 1,
               f"train.max_param_growth must be > 1 (or 0: off), got {self.max_param_growth}")
        check_config(self.keep_last >= 1, f"train.keep_last must be >= 1, got {self.keep_last}")
        check_config(self.threads >= 0, f"train.threads must be >= 0, got {self.threads}")
        check_config(self.judge_every >= 0, f"train.judge_every must be >= 0 (0: off), got {self.judge_every}")
        check_config(10 <= self.judge_samples <= 10000,
               f"train.judge_samples must be in [10, 10000], got {self.judge_samples}")
        check_config(0.0 <= self.min_class_entropy <= 5.0,
               f"train.min_class_entropy must be in [0, 5] nats (0: never stop), got {self.min_class_entropy}")
        check_config(not Path(self.out_dir).exists() or Path(self.out_dir).is_dir(),
               f"train.out_dir (--out) {self.out_dir} is a file, not a directory; name a directory for the runs")
        check_config(self.device == "auto" or self.device.split(":")[0] in {"cpu", "cuda", "mps"},
               f"train.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")


@dataclass
class RunConfig:
    """Everything needed to reproduce a run. ``model`` is the model's own config dataclass."""

    model_name: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "model": to_dict(self.model),
            "data": to_dict(self.data),
            "optim": to_dict(self.optim),
            "train": to_dict(self.train),
        }


def build_run_config(data: dict) -> RunConfig:
    """Validate a plain dict (from YAML + overrides) into a RunConfig using the model registry."""
    from genlab import registry

    data = dict(data)
    unknown = sorted(set(data) - {"model_name", *SECTIONS})
    if unknown:
        raise ConfigError(f"unknown top-level config key(s): {', '.join(unknown)}; "
                          "valid: model_name, model, data, optim, train")
    name = data.get("model_name")
    if not name:
        raise ConfigError("config has no model_name; run `genlab list` to see the models")
    entry = registry.get(str(name))
    optim = from_dict(OptimConfig, data.get("optim"), "optim")
    train = from_dict(TrainConfig, data.get("train"), "train")
    late = [m for m in optim.milestones if m >= train.epochs]
    check_config(not late, f"optim.milestones {late} are not before train.epochs={train.epochs}, so they would never "
                     "lower the lr; use milestones below the run's epochs")
    return RunConfig(
        model_name=entry.name,
        model=from_dict(entry.config_cls, data.get("model"), "model"),
        data=from_dict(DataConfig, data.get("data"), "data"),
        optim=optim,
        train=train,
    )


def compose_config(model: str | None = None, *, preset: str | Path | None = None,
                   overrides: Sequence[str] | Mapping[str, Any] = (), base: dict | None = None) -> dict:
    """The one composition of a run's config, as a plain dict: the model's defaults, then a preset, then overrides.

    ``preset=None`` takes the model's default preset (``genlab list``), ``NO_PRESET`` none, anything else is a
    preset name or YAML path whose ``model_name`` must agree with ``model`` (``model`` may be left out when the
    preset names it). ``base`` (a saved run's config, for resuming) replaces the defaults and the preset.
    Used by the CLI, the Python API, the benchmarks and the studio alike, so each gets the same run.
    """
    from genlab import registry
    from genlab.preset_files import load_preset, merge_sections

    if base is not None:
        if model and base.get("model_name") != model:
            raise ConfigError(f"that run is a {base.get('model_name')} run, not {model}")
        return apply_overrides(base, overrides)
    loaded = load_preset(preset) if preset not in (None, NO_PRESET) else {}
    name = model or loaded.get("model_name")
    if not name:
        raise ConfigError("name a model (see `genlab list`) or a preset that has a model_name")
    entry = registry.get(str(name))
    if preset is None and entry.default_preset:
        loaded = load_preset(entry.default_preset)
    if loaded.get("model_name", entry.name) != entry.name:
        raise ConfigError(f"preset {preset} is for model {loaded.get('model_name')}, not {entry.name}")
    data = merge_sections({"model_name": entry.name, "data": {"dataset": entry.default_dataset}}, loaded)
    return apply_overrides(data, overrides)


def compose_run_config(model: str | None = None, *, preset: str | Path | None = None,
                       overrides: Sequence[str] | Mapping[str, Any] = (), base: dict | None = None) -> RunConfig:
    """:func:`compose_config`, validated into a :class:`RunConfig`."""
    return build_run_config(compose_config(model, preset=preset, overrides=overrides, base=base))
