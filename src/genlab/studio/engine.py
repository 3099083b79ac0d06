"""The studio's torch work: a small LRU of loaded models and one function per panel action.

Every function here takes a :class:`LoadedRun` and already-bounded parameters (the app validates them) and uses
only the base model contract plus the shared capability methods (``encode``/``decode``, ``stream``,
``sample_chain``, ``recall``/``energy``, ``generate``/``sample_z``/``prior_range``), so any model family that has
them works. Missing capabilities and model-level refusals become :class:`StudioError` (4xx) with a message that
says what to do.

Picture encoding (:func:`tile_images`, :func:`encode_png`, :func:`png_bytes`, :func:`data_url`) lives in
:mod:`genlab.studio.pictures` and the text streaming thread (:class:`TextStream`) in
:mod:`genlab.studio.text_stream`; both are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from genlab.studio.errors import StudioError
from genlab.studio.pictures import data_url, encode_png, png_bytes, tile_images  # noqa: F401 (re-exported)
from genlab.studio.runs import CAPABILITIES, RunRef
from genlab.studio.text_stream import STALLED_READER_S, TextStream  # noqa: F401 (re-exported)

# Test images kept per loaded run (for interpolation, chain starts and Hopfield patterns).
MAX_EXAMPLES = 512
_PANEL = {"latent": "the latent explorer", "text": "the text panel", "chain": "the chains panel",
          "hopfield": "the Hopfield panel", "sample": "sampling images", "gan": "the GAN panel"}


@dataclass
class LoadedRun:
    """A model rebuilt from a run's newest checkpoint, with lazily loaded example images."""

    run: RunRef
    checkpoint: str
    model: Any
    config: Any
    device: torch.device
    # The range of the images the model sees and samples, from the DataInfo saved with the checkpoint.
    value_range: tuple[float, float] = (0.0, 1.0)
    _examples: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.config.model_name

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def require(self, capability: str) -> None:
        """StudioError 400 unless the model has the methods of ``capability``."""
        if capability == "sample":
            if getattr(self.model, "kind", "image") != "image":
                raise StudioError(400, f"run {self.run.name} ({self.model_name}) is a text model: its samples are "
                                       "characters, so use the text panel")
            return
        missing = [m for m in CAPABILITIES[capability] if not hasattr(self.model, m)]
        if missing:
            methods = ", ".join(f"{m}()" for m in missing)
            raise StudioError(400, f"run {self.run.name} ({self.model_name}) has no {methods}; "
                                   f"{_PANEL[capability]} needs a model that has")

    def examples(self, split: str) -> tuple[Tensor, Tensor]:
        """Up to MAX_EXAMPLES images (n, C, H, W) in the data's value range and labels (n,) of ``split``.

        ``split`` is "test" (falls back to validation when the dataset has no test split) or "train". Loaded once
        from the run's own dataset settings (binarization, padding, scale); never downloads.
        """
        with self._lock:
            if split not in self._examples:
                self._examples[split] = self._load_examples(split)
            return self._examples[split]

    def _load_examples(self, split: str) -> tuple[Tensor, Tensor]:
        from genlab.data.datasets import build_data
        from genlab.errors import GenlabError

        data_config = dataclasses.replace(self.config.data, download=False)
        try:
            bundle = build_data(data_config, seed=self.config.train.seed,
                                splits=("train", "val", "test") if split == "train" else ("val", "test"))
        except GenlabError as exc:
            raise StudioError(409, f"the dataset of run {self.run.name} ({self.config.data.dataset}) is not "
                                   f"available here, so it has no example images: {exc}") from None
        loader = bundle.train if split == "train" else (bundle.test or bundle.val)
        if bundle.info.kind != "image" or loader is None:
            raise StudioError(400, f"run {self.run.name} has no {split} images")
        # The first examples in stored order (not the shuffled epoch order), so an index means the same image
        # every time; a training-time transform (dynamic binarization) is applied once with a fixed seed.
        images, labels = (t[:MAX_EXAMPLES] for t in loader.tensors[:2])
        if loader.transform is not None:
            images, labels = loader.transform((images, labels), torch.Generator().manual_seed(0))
        return images, labels

    def example(self, split: str, index: int) -> Tensor:
        """One example image (1, C, H, W); 400 when the index is past the examples the studio keeps."""
        images, _ = self.examples(split)
        if not 0 <= index < len(images):
            raise StudioError(400, f"{split} image index {index} is out of range: the studio keeps "
                                   f"{len(images)} {split} images of this run (0 to {len(images) - 1})")
        return images[index:index + 1].to(self.device)


class ModelCache:
    """Least-recently-used loaded models, keyed by run directory and checkpoint (a new checkpoint reloads)."""

    def __init__(self, capacity: int = 4, device: str | torch.device = "cpu"):
        if capacity < 1:
            raise ValueError(f"model cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self._entries: OrderedDict[tuple, LoadedRun] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, run: RunRef) -> LoadedRun:
        from genlab.errors import GenlabError
        from genlab.training.checkpoint import latest_checkpoint, load_model, samples_value_range

        try:
            checkpoint = latest_checkpoint(run.path)
        except GenlabError as exc:
            raise StudioError(409, f"run {run.name} cannot be loaded yet: {exc}") from None
        key = (str(run.path), checkpoint.name)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        with self._load_lock:  # one load at a time; a second request for the same run waits and then hits
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            try:
                model, config = load_model(checkpoint, self.device)
                value_range = samples_value_range(checkpoint, config)
            except GenlabError as exc:
                raise StudioError(409, f"run {run.name} cannot be loaded: {exc}") from None
            loaded = LoadedRun(run, checkpoint.name, model, config, self.device, value_range)
            with self._lock:
                for stale in [k for k in self._entries if k[0] == key[0]]:
                    del self._entries[stale]  # an older checkpoint of the same run
                self._entries[key] = loaded
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            return loaded


def _images(result: Any, what: str) -> Tensor:
    if not isinstance(result, Tensor) or result.dim() != 4:
        shape = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise StudioError(500, f"{what} returned {shape}, not images of shape (n, C, H, W)")
    return result.detach().float().cpu()


# ---------------------------------------------------------------------- VAE latent space


def latent_dim(loaded: LoadedRun) -> int:
    return int(loaded.model.config.latent_dim)


def _latent_batch(loaded: LoadedRun, coordinates: Tensor, dims: tuple[int, int], base: Tensor | None) -> Tensor:
    """Latent vectors (n, latent_dim): ``base`` (or zeros, the prior mean) with dims[0], dims[1] set."""
    size = latent_dim(loaded)
    for dim in dims:
        if not 0 <= dim < size:
            raise StudioError(400, f"latent dimension {dim} does not exist: run {loaded.run.name} has "
                                   f"latent_dim={size} (dimensions 0 to {size - 1})")
    if size >= 2 and dims[0] == dims[1]:
        raise StudioError(400, f"pick two different latent dimensions, got {dims[0]} twice")
    z = torch.zeros(len(coordinates), size) if base is None else base.expand(len(coordinates), size).clone()
    z[:, dims[0]] = coordinates[:, 0]
    if size >= 2:
        z[:, dims[1]] = coordinates[:, 1]
    return z


@torch.no_grad()
def decode(loaded: LoadedRun, z: Tensor) -> Tensor:
    parameter = next(loaded.model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    return _images(loaded.model.decode(z.to(device=loaded.device, dtype=dtype)), "decode(z)")


def latent_grid(loaded: LoadedRun, *, size: int, bounds: tuple[float, float, float, float],
                dims: tuple[int, int] = (0, 1)) -> bytes:
    """PNG of decode(z) on a size×size grid of cell centres over [xmin, xmax] × [ymin, ymax].

    Cell centres (not edges, as the seed's linspace) make the picture a linear map of the rectangle, so the
    page converts a pointer position to (x, y) exactly. The top row is ymax (y grows upwards).
    """
    loaded.require("latent")
    xmin, xmax, ymin, ymax = bounds
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    xs = xmin + centres * (xmax - xmin)
    ys = ymax - centres * (ymax - ymin)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coordinates = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    images = decode(loaded, _latent_batch(loaded, coordinates, dims, None))
    return png_bytes(images, ncol=size)


def latent_point(loaded: LoadedRun, *, x: float, y: float, dims: tuple[int, int] = (0, 1)) -> bytes:
    """PNG of decode(z) for one point (other dimensions 0, the prior mean)."""
    loaded.require("latent")
    images = decode(loaded, _latent_batch(loaded, torch.tensor([[x, y]], dtype=torch.float32), dims, None))
    return png_bytes(images, ncol=1)


@torch.no_grad()
def encode_mean(loaded: LoadedRun, image: Tensor) -> Tensor:
    """The posterior mean mu (latent_dim,) of one image (1, C, H, W)."""
    mu, _ = loaded.model.encode(image)
    return mu.detach().float().cpu()[0]


def interpolate(loaded: LoadedRun, *, a: int, b: int, steps: int) -> dict[str, Any]:
    """Decode ``steps`` points on the line between the posterior means of test images ``a`` and ``b``.

    Returns the strip [x_a, decode(mu_a), ..., decode(mu_b), x_b] as a PNG data URL and both means.
    """
    loaded.require("latent")
    image_a, image_b = loaded.example("test", a), loaded.example("test", b)
    mu_a, mu_b = encode_mean(loaded, image_a), encode_mean(loaded, image_b)
    weights = torch.linspace(0.0, 1.0, steps).unsqueeze(1)
    path = (1.0 - weights) * mu_a + weights * mu_b
    decoded = decode(loaded, path)
    low, high = loaded.value_range
    originals = [((image.float().cpu() - low) / (high - low)).clamp(0, 1) for image in (image_a, image_b)]
    strip = torch.cat([originals[0], decoded, originals[1]])
    return {"image": data_url(png_bytes(strip, ncol=len(strip), padding=1, level=1)), "mu_a": mu_a.tolist(),
            "mu_b": mu_b.tolist(), "steps": steps}


def example_image(loaded: LoadedRun, *, split: str, index: int) -> dict[str, Any]:
    """One dataset image as a PNG data URL, its label and (for a VAE) its posterior mean."""
    image = loaded.example(split, index)
    _, labels = loaded.examples(split)
    result: dict[str, Any] = {"index": index, "label": int(labels[index]),
                              "image": data_url(png_bytes(image.float().cpu(), value_range=loaded.value_range, level=1))}
    if hasattr(loaded.model, "encode"):
        result["mu"] = encode_mean(loaded, image).tolist()
    return result


# ---------------------------------------------------------------------- GAN latent space


def gan_value_range(loaded: LoadedRun) -> tuple[float, float]:
    """The range of the generator's images (the data's, which the model config records)."""
    low, high = loaded.model.config.value_range
    return float(low), float(high)


def gan_info(loaded: LoadedRun, *, seed: int) -> dict[str, Any]:
    """What the GAN panel needs: z size, prior and slider range, classes, and a z drawn from the prior with
    ``seed`` (the same seed gives the same z)."""
    loaded.require("gan")
    model = loaded.model
    low, high = model.prior_range()
    with torch.no_grad():
        z = model.sample_z(1, loaded.generator(seed))[0].float().cpu()
    return {"z_dim": int(model.config.z_dim), "prior": model.config.prior, "range": [float(low), float(high)],
            "conditional": bool(model.conditional),
            "num_classes": int(model.config.num_classes) if model.conditional else 0,
            "seed": seed, "z": z.tolist(), "value_range": list(gan_value_range(loaded))}


def _gan_z(loaded: LoadedRun, z: list[float]) -> Tensor:
    """One latent (1, z_dim) from the page's numbers; 400 for a wrong length or, under a uniform prior, a value
    outside its support (the generator never saw one)."""
    size = int(loaded.model.config.z_dim)
    if len(z) != size:
        raise StudioError(400, f"z has {len(z)} values but run {loaded.run.name} ({loaded.model_name}) has "
                               f"z_dim={size}: send {size} numbers")
    if loaded.model.config.prior == "uniform":
        low, high = loaded.model.prior_range()
        outside = [i for i, value in enumerate(z) if not low <= value <= high]
        if outside:
            first = outside[0]
            raise StudioError(400, f"z[{first}] = {z[first]:g} is outside [{low:g}, {high:g}]: run {loaded.run.name} "
                                   f"({loaded.model_name}) was trained with z ~ U({low:g}, {high:g}) "
                                   f"({len(outside)} of {size} values outside)")
    return torch.tensor([z], dtype=torch.float32, device=loaded.device)


def _gan_labels(loaded: LoadedRun, n: int, label: int | None) -> Tensor | None:
    """Labels (n,) all ``label`` for a conditional model, None for an unconditional one; 400 for a label the
    model refuses (``check_label``) and for a conditional model asked without one."""
    model = loaded.model
    _call(loaded, "check_label", lambda: model.check_label(label))
    if not model.conditional:
        return None
    if label is None:
        raise StudioError(400, f"run {loaded.run.name} ({loaded.model_name}) is class-conditional: pass a label "
                               f"from 0 to {model.config.num_classes - 1}")
    return torch.full((n,), int(label), dtype=torch.long, device=loaded.device)


@torch.no_grad()
def gan_image(loaded: LoadedRun, *, z: list[float], label: int | None) -> bytes:
    """PNG of ``generate(z, labels)`` for one latent (and, for conditional models, one class)."""
    loaded.require("gan")
    latent, labels = _gan_z(loaded, z), _gan_labels(loaded, 1, label)
    images = _call(loaded, "generate", lambda: loaded.model.generate(latent, labels))
    return png_bytes(_images(images, "generate(z)"), value_range=gan_value_range(loaded), ncol=1)


@torch.no_grad()
def gan_interpolate(loaded: LoadedRun, *, seed: int, steps: int, label: int | None) -> dict[str, Any]:
    """The model's own ``interpolate``: ``steps`` images slerped between two latents drawn with ``seed``, as one
    strip (a PNG data URL)."""
    loaded.require("gan")
    _gan_labels(loaded, steps, label)  # the same refusals as a single image
    images = _call(loaded, "interpolate", lambda: loaded.model.interpolate(
        steps, generator=loaded.generator(seed), label=label, count=1))
    strip = _images(images, "interpolate(steps)")
    return {"image": data_url(png_bytes(strip, value_range=gan_value_range(loaded), ncol=len(strip), padding=1,
                                        level=1)), "steps": steps, "seed": seed, "label": label}


# ---------------------------------------------------------------------- samples and chains


def sample_grid(loaded: LoadedRun, *, n: int, seed: int, steps: int | None) -> bytes:
    """PNG grid of ``model.sample(n)`` (the base contract), with ``steps`` passed only when given."""
    loaded.require("sample")
    options = {} if steps is None else {"steps": steps}
    images = _call(loaded, "sample", lambda: loaded.model.sample(n, generator=loaded.generator(seed), **options))
    return png_bytes(_images(images, "sample(n)"), value_range=loaded.value_range)


def chain(loaded: LoadedRun, *, n: int, steps: int, every: int, start: str, index: int, label: int | None,
          seed: int) -> dict[str, Any]:
    """Run ``sample_chain`` and return its frames as PNG grids.

    No grad mode is set here: a Langevin sampler needs autograd for its input gradient and manages it itself.

    ``start`` is "noise" (the model's own initialisation) or "test" (``n`` copies of test image ``index``, so
    the chains' divergence from one start is visible). ``label`` is passed as ``label=`` (a DBN clamps it).
    """
    loaded.require("chain")
    if label is not None:
        count = label_count(loaded)
        if count == 0:
            raise StudioError(422, f"run {loaded.run.name} ({loaded.model_name}) takes no label: its chains are "
                                   "not class-conditional; leave the label out")
        if not 0 <= label < count:
            raise StudioError(422, f"label {label} is out of range: run {loaded.run.name} knows labels "
                                   f"0..{count - 1}")
    init = None
    if start == "test":
        init = loaded.example("test", index).expand(n, *loaded.example("test", index).shape[1:]).clone()
    options = {} if label is None else {"label": label}
    generator = loaded.generator(seed)
    started = time.perf_counter()
    frames = _call(loaded, "sample_chain", lambda: loaded.model.sample_chain(
        n, steps=steps, init=init, generator=generator, every=every, **options))
    elapsed = time.perf_counter() - started
    if not isinstance(frames, Tensor) or frames.dim() != 5:
        raise StudioError(500, f"{loaded.model_name}.sample_chain returned "
                               f"{tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__}, "
                               "not frames of shape (frames, n, C, H, W)")
    frames = frames.detach().float().cpu()
    ncol = min(n, 8)
    pictures = [data_url(png_bytes(frame, value_range=loaded.value_range, ncol=ncol, padding=1, level=1))
                for frame in frames]
    return {"frames": pictures, "steps": [i * every for i in range(len(pictures))], "seconds": elapsed}


def _call(loaded: LoadedRun, method: str, thunk):
    """Run a model method; its own refusals (ConfigError, DataError) are the user's 400 errors."""
    from genlab.errors import GenlabError

    try:
        return thunk()
    except GenlabError as exc:
        raise StudioError(400, f"{loaded.model_name}.{method}: {exc}") from None


# ---------------------------------------------------------------------- text


def text_stream(loaded: LoadedRun, *, prompt: str | None, length: int, temperature: float, top_k: int | None,
                seed: int) -> TextStream:
    """Start ``model.stream``; a bad prompt or option is a 400 before any byte of the response is sent."""
    loaded.require("text")
    generator = loaded.generator(seed)

    def pieces():
        return loaded.model.stream(prompt=prompt or None, length=length, temperature=temperature, top_k=top_k,
                                   generator=generator)

    return TextStream(loaded, pieces)


# ---------------------------------------------------------------------- Hopfield


def hopfield_size(loaded: LoadedRun) -> int:
    """Number of units N, as the model declares it (:attr:`~genlab.models.base.GenerativeModel.unit_count`)."""
    size = int(loaded.model.unit_count)
    if size < 1:
        raise StudioError(400, f"{loaded.model_name} is not a network of units; the Hopfield panel needs a "
                               "hopfield run")
    return size


def hopfield_pattern(loaded: LoadedRun, *, split: str, index: int) -> list[int]:
    """A dataset image as ±1 units (pixels above the middle of the value range are +1)."""
    loaded.require("hopfield")
    image = loaded.example(split, index).reshape(-1).float().cpu()
    low, high = loaded.value_range
    units = torch.where(image > (low + high) / 2, 1, -1)
    size = hopfield_size(loaded)
    if units.numel() != size:
        raise StudioError(400, f"{split} images have {units.numel()} pixels but the network has {size} units")
    return units.tolist()


@torch.no_grad()
def hopfield_recall(loaded: LoadedRun, *, state: list[int], steps: int, mode: str, seed: int) -> dict[str, Any]:
    """``recall`` from one ±1 state: every intermediate state (as '+'/'-' strings) and its energy."""
    loaded.require("hopfield")
    size = hopfield_size(loaded)
    if len(state) != size:
        raise StudioError(400, f"the state has {len(state)} units but the network has {size}")
    parameter = next(loaded.model.parameters(), None)
    buffer = next(loaded.model.buffers(), None)
    dtype = (parameter if parameter is not None else buffer).dtype if (parameter is not None or
                                                                        buffer is not None) else torch.float32
    start = torch.tensor(state, dtype=dtype, device=loaded.device).unsqueeze(0)
    states, energies = _call(loaded, "recall", lambda: loaded.model.recall(
        start, steps=steps, mode=mode, generator=loaded.generator(seed)))
    states = states.detach().cpu()
    energies = energies.detach().double().cpu()
    frames = ["".join("+" if value > 0 else "-" for value in frame[0].tolist()) for frame in states]
    return {"frames": frames, "energies": [float(e) for e in energies[:, 0]], "units": size}


def hopfield_shape(loaded: LoadedRun) -> list[int]:
    """How to draw N units: a square when N is a perfect square (28×28 for MNIST), else one row."""
    size = hopfield_size(loaded)
    side = math.isqrt(size)
    return [side, side] if side * side == size else [1, size]


def corrupt(units: list[int], *, noise: float, seed: int) -> list[int]:
    """Flip each ±1 unit independently with probability ``noise``."""
    generator = torch.Generator().manual_seed(int(seed))
    flips = torch.rand(len(units), generator=generator) < noise
    return [-u if flip else u for u, flip in zip(units, flips.tolist())]


def signs_to_text(units: list[int]) -> str:
    """±1 units as a compact '+'/'-' string (the wire format of the Hopfield panel)."""
    return "".join("+" if u > 0 else "-" for u in units)


# ---------------------------------------------------------------------- model facts for the page


def label_count(loaded: LoadedRun) -> int:
    """The number of labels the model declares it takes (a DBN's n_labels); 0 for a model without labels."""
    return int(loaded.model.label_count)


def num_labels(loaded: LoadedRun) -> int:
    """How many labels a label-clamping chain accepts: the model config's label count, else the data's 10."""
    return label_count(loaded) or 10


def vocab_size(loaded: LoadedRun) -> int:
    """The character vocabulary size of a text model, as the model declares it; 0 for other models."""
    return int(loaded.model.vocab_size)
