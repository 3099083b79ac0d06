"""Stochastic-gradient Langevin dynamics (SGLD) on an energy function, as used to sample energy-based models.

One step, in the order of the seed recipe (Du & Mordatch 2019, "Implicit Generation and Generalization in
Energy-Based Models"; Foster, "Generative Deep Learning", 2nd ed., ch. 7)::

    x ← x + noise_std · ξ,  ξ ~ N(0, I)          # add noise
    x ← clip(x, low, high)                        # stay in the data range
    g ← clip(∇ₓ E(x), -grad_clip, grad_clip)      # element-wise clipped energy gradient
    x ← clip(x - step_size · g, low, high)        # step downhill, clip again

Energy convention: ``energy(x)`` is LOW where x is likely, so the chain moves along ``-∇E``.

With ``noise_std = sqrt(2 · step_size)``, no clipping and no bounds this is the unadjusted Langevin algorithm
(Roberts & Tweedie 1996): the *noised* iterates follow ``y ← y - ε∇E(y) + sqrt(2ε) ξ``, whose stationary law
tends to ``p(x) ∝ exp(-E(x))`` as ε → 0. Image EBMs instead use a large step and a tiny noise (step 10, noise
0.005), which is better read as noisy, clipped gradient descent on E than as an exact sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from genlab.errors import ConfigError

EnergyFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LangevinResult:
    """What :func:`langevin` returns.

    ``samples``: the final states, shape like ``x0`` (B, ...).
    ``frames``: ``None``, or the states after 0, every, 2·every, ... steps, shape (steps // every + 1, B, ...);
    frame 0 is the start.
    ``grad_norm``: per-chain L2 norm of the *unclipped* energy gradient at the last step, shape (B,), for
    divergence monitoring (zeros when ``steps == 0``).
    """

    samples: Tensor
    frames: Tensor | None
    grad_norm: Tensor


def check_langevin_settings(*, steps: int, step_size: float, noise_std: float, grad_clip: float = 0.0,
                            bounds: tuple[float, float] | None = None, every: int = 0) -> None:
    """ConfigError naming the first invalid Langevin setting."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"Langevin steps must be an integer >= 0, got {steps!r}")
    for name, value in (("step size", step_size), ("noise std", noise_std), ("gradient clip", grad_clip)):
        if not math.isfinite(float(value)) or float(value) < 0.0:
            raise ConfigError(f"Langevin {name} must be a finite number >= 0, got {value!r}")
    if bounds is not None and not float(bounds[0]) < float(bounds[1]):
        raise ConfigError(f"Langevin bounds must be (low, high) with low < high, got {bounds!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(f"Langevin trajectory interval 'every' must be an integer >= 0, got {every!r}")


def _gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


def langevin(energy: EnergyFn, x0: Tensor, *, steps: int, step_size: float, noise_std: float,
             grad_clip: float = 0.0, bounds: tuple[float, float] | None = (-1.0, 1.0),
             generator: torch.Generator | None = None, every: int = 0) -> LangevinResult:
    """Run ``steps`` SGLD steps from ``x0`` (B, ...) on ``energy`` ((B, ...) -> (B,)); see the module docstring.

    ``grad_clip = 0`` turns gradient clipping off, ``bounds = None`` the value clipping. Noise comes from
    ``generator`` (or the global torch RNG when None, which training uses so checkpointed RNG states make resume
    exact). ``every > 0`` also records the trajectory (frames); ``every = 0`` records nothing. Gradients are taken
    with respect to the input only, even under ``torch.no_grad()``; the energy's parameters receive none.
    """
    check_langevin_settings(steps=steps, step_size=step_size, noise_std=noise_std, grad_clip=grad_clip,
                            bounds=bounds, every=every)
    low, high = (None, None) if bounds is None else (float(bounds[0]), float(bounds[1]))
    x = x0.detach().clone()
    frames = [x.clone()] if every else None
    grad_norm = x.new_zeros(x.shape[0])
    with torch.enable_grad():
        for step in range(1, steps + 1):
            if noise_std > 0.0:
                x.add_(_gaussian_like(x, generator), alpha=noise_std)
            if bounds is not None:
                x.clamp_(low, high)
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
            x = x.detach()
            if step == steps:
                grad_norm = grad.flatten(1).norm(dim=1)
            if grad_clip > 0.0:
                grad = grad.clamp(-grad_clip, grad_clip)  # out of place: autograd may return an expanded tensor
            x.add_(grad, alpha=-step_size)
            if bounds is not None:
                x.clamp_(low, high)
            if every and step % every == 0:
                frames.append(x.clone())
    return LangevinResult(samples=x, frames=torch.stack(frames) if frames is not None else None,
                          grad_norm=grad_norm.detach())


class CudaGraphLangevin:
    """:func:`langevin` (no trajectory, the global RNG) captured once as a CUDA graph and then replayed.

    A small energy network leaves a GPU idle between the dozens of small kernels of each Langevin step; one
    replay launches a whole chain of ``steps`` steps at once. The graph runs the kernels that eager mode would,
    in the same order, on the same random stream, so the samples are the eager samples (checked by a CUDA test
    with ``torch.backends.cudnn.deterministic``; without it, eager runs may already differ by cuDNN's rounding).

    The graph reads the energy's parameters from their memory at each replay, so in-place updates (an optimizer
    step, ``load_state_dict``) are seen; reallocated parameters (``model.to``) are not: build a new instance
    when :meth:`key_of` changes. Capture leaves the global CUDA RNG state as it found it.
    """

    def __init__(self, energy: EnergyFn, example: Tensor, *, steps: int, step_size: float, noise_std: float,
                 grad_clip: float = 0.0, bounds: tuple[float, float] | None = (-1.0, 1.0),
                 parameters: tuple[Tensor, ...] = ()) -> None:
        check_langevin_settings(steps=steps, step_size=step_size, noise_std=noise_std, grad_clip=grad_clip,
                                bounds=bounds)
        if example.device.type != "cuda":
            raise ConfigError(f"CUDA-graph Langevin needs a CUDA tensor, got one on {example.device}")
        settings = {"step_size": step_size, "noise_std": noise_std, "grad_clip": grad_clip, "bounds": bounds}
        self._device = example.device
        self._input = example.detach().clone()
        rng_state = torch.cuda.get_rng_state(self._device)
        # On the example's GPU, also when it is not the current one (``--device cuda:1`` without DDP).
        with torch.cuda.device(self._device):
            try:
                # Autograd and cuDNN allocate and choose algorithms on first use; not during capture.
                side = torch.cuda.Stream(self._device)
                side.wait_stream(torch.cuda.current_stream(self._device))
                with torch.cuda.stream(side):
                    langevin(energy, self._input, steps=min(steps, 2), **settings)
                torch.cuda.current_stream(self._device).wait_stream(side)
                self._graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self._graph, stream=side):
                    self._output = langevin(energy, self._input, steps=steps, **settings)
            finally:
                torch.cuda.set_rng_state(rng_state, self._device)

    @staticmethod
    def key_of(example: Tensor, *, parameters: tuple[Tensor, ...] = (), **settings) -> tuple:
        """What a captured graph depends on, as (batch shape, everything else): the input's shape, its dtype and
        device, the settings (baked into the kernels' arguments) and where the parameters live."""
        return (tuple(example.shape), (example.dtype, example.device, tuple(sorted(settings.items())),
                                       tuple(p.data_ptr() for p in parameters)))

    def __call__(self, x0: Tensor) -> LangevinResult:
        """The chains from ``x0`` (same shape, dtype and device as the example); returns fresh tensors."""
        if x0.shape != self._input.shape or x0.dtype != self._input.dtype or x0.device != self._device:
            raise ConfigError(f"this captured Langevin chain takes {tuple(self._input.shape)} {self._input.dtype} on "
                              f"{self._device}, got {tuple(x0.shape)} {x0.dtype} on {x0.device}; capture another")
        self._input.copy_(x0)
        with torch.cuda.device(self._device):
            self._graph.replay()
        return LangevinResult(samples=self._output.samples.clone(), frames=None,
                              grad_norm=self._output.grad_norm.clone())
