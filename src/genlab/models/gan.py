"""Generative adversarial networks: DCGAN, WGAN-GP, a conditional GAN with a projection discriminator, and the
seed chapter's ACGAN.

A generator G maps z ~ p(z) (``prior``: N(0, I), or U(-1, 1)^d as the seed draws it) to an image; a
discriminator (critic) D scores images, on logits throughout (BCE-with-logits, never sigmoid + BCE). Losses on
the scores of real images r = D(x) and generated ones f = D(G(z)), ``loss``:

* ``nonsaturating`` (Goodfellow et al. 2014, §3; DCGAN, Radford et al. 2016): D minimises
  BCE(r, t) + BCE(f, 0) with t = ``real_target`` (1, or 0.95 for the seed's one-sided smoothing,
  Salimans et al. 2016); G minimises BCE(f, t), i.e. -log σ(f) for t = 1.
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D: relu(1 - r) + relu(1 + f); G: -f.
* ``lsgan`` (Mao et al. 2017): D: ½(r - 1)² + ½f²; G: ½(f - 1)².
* ``wasserstein`` (Arjovsky et al. 2017): D: f - r; G: -f. With ``gp_weight`` λ > 0 the critic adds the gradient
  penalty of Gulrajani et al. 2017 (WGAN-GP, Algorithm 1): λ·(‖∇ₓ̂D(x̂)‖₂ - 1)² at x̂ = αx + (1 - α)G(z), one
  α ~ U(0, 1) per sample, the norm taken as sqrt(Σ g² + ε) so its gradient stays finite at g = 0. The critic has
  no BatchNorm (the penalty is per sample) and takes ``critic_steps`` steps per generator step.

Conditioning on a class label y (``num_classes`` from the data):

* ``cgan``: G gets [z, embed(y)]; D is a projection discriminator (Miyato & Koyama 2018),
  D(x, y) = ψ(φ(x)) + embed_D(y)ᵀφ(x).
* ``acgan`` (Odena et al. 2017, the seed's recipe): G gets z ⊙ embed(y); D has a second head, a softmax over
  classes, trained with cross-entropy on real images' labels and on the labels fakes were drawn for, which G
  also minimises. With ``aux_on_fakes`` false the head learns from real images only (as the later Keras
  example): trained on fakes, it can learn G's own per-class styles, and G then satisfies it by drawing one
  style per class (the seed recipe's failure in the ``gan-acgan-seed`` benchmark).

Training: the model declares two optimizers, ``discriminator`` and ``generator``
(:meth:`GAN.optimizer_param_groups`), and :meth:`GAN.training_phases` says which the Trainer steps: every batch a
discriminator step, every ``critic_steps``-th batch a generator step after it. The fakes of a step's discriminator
phase are reused by its generator phase (as pytorch/examples' DCGAN does), so a step runs G forward once, and D is
frozen in the generator phase (its weight gradients would go unused). With ``g_ema`` > 0, samples come from a moving
average of the generator's weights (BatchNorm statistics recomputed for it). Architectures (``architecture``):
``dcgan``, ``infogan`` (Chen et al. 2016) and ``seed`` (the tfjs-examples ACGAN), described in
:mod:`genlab.models.gan_networks`, which also holds the losses, the penalty and slerp (re-exported here).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError, check_config
from genlab.models.base import DataInfo, GenerativeModel, decay_groups
from genlab.models.gan_networks import (  # re-exported: gan.slerp, gan.gradient_penalty, ...
    _dcgan_init, _glorot_init, build_generator, DCGANGenerator, InfoGANGenerator, Discriminator, SeedGenerator,
    discriminator_adversarial_loss, generator_adversarial_loss, gradient_penalty, frozen, slerp,
)
from genlab.registry import register

DISCRIMINATOR = "discriminator"
GENERATOR = "generator"
LOSSES = ("nonsaturating", "hinge", "lsgan", "wasserstein")


@dataclass
class GANConfig:
    """Hyper-parameters of a GAN. ``image_shape`` and ``num_classes`` are filled from the data."""

    image_shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W)
    num_classes: int = 0  # conditional models: classes of the data's labels
    z_dim: int = 100
    prior: str = "normal"  # normal: N(0, I) | uniform: U(-1, 1) per dimension (the seed's)
    architecture: str = "dcgan"  # dcgan | infogan (FC 1024 layers, Chen et al. 2016) | seed (the seed ACGAN's; 28x28)
    g_width: int = 64  # dcgan: generator channels at H/2 (twice that at H/4)
    d_width: int = 64  # dcgan: discriminator channels at H/2 (twice that at H/4)
    d_norm: str = "batch"  # dcgan discriminator's second layer: batch | layer | none
    d_dropout: float = 0.0  # dropout after each discriminator activation
    loss: str = "nonsaturating"  # nonsaturating | hinge | lsgan | wasserstein
    gp_weight: float = 0.0  # λ of the WGAN-GP gradient penalty; 0: none
    gp_epsilon: float = 1e-12  # inside the square root of the penalty's gradient norm
    critic_steps: int = 1  # discriminator steps (batches) per generator step
    real_target: float = 1.0  # nonsaturating: BCE target of real images, and of fakes for G (0.95: the seed)
    label_input: str = "concat"  # conditional G: concat [z, embed(y)] | multiply z * embed(y) (the seed)
    label_dim: int = 10  # concat: size of the generator's label embedding
    aux_weight: float = 1.0  # acgan: weight of the class cross-entropy in both players' losses
    # acgan: D's class head also learns the labels fakes were drawn for (Odena et al. 2017, the seed). False: real
    # images only (the later Keras example), so D cannot learn G's own per-class styles and G gains nothing from
    # collapsing each class onto one of them.
    aux_on_fakes: bool = True
    value_range: tuple[float, ...] = (-1.0, 1.0)  # the data's pixel range, which G's tanh is mapped to
    # Samples come from an exponential moving average of the generator's weights with this decay (Yazıcı et al.
    # 2019; Karras et al. 2018), warmed up as min(decay, (1 + t) / (10 + t)) over t generator steps; 0: off.
    g_ema: float = 0.0

    def __post_init__(self) -> None:
        shape = tuple(self.image_shape)
        check_config(len(shape) == 3 and all(d >= 1 for d in shape),
               f"model.image_shape must be (C, H, W) with positive sizes, got {list(shape)}")
        check_config(self.z_dim >= 1, f"model.z_dim must be >= 1, got {self.z_dim}")
        check_config(self.num_classes >= 0, f"model.num_classes must be >= 0, got {self.num_classes}")
        check_config(self.prior in ("normal", "uniform"), f"model.prior must be normal or uniform, got {self.prior!r}")
        check_config(self.architecture in ("dcgan", "infogan", "seed"),
               f"model.architecture must be dcgan, infogan or seed, got {self.architecture!r}")
        check_config(self.g_width >= 1 and self.d_width >= 1,
               f"model.g_width and model.d_width must be >= 1, got {self.g_width} and {self.d_width}")
        check_config(self.d_norm in ("batch", "layer", "none"),
               f"model.d_norm must be batch, layer or none, got {self.d_norm!r}")
        check_config(0.0 <= self.d_dropout < 1.0, f"model.d_dropout must be in [0, 1), got {self.d_dropout}")
        check_config(self.loss in LOSSES, f"model.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_config(self.gp_weight >= 0.0, f"model.gp_weight (the penalty's λ) must be >= 0, got {self.gp_weight}")
        check_config(self.gp_epsilon > 0.0, f"model.gp_epsilon must be > 0, got {self.gp_epsilon}")
        check_config(not (self.gp_weight > 0 and self.d_norm == "batch" and self.architecture != "seed"),
               "a gradient penalty is per sample, and BatchNorm mixes the samples of a batch: set "
               "model.d_norm=layer or none with model.gp_weight > 0 (Gulrajani et al. 2017, §4)")
        check_config(self.critic_steps >= 1, f"model.critic_steps must be >= 1 (D steps per G step), got "
                                             f"{self.critic_steps}")
        check_config(0.5 < self.real_target <= 1.0, f"model.real_target must be in (0.5, 1], got {self.real_target}")
        check_config(self.label_input in ("concat", "multiply"),
               f"model.label_input must be concat or multiply, got {self.label_input!r}")
        check_config(self.label_dim >= 1, f"model.label_dim must be >= 1, got {self.label_dim}")
        check_config(self.aux_weight >= 0.0, f"model.aux_weight must be >= 0, got {self.aux_weight}")
        check_config(0.0 <= self.g_ema < 1.0, f"model.g_ema must be in [0, 1) (0: off), got {self.g_ema}")
        check_config(len(self.value_range) == 2 and self.value_range[0] < self.value_range[1],
               f"model.value_range must be [low, high] with low < high, got {list(self.value_range)}")
        if self.architecture == "seed":
            check_config(shape[1:] == (28, 28), f"model.architecture=seed makes 28x28 images; the data is "
                                          f"{shape[1]}x{shape[2]} (use data.pad_to=0 or architecture=dcgan)")
        else:
            check_config(shape[1] % 4 == 0 and shape[2] % 4 == 0,
                   f"model.architecture={self.architecture} needs image sides divisible by 4, got "
                   f"{shape[1]}x{shape[2]}")


@dataclass
class WGANGPConfig(GANConfig):
    """WGAN-GP (Gulrajani et al. 2017): Wasserstein loss, λ = 10, 5 critic steps, a critic without BatchNorm."""

    loss: str = "wasserstein"
    gp_weight: float = 10.0
    critic_steps: int = 5
    d_norm: str = "none"


@dataclass
class CGANConfig(GANConfig):
    """Class-conditional GAN: G on [z, embed(y)], a projection discriminator."""


@dataclass
class ACGANConfig(GANConfig):
    """The seed's ACGAN: z ~ U(-1, 1)^100 times a label embedding, its layers, dropout 0.3, real target 0.95."""

    prior: str = "uniform"
    architecture: str = "seed"
    d_norm: str = "none"
    d_dropout: float = 0.3
    real_target: float = 0.95
    label_input: str = "multiply"


# -------------------------------------------------------------------------------------------------- model


class GAN(GenerativeModel):
    """A generator and a discriminator trained against each other (module docstring). ``conditioning`` is set by
    the registered subclasses: none (dcgan, wgan-gp), projection (cgan), auxiliary (acgan)."""

    conditioning = "none"
    supports_amp = True
    # The generator's parameters take no part in a discriminator phase.
    ddp_find_unused_parameters = True

    def __init__(self, config: GANConfig):
        super().__init__(config)
        conditional = self.conditioning != "none"
        if conditional and config.num_classes < 2:
            raise ConfigError(f"{self.registry_name or 'this GAN'} is class-conditional and needs labelled data "
                              f"with >= 2 classes (model.num_classes={config.num_classes})")
        z_in = config.z_dim
        self.label_embedding: nn.Embedding | None = None
        if conditional:
            if config.label_input == "multiply":
                self.label_embedding = nn.Embedding(config.num_classes, config.z_dim)
            else:
                self.label_embedding = nn.Embedding(config.num_classes, config.label_dim)
                z_in += config.label_dim
        shape = tuple(config.image_shape)
        self.generator = build_generator(config.architecture, z_in, config.g_width, shape)
        self.discriminator = Discriminator(config, self.conditioning)
        self.apply(_glorot_init if config.architecture == "seed" else _dcgan_init)
        if self.label_embedding is not None and config.architecture != "seed":
            nn.init.normal_(self.label_embedding.weight)
        if self.conditioning == "projection":
            # Small, like the other weights: a unit-variance embedding over thousands of features would make the
            # projection term, not the image, decide the first steps' scores.
            nn.init.normal_(self.discriminator.embed.weight, 0.0, 0.02)
        self._fakes: tuple[Tensor, Tensor | None] | None = None  # a step's fakes, from its D phase to its G phase
        self.generator_ema: nn.Module | None = None
        if config.g_ema > 0:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self._ema_statistics_at = -1  # the ema_updates count the averaged generator's BatchNorm statistics fit
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_ema_statistics_at", -1))

    @classmethod
    def adapt_config(cls, config: GANConfig, info: DataInfo) -> GANConfig:
        """Take the image shape (and, for conditional models, the number of classes) from the data."""
        if info.kind != "image":
            raise ConfigError(f"GANs generate images, not {info.kind!r} data; use mnist, fashion-mnist or an "
                              "image array")
        if len(info.shape) != 3:
            raise ConfigError(f"GANs need (C, H, W) images, got data of shape {info.shape}")
        changes: dict[str, Any] = {"image_shape": tuple(int(d) for d in info.shape),
                                   "value_range": tuple(float(v) for v in info.value_range)}
        if cls.conditioning != "none":
            if info.num_classes < 2:
                raise ConfigError(f"{cls.registry_name} is class-conditional, but the data has no labels (or one "
                                  "class); use a labelled dataset (an .npz with images and labels) or dcgan")
            changes["num_classes"] = int(info.num_classes)
        return dataclasses.replace(config, **changes)

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    @property
    def label_count(self) -> int:
        return int(self.config.num_classes) if self.conditional else 0

    def _device(self) -> torch.device:
        return self.discriminator.score.weight.device

    # -- sampling -----------------------------------------------------------------------------------------
    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n latent vectors (n, z_dim) from the prior the model was trained with."""
        shape = (n, self.config.z_dim)
        if self.config.prior == "uniform":
            return torch.rand(shape, device=self._device(), generator=generator) * 2.0 - 1.0
        return torch.randn(shape, device=self._device(), generator=generator)

    def prior_range(self) -> tuple[float, float]:
        """A range of z values for sliders: the uniform prior's support, or ±3 standard deviations."""
        return (-1.0, 1.0) if self.config.prior == "uniform" else (-3.0, 3.0)

    def check_label(self, label: int | None) -> None:
        if label is None:
            return
        if not self.conditional:
            raise ConfigError(f"{self.registry_name} is unconditional: it takes no label (cgan and acgan do)")
        if not 0 <= int(label) < self.config.num_classes:
            raise ConfigError(f"label {label} is out of range: this model knows labels 0..{self.config.num_classes - 1}")

    def labels_for(self, n: int, label: int | None = None) -> Tensor | None:
        """Labels of n samples: all ``label``, or 0..K-1 in equal consecutive blocks (a 10x10 grid: a row per
        class); None for unconditional models."""
        self.check_label(label)
        if not self.conditional:
            return None
        if label is not None:
            return torch.full((n,), int(label), dtype=torch.long, device=self._device())
        return (torch.arange(n, device=self._device()) * self.config.num_classes) // n

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images (n, C, H, W) in the data's value range from latents z (n, z_dim) [and labels (n,)]."""
        z = torch.as_tensor(z, dtype=torch.float32, device=self._device())
        if z.ndim != 2 or z.shape[1] != self.config.z_dim:
            raise ConfigError(f"z must have shape (n, {self.config.z_dim}) for this model (its z_dim is "
                              f"{self.config.z_dim}), got {tuple(z.shape)}")
        if self.conditional:
            if labels is None:
                raise ConfigError(f"{self.registry_name} is class-conditional: pass labels")
            labels = torch.as_tensor(labels, dtype=torch.long, device=self._device())
            if labels.shape != (z.shape[0],) or int(labels.min()) < 0 or int(labels.max()) >= self.config.num_classes:
                raise ConfigError(f"labels must be {z.shape[0]} integers in 0..{self.config.num_classes - 1}")
        network = self._averaged_generator() if self.generator_ema is not None else self.generator
        unit = network(self._generator_input(z, labels))
        low, high = self.config.value_range
        return low + (high - low) * (unit + 1.0) / 2.0

    def _generator_input(self, z: Tensor, labels: Tensor | None) -> Tensor:
        if self.label_embedding is None:
            return z
        embedded = self.label_embedding(labels)
        return z * embedded if self.config.label_input == "multiply" else torch.cat([z, embedded], 1)

    def _to_unit(self, images: Tensor) -> Tensor:
        """Images in the data range -> the generator's [-1, 1], where the discriminator works."""
        low, high = self.config.value_range
        if (low, high) == (-1.0, 1.0):
            return images
        return (images - low) * (2.0 / (high - low)) - 1.0

    def sample(self, n: int, *, generator: torch.Generator | None = None, label: int | None = None,
               z: Tensor | None = None, rejection: float | None = None, **options: Any) -> Tensor:
        """n images (n, C, H, W) in the data range; ``label`` clamps the class of a conditional model; a fixed
        ``generator`` seed gives the same z; ``rejection`` (a percentile: 95 is Azadi et al.'s) draws through the
        discriminator (:func:`genlab.models.gan_rejection.sample_with_rejection`), which picks its own z."""
        if options or (rejection is not None and z is not None):
            raise ConfigError(f"{self.registry_name} sampling takes no option(s) {', '.join(sorted(options)) or 'z'}"
                              f"{' with --rejection' if not options else ''}; it accepts --label (conditional "
                              "models), --rejection PERCENTILE, --seed and --interpolate --steps N")
        if rejection is not None:
            from genlab.models.gan_rejection import sample_with_rejection

            return sample_with_rejection(self, n, label=label, percentile=float(rejection), generator=generator)[0]
        labels = self.labels_for(n, label)
        if z is None:
            z = self.sample_z(n, generator)
        return self.generate(z, labels)

    def interpolate(self, steps: int, *, generator: torch.Generator | None = None, label: int | None = None,
                    count: int = 1) -> Tensor:
        """``count`` paths of ``steps`` images each, slerped between two latents drawn from the prior:
        (count * steps, C, H, W), path after path."""
        if steps < 2:
            raise ConfigError(f"an interpolation needs --steps >= 2, got {steps}")
        paths = []
        for _ in range(count):
            ends = self.sample_z(2, generator)
            paths.append(slerp(ends[0], ends[1], torch.linspace(0.0, 1.0, steps, device=self._device())))
        z = torch.cat(paths)
        labels = self.labels_for(z.shape[0], label)
        if labels is not None and label is None:  # one class per path
            labels = torch.arange(count, device=self._device()).repeat_interleave(steps) % self.config.num_classes
        return self.generate(z, labels)

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """A fixed-z grid (the same ``generator`` seed each time, so GIF frames show G changing); conditional
        models draw 10 per class, one row per class."""
        if self.conditional:
            n = 10 * self.config.num_classes
        return {"samples": self.sample(n, generator=generator),
                "interpolation": self.interpolate(10, generator=generator, count=min(4, max(1, n // 16)))}

    # -- training -----------------------------------------------------------------------------------------
    def optimizer_param_groups(self, weight_decay: float) -> dict[str, list[dict]]:
        """Two optimizers: the discriminator's parameters, and the generator's with its label embedding."""
        generator = list(self.generator.parameters())
        if self.label_embedding is not None:
            generator += list(self.label_embedding.parameters())
        return {DISCRIMINATOR: decay_groups(self.discriminator.parameters(), weight_decay),
                GENERATOR: decay_groups(generator, weight_decay)}

    def after_phase_step(self, phase: str) -> None:
        """After each generator step, move the averaged generator towards the trained one."""
        if phase == GENERATOR and self.generator_ema is not None:
            self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        updates = int(self.ema_updates)
        decay = min(self.config.g_ema, (1.0 + updates) / (10.0 + updates))
        for average, current in zip(self.generator_ema.parameters(), self.generator.parameters()):
            average.lerp_(current, 1.0 - decay)
        self.ema_updates += 1

    def _averaged_generator(self) -> nn.Module:
        """The averaged generator, its BatchNorm statistics first recomputed if its weights moved since."""
        if self._ema_statistics_at != int(self.ema_updates):
            self._standing_statistics()
            self._ema_statistics_at = int(self.ema_updates)
        return self.generator_ema

    @torch.no_grad()
    def _standing_statistics(self, batches: int = 8, batch_size: int = 256) -> None:
        """The averaged generator's BatchNorm statistics from its own activations (Brock et al. 2019's standing
        statistics; the trained generator's are those of other weights), on fixed-seed latents and balanced
        labels: a function of the weights alone that draws nothing from the run's random streams."""
        norms = [m for m in self.generator_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        seeded = torch.Generator(device=self._device()).manual_seed(0)
        settings = [(m.training, m.momentum) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.train()
            m.momentum = None  # a cumulative average over the batches
        for _ in range(batches):
            z = self.sample_z(batch_size, seeded)
            self.generator_ema(self._generator_input(z, self.labels_for(batch_size)))
        for m, (training, momentum) in zip(norms, settings):
            m.train(training)
            m.momentum = momentum

    def generator_steps_at(self, step: int) -> bool:
        return (step + 1) % self.config.critic_steps == 0

    def training_phases(self, step: int) -> tuple[str, ...]:
        """A discriminator step every batch; a generator step after every ``critic_steps``-th."""
        return (DISCRIMINATOR, GENERATOR) if self.generator_steps_at(step) else (DISCRIMINATOR,)

    def _batch(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        images, labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        if self.conditional:
            if labels is None:
                raise ConfigError(f"{self.registry_name} needs labelled batches (images, labels)")
            labels = labels.long()
        return self._to_unit(images), (labels if self.conditional else None)

    def _fake_labels(self, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        return torch.randint(self.config.num_classes, (n,), device=self._device())

    def _make_fakes(self, n: int) -> tuple[Tensor, Tensor | None]:
        """n generated images in [-1, 1] and the labels they were drawn for (global RNG)."""
        labels = self._fake_labels(n)
        z = self.sample_z(n)
        return self.generator(self._generator_input(z, labels)), labels

    def phase_loss(self, batch: Any, phase: str, step: int) -> tuple[Tensor, dict[str, float]]:
        if phase == DISCRIMINATOR:
            return self._discriminator_loss(batch, keep_fakes=self.generator_steps_at(step))
        if phase == GENERATOR:
            return self._generator_loss(batch)
        raise ValueError(f"unknown GAN training phase {phase!r}")

    def _discriminator_loss(self, batch: Any, *, keep_fakes: bool) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        real, labels = self._batch(batch)
        with torch.set_grad_enabled(keep_fakes and torch.is_grad_enabled()):
            fake, fake_labels = self._make_fakes(real.shape[0])
        self._fakes = (fake, fake_labels) if keep_fakes else None
        real_score, real_classes = self.discriminator(real, labels)
        fake_score, fake_classes = self.discriminator(fake.detach(), fake_labels)
        adversarial = discriminator_adversarial_loss(cfg.loss, real_score, fake_score, cfg.real_target)
        loss = adversarial
        logs = {"d_loss": float(adversarial.detach()), **self._score_logs(real_score, fake_score)}
        if cfg.gp_weight > 0 and torch.is_grad_enabled():
            penalty = gradient_penalty(lambda x, y: self.discriminator(x, y)[0], real, fake, labels,
                                       epsilon=cfg.gp_epsilon)
            loss = loss + cfg.gp_weight * penalty
            logs["gradient_penalty"] = float(penalty.detach())
        if self.conditioning == "auxiliary":
            auxiliary = F.cross_entropy(real_classes, labels)
            if cfg.aux_on_fakes:
                auxiliary = auxiliary + F.cross_entropy(fake_classes, fake_labels)
            loss = loss + cfg.aux_weight * auxiliary
            logs["d_aux_loss"] = float(auxiliary.detach())
            logs["d_class_acc_real"] = float((real_classes.argmax(1) == labels).float().mean())
        if cfg.loss == "wasserstein":
            logs["wasserstein_estimate"] = float((real_score.mean() - fake_score.mean()).detach())
        return loss, logs

    def _generator_loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        if self._fakes is None:  # no discriminator phase kept them (a phase run on its own)
            real, _ = self._batch(batch)
            self._fakes = self._make_fakes(real.shape[0])
        fake, fake_labels = self._fakes
        self._fakes = None
        with frozen(self.discriminator):  # D's weight gradients would go unused: not computed
            score, classes = self.discriminator(fake, fake_labels)
        adversarial = generator_adversarial_loss(cfg.loss, score, cfg.real_target)
        loss = adversarial
        logs = {"g_loss": float(adversarial.detach())}
        if self.conditioning == "auxiliary":
            auxiliary = F.cross_entropy(classes, fake_labels)
            loss = loss + cfg.aux_weight * auxiliary
            logs["g_aux_loss"] = float(auxiliary.detach())
        return loss, logs

    def _score_logs(self, real_score: Tensor, fake_score: Tensor) -> dict[str, float]:
        """D(real) and D(fake): probabilities for the BCE loss, raw critic scores otherwise."""
        if self.config.loss == "nonsaturating":
            real_score, fake_score = torch.sigmoid(real_score), torch.sigmoid(fake_score)
        values = torch.stack([real_score.detach().mean(), fake_score.detach().mean()]).tolist()
        return {"d_real": values[0], "d_fake": values[1]}

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Both players' losses on one batch (validation and ``genlab eval``; training goes through the phases):
        the discriminator's adversarial loss, with ``g_loss``, D(real), D(fake) in the logs."""
        d_loss, logs = self._discriminator_loss(batch, keep_fakes=False)
        self._fakes = None
        fake, fake_labels = self._make_fakes(self._batch(batch)[0].shape[0])
        score, _ = self.discriminator(fake, fake_labels)
        logs["g_loss"] = float(generator_adversarial_loss(self.config.loss, score, self.config.real_target))
        return torch.as_tensor(logs["d_loss"]), logs

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_fakes": None}


@register("dcgan", config=GANConfig, description="DCGAN (Radford et al. 2016), non-saturating loss",
          default_preset="gan-dcgan-mnist")
class DCGAN(GAN):
    """Unconditional; the loss, norms and widths come from its config."""


@register("wgan-gp", config=WGANGPConfig, description="WGAN with gradient penalty (Gulrajani et al. 2017)",
          default_preset="gan-wgan-gp-paper")
class WGANGP(GAN):
    """Unconditional, with the WGAN-GP config's defaults."""


@register("cgan", config=CGANConfig, description="class-conditional GAN, projection discriminator "
                                                 "(Miyato & Koyama 2018)", default_preset="gan-cgan-mnist")
class ConditionalGAN(GAN):
    conditioning = "projection"


@register("acgan", config=ACGANConfig, description="auxiliary-classifier GAN (Odena et al. 2017), the seed's",
          default_preset="gan-acgan-seed")
class ACGAN(GAN):
    conditioning = "auxiliary"
