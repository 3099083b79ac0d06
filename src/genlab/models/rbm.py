"""Bernoulli-Bernoulli restricted Boltzmann machine trained by contrastive divergence.

Energy and free energy (Hinton 2002, "Training products of experts by minimizing contrastive divergence";
Hinton 2010, "A practical guide to training restricted Boltzmann machines", UTML TR 2010-003):

    E(v, h) = -v·b - h·c - h·W v,        W: (n_hidden, n_visible), b: (n_visible,), c: (n_hidden,)
    F(v)    = -log Σ_h exp(-E(v, h)) = -v·b - Σ_j softplus(c_j + W_j·v)

``W`` uses the ``nn.Linear`` / scikit-learn ``components_`` layout: row ``j`` is hidden unit ``j``'s filter.

Learning is expressed as a surrogate loss ``mean F(v_data) - mean F(v_model)`` with ``v_model`` detached, whose
gradient is the negative CD-k update (or PCD-k, Tieleman 2008, "Training restricted Boltzmann machines using
approximations to the likelihood gradient"), so any optimizer applies the classic rule. Likelihoods use the
exact partition function for small hidden layers and AIS (Salakhutdinov & Murray 2008) otherwise; see
:mod:`genlab.models.partition`; ``log_partition`` and ``evaluate`` come from the :class:`RBMLikelihood` mixin in
:mod:`genlab.models.rbm_likelihood`.

Centering (``model.centering=true``; Montavon & Müller 2012, Melchior, Fischer & Wiskott 2016, "How to center
deep Boltzmann machines", JMLR 17) follows the gradient of the energy written around offsets μ (visible, the
data mean) and λ (hidden, a running mean of p(h | v_data)):

    E_c(v, h) = -(v-μ)·b_c - (h-λ)·c_c - (h-λ)·W (v-μ)

The model keeps its standard parameters (``b = b_c - Wᵀλ``, ``c = c_c - Wμ``), so sampling, AIS and checkpoints
are unchanged; only the update differs: ΔW = <(h-λ)(v-μ)ᵀ>_data - <(h-λ)(v-μ)ᵀ>_model, Δb = Δb_c - ΔWᵀλ,
Δc = Δc_c - ΔWμ, the standard-coordinate image of the centered step. It is better conditioned: the updates of
W no longer move the biases by the data means.
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
from genlab.errors import CheckpointError, ConfigError, DataError, check_config
from genlab.models.base import DataInfo, GenerativeModel
from genlab.models.partition import bernoulli
from genlab.models.rbm_likelihood import _EXACT_LIMIT, RBMLikelihood
from genlab.registry import register

# Pixel marginals are clamped before taking logits, so all-black border pixels get a finite (large negative) bias.
_MARGINAL_EPS = 1e-3


@dataclass
class RBMConfig:
    """Hyper-parameters of a Bernoulli-Bernoulli RBM."""

    n_visible: int = 784
    n_hidden: int = 500
    cd_k: int = 1  # Gibbs steps of the negative phase
    persistent: bool = False  # PCD: keep n_chains fantasy particles across updates
    n_chains: int = 100
    sparsity_target: float = 0.0  # desired mean hidden probability; 0: off
    sparsity_cost: float = 0.0  # weight of the sparsity cross-entropy
    init_std: float = 0.01  # W ~ N(0, init_std^2)
    sample_steps: int = 1000  # Gibbs steps for sample()
    ais_runs: int = 100  # 0: no AIS (only allowed when log Z can be computed exactly)
    ais_betas: int = 14500  # inverse temperatures, Salakhutdinov & Murray (2008) schedule
    exact_max_hidden: int = 25  # exact log Z by enumeration when min(n_hidden, n_visible) <= this
    centering: bool = False  # follow the centered gradient (module docstring; Melchior et al. 2016)
    offset_rate: float = 0.01  # centering: the hidden offset's running-mean rate per update

    def __post_init__(self) -> None:
        check_config(self.n_visible >= 1, f"model.n_visible must be >= 1, got {self.n_visible}")
        check_config(self.n_hidden >= 1, f"model.n_hidden must be >= 1, got {self.n_hidden}")
        check_config(self.cd_k >= 1, f"model.cd_k must be >= 1 Gibbs step, got {self.cd_k}")
        check_config(self.n_chains >= 1, f"model.n_chains (PCD fantasy particles) must be >= 1, got {self.n_chains}")
        check_config(0.0 <= self.sparsity_target < 1.0,
              f"model.sparsity_target must be in [0, 1) (0 turns sparsity off), got {self.sparsity_target}")
        check_config(self.sparsity_cost >= 0.0, f"model.sparsity_cost must be >= 0, got {self.sparsity_cost}")
        check_config(self.sparsity_cost == 0.0 or self.sparsity_target > 0.0,
              f"model.sparsity_cost={self.sparsity_cost} needs a sparsity_target in (0, 1), e.g. 0.1")
        check_config(self.init_std > 0.0 and math.isfinite(self.init_std),
              f"model.init_std must be a positive number, got {self.init_std}")
        check_config(self.sample_steps >= 0, f"model.sample_steps must be >= 0, got {self.sample_steps}")
        check_config(self.ais_runs >= 0, f"model.ais_runs must be >= 0, got {self.ais_runs}")
        check_config(self.ais_betas >= 2,
              f"model.ais_betas must be >= 2 (the schedule includes 0 and 1), got {self.ais_betas}")
        check_config(0.0 < self.offset_rate <= 1.0, f"model.offset_rate must be in (0, 1], got {self.offset_rate}")
        check_config(0 <= self.exact_max_hidden <= _EXACT_LIMIT,
              f"model.exact_max_hidden must be in [0, {_EXACT_LIMIT}], got {self.exact_max_hidden}")


@register("rbm", config=RBMConfig, default_dataset="mnist", default_preset="rbm-mnist",
          description="Bernoulli-Bernoulli RBM trained with CD-k / PCD; test log-likelihood by AIS")
class RBM(RBMLikelihood, GenerativeModel):
    """Bernoulli-Bernoulli RBM.

    Parameters: ``W`` (n_hidden, n_visible) ~ N(0, init_std²), visible bias ``b`` (n_visible,), hidden bias
    ``c`` (n_hidden,). Buffers: ``base_rate_logits`` (n_visible,), the logits of the training pixel marginals
    (the AIS base model; saved with the weights) and ``chains`` (n_chains, n_visible), the PCD fantasy
    particles (not in the state dict: see :meth:`extra_state`).

    Call :meth:`init_from_data` before training to set ``b`` and ``base_rate_logits`` from the data.
    """

    kind = "image"
    supports_amp = False

    def __init__(self, config: RBMConfig):
        super().__init__(config)
        n_v, n_h = config.n_visible, config.n_hidden
        self.W = nn.Parameter(torch.randn(n_h, n_v) * config.init_std)
        self.b = nn.Parameter(torch.zeros(n_v))
        self.c = nn.Parameter(torch.zeros(n_h))
        self.register_buffer("base_rate_logits", torch.zeros(n_v))
        self.register_buffer("chains", torch.zeros(0, n_v), persistent=False)
        if config.centering:  # only then, so checkpoints of uncentered RBMs keep their exact layout
            self.register_buffer("visible_offset", torch.full((n_v,), 0.5))
            self.register_buffer("hidden_offset", torch.full((n_h,), 0.5))

    # ------------------------------------------------------------------ configuration and data

    @classmethod
    def adapt_config(cls, config: RBMConfig, info: DataInfo) -> RBMConfig:
        """Set ``n_visible`` to the number of values per example; the data must be images in [0, 1]."""
        if info.kind != "image":
            raise ConfigError(f"the RBM models images, not {info.kind!r} data")
        low, high = info.value_range
        if low < 0.0 or high > 1.0:
            raise ConfigError(f"the Bernoulli RBM needs data in [0, 1], got range {info.value_range}; "
                              "use data.scale=unit")
        n_visible = math.prod(info.shape) if info.shape else config.n_visible
        return dataclasses.replace(config, n_visible=n_visible)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one example: (1, 28, 28) for 784 visibles, (1, s, s) for s² visibles, else (n_visible,)."""
        n = self.config.n_visible
        side = math.isqrt(n)
        return (1, side, side) if side * side == n else (n,)

    def _visible(self, batch: Any) -> Tensor:
        """Batch ``(x, y)`` or ``x`` -> x as (B, n_visible) in W's dtype and device, checked to lie in [0, 1]."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, Tensor):
            raise DataError(f"RBM batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        if x.dim() < 2:
            raise DataError(f"RBM expects a batch of shape (B, n_visible) or (B, C, H, W), got {tuple(x.shape)}")
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.config.n_visible:
            raise DataError(
                f"RBM expects n_visible={self.config.n_visible} values per example, got {x.shape[1]} "
                f"(batch shape {tuple(batch[0].shape if isinstance(batch, (tuple, list)) else batch.shape)}); "
                f"set model.n_visible={x.shape[1]} or check the data transforms"
            )
        x = x.to(device=self.W.device, dtype=self.W.dtype)
        if x.numel():
            low, high = torch.aminmax(x)
            low, high = float(low), float(high)
            if not (low >= 0.0 and high <= 1.0):
                raise DataError(f"RBM data must lie in [0, 1] (pixel intensities or binary), got values in "
                                f"[{low:g}, {high:g}]; use data.scale=unit")
        return x

    @torch.no_grad()
    def init_from_data(self, batches: Iterable[Any]) -> Tensor:
        """Set ``b`` and ``base_rate_logits`` to the logits of the pixel marginals of ``batches``.

        Hinton's practical guide (section 8): visible biases ``log(p_i / (1 - p_i))`` with ``p_i`` the fraction
        of training examples in which pixel ``i`` is on; the same logits define the AIS base-rate model.
        Marginals are clamped to [1e-3, 1 - 1e-3]. Returns the marginals, (n_visible,).
        """
        marginals = pixel_marginals((self._visible(batch) for batch in batches), _MARGINAL_EPS)
        logits = torch.logit(marginals).to(self.W.dtype)
        self.b.copy_(logits)
        self.base_rate_logits.copy_(logits)
        if self.config.centering:
            self.visible_offset.copy_(marginals.to(self.W.dtype))
            self.hidden_offset.copy_(self.hidden_probs(marginals.to(self.W.dtype)[None])[0])
        return marginals.to(self.W.dtype)

    # ------------------------------------------------------------------ the math

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -v·b - Σ_j softplus(c_j + W_j·v); v (B, n_visible) -> (B,). Finite for any weights."""
        return -(v @ self.b) - F.softplus(F.linear(v, self.W, self.c)).sum(1)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """p(h_j = 1 | v) = σ(c_j + W_j·v); v (B, n_visible) -> (B, n_hidden)."""
        return torch.sigmoid(F.linear(v, self.W, self.c))

    def visible_probs(self, h: Tensor) -> Tensor:
        """p(v_i = 1 | h) = σ(b_i + (Wᵀh)_i); h (B, n_hidden) -> (B, n_visible)."""
        return torch.sigmoid(torch.addmm(self.b, h, self.W))

    def sample_hidden(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Binary hidden states h ~ p(h | v); v (B, n_visible) -> (B, n_hidden) of exact 0.0 / 1.0."""
        return bernoulli(self.hidden_probs(v), generator)

    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Binary visible states v ~ p(v | h); h (B, n_hidden) -> (B, n_visible) of exact 0.0 / 1.0."""
        return bernoulli(self.visible_probs(h), generator)

    def gibbs_step(self, v: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One block-Gibbs sweep v -> h -> v'. Returns ``(v_new, h)``, shapes (B, n_visible) and (B, n_hidden)."""
        h = self.sample_hidden(v, generator)
        return self.sample_visible(h, generator), h

    @torch.no_grad()
    def gibbs_chain(self, v0: Tensor, steps: int, generator: torch.Generator | None = None,
                    return_every: int = 0) -> Tensor:
        """Run ``steps`` Gibbs sweeps from ``v0`` (B, n_visible) and return visible *probabilities*.

        ``return_every = 0``: the final p(v | h), shape (B, n_visible) (``v0`` itself when ``steps = 0``).
        ``return_every = r > 0``: frames after sweeps r, 2r, ..., shape (steps // r, B, n_visible), for pictures.
        """
        if steps < 0 or return_every < 0:
            raise ConfigError(f"gibbs_chain needs steps >= 0 and return_every >= 0, got {steps}, {return_every}")
        v, probs, frames = v0, v0, []
        for step in range(1, steps + 1):
            h = self.sample_hidden(v, generator)
            probs = self.visible_probs(h)
            v = bernoulli(probs, generator)
            if return_every and step % return_every == 0:
                frames.append(probs)
        if return_every:
            return torch.stack(frames) if frames else v0.new_zeros(0, *v0.shape)
        return probs

    # ------------------------------------------------------------------ training

    def _persistent_chains(self, x: Tensor) -> Tensor:
        """The PCD fantasy particles (n_chains, n_visible), created from Bernoulli draws of data rows if absent."""
        n = self.config.n_chains
        if self.chains.shape != (n, self.config.n_visible):
            rows = torch.arange(n, device=x.device) % x.shape[0]
            self.chains = bernoulli(x[rows], None)
        return self.chains.to(device=x.device, dtype=x.dtype)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """CD-k / PCD-k surrogate: ``mean F(v_data) - mean F(v_model.detach())`` (+ sparsity penalty).

        Its gradient w.r.t. W is ``-(<h vᵀ>_data - <h vᵀ>_model)`` with hidden *probabilities* in both phases, the
        textbook update (Hinton 2010, section 3). The chain starts from a binary hidden sample of the data (CD)
        or from the persistent particles (PCD), and draws from the global torch RNG so a checkpointed RNG state
        makes resumed training exact. CD-1 costs five (B × n_visible × n_hidden) matmuls including backward.

        Logs: ``recon_ce_nats`` (cross-entropy per image between data and p(v | h) after one up-down pass with
        sampled h), ``free_energy`` (mean F of the data), ``cd_gap`` (mean F(data) - mean F(model samples)),
        ``hidden_mean`` (mean hidden probability on the data).
        """
        cfg = self.config
        x = self._visible(batch)
        batch_size = x.shape[0]
        pos_pre = F.linear(x, self.W, self.c)  # (B, n_hidden), shared by F(data) and the first Gibbs step
        f_data = -(x @ self.b) - F.softplus(pos_pre).sum(1)
        with torch.no_grad():
            pos_probs = torch.sigmoid(pos_pre.detach())
            h = bernoulli(pos_probs, None)
            recon_logits = torch.addmm(self.b, h, self.W)  # (B, n_visible)
            recon_ce = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum") / batch_size
            if cfg.persistent:
                v = self._persistent_chains(x)
                for _ in range(cfg.cd_k):
                    v = self.gibbs_step(v, None)[0]
                self.chains = v
            else:
                v = bernoulli(torch.sigmoid(recon_logits), None)
                for _ in range(cfg.cd_k - 1):
                    v = self.gibbs_step(v, None)[0]
        f_model = self.free_energy(v)
        cd_gap = f_data.mean() - f_model.mean()
        loss = cd_gap
        if cfg.centering:
            # The value stays the CD gap; the gradient becomes the centered one.
            surrogate = self._centered_surrogate(x, pos_probs, v)
            loss = cd_gap.detach() + surrogate - surrogate.detach()
        if cfg.sparsity_cost > 0.0:
            # Cross-entropy between the target and each unit's mean activation over the batch (Hinton 2010,
            # section 11; Lee, Ekanadham & Ng 2008 use a squared error), differentiated through the positive phase.
            q = torch.sigmoid(pos_pre).mean(0).clamp(1e-6, 1.0 - 1e-6)
            p = cfg.sparsity_target
            loss = loss - cfg.sparsity_cost * (p * torch.log(q) + (1.0 - p) * torch.log1p(-q)).sum()
        logs = {
            "recon_ce_nats": float(recon_ce),
            "free_energy": float(f_data.detach().mean()),
            "cd_gap": float(cd_gap.detach()),
            "hidden_mean": float(pos_probs.mean()),
        }
        return loss, logs

    def _centered_surrogate(self, x: Tensor, data_hidden: Tensor, v_model: Tensor) -> Tensor:
        """A loss linear in (W, b, c) whose gradient is minus the centered update (module docstring), from data
        x (B, n_visible) with p(h | x) ``data_hidden`` and negatives ``v_model``; then the hidden offset moves
        towards this batch's mean p(h | x)."""
        with torch.no_grad():
            mu, lam = self.visible_offset, self.hidden_offset
            model_hidden = self.hidden_probs(v_model)
            delta_w = ((data_hidden - lam).T @ (x - mu) / x.shape[0]
                       - (model_hidden - lam).T @ (v_model - mu) / v_model.shape[0])
            delta_b = x.mean(0) - v_model.mean(0) - delta_w.T @ lam
            delta_c = data_hidden.mean(0) - model_hidden.mean(0) - delta_w @ mu
            lam.lerp_(data_hidden.mean(0), self.config.offset_rate)
        return -((delta_w * self.W).sum() + (delta_b * self.b).sum() + (delta_c * self.c).sum())

    def _base_rate_entropy(self) -> float:
        """Entropy (nats per image) of the base-rate model, computed again only when its logits change."""
        logits = self.base_rate_logits
        key = (logits._version, logits.data_ptr())
        if getattr(self, "_entropy_key", None) != key:
            self._entropy = float(-(torch.sigmoid(logits) * F.logsigmoid(logits)
                                    + torch.sigmoid(-logits) * F.logsigmoid(-logits)).sum())
            self._entropy_key = key
        return self._entropy

    def divergence(self, logs: dict[str, float]) -> str | None:
        """Diverged when the step's reconstruction is more than twice as costly as the base-rate model's (the
        RBM's starting point: biases at the pixel marginals' logits, W ≈ 0), or when the free-energy gap
        between data and negatives exceeds 10 nats per visible unit. Both stay finite at lr = 1e9 while the
        weights run away; healthy training lowers the first and keeps the second to tens of nats."""
        recon = logs.get("recon_ce_nats")
        base = self._base_rate_entropy()
        if recon is not None and base > 0.0 and recon > 2.0 * base:
            return (f"the reconstruction cross-entropy rose to {recon:.4g} nats per image, over twice the "
                    f"{base:.4g} of the base-rate model the RBM started from")
        gap = logs.get("cd_gap")
        if gap is not None and abs(gap) > 10.0 * self.config.n_visible:
            return (f"the free-energy gap between data and model samples reached {gap:.4g} nats, over 10 per "
                    f"visible unit")
        return None

    def extra_state(self) -> dict[str, Any]:
        """The PCD chains (n_chains, n_visible) on CPU, so a resumed run continues the same Markov chains."""
        if self.chains.numel() == 0:
            return {}
        return {"pcd_chains": self.chains.detach().cpu().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        chains = state.get("pcd_chains")
        if chains is None:
            self.chains = self.W.new_zeros(0, self.config.n_visible)
            return
        chains = torch.as_tensor(chains)
        if chains.dim() != 2 or chains.shape[1] != self.config.n_visible:
            raise CheckpointError(f"PCD chains of shape {tuple(chains.shape)} do not fit an RBM with "
                                  f"n_visible={self.config.n_visible}")
        self.chains = chains.to(device=self.W.device, dtype=self.W.dtype)

    # ------------------------------------------------------------------ monitoring

    def _fixed_generator(self, seed: int = 0) -> torch.Generator:
        return torch.Generator(device=self.W.device).manual_seed(seed)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, *, generator: torch.Generator | None = None,
                    sample_hidden: bool = False) -> Tensor:
        """p(v | h) after one up-down pass; x (B, ...) with B·n_visible values -> (B, *image_shape).

        ``sample_hidden=False`` uses h = p(h | x) (mean field, deterministic); ``True`` draws binary h as the
        training log ``recon_ce_nats`` does.
        """
        v = self._visible(x)
        h = self.sample_hidden(v, generator) if sample_hidden else self.hidden_probs(v)
        return self.visible_probs(h).reshape(v.shape[0], *self.image_shape)

    @torch.no_grad()
    def pseudo_log_likelihood(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Stochastic pseudo-log-likelihood per example (nats): n_visible · log σ(F(ṽ) - F(v)), (B,).

        ``ṽ`` is ``v`` with one uniformly chosen unit per example flipped (Besag 1975; the one-flip estimate
        of scikit-learn's BernoulliRBM.score_samples).
        """
        index = torch.randint(0, v.shape[1], (v.shape[0],), generator=generator,
                              device=generator.device if generator is not None else v.device).to(v.device)
        flipped = v.clone()
        rows = torch.arange(v.shape[0], device=v.device)
        flipped[rows, index] = 1.0 - flipped[rows, index]
        return v.shape[1] * F.logsigmoid(self.free_energy(flipped) - self.free_energy(v))

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        """Per-image means: ``recon_ce_nats`` (as in training, sampled hidden states), ``free_energy`` and
        ``pseudo_loglik_nats``; the random draws come from a fixed-seed generator so values are comparable."""
        generator = self._fixed_generator(0)
        recon = energy = pll = 0.0
        count = 0
        for batch in batches:
            x = self._visible(batch)
            h = self.sample_hidden(x, generator)
            logits = torch.addmm(self.b, h, self.W)
            recon += float(F.binary_cross_entropy_with_logits(logits, x, reduction="sum"))
            energy += float(self.free_energy(x).sum(dtype=torch.float64))
            pll += float(self.pseudo_log_likelihood(x, generator).sum(dtype=torch.float64))
            count += x.shape[0]
        if count == 0:
            raise DataError("validate got no examples")
        return {"recon_ce_nats": recon / count, "free_energy": energy / count, "pseudo_loglik_nats": pll / count}

    @torch.no_grad()
    def mean_free_energy(self, batches: Iterable[Any]) -> float:
        """Mean F(v) over all examples of ``batches`` (nats)."""
        total, count = 0.0, 0
        for batch in batches:
            x = self._visible(batch)
            total += float(self.free_energy(x).sum(dtype=torch.float64))
            count += x.shape[0]
        if count == 0:
            raise DataError("no examples to compute the free energy of")
        return total / count

    @torch.no_grad()
    def free_energy_gap(self, train_batches: Iterable[Any], val_batches: Iterable[Any]) -> float:
        """mean F(validation) - mean F(training) in nats (Hinton 2010, section 6).

        Z cancels, so this is the log-likelihood advantage of training over held-out data; a growing gap
        means overfitting. Pass a training subset about the size of the validation set.
        """
        return self.mean_free_energy(val_batches) - self.mean_free_energy(train_batches)

    def filters(self, k: int = 100) -> Tensor:
        """The first ``k`` hidden units' weight vectors, (k, *image_shape), for a filter mosaic."""
        k = max(0, min(k, self.config.n_hidden))
        return self.W.detach()[:k].reshape(k, *self.image_shape).clone()

    # ------------------------------------------------------------------ sampling and evaluation

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, steps: int | None = None,
               init: Tensor | None = None, **kwargs: Any) -> Tensor:
        """``n`` samples after ``steps`` Gibbs sweeps (default ``config.sample_steps``), as p(v | h), in [0, 1].

        Chains start from ``init`` ((n, n_visible) or (n, *image_shape), values in [0, 1]) or from a Bernoulli
        draw of the base-rate model. Returns (n, *image_shape).
        """
        if kwargs:
            raise ConfigError(f"RBM.sample got unknown option(s): {', '.join(sorted(kwargs))}")
        if n < 1:
            raise ConfigError(f"number of samples must be >= 1, got {n}")
        steps = self.config.sample_steps if steps is None else int(steps)
        if init is None:
            start = torch.sigmoid(self.base_rate_logits).to(self.W.dtype).expand(n, self.config.n_visible)
            v0 = bernoulli(start, generator)
        else:
            v0 = self._visible(init)
            if v0.shape[0] != n:
                raise ConfigError(f"sample(n={n}) got init with {v0.shape[0]} rows")
        return self.gibbs_chain(v0, steps, generator).reshape(n, *self.image_shape)

    @torch.no_grad()
    def sample_chain(self, n: int, *, steps: int, init: Tensor | None = None,
                     generator: torch.Generator | None = None, every: int = 1) -> Tensor:
        """Frames of ``n`` Gibbs chains: (steps // every + 1, n, *image_shape), frame 0 the start state.

        Each later frame is p(v | h) after that many sweeps; chains start from ``init`` or the base-rate model.
        """
        if steps < 0 or every < 1:
            raise ConfigError(f"sample_chain needs steps >= 0 and every >= 1, got {steps}, {every}")
        if init is None:
            start = torch.sigmoid(self.base_rate_logits).to(self.W.dtype).expand(n, self.config.n_visible)
            v0 = bernoulli(start, generator)
        else:
            v0 = self._visible(init)
        frames = self.gibbs_chain(v0, steps, generator, return_every=every)
        frames = torch.cat([v0.unsqueeze(0), frames]) if len(frames) else v0.unsqueeze(0)
        return frames.reshape(frames.shape[0], v0.shape[0], *self.image_shape)

    @torch.no_grad()
    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Tensor]:
        """Samples from long Gibbs chains, the first 100 filters and, given a batch, originals above their
        reconstructions (alternating rows of 8)."""
        pictures = {"samples": self.sample(n, generator=generator), "filters": self.filters(100)}
        if batch is not None:
            originals = self._visible(batch)[:32].reshape(-1, *self.image_shape)
            rebuilt = self.reconstruct(originals)
            rows = [t for pair in zip(originals.split(8), rebuilt.split(8)) for t in pair]
            pictures["reconstructions"] = torch.cat(rows)
        return pictures



