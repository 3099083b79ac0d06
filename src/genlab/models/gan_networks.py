"""The GANs' parts (:mod:`genlab.models.gan` holds the configs and the models): the dcgan and seed generators and
discriminator bodies, the discriminator with its projection or auxiliary-class head, the two weight
initialisations, the adversarial losses, the WGAN-GP gradient penalty and slerp between latents. The losses'
equations and papers are in :mod:`genlab.models.gan`'s docstring.

Architectures (``GANConfig.architecture``): ``dcgan`` (dense -> 4w x H/4 x W/4 -> two 4x4 stride-2 transposed
convolutions; D two 4x4 stride-2 convolutions, LeakyReLU 0.2; N(0, 0.02) weights), ``infogan`` (the same with
fully connected 1024-unit layers after z and before D's score, Chen et al. 2016) and ``seed`` (the tfjs-examples
ACGAN: dense 3*3*384 -> ConvT 192 (k5, valid) -> ConvT 96 (k5, s2) -> ConvT C (k5, s2, tanh), BatchNorm after the
ReLUs; D four 3x3 convolutions 32/64/128/256, strides 2/1/2/1, LeakyReLU 0.2, dropout 0.3, no BatchNorm)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from genlab.models.gan import GANConfig


# ---------------------------------------------------------------------------------------------- networks


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` with ``requires_grad`` off for its trainable parameters inside the block (restored after).

    A generator step backpropagates through D to the generator only: the graph built inside the block has no
    weight-gradient nodes for D, so backward skips D's weight gradients, which the generator's optimizer would
    never use (one-off timing: an InfoGAN generator phase of 128 images took 10 % less)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


class DCGANGenerator(nn.Module):
    """z (n, z_in) -> images (n, C, H, W) in [-1, 1]: dense -> (4w, H/4, W/4) -> ConvT 2w -> ConvT C, tanh."""

    def __init__(self, z_in: int, width: int, shape: tuple[int, int, int]):
        super().__init__()
        channels, height, width_px = shape
        self.start = (4 * width, height // 4, width_px // 4)
        self.project = nn.Sequential(nn.Linear(z_in, math.prod(self.start), bias=False),
                                     nn.BatchNorm1d(math.prod(self.start)), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.project(z).view(-1, *self.start))


class InfoGANGenerator(nn.Module):
    """The InfoGAN MNIST generator (Chen et al. 2016, Table 1; the MNIST networks of Lucic et al. 2018):
    z (n, z_in) -> FC 1024 -> FC (2w, H/4, W/4) -> ConvT w (4x4, s2) -> ConvT C (4x4, s2), tanh; BatchNorm and
    ReLU after every layer but the last."""

    def __init__(self, z_in: int, width: int, shape: tuple[int, int, int]):
        super().__init__()
        channels, height, width_px = shape
        self.start = (2 * width, height // 4, width_px // 4)
        self.project = nn.Sequential(
            nn.Linear(z_in, 1024, bias=False), nn.BatchNorm1d(1024), nn.ReLU(inplace=True),
            nn.Linear(1024, math.prod(self.start), bias=False), nn.BatchNorm1d(math.prod(self.start)),
            nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.project(z).view(-1, *self.start))


def build_generator(architecture: str, z_in: int, width: int, shape: tuple[int, int, int]) -> nn.Module:
    """The generator of ``model.architecture``: dcgan, infogan or seed."""
    if architecture == "seed":
        return SeedGenerator(z_in, shape[0])
    if architecture == "infogan":
        return InfoGANGenerator(z_in, width, shape)
    return DCGANGenerator(z_in, width, shape)


class SeedGenerator(nn.Module):
    """The seed ACGAN's generator, 28x28: dense 3·3·384 -> ConvT 192 (k5, valid) -> ConvT 96 (k5, s2)
    -> ConvT C (k5, s2), with ReLU then BatchNorm after the first two (Keras order) and tanh at the end."""

    def __init__(self, z_in: int, channels: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(z_in, 3 * 3 * 384), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.ConvTranspose2d(384, 192, 5, 1, 0), nn.ReLU(inplace=True), nn.BatchNorm2d(192),
            nn.ConvTranspose2d(192, 96, 5, 2, 2, output_padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(96),
            nn.ConvTranspose2d(96, channels, 5, 2, 2, output_padding=1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.project(z).view(-1, 384, 3, 3))


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # layer norm over (C, H, W), per sample
    return nn.Identity()


def dcgan_features(config: GANConfig) -> tuple[nn.Module, int]:
    """The dcgan discriminator body: images (n, C, H, W) -> features (n, 2w·H/4·W/4)."""
    channels, height, width_px = config.image_shape
    w = config.d_width
    body = nn.Sequential(
        nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(config.d_dropout),
        nn.Conv2d(w, 2 * w, 4, 2, 1, bias=config.d_norm == "none"), _norm_layer(config.d_norm, 2 * w),
        nn.LeakyReLU(0.2, inplace=True), nn.Dropout(config.d_dropout), nn.Flatten())
    return body, 2 * w * (height // 4) * (width_px // 4)


def infogan_features(config: GANConfig) -> tuple[nn.Module, int]:
    """The InfoGAN MNIST discriminator body: the dcgan convolutions, then FC 1024 with the same norm and a
    LeakyReLU 0.2: images (n, C, H, W) -> features (n, 1024)."""
    convolutions, flat = dcgan_features(config)
    norm = nn.BatchNorm1d(1024) if config.d_norm == "batch" else (
        nn.LayerNorm(1024) if config.d_norm == "layer" else nn.Identity())
    return nn.Sequential(convolutions, nn.Linear(flat, 1024, bias=config.d_norm == "none"), norm,
                         nn.LeakyReLU(0.2, inplace=True), nn.Dropout(config.d_dropout)), 1024


def seed_features(config: GANConfig) -> tuple[nn.Module, int]:
    """The seed ACGAN's discriminator body: 3x3 convolutions 32/64/128/256, strides 2/1/2/1."""
    layers: list[nn.Module] = []
    previous = config.image_shape[0]
    for channels, stride in ((32, 2), (64, 1), (128, 2), (256, 1)):
        layers += [nn.Conv2d(previous, channels, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True),
                   nn.Dropout(config.d_dropout)]
        previous = channels
    return nn.Sequential(*layers, nn.Flatten()), 256 * 7 * 7


class Discriminator(nn.Module):
    """Images (n, C, H, W) [and labels (n,)] -> (real/fake logits (n,), class logits (n, K) or None).

    ``conditioning``: ``none``; ``projection`` adds embed(y)ᵀφ(x) to the score (Miyato & Koyama 2018);
    ``auxiliary`` adds a class head (ACGAN)."""

    def __init__(self, config: GANConfig, conditioning: str):
        super().__init__()
        builder = {"seed": seed_features, "infogan": infogan_features}.get(config.architecture, dcgan_features)
        self.features, feature_dim = builder(config)
        self.score = nn.Linear(feature_dim, 1)
        self.conditioning = conditioning
        if conditioning == "projection":
            self.embed = nn.Embedding(config.num_classes, feature_dim)
        if conditioning == "auxiliary":
            self.classify = nn.Linear(feature_dim, config.num_classes)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        phi = self.features(images)
        score = self.score(phi).squeeze(1)
        if self.conditioning == "projection":
            score = score + (self.embed(labels) * phi).sum(1)
        class_logits = self.classify(phi) if self.conditioning == "auxiliary" else None
        return score, class_logits


def _dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _glorot_init(module: nn.Module) -> None:
    """Keras' defaults, which the seed relies on: Glorot-uniform kernels, zero biases (embeddings: normal)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.xavier_normal_(module.weight)


# ------------------------------------------------------------------------------------------------- losses


def discriminator_adversarial_loss(kind: str, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """The discriminator's loss from its logits on real (n,) and fake (m,) images (module docstring)."""
    if kind == "nonsaturating":
        return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_target))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1.0).square().mean() + fake.square().mean())
    return fake.mean() - real.mean()  # wasserstein


def generator_adversarial_loss(kind: str, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """The generator's loss from the discriminator's logits on its images (m,)."""
    if kind == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, real_target))
    if kind == "lsgan":
        return 0.5 * (fake - 1.0).square().mean()
    return -fake.mean()  # hinge, wasserstein


def gradient_penalty(critic, real: Tensor, fake: Tensor, labels: Tensor | None, *, epsilon: float,
                     generator: torch.Generator | None = None) -> Tensor:
    """E[(‖∇ₓ̂ D(x̂)‖₂ - 1)²] at x̂ = αx + (1-α)x̃, one α ~ U(0, 1) per sample (Gulrajani et al. 2017, Alg. 1),
    with ‖g‖₂ = sqrt(Σ g² + ε). ``critic(images, labels)`` returns scores (n,). The graph is kept so the
    penalty's gradient reaches the critic's parameters."""
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype,
                       generator=generator)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed, labels)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = torch.sqrt(grad.flatten(1).square().sum(1) + epsilon)
    return (norms - 1.0).square().mean()


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latent vectors a and b (d,) at fractions t (k,) -> (k, d) (White 2016);
    linear when they are (anti)parallel."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    t = t.unsqueeze(1)
    if float(torch.sin(omega).abs()) < 1e-6:
        return (1.0 - t) * a + t * b
    return (torch.sin((1.0 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
