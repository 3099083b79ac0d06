"""Generation from a deep belief net: categorical draws for the label units and :class:`DBNGeneration`, the
mixin that gives :class:`genlab.models.dbn.DBN` its label-clamped Gibbs chains in the top RBM, the down pass
to images, and ``sample`` / ``sample_chain``.

Split out of :mod:`genlab.models.dbn` (which re-exports :func:`sample_softmax`); the mixin uses the DBN's
``top``, ``config``, ``image_shape``, ``_inputs``, ``up_probs``, ``down_pass`` and ``_top_visible``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError
from genlab.models.partition import bernoulli


def _uniform(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) noise on ``like``'s device and dtype, drawn from ``generator`` wherever it lives."""
    device = generator.device if generator is not None else like.device
    return torch.rand(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def sample_softmax(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One-hot draws from the categorical rows of ``probs`` (B, K) by inverse CDF; returns (B, K) of 0/1."""
    cumulative = probs.cumsum(1)
    u = _uniform((probs.shape[0], 1), probs, generator) * cumulative[:, -1:]  # rows need not sum exactly to 1
    index = (cumulative <= u).sum(1).clamp_max(probs.shape[1] - 1)
    return F.one_hot(index, probs.shape[1]).to(probs.dtype)


class DBNGeneration:
    """Sampling methods of :class:`genlab.models.dbn.DBN` (a mixin; see the module docstring)."""

    def _label_tensor(self, label: Any, n: int) -> Tensor | None:
        """``label``: None, an int, or n ints in 0..n_labels-1 -> one-hots (n, n_labels) or None."""
        if label is None:
            return None
        if not self.config.n_labels:
            raise ConfigError("this DBN has no label units (model.n_labels=0), so no label can be clamped")
        try:
            values = torch.as_tensor(label).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"label must be an integer in 0-{self.config.n_labels - 1}, got {label!r}") from None
        if values.dtype == torch.bool or values.is_floating_point() and not bool((values == values.round()).all()):
            raise ConfigError(f"label must be an integer in 0-{self.config.n_labels - 1}, got {label!r}")
        values = values.long()
        if values.numel() == 1:
            values = values.expand(n)
        if values.numel() != n:
            raise ConfigError(f"got {values.numel()} labels for {n} samples; pass one label or one per sample")
        if bool(((values < 0) | (values >= self.config.n_labels)).any()):
            raise ConfigError(f"label must be an integer in 0-{self.config.n_labels - 1}, got {label!r}")
        return F.one_hot(values.to(self.top.W.device), self.config.n_labels).to(self.top.W.dtype)

    @torch.no_grad()
    def _start(self, n: int, init: Tensor | None, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """Binary penultimate start states (n, pen_size) and the start images (None without ``init``)."""
        if init is None:
            probs = torch.sigmoid(self.top.b[: self.config.pen_size]).expand(n, self.config.pen_size)
            return bernoulli(probs.contiguous(), generator), None
        x, _ = self._inputs(init)
        if x.shape[0] != n:
            raise ConfigError(f"init has {x.shape[0]} images for {n} chains")
        return bernoulli(self.up_probs(x, self.config.n_rbms - 1), generator), x

    @torch.no_grad()
    def sample_chain(self, n: int, *, steps: int, init: Tensor | None = None,
                     generator: torch.Generator | None = None, every: int = 1, label: Any = None,
                     label_gain: float | None = None, mean_field: bool | None = None, **kwargs: Any) -> Tensor:
        """Frames of ``n`` alternating-Gibbs chains in the top RBM, each decoded by a down pass.

        Returns (steps // every + 1, n, *image_shape) in [0, 1]; frame 0 is the start (``init`` itself, or the
        random start decoded by a sampled down pass even with ``mean_field``: its mean-field decoding would be
        the same image for every chain, since the random start has one probability vector). ``label`` (an int
        or one per chain) is clamped in the top RBM, its unit set to ``label_gain`` (default
        ``config.label_gain``); otherwise the label units are sampled with the rest.
        ``mean_field`` (default ``config.mean_field_down``) decodes each frame's penultimate probabilities
        without sampling the layers below.
        """
        if kwargs:
            raise ConfigError(f"DBN.sample_chain got unknown option(s): {', '.join(sorted(kwargs))}")
        if n < 1 or steps < 0 or every < 1:
            raise ConfigError(f"sample_chain needs n >= 1, steps >= 0 and every >= 1, got {n}, {steps}, {every}")
        if label_gain is not None and label is None:
            raise ConfigError("label_gain scales a clamped label unit, and no label is clamped; pass a label too "
                              "(genlab sample RUN --label 7 --label-gain 2)")
        gain = self.config.label_gain if label_gain is None else float(label_gain)
        if not (math.isfinite(gain) and gain > 0.0):
            raise ConfigError(f"label_gain must be a finite number > 0, got {label_gain!r}")
        mean_field = self.config.mean_field_down if mean_field is None else bool(mean_field)
        clamped = self._label_tensor(label, n)
        if clamped is not None:
            clamped = clamped * gain
        pen, start_images = self._start(n, init, generator)
        first = start_images.reshape(n, *self.image_shape) if start_images is not None \
            else self.down_pass(pen, generator)
        frames = [first]
        labels = clamped if clamped is not None or not self.config.n_labels else \
            sample_softmax(torch.full((n, self.config.n_labels), 1.0 / self.config.n_labels,
                                      dtype=pen.dtype, device=pen.device), generator)
        for step in range(1, steps + 1):
            pen, labels, pen_probs = self._gibbs_top(pen, labels, clamped, generator)
            if step % every == 0:
                frames.append(self.down_pass(pen_probs, generator, mean_field=True) if mean_field
                              else self.down_pass(pen, generator))
        return torch.stack(frames)

    def _gibbs_top(self, pen: Tensor, labels: Tensor, clamped: Tensor | None,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """One alternating Gibbs step [pen, labels] -> h -> [pen', labels'] (labels kept when clamped).
        Returns (pen' states, labels', pen' probabilities)."""
        h = self.top.sample_hidden(torch.cat([pen, labels], 1), generator)
        pen_probs, pen, sampled = self._top_visible(h, clamped, generator)
        return pen, sampled, pen_probs

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, steps: int | None = None,
               label: Any = None, init: Tensor | None = None, label_gain: float | None = None,
               mean_field: bool | None = None, **kwargs: Any) -> Tensor:
        """``n`` images (n, *image_shape) in [0, 1]: ``steps`` (default ``config.sample_steps``) alternating
        Gibbs steps in the top RBM, with ``label`` clamped if given (``sample(n, label=7)`` draws sevens), then
        a down pass (``label_gain``, ``mean_field``: see :meth:`sample_chain`). A label outside
        0..n_labels-1 is a ConfigError."""
        if kwargs:
            raise ConfigError(f"DBN.sample got unknown option(s): {', '.join(sorted(kwargs))}; "
                              "valid: steps, label, init, label_gain, mean_field")
        steps = self.config.sample_steps if steps is None else int(steps)
        return self.sample_chain(n, steps=steps, init=init, generator=generator, every=max(steps, 1),
                                 label=label, label_gain=label_gain, mean_field=mean_field)[-1]
