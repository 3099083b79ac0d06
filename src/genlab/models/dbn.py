"""Deep belief networks: greedy stacks of RBMs, label-clamped generation, up-down and backprop fine-tuning.

Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets", Neural Computation 18:
a DBN with layer sizes ``layers = (n_0, n_1, ..., n_L)`` is a stack of ``L`` RBMs. RBM ``l`` has ``n_l``
visible and ``n_{l+1}`` hidden units and is trained by contrastive divergence on the hidden *probabilities*
p(h_l | data) of the stack below (greedy layer-wise pretraining). The top two layers form an undirected
associative memory; with ``n_labels > 0`` the top RBM's visible layer is ``[penultimate layer, labels]``,
the label units forming one softmax group (exactly one is on). The layers below are a directed sigmoid belief
net: generation runs alternating Gibbs sampling in the top RBM (optionally with the label clamped) and then one
ancestral down pass.

Everything trains through the one Trainer (one optimizer over all parameters). The run moves through stages by
epoch, switched in :meth:`DBN.on_epoch_start`:

1. ``greedy``: ``epochs_per_layer[l]`` epochs of CD on RBM ``l`` (the RBM's CD free-energy surrogate; the
   layers below frozen);
2. ``pcd``: ``pcd_epochs`` of persistent CD on the top RBM (Tieleman 2008, "Training restricted Boltzmann
   machines using approximations to the likelihood gradient"). CD-1 never lets the model's own chains wander,
   so it leaves spurious high-probability regions that long Gibbs chains fall into (label-clamped samples
   then all look alike); PCD's persistent chains find and remove them. Its loss is scaled by ``pcd_lr_scale``
   because persistent chains need a smaller learning rate than CD;
3. ``updown``: ``updown_epochs`` of up-down fine-tuning (contrastive wake-sleep, Hinton et al. 2006
   appendix B) with untied recognition and generative weights.

Only the current stage's parameters receive gradients, so SGD/Adam leave the others alone, and checkpoints and
resume need nothing special: the stage is a function of the epoch (PCD chains are saved by ``extra_state``).
Set ``train.epochs`` to :attr:`DBNConfig.total_epochs`; extra epochs continue the last stage.

:class:`genlab.models.dbn_classifier.DBNClassifier` (``dbn-classifier``) turns the pretrained stack into a
feed-forward classifier fine-tuned by backpropagation.

Where things live: :class:`DBNConfig`, the data checks and :func:`l2_penalty` in :mod:`genlab.models.dbn_config`;
:func:`sample_softmax` and the generation methods (``sample``, ``sample_chain``, the :class:`DBNGeneration`
mixin) in :mod:`genlab.models.dbn_sampling`. This module keeps the registered :class:`DBN` and re-exports those
names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.models.base import DataInfo, GenerativeModel
from genlab.models.dbn_config import DBNConfig, _check_data, _images_and_labels, l2_penalty
from genlab.models.dbn_sampling import DBNGeneration, sample_softmax
from genlab.models.partition import bernoulli
from genlab.models.rbm import RBM, RBMConfig
from genlab.registry import register

__all__ = ["DBN", "DBNConfig", "DBNGeneration", "l2_penalty", "sample_softmax"]


@register("dbn", config=DBNConfig, default_dataset="mnist", default_preset="dbn-mnist",
          description="deep belief net: greedy RBM stack, label-clamped generation, up-down fine-tuning")
class DBN(DBNGeneration, GenerativeModel):
    """A stack of :class:`~genlab.models.rbm.RBM` modules (``rbms[l]``: ``layers[l]`` visible, ``layers[l+1]``
    hidden; the top one has ``pen_size + n_labels`` visible units).

    With ``updown_epochs > 0`` there are also untied generative weights ``gen_weights[l]`` (n_{l+1}, n_l) and
    biases ``gen_biases[l]`` (n_l,) for the directed layers, copied from the tied RBM weights when up-down
    starts (buffer ``untied`` records that it happened); the RBMs' ``W``, ``c`` then serve as the recognition
    weights. Before that, generation uses the tied weights.
    """

    ddp_find_unused_parameters = True  # only the current stage's parameters get gradients

    kind = "image"
    supports_amp = False

    @property
    def label_count(self) -> int:
        return int(self.config.n_labels)

    def __init__(self, config: DBNConfig):
        super().__init__(config)
        layers = tuple(config.layers)
        rbms = []
        for index in range(config.n_rbms):
            top = index == config.n_rbms - 1
            rbms.append(RBM(RBMConfig(
                n_visible=layers[index] + (config.n_labels if top else 0), n_hidden=layers[index + 1],
                cd_k=config.top_cd_k if top else config.cd_k, init_std=config.init_std,
                sample_steps=config.sample_steps)))
        self.rbms = nn.ModuleList(rbms)
        directed = range(config.n_rbms - 1) if config.updown_epochs else range(0)
        self.gen_weights = nn.ParameterList([nn.Parameter(torch.zeros(layers[l + 1], layers[l])) for l in directed])
        self.gen_biases = nn.ParameterList([nn.Parameter(torch.zeros(layers[l])) for l in directed])
        self.register_buffer("untied", torch.zeros((), dtype=torch.bool))
        # PCD fantasy particles [pen, labels] of the top RBM: training state, saved by extra_state.
        self.register_buffer("top_chains", torch.zeros(0, self.top.config.n_visible), persistent=False)
        self.stage, self.layer = config.stage_of_epoch(0)  # what trains now; set by on_epoch_start
        self.updown_k = config.updown_cd_k_of_epoch(0)  # top Gibbs steps of up-down now; ditto
        self.weight_decay = 0.0  # optim.weight_decay, applied in the loss (see param_groups)

    # ------------------------------------------------------------------ configuration and stages

    @classmethod
    def adapt_config(cls, config: DBNConfig, info: DataInfo) -> DBNConfig:
        """Check that the first layer matches the data size, the data lie in [0, 1] and labels exist."""
        _check_data(config.layers, config.n_labels, info, "DBN")
        return config

    @property
    def top(self) -> RBM:
        return self.rbms[-1]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One example's shape: (1, s, s) for s² data units (MNIST: (1, 28, 28)), else (n_0,)."""
        size = self.config.layers[0]
        side = math.isqrt(size)
        return (1, side, side) if side * side == size else (size,)

    def on_epoch_start(self, epoch: int) -> None:
        self.stage, self.layer = self.config.stage_of_epoch(epoch)
        self.updown_k = self.config.updown_cd_k_of_epoch(epoch)
        if self.stage == "updown" and not bool(self.untied):
            self.untie()

    @torch.no_grad()
    def untie(self) -> None:
        """Start up-down: the generative weights and biases become copies of the tied RBM weights."""
        for layer in range(len(self.gen_weights)):
            self.gen_weights[layer].copy_(self.rbms[layer].W)
            self.gen_biases[layer].copy_(self.rbms[layer].b)
        self.untied.fill_(True)

    @torch.no_grad()
    def init_from_data(self, batches: Iterable[Any]) -> None:
        """Visible biases of the first RBM from the data marginals (Hinton's practical guide, section 8).

        When the first RBM is also the labelled top RBM, its label biases get the class frequencies' logits.
        """
        labelled_first = self.config.n_rbms == 1 and self.config.n_labels > 0

        def visible_rows():
            for batch in batches:
                x, y = self._inputs(batch)
                yield torch.cat([x, self._one_hot(y, x.shape[0])], 1) if labelled_first else x

        self.rbms[0].init_from_data(visible_rows())

    # ------------------------------------------------------------------ passes

    def _inputs(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        x, y = _images_and_labels(batch, self.config.layers[0], "DBN")
        return x.to(self.top.W.device, self.top.W.dtype), y

    def _one_hot(self, y: Tensor | None, count: int) -> Tensor:
        """Labels (B,) -> one-hot (B, n_labels); (B, 0) without label units."""
        if not self.config.n_labels:
            return self.top.W.new_zeros(count, 0)
        if y is None:
            raise DataError("this DBN has label units and trains on (images, labels) batches; got images only")
        y = y.to(self.top.W.device)
        if bool(((y < 0) | (y >= self.config.n_labels)).any()):
            raise DataError(f"labels must be in 0..{self.config.n_labels - 1} for this DBN, got values in "
                            f"[{int(y.min())}, {int(y.max())}] (unlabelled data? set model.n_labels=0)")
        return F.one_hot(y.long(), self.config.n_labels).to(self.top.W.dtype)

    def up_probs(self, x: Tensor, depth: int) -> Tensor:
        """Recognition probabilities after ``depth`` directed layers: x (B, n_0) -> (B, n_depth).

        Greedy training feeds RBM ``l`` with ``up_probs(x, l)``, the hidden *probabilities* (not samples) of
        the stack below (Hinton et al. 2006).
        """
        for layer in range(depth):
            x = self.rbms[layer].hidden_probs(x)
        return x

    def layer_input(self, x: Tensor, layer: int) -> Tensor:
        """What RBM ``layer`` is trained on: the hidden probabilities of the layers below, (B, n_layer)."""
        return self.up_probs(x, layer)

    def generative_probs(self, layer: int, h: Tensor) -> Tensor:
        """p(v_layer | h_{layer+1}) of the directed part: untied generative weights after up-down started."""
        if bool(self.untied) and layer < len(self.gen_weights):
            return torch.sigmoid(torch.addmm(self.gen_biases[layer], h, self.gen_weights[layer]))
        return self.rbms[layer].visible_probs(h)

    def down_pass(self, pen: Tensor, generator: torch.Generator | None = None, mean_field: bool = False) -> Tensor:
        """Ancestral down pass from penultimate states (B, pen_size): binary samples in the hidden layers,
        and the *probabilities* p(v | h_1) at the bottom, returned as images (B, *image_shape).
        ``mean_field``: probabilities in the hidden layers too (``pen`` may then be probabilities)."""
        h = pen
        for layer in range(self.config.n_rbms - 2, 0, -1):
            probs = self.generative_probs(layer, h)
            h = probs if mean_field else bernoulli(probs, generator)
        if self.config.n_rbms > 1:
            h = self.generative_probs(0, h)
        return h.reshape(h.shape[0], *self.image_shape)

    def _top_visible(self, h: Tensor, labels: Tensor | None, generator: torch.Generator | None,
                     label_probs: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sample the top RBM's visible layer given its hidden states h (B, n_top).

        Returns (pen probabilities, pen binary states, labels). The penultimate units are independent
        Bernoulli; the label units are one softmax group (Hinton et al. 2006): a sampled one-hot, its
        probabilities with ``label_probs``, or ``labels`` when clamped.
        """
        pre = torch.addmm(self.top.b, h, self.top.W)  # (B, pen + labels)
        pen_probs = torch.sigmoid(pre[:, : self.config.pen_size])
        pen = bernoulli(pen_probs, generator)
        if labels is None:
            if not self.config.n_labels:
                labels = pre.new_zeros(h.shape[0], 0)
            else:
                probs = torch.softmax(pre[:, self.config.pen_size:], 1)
                labels = probs if label_probs else sample_softmax(probs, generator)
        return pen_probs, pen, labels

    def _top_negative(self, h: Tensor, k: int, label_probs: bool) -> Tensor:
        """The negative visible state [binary pen, labels] (B, pen + labels) after k Gibbs steps of the top RBM
        from hidden states h; the labels are softmax probabilities with ``label_probs``, else sampled one-hots."""
        for step in range(k):
            _, pen_model, labels_model = self._top_visible(h, None, None, label_probs=label_probs)
            v_model = torch.cat([pen_model, labels_model], 1)
            if step < k - 1:
                h = self.top.sample_hidden(v_model, None)
        return v_model

    # ------------------------------------------------------------------ training

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """The current stage's surrogate: CD on RBM ``layer`` (greedy), PCD on the top RBM, or up-down."""
        x, y = self._inputs(batch)
        if self.stage == "updown":
            return self._updown_loss(x, y)
        layer = self.layer
        with torch.no_grad():
            v = self.layer_input(x, layer)
        if self.stage == "pcd":
            loss, logs = self._top_cd_loss(v, self._one_hot(y, x.shape[0]), self.config.top_cd_k, persistent=True)
            loss = self.config.pcd_lr_scale * (loss + self._l2_penalty([self.top.W]))
        elif layer == self.config.n_rbms - 1 and self.config.n_labels:
            loss, logs = self._top_cd_loss(v, self._one_hot(y, x.shape[0]), self.config.top_cd_k)
            loss = loss + self._l2_penalty([self.top.W])
        else:
            loss, logs = self.rbms[layer].loss(v)  # the RBM's own CD-k
            loss = loss + self._l2_penalty([self.rbms[layer].W])
        return loss, {"layer": float(layer), **logs}

    def param_groups(self, weight_decay: float) -> list[dict]:
        """No optimizer weight decay: the DBN adds ``optim.weight_decay`` as an L2 penalty to each stage's loss
        (:meth:`_l2_penalty`) *before* the stage's scale (``pcd_lr_scale``, ``updown_lr_scale``), so the decay
        follows the stage's learning rate. Optimizer decay would not: with the loss scaled by 0.1 it would act
        as a 10 times stronger L2 relative to the gradient."""
        self.weight_decay = float(weight_decay)
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": 0.0}]

    def _l2_penalty(self, weights: Sequence[Tensor]) -> Tensor:
        """:func:`l2_penalty` of the weight matrices a stage trains with ``optim.weight_decay`` (biases are not
        decayed, as in Hinton's practical guide, section 10)."""
        return l2_penalty(self.weight_decay, weights)

    def _top_cd_loss(self, pen: Tensor, labels: Tensor, k: int,
                     persistent: bool = False) -> tuple[Tensor, dict[str, float]]:
        """CD-k (or PCD-k) for the top RBM with softmax label units: ``mean F(data) - mean F(model.detach())``.

        The free energy is the RBM's (the label units are ordinary visible units, one-hot in the data),
        only the negative phase treats the labels as one softmax group (probabilities with
        ``label_probs_in_negative``, sampled one-hots in the persistent chains). CD starts the negative chain at the
        data; PCD continues the persistent chains ``top_chains``. ``labels`` may be (B, 0) (no label units).
        Logs ``recon_ce_nats`` (of the penultimate part after one sampled up-down step), ``label_recon_acc``
        (the reconstructed label equals the data's; with label units), ``cd_gap`` and ``hidden_mean``.
        """
        top = self.top
        v_data = torch.cat([pen, labels], 1)
        f_data = top.free_energy(v_data)
        with torch.no_grad():
            hidden_probs = top.hidden_probs(v_data)
            h = bernoulli(hidden_probs, None)
            pre = torch.addmm(top.b, h, top.W)
            recon_ce = F.binary_cross_entropy_with_logits(pre[:, : self.config.pen_size], pen, reduction="sum")
            if persistent:  # the chains stay Markov chains of the joint: sampled labels
                v_model = self._top_negative(top.sample_hidden(self._persistent_chains(v_data), None), k, False)
                self.top_chains = v_model
            else:
                v_model = self._top_negative(h, k, self.config.label_probs_in_negative)
        cd_gap = f_data.mean() - top.free_energy(v_model).mean()
        logs = {"recon_ce_nats": float(recon_ce) / pen.shape[0], "cd_gap": float(cd_gap.detach()),
                "hidden_mean": float(hidden_probs.mean())}
        if self.config.n_labels:
            recon_labels = pre[:, self.config.pen_size:].argmax(1)
            logs["label_recon_acc"] = float((recon_labels == labels.argmax(1)).float().mean())
        return cd_gap, logs

    def _persistent_chains(self, v_data: Tensor) -> Tensor:
        """The top RBM's PCD particles (n_chains, pen + labels), started from data rows when absent."""
        if self.top_chains.shape != (self.config.n_chains, self.top.config.n_visible):
            rows = torch.arange(self.config.n_chains, device=v_data.device) % v_data.shape[0]
            start = v_data[rows]
            pen = bernoulli(start[:, : self.config.pen_size], None)  # binary states, labels already one-hot
            self.top_chains = torch.cat([pen, start[:, self.config.pen_size:]], 1)
        return self.top_chains.to(device=v_data.device, dtype=v_data.dtype)

    def extra_state(self) -> dict[str, Any]:
        """The top RBM's PCD chains (on CPU), so a resumed run continues the same Markov chains."""
        return {"top_chains": self.top_chains.detach().cpu().clone()} if self.top_chains.numel() else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        chains = state.get("top_chains")
        if chains is None:
            self.top_chains = self.top.W.new_zeros(0, self.top.config.n_visible)
            return
        chains = torch.as_tensor(chains)
        if chains.dim() != 2 or chains.shape[1] != self.top.config.n_visible:
            raise CheckpointError(f"top-RBM chains of shape {tuple(chains.shape)} do not fit this DBN "
                                  f"({self.top.config.n_visible} top visible units)")
        self.top_chains = chains.to(device=self.top.W.device, dtype=self.top.W.dtype)

    def _updown_loss(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, dict[str, float]]:
        """Contrastive wake-sleep (Hinton et al. 2006, appendix B) as one surrogate loss.

        Wake: a stochastic bottom-up pass with the recognition weights gives states s_0 = x, s_1, ..., s_pen.
        Top: CD-k in the top RBM from [s_pen, label] (k from the ``updown_cd_k`` schedule). Sleep: a stochastic
        top-down pass with the generative weights from the negative binary penultimate state gives r_pen, ...,
        r_1 and probabilities r_0 (the labels of the negative state are probabilities with
        ``label_probs_in_negative``, as in the paper's code).
        The loss is ``updown_lr_scale`` times

            Σ_l BCE(gen logits(s_{l+1}), s_l) + Σ_l BCE(rec logits(r_l), r_{l+1}) + F(top data) - F(top model),

        whose gradients are exactly the paper's delta rules (generative weights learn to reconstruct the wake
        states, recognition weights to recover the sleep states) and the CD update of the top RBM; plus the L2
        penalty on all the weights it trains (:meth:`_l2_penalty`).
        """
        cfg = self.config
        count = x.shape[0]
        lower = cfg.n_rbms - 1
        with torch.no_grad():
            wake = [x]
            for layer in range(lower):
                wake.append(bernoulli(self.rbms[layer].hidden_probs(wake[-1]), None))
            labels = self._one_hot(y, count)
            v_data = torch.cat([wake[-1], labels], 1)
            v_model = self._top_negative(self.top.sample_hidden(v_data, None), self.updown_k,
                                         cfg.label_probs_in_negative)
            sleep = [v_model[:, : cfg.pen_size]]
            for layer in range(lower - 1, -1, -1):
                probs = self.generative_probs(layer, sleep[0])
                sleep.insert(0, probs if layer == 0 else bernoulli(probs, None))
        generative = [F.binary_cross_entropy_with_logits(
            torch.addmm(self.gen_biases[l], wake[l + 1], self.gen_weights[l]), wake[l], reduction="sum") / count
            for l in range(lower)]
        recognition = [F.binary_cross_entropy_with_logits(
            F.linear(sleep[l], self.rbms[l].W, self.rbms[l].c), sleep[l + 1], reduction="sum") / count
            for l in range(lower)]
        cd_gap = self.top.free_energy(v_data).mean() - self.top.free_energy(v_model).mean()
        penalty = self._l2_penalty([*self.gen_weights, *(self.rbms[l].W for l in range(lower)), self.top.W])
        total = sum(generative, cd_gap.new_zeros(())) + sum(recognition, cd_gap.new_zeros(())) + cd_gap + penalty
        logs = {"layer": float(cfg.n_rbms), "cd_gap": float(cd_gap.detach()),
                "wake_recon_ce_nats": float(generative[0].detach()) if generative else 0.0,
                "sleep_ce_nats": float(sum(r.detach() for r in recognition)) if recognition else 0.0}
        return cfg.updown_lr_scale * total, logs

    # ------------------------------------------------------------------ classification and monitoring

    @torch.no_grad()
    def label_free_energies(self, x: Tensor) -> Tensor:
        """F([pen, e_k]) of the top RBM for every label k: x (B, n_0) -> (B, n_labels).

        p(label = k | pen) ∝ exp(-F([pen, e_k])), so the most probable label has the lowest free energy
        (Hinton et al. 2006, section 6).
        """
        if not self.config.n_labels:
            raise ConfigError("this DBN has no label units (model.n_labels=0), so it cannot classify")
        pen = self.up_probs(x, self.config.n_rbms - 1)
        count, n_labels = pen.shape[0], self.config.n_labels
        eye = torch.eye(n_labels, dtype=pen.dtype, device=pen.device)
        joint = torch.cat([pen.repeat_interleave(n_labels, 0), eye.repeat(count, 1)], 1)
        return self.top.free_energy(joint).reshape(count, n_labels)

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """The label of lowest top-RBM free energy for each image: x (B, ...) -> (B,) long."""
        x, _ = self._inputs(x)
        return self.label_free_energies(x).argmin(1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, depth: int | None = None) -> Tensor:
        """Mean-field pass up ``depth`` directed layers (default: to the penultimate layer) and back down:
        x (B, ...) -> probabilities (B, *image_shape)."""
        x, _ = self._inputs(x)
        depth = self.config.n_rbms - 1 if depth is None else depth
        h = self.up_probs(x, depth)
        for layer in range(depth - 1, -1, -1):
            h = self.generative_probs(layer, h)
        return h.reshape(x.shape[0], *self.image_shape)

    def filters(self, k: int = 100) -> Tensor:
        """The first ``k`` first-layer hidden units' weights on the data units, (k, *image_shape)."""
        weights = self.rbms[0].W.detach()[:k, : self.config.layers[0]]
        return weights.reshape(weights.shape[0], *self.image_shape).clone()

    def _layer_recon_ce(self, x: Tensor, y: Tensor | None, layer: int, generator: torch.Generator) -> float:
        """Summed reconstruction cross-entropy of RBM ``layer`` on its input (one sampled up-down step)."""
        rbm = self.rbms[layer]
        v = self.layer_input(x, layer)
        if layer == self.config.n_rbms - 1 and self.config.n_labels:
            h = rbm.sample_hidden(torch.cat([v, self._one_hot(y, x.shape[0])], 1), generator)
            logits = torch.addmm(rbm.b, h, rbm.W)[:, : self.config.pen_size]
        else:
            logits = torch.addmm(rbm.b, rbm.sample_hidden(v, generator), rbm.W)
        return float(F.binary_cross_entropy_with_logits(logits, v, reduction="sum"))

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        """Per example: ``recon_ce_nats`` of the RBM being trained (``layer``) on its input and, once the top
        RBM trains and the data are labelled, ``error_pct`` of free-energy classification."""
        layer = self.layer
        labelled = self.config.n_labels > 0 and layer == self.config.n_rbms - 1
        generator = torch.Generator(device=self.top.W.device).manual_seed(0)
        recon = errors = 0.0
        count = 0
        for batch in batches:
            x, y = self._inputs(batch)
            if self.config.n_labels and (y is None or bool((y < 0).any())):
                labelled = False
                y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            recon += self._layer_recon_ce(x, y, layer, generator)
            if labelled:
                errors += float((self.label_free_energies(x).argmin(1) != y.to(x.device)).sum())
            count += x.shape[0]
        if count == 0:
            raise DataError("DBN validation got no examples")
        logs = {"layer": float(layer), "recon_ce_nats": recon / count}
        if labelled:
            logs["error_pct"] = 100.0 * errors / count
        return logs

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 **options: Any) -> dict[str, float]:
        """``test_error_pct`` (free-energy classification; with label units), ``test_recon_ce_nats`` (mean-field
        reconstruction through the directed layers, nats per image) and ``n_test``."""
        if options:
            raise ConfigError(f"DBN.evaluate takes no options, got {', '.join(sorted(options))}")
        recon = errors = 0.0
        count = 0
        for batch in test_batches:
            x, y = self._inputs(batch)
            recon_probs = self.reconstruct(x).reshape(x.shape[0], -1).clamp(1e-7, 1 - 1e-7)
            recon += float(F.binary_cross_entropy(recon_probs, x, reduction="sum"))
            if self.config.n_labels:
                if y is None or bool((y < 0).any()):
                    raise DataError("test_error_pct needs labelled test data")
                errors += float((self.label_free_energies(x).argmin(1) != y.to(x.device)).sum())
            count += x.shape[0]
        if count == 0:
            raise DataError("DBN evaluation got no test examples")
        result = {"test_recon_ce_nats": recon / count, "n_test": float(count)}
        if self.config.n_labels:
            result["test_error_pct"] = 100.0 * errors / count
        return result

    # ------------------------------------------------------------------ generation

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """First-layer filters, reconstructions of ``batch`` through the layers trained so far, and (once the top
        RBM trains) samples with labels 0, 1, 2, ... clamped in turn."""
        pictures: dict[str, Any] = {"filters": self.filters(100)}
        depth = min(self.layer + 1, self.config.n_rbms - 1)
        if batch is not None and depth > 0:
            x, _ = self._inputs(batch)
            pictures["reconstructions"] = torch.cat([x[:n].reshape(-1, *self.image_shape),
                                                     self.reconstruct(x[:n], depth)])
        if self.layer == self.config.n_rbms - 1:
            labels = torch.arange(n) % self.config.n_labels if self.config.n_labels else None
            pictures["samples"] = self.sample(n, generator=generator, label=labels)
        return pictures
