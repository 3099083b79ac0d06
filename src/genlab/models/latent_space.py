"""The VAE's latent-space pictures made during training: the manifold grid, the latent scatter, interpolations.

Moved here from :mod:`genlab.viz.latent` (which re-exports every name) so that :mod:`genlab.models.vae` draws its
per-epoch snapshots without importing the viz layer. See :mod:`genlab.viz.latent` for the grid conventions
(bounds, ``linear`` / ``gaussian`` spacing, row and column order); everything here works with any model that
has ``encode(x) -> (mu, logvar)``, ``decode(z) -> images`` in [0, 1] and ``config.latent_dim``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from genlab.errors import ConfigError, DataError


SPACINGS = ("linear", "gaussian")
MAX_GRID_SIZE = 64


def check_grid(size: int, bounds: Sequence[float], spacing: str) -> tuple[float, float]:
    """Validate manifold-grid options; returns ``(lo, hi)``. ConfigError names what is wrong and how to fix it."""
    if not 2 <= int(size) <= MAX_GRID_SIZE:
        raise ConfigError(f"the manifold grid size must be in [2, {MAX_GRID_SIZE}] cells per side, got {size}")
    if spacing not in SPACINGS:
        raise ConfigError(f"manifold spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if len(bounds) != 2:
        raise ConfigError(f"manifold bounds must be two numbers [lo, hi], got {list(bounds)}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"manifold bounds must be finite, got [{lo}, {hi}]")
    if lo >= hi:
        raise ConfigError(f"manifold bounds are reversed or empty: lo={lo} must be < hi={hi}, e.g. [-4, 4]")
    if spacing == "gaussian":
        low_mass, high_mass = _normal_cdf(lo), _normal_cdf(hi)
        if not (0.0 < low_mass < high_mass < 1.0):
            raise ConfigError(f"manifold bounds [{lo}, {hi}] lie too far in the Gaussian tails for "
                              "spacing=gaussian (their prior mass rounds to 0 or 1); use bounds within ±8")
    return lo, hi


def _normal_cdf(value: float) -> float:
    return float(torch.special.ndtr(torch.tensor(value, dtype=torch.float64)))


def _axis_values(size: int, lo: float, hi: float, spacing: str) -> Tensor:
    if spacing == "linear":
        return torch.linspace(lo, hi, size, dtype=torch.float64)
    masses = torch.linspace(_normal_cdf(lo), _normal_cdf(hi), size, dtype=torch.float64)
    values = torch.special.ndtri(masses)
    values[0], values[-1] = lo, hi  # exact end points despite the round trip through the CDF
    return values


def latent_grid(size: int = 20, bounds: Sequence[float] = (-4.0, 4.0), spacing: str = "linear") -> Tensor:
    """The z values of the manifold picture, float32 (size², 2), row-major as drawn (see the module docstring)."""
    lo, hi = check_grid(size, bounds, spacing)
    axis = _axis_values(int(size), lo, hi, spacing).to(torch.float32)
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def _check_vae(model: Any) -> int:
    latent_dim = getattr(getattr(model, "config", None), "latent_dim", None)
    if latent_dim is None or not (hasattr(model, "encode") and hasattr(model, "decode")):
        raise ConfigError(f"latent-space pictures need a VAE (encode/decode/latent_dim), got {type(model).__name__}")
    return int(latent_dim)


def _model_tensor(model: Any, values: Tensor) -> Tensor:
    parameter = next(model.parameters())
    return values.to(device=parameter.device, dtype=parameter.dtype)


@torch.no_grad()
def decode_manifold(model: Any, size: int = 20, bounds: Sequence[float] = (-4.0, 4.0),
                    spacing: str = "linear") -> Tensor:
    """Decode the ``size`` x ``size`` lattice of :func:`latent_grid`: (size², C, H, W) in [0, 1].

    Only defined for ``latent_dim == 2`` (ConfigError otherwise). Save with ``save_grid(images, path, ncol=size)``.
    """
    latent_dim = _check_vae(model)
    if latent_dim != 2:
        raise ConfigError(f"the manifold grid needs a 2-D latent space, this model has latent_dim={latent_dim}; "
                          "train with model.latent_dim=2 or use the latent scatter (PCA) instead")
    return model.decode(_model_tensor(model, latent_grid(size, bounds, spacing)))


def project_to_plane(means: Tensor) -> tuple[Tensor, tuple[str, str]]:
    """2-D coordinates to draw latent means (N, L): the means themselves for L = 2, (z, 0) for L = 1, and the
    first two principal components for L > 2 (signs fixed so each component's largest loading is positive).

    Returns ``(coords (N, 2), (x-axis name, y-axis name))``.
    """
    means = means.detach().to(torch.float64).cpu()
    if means.dim() != 2 or means.shape[0] == 0:
        raise DataError(f"expected latent means of shape (N, latent_dim), got {tuple(means.shape)}")
    latent_dim = means.shape[1]
    if latent_dim == 1:
        return torch.cat([means, torch.zeros_like(means)], 1).float(), ("z", "")
    if latent_dim == 2:
        return means.float(), ("z1", "z2")
    centered = means - means.mean(0, keepdim=True)
    _, singular, right = torch.linalg.svd(centered, full_matrices=False)
    components = right[:2]
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    share = singular.square() / singular.square().sum().clamp_min(1e-300)
    names = (f"PC1 ({100 * float(share[0]):.0f}% var.)", f"PC2 ({100 * float(share[1]):.0f}% var.)")
    return (centered @ components.T).float(), names


def scatter_figure(means: Tensor, labels: Tensor | None = None, *, title: str = "latent means",
                   size_inches: float = 5.0, dpi: int = 80):
    """A matplotlib Figure of latent means (via :func:`project_to_plane`) coloured by integer label (-1: none)."""
    import matplotlib
    from matplotlib.figure import Figure

    coords, (x_name, y_name) = project_to_plane(means)
    labels = torch.full((len(coords),), -1, dtype=torch.long) if labels is None else labels.long().cpu()
    figure = Figure(figsize=(size_inches, size_inches), dpi=dpi)
    axis = figure.add_subplot(1, 1, 1)
    marker_size = 4 if len(coords) > 2000 else 10
    classes = sorted(int(c) for c in torch.unique(labels) if int(c) >= 0)
    if classes:
        colours = matplotlib.colormaps["tab10" if len(classes) <= 10 else "viridis"]
        for rank, label in enumerate(classes):
            rows = labels == label
            colour = colours(rank if len(classes) <= 10 else rank / max(1, len(classes) - 1))
            axis.scatter(coords[rows, 0].numpy(), coords[rows, 1].numpy(), s=marker_size, color=colour,
                         label=str(label), alpha=0.7, linewidths=0)
        if len(classes) <= 20:
            axis.legend(loc="upper right", fontsize=7, markerscale=2, title="label", title_fontsize=7)
    unlabeled = labels < 0
    if bool(unlabeled.any()):
        axis.scatter(coords[unlabeled, 0].numpy(), coords[unlabeled, 1].numpy(), s=marker_size, color="0.3",
                     alpha=0.6, linewidths=0)
    axis.set_xlabel(x_name)
    axis.set_ylabel(y_name)
    axis.set_title(f"{title} (n={len(coords)})", fontsize=9)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def figure_to_tensor(figure) -> Tensor:
    """Render a matplotlib Figure to an RGB image tensor (3, H, W) in [0, 1] (for sample grids and GIFs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = torch.frombuffer(bytearray(canvas.buffer_rgba()), dtype=torch.uint8)
    width, height = canvas.get_width_height()
    return rgba.reshape(height, width, 4)[..., :3].permute(2, 0, 1).float() / 255.0


@torch.no_grad()
def interpolation_grid(model: Any, images: Tensor, steps: int = 8) -> Tensor:
    """Interpolations between consecutive pairs of ``images`` (2P, C, H, W): (P·steps, C, H, W), pair p's row
    first. Linear in the latent space between the two encoder means, end points included."""
    _check_vae(model)
    if steps < 2:
        raise ConfigError(f"an interpolation needs at least 2 steps (the two end points), got {steps}")
    pairs = len(images) // 2
    if pairs < 1:
        raise DataError(f"an interpolation needs two images, got {len(images)}")
    mu, _ = model.encode(_model_tensor(model, images[: 2 * pairs]))
    start, end = mu[0::2], mu[1::2]  # (P, L)
    weights = torch.linspace(0.0, 1.0, steps, device=mu.device, dtype=mu.dtype).view(1, steps, 1)
    path = start.unsqueeze(1) * (1.0 - weights) + end.unsqueeze(1) * weights  # (P, steps, L)
    return model.decode(path.reshape(pairs * steps, -1))


def interpolation_pairs(images: Tensor, labels: Tensor | None, pairs: int) -> Tensor:
    """Up to ``pairs`` disjoint image pairs (2P, ...) for :func:`interpolation_grid`, each pairing an image with
    the next unused one of a different label (any label when ``labels`` is None or -1)."""
    chosen: list[int] = []
    used: set[int] = set()
    for first in range(len(images)):
        if len(chosen) >= 2 * pairs:
            break
        if first in used:
            continue
        for second in range(first + 1, len(images)):
            if second in used:
                continue
            if labels is None or int(labels[first]) != int(labels[second]) or int(labels[first]) < 0:
                chosen += [first, second]
                used.update((first, second))
                break
    return images[chosen]
