"""Pictures of a VAE's latent space: the 2-D manifold grid, a scatter of latent means, interpolations.

Everything here works with any model that has ``encode(x) -> (mu, logvar)`` (each (n, latent_dim)),
``decode(z) -> images`` in [0, 1] and ``config.latent_dim`` (the VAE capability contract).

The manifold grid (Kingma & Welling 2014, "Auto-encoding variational Bayes", figure 4; the TF.js Fashion-MNIST
VAE page, a 20x20 grid over [-4, 4]) decodes a ``size`` x ``size`` lattice of z values of a 2-D latent space.
Both coordinates run over the same bounds ``[lo, hi]`` (in z units, lo < hi), spaced either

* ``"linear"``: evenly in z (the TF.js seed), or
* ``"gaussian"``: evenly in prior probability mass, z = Φ⁻¹(p) for p evenly spaced over [Φ(lo), Φ(hi)]
  (the TF CVAE tutorial uses p in [0.05, 0.95], i.e. bounds ±1.645), so regions the prior rarely visits get
  fewer cells.

The end points are exactly lo and hi in both cases. Columns run left to right with increasing z₁, rows top to
bottom with *decreasing* z₂, so the picture reads like a plot with the z₂ axis pointing up.

From the command line, ``genlab latent RUN`` (:func:`genlab.api.latent_pictures`) writes ``manifold.png`` (2-D latent spaces),
``latent_scatter.png`` (test-set latent means coloured by label) and ``interpolation.png`` into ``RUN/latent/``.

The grid, the scatter figure, the interpolations and :func:`figure_to_tensor` live in
:mod:`genlab.models.latent_space` (the VAE draws them every epoch without importing this layer) and are
re-exported here; this module keeps what only the command line uses: :func:`latent_means`, :func:`interpolate`,
:func:`save_figure` and :func:`write_latent_pictures`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.errors import ConfigError, DataError
from genlab.models.latent_space import (
    MAX_GRID_SIZE,
    SPACINGS,
    _check_vae,
    _model_tensor,
    check_grid,
    decode_manifold,
    figure_to_tensor,
    interpolation_grid,
    interpolation_pairs,
    latent_grid,
    project_to_plane,
    scatter_figure,
)

__all__ = [
    "check_grid",
    "decode_manifold",
    "figure_to_tensor",
    "interpolate",
    "interpolation_grid",
    "interpolation_pairs",
    "latent_grid",
    "latent_means",
    "project_to_plane",
    "scatter_figure",
    "write_latent_pictures",
]


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, (tuple, list)):
        x = batch[0]
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return x, labels
    return batch, None


@torch.no_grad()
def latent_means(model: Any, batches: Iterable[Any], limit: int = 0) -> tuple[Tensor, Tensor]:
    """Encoder means of the images in ``batches`` ((x, y) pairs or tensors), at most ``limit`` (0: all).

    Returns ``(means (N, latent_dim), labels (N,))`` on the CPU; labels are -1 where the data has none.
    """
    _check_vae(model)
    means, labels, seen = [], [], 0
    for batch in batches:
        x, y = _split_batch(batch)
        if limit:
            x = x[: limit - seen]
            y = None if y is None else y[: limit - seen]
        if len(x) == 0:
            break
        mu, _ = model.encode(_model_tensor(model, x))
        means.append(mu.float().cpu())
        labels.append(torch.full((len(x),), -1, dtype=torch.long) if y is None else y.long().cpu())
        seen += len(x)
        if limit and seen >= limit:
            break
    if not means:
        raise DataError("no images to encode for the latent scatter")
    return torch.cat(means), torch.cat(labels)


def save_figure(figure, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure).print_png(str(path))
    return path


@torch.no_grad()
def interpolate(model: Any, start: Tensor, end: Tensor, steps: int = 8) -> Tensor:
    """Decode ``steps`` points on the straight line between the encoder means of two images (end points
    included): ``start``/``end`` are single images (C, H, W) or (1, C, H, W). Returns (steps, C, H, W)."""
    return interpolation_grid(model, torch.stack([_single(start), _single(end)]), steps=steps)


def _single(image: Tensor) -> Tensor:
    """(1, C, H, W) -> (C, H, W); a single image passes through."""
    return image[0] if image.dim() == 4 and image.shape[0] == 1 else image


def write_latent_pictures(model: Any, batches: Iterable[Any], out_dir: str | Path, *, size: int = 20,
                          bounds: Sequence[float] = (-4.0, 4.0), spacing: str = "linear", limit: int = 5000,
                          pairs: int = 8, steps: int = 10) -> dict[str, Path]:
    """Write ``manifold.png`` (latent_dim 2 only), ``latent_scatter.png`` (means of up to ``limit`` images of
    ``batches``, coloured by label) and ``interpolation.png`` (``pairs`` rows of ``steps`` images between
    differently labelled images) into ``out_dir``. Returns {name: path}."""
    from genlab.image_files import save_grid

    latent_dim = _check_vae(model)
    check_grid(size, bounds, spacing)
    if pairs < 1:
        raise ConfigError(f"pairs must be >= 1 interpolation, got {pairs}")
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if latent_dim == 2:
        grid = decode_manifold(model, size, bounds, spacing)
        written["manifold"] = save_grid(grid, out_dir / "manifold.png", ncol=size, padding=0, scale=1)
    images, labels = [], []
    collected = 0

    def remember(stream):
        nonlocal collected
        for batch in stream:
            x, y = _split_batch(batch)
            if collected < 4 * pairs:  # enough candidates to find differently labelled pairs
                images.append(x.cpu())
                labels.append(None if y is None else y.cpu())
                collected += len(x)
            yield batch

    means, mean_labels = latent_means(model, remember(batches), limit=limit)
    figure = scatter_figure(means, mean_labels, title=f"latent means (dim {latent_dim})", dpi=100)
    written["latent_scatter"] = save_figure(figure, out_dir / "latent_scatter.png")
    candidates = torch.cat(images)
    candidate_labels = None if any(y is None for y in labels) else torch.cat(labels)
    chosen = interpolation_pairs(candidates, candidate_labels, pairs)
    if len(chosen) >= 2:
        rows = interpolation_grid(model, chosen, steps=steps)
        written["interpolation"] = save_grid(rows, out_dir / "interpolation.png", ncol=steps)
    return written
