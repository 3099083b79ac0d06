"""Variational autoencoders: MLP or convolutional, ELBO or importance-weighted (IWAE) objective.

Model (Kingma & Welling 2014, "Auto-encoding variational Bayes"): prior p(z) = N(0, I) over ``latent_dim``
dimensions, a decoder network giving p(x | z) and an encoder network giving the diagonal Gaussian
q(z | x) = N(μ(x), diag(exp(logvar(x)))), sampled by reparameterisation z = μ + exp(logvar / 2)·ε, ε ~ N(0, I).

Likelihoods p(x | z) (the decoder outputs one value ``l`` per pixel):

* ``bernoulli``: p(x_i = 1 | z) = σ(l_i); log p(x | z) = -BCE-with-logits(l, x), for x in [0, 1].
* ``gaussian``: N(x; σ(l), obs_std² I), a density on continuous pixel values.
* ``mse``: the TF.js Fashion-MNIST VAE seed, whose loss is MSE × 784 + KL, i.e. the sum of squared errors
  Σ_i (x_i - σ(l_i))² + KL. That is the Gaussian negative log density with variance ½ less its constant
  (D/2)·log π; training uses the seed's value, logs and evaluation use the proper density.

ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)), with the KL analytic, ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²),
or (``kl: mc``) the single-sample Monte Carlo estimate log q(z | x) - log p(z) at the sampled z, as the TF CVAE
tutorial does with log-normal densities. ``beta`` weights the KL (Higgins et al. 2017, β-VAE). With
``objective: iwae`` training maximises the importance-weighted bound L_k (Burda, Grosse & Salakhutdinov 2015,
"Importance weighted autoencoders"); with ``objective: elbo`` and k > 1 the ELBO is averaged over k samples
(the "VAE, k" rows of Burda et al. Table 1).

Architectures: ``mlp`` (``hidden_sizes``, e.g. 784-200-200-50 as in Burda et al., the decoder mirrors the
encoder) and ``conv`` (the TF CVAE tutorial: two 3x3 stride-2 convolutions with ``conv_channels`` (32, 64) ->
dense(2·latent_dim); decoder dense(32·H/4·W/4) -> 3x3 stride-2 transposed convolutions with 64 and 32 channels
-> a 3x3 stride-1 transposed convolution to the image channels; "same" padding, so H and W must be multiples of 4).

Evaluation (:meth:`VAE.evaluate`, ``genlab eval RUN``) reports the test ELBO and the importance-weighted NLL
with k = 5000 samples (Burda et al.) in nats per image; see :mod:`genlab.models.importance`. Pictures: every epoch
:meth:`VAE.snapshots` (samples, reconstructions, interpolations, the latent scatter and, for latent_dim 2, the
manifold grid; GIFs at the end, drawn by :mod:`genlab.models.latent_space`), and ``genlab latent RUN`` draws
the test set's latent space into ``RUN/latent/`` (see :mod:`genlab.viz.latent`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.transforms import pixel_marginals
from genlab.errors import ConfigError, DataError, check_config
from genlab.models.importance import (
    diag_gaussian_log_density,
    importance_weighted_estimate,
    log_mean_exp,
    mean_and_standard_error,
    standard_normal_log_density,
)
from genlab.models.base import DataInfo, GenerativeModel
from genlab.registry import register
from genlab.models.latent_space import (
    check_grid,
    decode_manifold,
    figure_to_tensor,
    interpolation_grid,
    interpolation_pairs,
    scatter_figure,
)

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU,
                "leaky_relu": nn.LeakyReLU}
# The evaluation draws samples in chunks so that one chunk's decoder output has at most this many values
# (2^23 floats = 32 MiB), which bounds the memory of k = 5000 regardless of the batch size.
_EVAL_CHUNK_VALUES = 1 << 23
# Pixel marginals are clamped before taking logits for the decoder's initial output bias.
_MARGINAL_EPS = 1e-3
# Pictures drawn by snapshots(): interpolation rows x images per row.
_INTERPOLATION_PAIRS = 8
_INTERPOLATION_STEPS = 8


@dataclass
class VAEConfig:
    """Hyper-parameters of a VAE. ``input_shape`` is filled from the data by :meth:`VAE.adapt_config`."""

    input_shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W), or (D,) for flat vectors (mlp only)
    architecture: str = "mlp"  # mlp | conv
    hidden_sizes: tuple[int, ...] = (200, 200)  # mlp: encoder hidden widths; the decoder uses them reversed
    conv_channels: tuple[int, ...] = (32, 64)  # conv: channels of the two stride-2 convolutions
    activation: str = "relu"  # relu | tanh | softplus | elu | leaky_relu
    latent_dim: int = 50
    likelihood: str = "bernoulli"  # bernoulli | gaussian | mse
    obs_std: float = math.sqrt(0.5)  # gaussian: the fixed decoder standard deviation (√½ matches mse)
    kl: str = "analytic"  # analytic | mc (single-sample Monte Carlo, the TF CVAE tutorial); ELBO objective only
    beta: float = 1.0  # KL weight of the ELBO objective
    objective: str = "elbo"  # elbo | iwae
    k: int = 1  # samples per example in training: IWAE's k, or the ELBO averaged over k samples
    manifold_size: int = 20  # snapshots of 2-D latent spaces: cells per side of the decoded grid
    manifold_bounds: tuple[float, ...] = (-4.0, 4.0)  # z range of both grid axes, lo < hi
    manifold_spacing: str = "linear"  # linear in z, or gaussian (equal prior mass); see genlab.viz.latent

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        check_config(len(shape) in (1, 3) and all(d >= 1 for d in shape),
               f"model.input_shape must be (C, H, W) or (D,) with positive sizes, got {list(shape)}")
        check_config(self.architecture in ("mlp", "conv"),
               f"model.architecture must be mlp or conv, got {self.architecture!r}")
        check_config(all(h >= 1 for h in self.hidden_sizes),
               f"model.hidden_sizes must be positive widths, got {list(self.hidden_sizes)}")
        check_config(len(self.conv_channels) == 2 and all(c >= 1 for c in self.conv_channels),
               f"model.conv_channels must be two positive channel counts, e.g. [32, 64], got "
               f"{list(self.conv_channels)}")
        if self.architecture == "conv":
            check_config(len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0,
                   f"the conv VAE needs images (C, H, W) with H and W multiples of 4 (two stride-2 layers), got "
                   f"{list(shape)}; use data.pad_to=32 or model.architecture=mlp")
        check_config(self.activation in _ACTIVATIONS,
               f"model.activation must be one of {', '.join(_ACTIVATIONS)}, got {self.activation!r}")
        check_config(self.latent_dim >= 1, f"model.latent_dim must be >= 1, got {self.latent_dim}")
        check_config(self.likelihood in ("bernoulli", "gaussian", "mse"),
               f"model.likelihood must be bernoulli, gaussian or mse, got {self.likelihood!r}")
        check_config(self.obs_std > 0, f"model.obs_std must be > 0, got {self.obs_std}")
        check_config(self.kl in ("analytic", "mc"), f"model.kl must be analytic or mc, got {self.kl!r}")
        check_config(self.beta >= 0, f"model.beta (the KL weight) must be >= 0, got {self.beta}")
        check_config(self.objective in ("elbo", "iwae"), f"model.objective must be elbo or iwae, got {self.objective!r}")
        check_config(self.k >= 1, f"model.k (samples per example) must be >= 1, got {self.k}")
        check_config(self.objective == "elbo" or self.beta == 1.0,
               f"model.beta={self.beta} weights the KL of the ELBO objective; the IWAE bound has no separate KL "
               "term, so use beta=1 with objective=iwae")
        check_grid(self.manifold_size, self.manifold_bounds, self.manifold_spacing)


@register("vae", config=VAEConfig, default_dataset="mnist", default_preset="vae-mlp-mnist",
          description="variational autoencoder (MLP or conv; ELBO or IWAE objective); test NLL by IWAE k=5000")
class VAE(GenerativeModel):
    """A VAE with encoder ``encoder`` (images -> (μ, logvar) concatenated, (B, 2·latent_dim)) and decoder
    ``decoder`` (z (B, latent_dim) -> per-pixel outputs (B, *input_shape): Bernoulli logits, or the
    pre-sigmoid Gaussian means). Capabilities: :meth:`encode`, :meth:`decode`, ``config.latent_dim``.
    """

    kind = "image"
    supports_amp = True  # autocast keeps exp, sums, logsumexp and BCE-with-logits in float32

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        activation = _ACTIVATIONS[config.activation]
        if config.architecture == "mlp":
            self.encoder, self.decoder = self._mlp(config, activation)
        else:
            self.encoder, self.decoder = self._conv(config, activation)
        # Validation means and labels of the last validate() call, for the latent scatter snapshot.
        self._val_latents: tuple[Tensor, Tensor] | None = None

    @staticmethod
    def _mlp(config: VAEConfig, activation: type[nn.Module]) -> tuple[nn.Module, nn.Module]:
        size = math.prod(config.input_shape)
        encoder: list[nn.Module] = [nn.Flatten()]
        width = size
        for hidden in config.hidden_sizes:
            encoder += [nn.Linear(width, hidden), activation()]
            width = hidden
        encoder.append(nn.Linear(width, 2 * config.latent_dim))
        decoder: list[nn.Module] = []
        width = config.latent_dim
        for hidden in reversed(config.hidden_sizes):
            decoder += [nn.Linear(width, hidden), activation()]
            width = hidden
        decoder += [nn.Linear(width, size), nn.Unflatten(1, tuple(config.input_shape))]
        return nn.Sequential(*encoder), nn.Sequential(*decoder)

    @staticmethod
    def _conv(config: VAEConfig, activation: type[nn.Module]) -> tuple[nn.Module, nn.Module]:
        channels, height, width = config.input_shape
        first, second = config.conv_channels
        small = (height // 4, width // 4)
        encoder = nn.Sequential(
            nn.Conv2d(channels, first, 3, stride=2, padding=1), activation(),
            nn.Conv2d(first, second, 3, stride=2, padding=1), activation(),
            nn.Flatten(), nn.Linear(second * small[0] * small[1], 2 * config.latent_dim))
        decoder = nn.Sequential(
            nn.Linear(config.latent_dim, first * small[0] * small[1]), activation(),
            nn.Unflatten(1, (first, *small)),
            nn.ConvTranspose2d(first, second, 3, stride=2, padding=1, output_padding=1), activation(),
            nn.ConvTranspose2d(second, first, 3, stride=2, padding=1, output_padding=1), activation(),
            nn.ConvTranspose2d(first, channels, 3, stride=1, padding=1))
        return encoder, decoder

    # ------------------------------------------------------------------ configuration and data

    @classmethod
    def adapt_config(cls, config: VAEConfig, info: DataInfo) -> VAEConfig:
        """Set ``input_shape`` from the data; the data must be images in [0, 1] (decoder means are sigmoids)."""
        if info.kind != "image":
            raise ConfigError(f"the VAE models images, not {info.kind!r} data")
        if tuple(info.value_range) != (0.0, 1.0):
            raise ConfigError(f"the VAE needs data in [0, 1] (its decoder means are sigmoids), got range "
                              f"{info.value_range}; use data.scale=unit")
        if not info.shape:
            raise ConfigError("the data does not say its image shape; cannot size the VAE")
        return dataclasses.replace(config, input_shape=tuple(int(d) for d in info.shape))

    @property
    def _anchor(self) -> Tensor:
        return next(self.parameters())

    @property
    def num_pixels(self) -> int:
        return math.prod(self.config.input_shape)

    def _images(self, batch: Any) -> Tensor:
        """Batch ``(x, y)`` or ``x`` -> x as (B, *input_shape) in the parameters' dtype and device, checked."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, Tensor):
            raise DataError(f"VAE batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        shape = tuple(self.config.input_shape)
        if x.dim() < 2 or x[0].numel() != self.num_pixels:
            raise DataError(f"the VAE expects images of shape (B, {', '.join(map(str, shape))}) "
                            f"({self.num_pixels} values each), got {tuple(x.shape)}")
        anchor = self._anchor
        x = x.to(device=anchor.device, dtype=anchor.dtype).reshape(x.shape[0], *shape)
        if self.config.likelihood == "bernoulli" and x.numel():
            low, high = torch.aminmax(x)
            low, high = float(low), float(high)
            if not (low >= 0.0 and high <= 1.0):  # also false for NaN
                raise DataError(f"a Bernoulli VAE needs pixel values in [0, 1], got values in [{low:g}, {high:g}]; "
                                "use data.scale=unit (and data.binarize=dynamic for likelihoods)")
        return x

    @staticmethod
    def _labels(batch: Any, count: int) -> Tensor:
        if isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[1], Tensor):
            return batch[1][:count].long().cpu()
        return torch.full((count,), -1, dtype=torch.long)

    def _standard_normal(self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
        """N(0, I) noise of ``shape`` on ``like``'s device; ``generator`` may live on another device (CPU)."""
        if generator is None or generator.device.type == like.device.type:
            return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
        return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)

    @torch.no_grad()
    def init_from_data(self, batches: Iterable[Any]) -> None:
        """MLP decoders start with output bias logit(mean pixel), so the first samples are the mean image.

        The pixel marginals are clamped to [1e-3, 1 - 1e-3]. The conv decoder's last layer has one bias per
        channel, not per pixel, and is left at PyTorch's default initialisation.
        """
        if self.config.architecture != "mlp":
            return
        marginals = pixel_marginals((self._images(batch) for batch in batches), _MARGINAL_EPS)
        output_layer = self.decoder[-2]
        output_layer.bias.copy_(torch.logit(marginals).reshape(-1).to(output_layer.bias.dtype))

    # ------------------------------------------------------------------ the networks and densities

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x) parameters: x (n, *input_shape) or (n, D) -> (μ, logvar), each (n, latent_dim)."""
        x = self._images(x)
        return self._posterior_parameters(x)

    def _posterior_parameters(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Back to the input's dtype: under bf16 autocast the densities of the IWAE weights need full precision.
        mu, logvar = self.encoder(x).to(x.dtype).chunk(2, dim=-1)
        return mu, logvar

    def decode_logits(self, z: Tensor) -> Tensor:
        """Decoder outputs before the sigmoid: z (..., latent_dim) -> (..., *input_shape)."""
        leading = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.config.latent_dim)).to(z.dtype)
        return out.reshape(*leading, *self.config.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        """Decoded means in [0, 1] (Bernoulli probabilities / Gaussian means): z (n, latent_dim) -> (n, C, H, W)."""
        z = z.to(device=self._anchor.device, dtype=self._anchor.dtype)
        return torch.sigmoid(self.decode_logits(z))

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x | z) summed over pixels: x (B, *input_shape), logits (..., B, *input_shape) -> (..., B).

        For ``mse`` this is the Gaussian log density with variance ½ (the seed's loss plus its constant).
        """
        pixel_dims = tuple(range(-len(self.config.input_shape), 0))
        if self.config.likelihood == "bernoulli":
            target = x.expand_as(logits)
            return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(pixel_dims)
        std = math.sqrt(0.5) if self.config.likelihood == "mse" else self.config.obs_std
        squared = (x - torch.sigmoid(logits)).square().sum(pixel_dims)
        return -0.5 * squared / std ** 2 - self.num_pixels * (math.log(std) + 0.5 * math.log(2.0 * math.pi))

    def _mse_constant(self) -> float:
        """(D/2)·log π: the Gaussian (variance ½) negative log density minus the seed's sum of squared errors."""
        return 0.5 * self.num_pixels * math.log(math.pi)

    @staticmethod
    def analytic_kl(mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(μ, diag(exp(logvar))) || N(0, I)) = ½ Σ_j (μ_j² + exp(logvar_j) - 1 - logvar_j): (..., L) -> (...)."""
        return 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar).sum(-1)

    def _sample_posterior(self, mu: Tensor, logvar: Tensor, k: int,
                          generator: torch.Generator | None) -> Tensor:
        """k reparameterised draws z = μ + exp(logvar/2)·ε per example: (B, L) -> (k, B, L)."""
        noise = self._standard_normal((k, *mu.shape), mu, generator)
        return mu + torch.exp(0.5 * logvar) * noise

    def log_weights(self, x: Tensor, mu: Tensor, logvar: Tensor, k: int,
                    generator: torch.Generator | None = None) -> Tensor:
        """Importance log weights log p(x | z) + log p(z) - log q(z | x) for k fresh z ~ q(z | x): (k, B)."""
        z = self._sample_posterior(mu, logvar, k, generator)
        return (self.log_likelihood(x, self.decode_logits(z)) + standard_normal_log_density(z)
                - diag_gaussian_log_density(z, mu, logvar))

    # ------------------------------------------------------------------ training

    def _objective(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Per-example loss (B,), encoder means (B, L) and per-example monitors for images x (B, *input_shape)."""
        cfg = self.config
        mu, logvar = self._posterior_parameters(x)
        z = self._sample_posterior(mu, logvar, cfg.k, generator)  # (k, B, L)
        log_px_z = self.log_likelihood(x, self.decode_logits(z))  # (k, B)
        needs_samples_kl = cfg.objective == "iwae" or cfg.kl == "mc"
        kl_samples = (diag_gaussian_log_density(z, mu, logvar) - standard_normal_log_density(z)
                      if needs_samples_kl else None)  # (k, B): log q(z|x) - log p(z)
        recon = -log_px_z.mean(0)
        if cfg.objective == "iwae":
            kl = kl_samples.mean(0)
            per_example = -log_mean_exp(log_px_z - kl_samples, dim=0)
            monitors = {"neg_iwae_nats": per_example}
        else:
            kl = kl_samples.mean(0) if cfg.kl == "mc" else self.analytic_kl(mu, logvar)
            fitted = recon - self._mse_constant() if cfg.likelihood == "mse" else recon
            per_example = fitted + cfg.beta * kl
            monitors = {}
        monitors = {"recon_nats": recon, "kl_nats": kl, "neg_elbo_nats": recon + kl, **monitors}
        return per_example, mu, monitors

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Mean over the batch of the per-image objective (nats, or the seed's SSE + β·KL for ``mse``).

        ELBO objective: -(E_q log p(x | z)) + β·KL averaged over k samples; IWAE: -L_k. Noise comes from the
        global torch RNG, which the trainer checkpoints. Logs (per-image means): ``recon_nats``
        (-log p(x | z), a proper density for gaussian/mse), ``kl_nats`` (analytic, or the Monte Carlo estimate
        that is optimised), ``neg_elbo_nats`` (their sum: the negative ELBO with β = 1), and for IWAE
        ``neg_iwae_nats``.
        """
        per_example, _, monitors = self._objective(self._images(batch), None)
        names = list(monitors)
        values = torch.stack([monitors[name].detach().float().mean() for name in names]).tolist()
        return per_example.mean(), dict(zip(names, values))

    # ------------------------------------------------------------------ monitoring

    def _fixed_generator(self, seed: int = 0) -> torch.Generator:
        return torch.Generator(device=self._anchor.device).manual_seed(seed)

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        """Per-image means of ``loss`` and its logs with noise from a fixed-seed generator (comparable across
        epochs). Also keeps the validation latent means and labels for the latent-scatter snapshot."""
        generator = self._fixed_generator(0)
        totals: dict[str, float] = {}
        means, labels = [], []
        count = 0
        for batch in batches:
            x = self._images(batch)
            per_example, mu, monitors = self._objective(x, generator)
            for name, value in {"loss": per_example, **monitors}.items():
                totals[name] = totals.get(name, 0.0) + float(value.sum(dtype=torch.float64))
            means.append(mu.float().cpu())
            labels.append(self._labels(batch, x.shape[0]))
            count += x.shape[0]
        if count == 0:
            raise DataError("validate got no examples")
        self._val_latents = (torch.cat(means), torch.cat(labels))
        return {name: total / count for name, total in totals.items()}

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoded encoder means, decode(μ(x)): (n, *input_shape) in [0, 1]."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """Pictures saved every epoch (each name also becomes a GIF at the end of training):

        ``samples`` (decoded from n latent vectors drawn with ``generator``, which the sample callback reseeds
        every time, so the latent batch is fixed), ``reconstructions`` (pairs original | reconstruction of the
        fixed batch), ``interpolation`` (8 rows of 8 images between differently labelled pairs of the fixed
        batch), ``manifold`` (latent_dim 2: the decoded ``manifold_size``² grid) and ``latent_scatter``
        (validation-set latent means coloured by label, or the fixed batch's when validation is off; RGB).
        """
        pictures: dict[str, Any] = {"samples": self.sample(n, generator=generator)}
        fixed_means = None
        if batch is not None:
            x = self._images(batch)
            count = min(max(1, n // 2), x.shape[0])
            mu = self.encode(x)[0]
            originals = x[:count]
            pictures["reconstructions"] = torch.stack([originals, self.decode(mu[:count])], 1).flatten(0, 1)
            labels = self._labels(batch, x.shape[0])
            chosen = interpolation_pairs(x, labels, _INTERPOLATION_PAIRS)
            if len(chosen) >= 2:
                pictures["interpolation"] = interpolation_grid(self, chosen, steps=_INTERPOLATION_STEPS)
            fixed_means = (mu.float().cpu(), labels)
        if self.config.latent_dim == 2:
            cfg = self.config
            pictures["manifold"] = decode_manifold(self, cfg.manifold_size, cfg.manifold_bounds,
                                                   cfg.manifold_spacing)
        source, where = (self._val_latents, "validation") if self._val_latents is not None else (fixed_means, "batch")
        if source is not None:
            figure = scatter_figure(*source, title=f"{where} latent means", dpi=64)
            pictures["latent_scatter"] = figure_to_tensor(figure).unsqueeze(0)
        return pictures

    # ------------------------------------------------------------------ sampling and evaluation

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float | None = None,
               **kwargs: Any) -> Tensor:
        """Decoded means of n prior draws z ~ N(0, temperature² I) (temperature default 1): (n, C, H, W) in [0, 1]."""
        if kwargs:
            raise ConfigError(f"VAE.sample got unknown option(s): {', '.join(sorted(kwargs))}; valid: temperature")
        if n < 1:
            raise ConfigError(f"number of samples must be >= 1, got {n}")
        scale = 1.0 if temperature is None else float(temperature)
        if not (scale >= 0.0 and math.isfinite(scale)):
            raise ConfigError(f"temperature (the prior's standard deviation) must be >= 0, got {temperature}")
        z = self._standard_normal((n, self.config.latent_dim), self._anchor, generator) * scale
        return self.decode(z)

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 iw_samples: int = 5000, test_limit: int = 0, sample_chunk: int = 0,
                 **options: Any) -> dict[str, float]:
        """Test ELBO and importance-weighted NLL in nats per image (Burda et al. 2015: k = 5000).

        For each test image, k = ``iw_samples`` draws from q(z | x) (``sample_chunk`` at a time; 0 picks a chunk
        whose decoder output holds at most 2^23 values) give L_k, the IWAE estimate of log p(x), and the mean
        log weight, an unbiased k-sample estimate of the ELBO. ``test_limit`` > 0 evaluates only the first N
        test images (CPU budgets); ``n_test`` reports how many were used. Draws come from ``generator``
        (default: a fixed seed, so evaluation is reproducible). A Bernoulli VAE needs binary test images,
        e.g. the fixed stochastic binarization of data.binarize=dynamic.

        Keys: ``test_nll_nats`` (-mean L_k; lower is better) and ``test_nll_nats_se`` (its standard error over
        test images), ``test_loglik_nats`` (= -test_nll_nats), ``test_neg_elbo_nats`` (-ELBO, an upper bound on
        the NLL) with ``test_neg_elbo_nats_se``, ``test_kl_nats`` (analytic KL), ``test_recon_nats``
        (-ELBO - KL), ``iw_samples``, ``n_test``, and ``nll_is_density`` (1.0 for gaussian/mse, whose values
        are continuous densities and not comparable with the Bernoulli NLLs of the literature).
        """
        if options:
            raise ConfigError(f"VAE.evaluate got unknown option(s): {', '.join(sorted(options))}; "
                              "valid: iw_samples, test_limit, sample_chunk")
        iw_samples, test_limit, sample_chunk = int(iw_samples), int(test_limit), int(sample_chunk)
        check_config(iw_samples >= 1, f"iw_samples (k, importance samples per image) must be >= 1, got {iw_samples}")
        check_config(test_limit >= 0, f"test_limit must be >= 0 images (0: the whole test set), got {test_limit}")
        check_config(sample_chunk >= 0, f"sample_chunk must be >= 0 (0: automatic), got {sample_chunk}")
        generator = generator if generator is not None else self._fixed_generator(0)
        log_marginals, elbos, kls = [], [], []
        seen = 0
        for batch in test_batches:
            x = self._images(batch)
            if test_limit:
                x = x[: test_limit - seen]
            if x.shape[0] == 0:
                break
            if self.config.likelihood == "bernoulli" and not bool(((x == 0) | (x == 1)).all()):
                raise DataError("the test NLL of a Bernoulli VAE is defined for binary images only; binarize the "
                                "test set (data.binarize=dynamic gives a fixed stochastic binarization)")
            mu, logvar = self.encode(x)
            chunk = sample_chunk or max(1, _EVAL_CHUNK_VALUES // (x.shape[0] * self.num_pixels))
            estimate = importance_weighted_estimate(
                lambda m: self.log_weights(x, mu, logvar, m, generator), iw_samples, chunk_size=chunk)
            log_marginals.append(estimate.log_marginal.double().cpu())
            elbos.append(estimate.elbo.double().cpu())
            kls.append(self.analytic_kl(mu, logvar).double().cpu())
            seen += x.shape[0]
            if test_limit and seen >= test_limit:
                break
        if seen == 0:
            raise DataError("evaluate got no test images")
        nll, nll_se = mean_and_standard_error(-torch.cat(log_marginals))
        neg_elbo, neg_elbo_se = mean_and_standard_error(-torch.cat(elbos))
        kl = float(torch.cat(kls).mean())
        return {"test_nll_nats": nll, "test_nll_nats_se": nll_se, "test_loglik_nats": -nll,
                "test_neg_elbo_nats": neg_elbo, "test_neg_elbo_nats_se": neg_elbo_se, "test_kl_nats": kl,
                "test_recon_nats": neg_elbo - kl, "iw_samples": float(iw_samples), "n_test": float(seen),
                "nll_is_density": 0.0 if self.config.likelihood == "bernoulli" else 1.0}
