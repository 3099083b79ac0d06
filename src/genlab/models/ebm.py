"""Energy-based model of images: a conv net energy, trained by contrastive divergence with Langevin negatives.

Sign convention (used everywhere in genlab): the energy ``E(x)`` is LOW where x is likely, ``p(x) ∝ exp(-E(x))``.
The seed recipe (Foster, "Generative Deep Learning", 2nd ed., ch. 7, after Du & Mordatch 2019, "Implicit
Generation and Generalization in Energy-Based Models") calls its network output a *score*, which is ``-E``; its
loss ``mean score(fake) - mean score(real) + α·mean(score(real)² + score(fake)²)`` is exactly ours below, and
its Langevin step along ``+∇score`` is our step along ``-∇E``. Here the network output *is* the energy.

Training (one step, batch of B real images in the data range, e.g. [-1, 1]):

1. real ← clip(real + N(0, data_noise²)) — a little noise on the data keeps the energy surface smooth;
2. negatives: B chain starts from the replay buffer (about ``fresh_fraction`` of them fresh uniform noise), run
   ``langevin_steps`` SGLD steps (:mod:`genlab.sampling.langevin`), and put the results back in the buffer;
3. loss = [mean E(real) - mean E(negatives)] + α · mean(E(real)² + E(negatives)²).

The contrastive term lowers the energy of data and raises that of the model's samples (its gradient is the
maximum-likelihood gradient when the negatives are exact model samples); the α term keeps energies near zero.
All randomness in the loss comes from the global torch RNG, which the Trainer checkpoints, and the replay buffer is
saved in ``extra_state``, so a resumed run continues exactly.

Health: every step checks the energies, the input-gradient norm of the Langevin chains, the previous step's
parameter-gradient norm and the fraction of negatives that collapsed to a blank (all low) or white (all high)
image; :meth:`EBM.step_problem` hands the diagnosis to the Trainer. ``model.health=recover`` declares a roll-back
policy: the Trainer restores its last good snapshot (weights, replay buffer, its optimizer moments;
:mod:`genlab.training.rollback`) and :meth:`EBM.after_rollback` shrinks the Langevin step size (logged as
``step_size`` and ``rollbacks``) before the step is redone; ``stop`` stops at the first divergence with a
TrainingError; ``off`` checks nothing. ``loss`` itself is only the loss: it neither retries nor touches an
optimizer.

:class:`EBMConfig` and the energy network :class:`EnergyNet` live in :mod:`genlab.models.ebm_network` and are
re-exported here with :func:`auroc`; this module keeps the registered :class:`EBM` and its health checks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.models.base import DataInfo, GenerativeModel, RollbackPolicy
from genlab.models.ebm_network import ACTIVATIONS, EBMConfig, EnergyNet, auroc
from genlab.registry import register
from genlab.sampling.langevin import CudaGraphLangevin, LangevinResult, langevin
from genlab.sampling.replay import ReplayBuffer

__all__ = ["ACTIVATIONS", "EBM", "EBMConfig", "EnergyNet", "auroc"]

# A negative whose mean intensity (rescaled to [0, 1]) lies within this of 0 or 1 is a collapsed blank/white image.
# Real MNIST digits cover at least ~5% of the pixels, so 1% never flags a real digit.
_COLLAPSE_MARGIN = 0.01
# Pixels this close to a bound (as a fraction of the range) count as saturated in the ``saturation`` log.
_SATURATION_MARGIN = 1e-3
# Chains (= frames) in the Langevin-chain picture: a square grid, one chain per row.
CHAIN_FRAMES = 8
# Captured Langevin graphs kept at once (batch shapes of one step size and model: full and an epoch's short last).
_MAX_GRAPHS = 4


@dataclass(frozen=True)
class _Health:
    """One step's divergence monitors (host floats)."""

    max_abs_energy: float
    langevin_grad_norm: float
    param_grad_norm: float
    collapsed_fraction: float


@register("ebm", config=EBMConfig, default_dataset="mnist", default_preset="ebm-mnist",
          description="energy-based model: conv energy, Langevin (SGLD) sampling with a replay buffer")
class EBM(GenerativeModel):
    """Energy-based model; see the module docstring for the sign convention, loss and health checks."""

    execution_only_config_keys = ("cuda_graphs",)  # the eager samples, replayed

    def __init__(self, config: EBMConfig):
        super().__init__(config)
        if not config.image_shape or not config.value_range:
            raise ConfigError("EBMConfig.image_shape and value_range are filled from the data; build the model "
                              "through EBM.adapt_config (genlab train does this)")
        self.image_shape = tuple(int(v) for v in config.image_shape)
        self.low, self.high = float(config.value_range[0]), float(config.value_range[1])
        self.net = EnergyNet(config)
        # The Langevin step size in use; lowered by roll-backs and saved with the weights so sampling uses it.
        self.register_buffer("current_step_size", torch.tensor(float(config.step_size), dtype=torch.float32))
        self.buffer = ReplayBuffer(config.buffer_size, self.image_shape, fresh_fraction=config.fresh_fraction,
                                   value_range=(self.low, self.high))
        self.train_steps = 0  # training forward passes behind the state held (a roll-back restores it too)
        self._graphs: dict[tuple, CudaGraphLangevin] = {}  # captured training chains by key (cuda_graphs)
        self.rollbacks = 0  # roll-backs so far (kept in the Trainer's snapshot, so later roll-backs count on)
        self._problem: str | None = None  # the last loss()'s diagnosis, for step_problem
        self._resumed_grad_norm: float | None = None  # the previous step's gradient norm, from a checkpoint

    @classmethod
    def adapt_config(cls, config: EBMConfig, info: DataInfo) -> EBMConfig:
        if info.kind != "image" or len(info.shape) != 3:
            raise ConfigError(f"the EBM models images (C, H, W); this dataset is {info.kind} of shape {info.shape}")
        shape, value_range = tuple(int(v) for v in info.shape), tuple(float(v) for v in info.value_range)
        if config.image_shape and tuple(config.image_shape) != shape:
            raise ConfigError(f"model.image_shape={tuple(config.image_shape)} but the data has images of shape "
                              f"{shape}; drop model.image_shape or match data.pad_to")
        if config.value_range and tuple(config.value_range) != value_range:
            raise ConfigError(f"model.value_range={tuple(config.value_range)} but the data is in {value_range}; "
                              "drop model.value_range or change data.scale")
        return dataclasses.replace(config, image_shape=shape, value_range=value_range)

    # ------------------------------------------------------------------ energy and sampling

    def energy(self, x: Tensor) -> Tensor:
        """E(x) for images x (B, C, H, W) in the data range -> (B,); low energy = likely."""
        return self.net(x)

    def _sampling_energy(self, x: Tensor) -> Tensor:
        """E(x) for Langevin: same values as :meth:`energy`, gradient only with respect to x."""
        return self.net(x, input_grad_only=self.config.fast_input_grad)

    def _images(self, batch: Any) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise DataError(f"the EBM expects images of shape (B, {', '.join(map(str, self.image_shape))}), "
                            f"got {tuple(x.shape)}")
        return x.to(dtype=self.net.out.weight.dtype)

    def _sampler_settings(self, step_size: float | None, noise_std: float | None) -> dict[str, Any]:
        cfg = self.config
        return {"step_size": float(self.current_step_size) if step_size is None else float(step_size),
                "noise_std": cfg.noise_std if noise_std is None else float(noise_std),
                "grad_clip": cfg.grad_clip, "bounds": (self.low, self.high)}

    def _device(self) -> torch.device:
        return self.current_step_size.device

    def _start(self, n: int, init: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if n < 1:
            raise ConfigError(f"number of samples must be >= 1, got {n}")
        if init is None:
            return self.buffer.uniform(n, device=self._device(), generator=generator)
        init = self._images(init).to(self._device())
        if init.shape[0] != n:
            raise ConfigError(f"asked for {n} chains but init has {init.shape[0]} images")
        return init.clamp(self.low, self.high)

    def sample(self, n: int, *, generator: torch.Generator | None = None, steps: int | None = None,
               init: Tensor | None = None, step_size: float | None = None, noise_std: float | None = None,
               **kwargs: Any) -> Tensor:
        """``n`` images (n, C, H, W) after ``steps`` Langevin steps (default ``config.sample_steps``, usually far
        more than training's ``langevin_steps``) from uniform noise or from ``init`` (n, C, H, W)."""
        if kwargs:
            raise ConfigError(f"EBM.sample got unknown option(s): {', '.join(sorted(kwargs))}; "
                              "valid: steps, init, step_size, noise_std")
        steps = self.config.sample_steps if steps is None else int(steps)
        settings = self._sampler_settings(step_size, noise_std)
        start = self._start(n, init, generator)
        return langevin(self._sampling_energy, start, steps=steps, generator=generator, **settings).samples

    def sample_chain(self, n: int, *, steps: int, init: Tensor | None = None,
                     generator: torch.Generator | None = None, every: int = 1, step_size: float | None = None,
                     noise_std: float | None = None, **kwargs: Any) -> Tensor:
        """The Langevin chain: (steps // every + 1, n, C, H, W); frame 0 is the start (uniform noise or init)."""
        if kwargs:
            raise ConfigError(f"EBM.sample_chain got unknown option(s): {', '.join(sorted(kwargs))}")
        if every < 1:
            raise ConfigError(f"sample_chain needs every >= 1, got {every}")
        return self._chain(n, steps=steps, init=init, generator=generator, every=every, step_size=step_size,
                           noise_std=noise_std).frames

    def _chain(self, n: int, *, steps: int, init: Tensor | None = None, generator: torch.Generator | None = None,
               every: int = 1, step_size: float | None = None, noise_std: float | None = None):
        """The sampler's whole result (frames every ``every`` steps and the final samples)."""
        settings = self._sampler_settings(step_size, noise_std)
        start = self._start(n, init, generator)
        return langevin(self._sampling_energy, start, steps=int(steps), generator=generator, every=int(every),
                        **settings)

    def chain_picture(self, *, steps: int, generator: torch.Generator | None = None,
                      chains: int = CHAIN_FRAMES) -> Tensor:
        """``chains`` Langevin chains from noise, ``chains`` evenly spaced frames each (first: the noise, last: the
        final sample), as (chains², C, H, W) in chain-major order: a square grid with one chain per row."""
        every = max(1, steps // max(1, chains - 1))
        chain = self._chain(chains, steps=steps, generator=generator, every=every)
        frames = chain.frames
        if steps % every:  # the frames stop short of the last step: the final sample closes the strip
            frames = torch.cat([frames, chain.samples.unsqueeze(0)])
        picks = torch.linspace(0, frames.shape[0] - 1, chains).round().long()
        return frames[picks].transpose(0, 1).reshape(chains * chains, *self.image_shape)

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """``samples`` (n from noise, ``sample_steps`` Langevin steps), ``buffer`` (the n newest replay-buffer
        samples, the training negatives) and ``chain`` (8 chains × 8 frames from noise to sample)."""
        pictures: dict[str, Any] = {"samples": self.sample(n, generator=generator)}
        if len(self.buffer):
            pictures["buffer"] = self.buffer.newest(n)
        pictures["chain"] = self.chain_picture(steps=self.config.sample_steps, generator=generator)
        return pictures

    # ------------------------------------------------------------------ training

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Contrastive divergence + α energy regulariser on one batch (module docstring); the health check's
        verdict is kept for :meth:`step_problem`.

        Logs: ``cdiv`` (mean E(data) - mean E(negatives), the seed's "cdiv" is the same number), ``reg``,
        ``energy_data``, ``energy_samples``, ``langevin_grad_norm`` (mean L2 norm of the unclipped ∇ₓE at the last
        Langevin step), ``param_grad_norm`` (previous step), ``collapsed_frac``, ``saturation`` (fraction of
        negative pixels at a bound), ``step_size`` (Langevin, after roll-backs) and ``rollbacks``.
        """
        x = self._images(batch)
        self.buffer.to(x.device)
        param_grad_norm = self._param_grad_norm()
        if self._resumed_grad_norm is not None:
            # Gradients are not checkpointed; the norm they had is, so a resumed run checks the same number.
            param_grad_norm, self._resumed_grad_norm = self._resumed_grad_norm, None
        loss, logs, health = self._contrastive_step(x, param_grad_norm)
        self._problem = self._diagnose(health)
        self.train_steps += 1
        logs.update(step_size=float(self.current_step_size), rollbacks=float(self.rollbacks))
        return loss, logs

    def rollback_policy(self) -> RollbackPolicy | None:
        """``model.health``: recover rolls back (``snapshot_every``, ``max_recoveries``), stop stops at the first
        divergence, off checks nothing."""
        cfg = self.config
        if cfg.health == "off":
            return None
        if cfg.health == "stop":
            return RollbackPolicy(snapshot_every=cfg.snapshot_every, max_recoveries=0,
                                  advice="Stopped by model.health=stop: lower model.step_size or optim.lr, or set "
                                         "model.health=recover, then resume from the last checkpoint.")
        return RollbackPolicy(snapshot_every=cfg.snapshot_every, max_recoveries=cfg.max_recoveries,
                              advice="Lower optim.lr or model.step_size, then resume from the last checkpoint.")

    def step_problem(self, phase: str, logs: dict[str, float]) -> str | None:
        """The divergence the last :meth:`loss` diagnosed (module docstring), or None when healthy."""
        return self._problem

    def after_rollback(self, problem: str) -> str:
        """Count the roll-back and multiply the Langevin step size by ``model.recovery_factor``."""
        self.rollbacks += 1
        self.current_step_size.mul_(self.config.recovery_factor)
        # The restored state's saved gradient norm belongs to a step now undone: the redone step checks none (0).
        self._resumed_grad_norm = None
        return f"with Langevin step size {float(self.current_step_size):.4g}"

    def _negatives(self, start: Tensor) -> LangevinResult:
        """The training chains from ``start`` (``langevin_steps`` steps, the global RNG)."""
        settings = {"steps": self.config.langevin_steps, **self._sampler_settings(None, None)}
        if not (self.config.cuda_graphs and start.is_cuda):
            return langevin(self._sampling_energy, start, **settings)
        parameters = tuple(self.net.parameters())
        key = CudaGraphLangevin.key_of(start, parameters=parameters, **settings)
        if key not in self._graphs:  # first step, an epoch's short last batch, a new step size, a moved model
            # Graphs of an old step size or of parameters that moved never replay again: free their memory.
            self._graphs = {old: graph for old, graph in self._graphs.items() if old[1] == key[1]}
            if len(self._graphs) >= _MAX_GRAPHS:
                del self._graphs[next(iter(self._graphs))]  # the oldest
            self._graphs[key] = CudaGraphLangevin(self._sampling_energy, start, parameters=parameters, **settings)
        return self._graphs[key](start)

    def __getstate__(self) -> dict[str, Any]:
        # Captured graphs cannot be copied or pickled; a copy captures its own when it trains.
        return {**super().__getstate__(), "_graphs": {}}

    def _contrastive_step(self, x: Tensor, param_grad_norm: float) -> tuple[Tensor, dict[str, float], _Health]:
        cfg = self.config
        batch_size = x.shape[0]
        real = x
        if cfg.data_noise > 0.0:
            real = (x + cfg.data_noise * torch.randn_like(x)).clamp_(self.low, self.high)
        start = self.buffer.draw(batch_size)
        chains = self._negatives(start)
        fake = chains.samples
        self.buffer.push(fake)
        energies = self.energy(torch.cat([real, fake]))
        e_real, e_fake = energies[:batch_size], energies[batch_size:]
        cdiv = e_real.mean() - e_fake.mean()
        reg = cfg.alpha * (e_real.square() + e_fake.square()).mean()
        loss = cdiv + reg
        with torch.no_grad():
            unit = (fake - self.low) / (self.high - self.low)
            image_mean = unit.flatten(1).mean(1)
            collapsed = ((image_mean <= _COLLAPSE_MARGIN) | (image_mean >= 1.0 - _COLLAPSE_MARGIN)).float().mean()
            saturation = ((unit <= _SATURATION_MARGIN) | (unit >= 1.0 - _SATURATION_MARGIN)).float().mean()
            # One device->host transfer for all monitors.
            values = torch.stack([cdiv.detach(), reg.detach(), e_real.detach().mean(), e_fake.detach().mean(),
                                  energies.detach().abs().max(), chains.grad_norm.mean(), collapsed,
                                  saturation]).tolist()
        logs = {"cdiv": values[0], "reg": values[1], "energy_data": values[2], "energy_samples": values[3],
                "langevin_grad_norm": values[5], "param_grad_norm": param_grad_norm, "collapsed_frac": values[6],
                "saturation": values[7]}
        health = _Health(max_abs_energy=values[4], langevin_grad_norm=values[5], param_grad_norm=param_grad_norm,
                         collapsed_fraction=values[6])
        return loss, logs, health

    def _param_grad_norm(self) -> float:
        """L2 norm of the gradients left by the previous optimizer step (0 before the first)."""
        grads = [p.grad.detach().flatten() for p in self.parameters() if p.grad is not None]
        if not grads:
            return 0.0
        return float(torch.cat(grads).norm())

    def _diagnose(self, health: _Health) -> str | None:
        """A sentence naming the divergence, or None when healthy (always None with ``health=off``). Local to
        this process: the Trainer has every process agree."""
        cfg = self.config
        problem = None
        if cfg.health == "off":
            return None
        if not math.isfinite(health.max_abs_energy) or health.max_abs_energy > cfg.max_energy:
            problem = (f"energies exploded (max |E| = {health.max_abs_energy:.4g} > "
                       f"model.max_energy = {cfg.max_energy:g})")
        elif not math.isfinite(health.langevin_grad_norm) or health.langevin_grad_norm > cfg.max_grad_norm:
            problem = (f"Langevin input gradients exploded (mean norm {health.langevin_grad_norm:.4g} > "
                       f"model.max_grad_norm = {cfg.max_grad_norm:g})")
        elif not math.isfinite(health.param_grad_norm) or health.param_grad_norm > cfg.max_grad_norm:
            problem = (f"parameter gradients exploded (norm {health.param_grad_norm:.4g} > "
                       f"model.max_grad_norm = {cfg.max_grad_norm:g})")
        elif self.train_steps >= cfg.health_warmup and health.collapsed_fraction > cfg.max_collapsed:
            problem = (f"{100 * health.collapsed_fraction:.0f}% of the Langevin samples collapsed to blank or "
                       f"saturated images (> model.max_collapsed = {cfg.max_collapsed:g})")
        return problem

    def extra_state(self) -> dict[str, Any]:
        """The replay buffer, the step and roll-back counters and the gradient norm the next step checks, so
        resume is exact (the last good state for roll-backs is the Trainer's, in its own checkpoint state)."""
        return {"buffer": self.buffer.state_dict(), "train_steps": self.train_steps, "rollbacks": self.rollbacks,
                "param_grad_norm": self._param_grad_norm()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        try:
            self.buffer.load_state_dict(state["buffer"])
            self.train_steps = int(state["train_steps"])
            self.rollbacks = int(state["rollbacks"])
            if "param_grad_norm" in state:  # absent in checkpoints written before it was kept
                self._resumed_grad_norm = float(state["param_grad_norm"])
            # Checkpoints written while the EBM rolled itself back also hold its last good state under "good".
            # It is ignored, not converted (it lacks the buffers and the Trainer's layout): the resumed run takes
            # a fresh snapshot at its first step, so a roll-back before the next snapshot returns to the resumed
            # state instead of that older one.
        except KeyError as exc:
            raise CheckpointError(f"EBM training state in the checkpoint lacks {exc}; it was not written by "
                                  "this version of genlab's EBM") from None

    # ------------------------------------------------------------------ monitoring and evaluation

    def _noise_generator(self, seed: int = 0) -> torch.Generator:
        return torch.Generator(device=self._device()).manual_seed(seed)

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        """Mean energies of validation images (``energy_data``) and of as many uniform-noise images
        (``energy_noise``, fixed seed) and ``energy_gap`` = energy_noise - energy_data (positive: the data is
        more likely than noise; the seed's validation "cdiv" is its negative)."""
        generator = self._noise_generator(0)
        data_total = noise_total = 0.0
        count = 0
        for batch in batches:
            x = self._images(batch)
            noise = self.buffer.uniform(x.shape[0], device=x.device, generator=generator)
            data_total += float(self.energy(x).double().sum())
            noise_total += float(self.energy(noise).double().sum())
            count += x.shape[0]
        if count == 0:
            raise DataError("validate got no examples")
        return {"energy_data": data_total / count, "energy_noise": noise_total / count,
                "energy_gap": (noise_total - data_total) / count}

    @torch.no_grad()
    def energies_of(self, batches: Iterable[Any]) -> Tensor:
        """E(x) of every image in ``batches``, concatenated, (N,) float64 on CPU."""
        values = [self.energy(self._images(b).to(self._device())).double().cpu() for b in batches]
        if not values:
            raise DataError("no images to compute energies of")
        return torch.cat(values)

    def _ood_batches(self, name: str, data_dir: str | None, batch_size: int = 500) -> Iterable[Tensor]:
        """The test split of another image dataset, transformed like this model's data (pad, scale)."""
        from genlab.data import transforms
        from genlab.data.images import load_images

        raw = load_images(name, "test", data_dir=data_dir)
        images = transforms.to_unit_float(torch.from_numpy(raw.images))
        channels, height, width = self.image_shape
        if images.shape[1] != channels or images.shape[2] > height or images.shape[3] > width:
            raise DataError(f"OOD set {name} has images of shape {tuple(images.shape[1:])}, which cannot be "
                            f"brought to this model's {self.image_shape}")
        if height != width:
            raise DataError(f"OOD scoring pads to square images; this model's images are {height}x{width}")
        images = transforms.pad_to(images, height) * (self.high - self.low) + self.low
        return (images[i:i + batch_size] for i in range(0, len(images), batch_size))

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 ood: str | None = None, data_dir: str | None = None, **options: Any) -> dict[str, float]:
        """Out-of-distribution scoring by energy: AUROC of -E separating the test images (positives) from uniform
        noise and, with ``ood=NAME`` (e.g. fashion-mnist), from that dataset's test split (found via
        ``data_dir`` / GENLAB_DATA like any dataset). 1.0: every test image has lower energy than every OOD image;
        0.5: chance. ``generator`` draws the noise (default: a fixed seed).

        Keys: ``auroc_noise``, ``energy_test``, ``energy_noise``, ``energy_gap``, ``n_test``; with ``ood``:
        ``auroc_<name>`` (name with - as _), ``energy_<name>``, ``n_<name>``.
        """
        if options:
            raise ConfigError(f"EBM.evaluate got unknown option(s): {', '.join(sorted(options))}; "
                              "valid: ood (e.g. ood=fashion-mnist), data_dir")
        test = self.energies_of(test_batches)
        if generator is None:
            generator = self._noise_generator(0)
        noise_batches = (self.buffer.uniform(min(500, len(test) - i), device=self._device(), generator=generator)
                         for i in range(0, len(test), 500))
        noise = self.energies_of(noise_batches)
        result = {"auroc_noise": auroc(-test, -noise), "energy_test": float(test.mean()),
                  "energy_noise": float(noise.mean()), "energy_gap": float(noise.mean() - test.mean()),
                  "n_test": float(len(test))}
        if ood:
            key = str(ood).strip().lower().replace("-", "_").replace(" ", "_")
            other = self.energies_of(self._ood_batches(str(ood), data_dir))
            result.update({f"auroc_{key}": auroc(-test, -other), f"energy_{key}": float(other.mean()),
                           f"n_{key}": float(len(other))})
        return result

