"""Character-level stacked LSTM language model, trained on every position, with streaming generation.

The network (Hochreiter & Schmidhuber 1997, "Long short-term memory"; the stacked character model of Graves
2013, "Generating sequences with recurrent neural networks", and Karpathy's char-rnn):

    e_t   = Embedding(c_t)                                   (B, T, embedding_dim)
    h^l_t = LSTM_l(h^{l-1}_t, state^l_{t-1})                  (B, T, layers[l])
    p(c_{t+1} | c_{≤t}) = softmax(W h^L_t + b)               (B, T, V)

Dropout sits on the non-recurrent connections only (embedding -> layer 1, between layers, last layer ->
softmax; Zaremba, Sutskever & Vinyals 2014, "Recurrent neural network regularization"). With ``tie_weights``
the softmax matrix ``W`` is the embedding matrix (Press & Wolf 2017, "Using the output embedding to improve
language models"; Inan et al. 2017), which needs ``layers[-1] == embedding_dim``.

Training is teacher forcing on all positions: a (B, T) batch gives B·T next-character losses for one pass,
where the seed (the TF.js lstm-text-generation example) fed each 40-character window to predict only its last
character. With ``carry_state`` the final LSTM state of a batch starts the next one (truncated BPTT, Williams &
Peng 1990), which needs the ``data.text_order=streams`` layout; the carried state is checkpointed through
``extra_state`` so a resumed run continues exactly.

Unprompted generation starts from a window of training text, as the seed does. The corpus is not part of a
checkpoint, so :meth:`CharLSTM.init_from_data` keeps ``seed_windows`` windows of ``seed_length`` training
characters in the buffer ``seed_text_ids``, saved with the weights; a model that never saw data (built by hand)
starts from one random vocabulary character instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.datasets import IGNORE_INDEX
from genlab.data.text import UNKNOWN_POLICIES, CharVocab
from genlab.errors import ConfigError, DataError, check_config
from genlab.models.text_loss import CONTEXTS, LN2, text_loss
from genlab.models.base import DataInfo, GenerativeModel
from genlab.registry import register

# The seed prints samples at these temperatures every epoch.
SNAPSHOT_TEMPERATURES = (0.0, 0.25, 0.5, 0.75)
# Uniform init range of a *tied* embedding (Zaremba et al. 2014), which keeps its logits near 0 at init. An
# untied embedding keeps N(0, 1): its larger inputs leave the unigram plateau several times faster.
_TIED_EMBEDDING_INIT = 0.1
# Uniform init range of an untied softmax matrix: small, so the loss at init is log(V) whatever the embedding.
_HEAD_INIT = 0.025
# Forget-gate bias at init (Gers et al. 2000; Jozefowicz et al. 2015): remember by default.
_FORGET_BIAS = 1.0

LSTMState = list[tuple[Tensor, Tensor]]  # per layer (h, c), each (1, B, layers[l])


@dataclass
class CharLSTMConfig:
    """Hyper-parameters of the character LSTM. ``vocab`` is filled from the training text by ``adapt_config``."""

    layers: tuple[int, ...] = (512, 512)  # LSTM sizes, bottom to top (the seed's --lstmLayerSize 128,128)
    embedding_dim: int = 128
    dropout: float = 0.0  # on embedding output, between layers and before the softmax
    tie_weights: bool = False  # softmax matrix = embedding matrix; needs layers[-1] == embedding_dim
    vocab: str = ""  # the characters, index order; saved so a checkpoint rebuilds itself
    carry_state: bool = False  # truncated BPTT: carry the LSTM state between batches (data.text_order=streams)
    seed_windows: int = 32  # training-text windows kept with the weights to seed unprompted generation
    seed_length: int = 40  # characters per window (the seed's sampleLen)
    sample_length: int = 200  # characters per snapshot text in samples.md
    eval_context: str = "carry"  # carry: split read as contiguous streams, state carried; chunk: zero state per row
    eval_streams: int = 16  # parallel streams for eval_context=carry (1: the exact likelihood of the split)

    def __post_init__(self) -> None:
        check_config(len(self.layers) >= 1, "model.layers needs at least one LSTM size, e.g. --set model.layers=128,128")
        check_config(all(size >= 1 for size in self.layers), f"model.layers sizes must be >= 1, got {list(self.layers)}")
        check_config(self.embedding_dim >= 1, f"model.embedding_dim must be >= 1, got {self.embedding_dim}")
        check_config(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        check_config(not self.tie_weights or self.layers[-1] == self.embedding_dim,
               f"model.tie_weights needs the last LSTM size ({self.layers[-1]}) to equal model.embedding_dim "
               f"({self.embedding_dim}); set model.embedding_dim={self.layers[-1]} or model.tie_weights=false")
        check_config(len(set(self.vocab)) == len(self.vocab),
               "model.vocab must list each character once; leave it empty to take it from the training text")
        check_config(self.seed_windows >= 1, f"model.seed_windows must be >= 1, got {self.seed_windows}")
        check_config(self.seed_length >= 1, f"model.seed_length must be >= 1, got {self.seed_length}")
        check_config(self.sample_length >= 1, f"model.sample_length must be >= 1, got {self.sample_length}")
        check_config(self.eval_context in CONTEXTS,
               f"model.eval_context must be one of {', '.join(CONTEXTS)}, got {self.eval_context!r}")
        check_config(self.eval_streams >= 1, f"model.eval_streams must be >= 1, got {self.eval_streams}")


def check_generation_options(length: int, temperature: float, top_k: int | None, unknown: str) -> None:
    """ConfigError for a length < 1, a negative or non-finite temperature, top_k < 1 or an unknown policy."""
    check_config(isinstance(length, int) and length >= 1, f"length must be an integer >= 1, got {length!r}")
    check_config(isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0,
           f"temperature must be a finite number >= 0 (0 means argmax), got {temperature!r}")
    check_config(top_k is None or (isinstance(top_k, int) and top_k >= 1),
           f"top_k must be an integer >= 1 (or omitted for the full distribution), got {top_k!r}")
    check_config(unknown in UNKNOWN_POLICIES, f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")


def pick_next(logits: Tensor, *, temperature: float, top_k: int | None,
              generator: torch.Generator | None) -> Tensor:
    """Next ids (n,) from last-position logits (n, V): argmax at temperature 0, else a draw from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` largest logits (ties at the k-th are kept)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    # Subtracting the max first keeps tiny temperatures finite: the best logit becomes 0, the rest -> -inf.
    scaled = (logits.float() - logits.float().amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@register("char-lstm", config=CharLSTMConfig, default_dataset="tinyshakespeare",
          default_preset="char-lstm-shakespeare",
          description="character-level stacked LSTM trained on every position; bits/char, streaming sampling")
class CharLSTM(GenerativeModel):
    """Stacked character LSTM.

    Modules: ``embedding`` (V, embedding_dim), ``lstms[l]`` single-layer ``nn.LSTM`` (batch_first) of size
    ``layers[l]`` (one module per layer so sizes may differ), ``head`` Linear(layers[-1], V). Buffer
    ``seed_text_ids`` (seed_windows, seed_length) of training-text ids, -1 where unset.
    """

    kind = "text"
    # bf16 autocast: the loss is taken on float32 logits and the carried state is kept in float32, so a batch
    # starts from the same state under autocast or not and evaluation (never autocast) is full precision.
    supports_amp = True

    @property
    def vocab_size(self) -> int:
        return len(self.config.vocab)

    def __init__(self, config: CharLSTMConfig):
        super().__init__(config)
        if not config.vocab:
            raise ConfigError("model.vocab is empty: build the char-lstm through adapt_config with text data "
                              "(genlab train does), or set model.vocab to the characters it models")
        self.vocab = CharVocab(config.vocab)
        sizes = (config.embedding_dim, *config.layers)
        self.embedding = nn.Embedding(len(self.vocab), config.embedding_dim)
        self.lstms = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True)
                                   for i in range(len(config.layers)))
        self.head = nn.Linear(config.layers[-1], len(self.vocab))
        if config.tie_weights:
            self.head.weight = self.embedding.weight
        self.register_buffer("seed_text_ids", torch.full((config.seed_windows, config.seed_length), -1,
                                                         dtype=torch.long))
        self._reset_parameters()
        self._carried: LSTMState | None = None  # TBPTT state of the training streams
        self._carried_targets: Tensor | None = None  # last target column, to check batches continue each other
        self._carried_epoch: int | None = None
        self._carried_restored = False

    def _reset_parameters(self) -> None:
        if self.config.tie_weights:
            nn.init.uniform_(self.embedding.weight, -_TIED_EMBEDDING_INIT, _TIED_EMBEDDING_INIT)
        else:
            nn.init.normal_(self.embedding.weight)
            nn.init.uniform_(self.head.weight, -_HEAD_INIT, _HEAD_INIT)
        nn.init.zeros_(self.head.bias)
        for lstm in self.lstms:
            size = lstm.hidden_size
            with torch.no_grad():
                lstm.bias_ih_l0.zero_()
                lstm.bias_hh_l0.zero_()
                lstm.bias_ih_l0[size:2 * size] = _FORGET_BIAS  # PyTorch gate order: input, forget, cell, output

    @classmethod
    def adapt_config(cls, config: CharLSTMConfig, info: DataInfo) -> CharLSTMConfig:
        """Take the vocabulary from the training text; ConfigError for non-text data or a conflicting vocab."""
        if info.kind != "text":
            raise ConfigError(f"char-lstm models text, not {info.kind!r} data; use --dataset tinyshakespeare or a "
                              "UTF-8 .txt file")
        if config.vocab and config.vocab != info.vocab:
            raise ConfigError(f"model.vocab ({len(config.vocab)} characters) differs from the training text's "
                              f"vocabulary ({len(info.vocab)} characters); remove model.vocab to use the text's")
        return dataclasses.replace(config, vocab=info.vocab)

    # ------------------------------------------------------------------ the network

    def hidden(self, x: Tensor, state: LSTMState | None = None, *, dropout: bool = False
               ) -> tuple[Tensor, LSTMState]:
        """Top-layer features (B, T, layers[-1]) for ids ``x`` (B, T), after dropout, and the final state."""
        p = self.config.dropout if dropout else 0.0
        h = F.dropout(self.embedding(x), p, training=dropout)
        final: LSTMState = []
        for index, lstm in enumerate(self.lstms):
            h, layer_state = lstm(h, None if state is None else state[index])
            final.append(layer_state)
            h = F.dropout(h, p, training=dropout)
        return h, final

    def network(self, x: Tensor, state: LSTMState | None = None, *, dropout: bool = False
                ) -> tuple[Tensor, LSTMState]:
        """Logits (B, T, V) for ids ``x`` (B, T) and the final state; ``state`` None starts from zeros."""
        h, final = self.hidden(x, state, dropout=dropout)
        return self.head(h), final

    def _text_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataError(f"char-lstm batches are (inputs, targets) pairs of ids, got {type(batch).__name__}")
        x, y = batch[0], batch[1]
        if x.dim() != 2 or x.shape != y.shape or x.dtype != torch.long or y.dtype != torch.long:
            raise DataError(f"char-lstm expects two (B, seq_len) LongTensors of character ids, got "
                            f"{tuple(x.shape)} {x.dtype} and {tuple(y.shape)} {y.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= len(self.vocab)):
            raise DataError(f"character ids must be in 0..{len(self.vocab) - 1}, found {int(x.min())}.."
                            f"{int(x.max())}; the data's vocabulary differs from the model's")
        return x, y

    # ------------------------------------------------------------------ training

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Mean next-character cross-entropy over all positions (nats/char); logs nats and bits per char."""
        x, y = self._text_batch(batch)
        carrying = self.training and self.config.carry_state
        state = self._state_for(x) if carrying else None
        logits, final = self.network(x, state, dropout=self.training)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                               ignore_index=IGNORE_INDEX)
        if carrying:
            self._carried = [(h.detach().float(), c.detach().float()) for h, c in final]
            self._carried_targets = y[:, -1].detach().clone()
        nats = float(loss.detach())
        return loss, {"nats_per_char": nats, "bits_per_char": nats / LN2}

    def _state_for(self, x: Tensor) -> LSTMState | None:
        """The carried state if this batch continues the last one; ConfigError if batches are not streams."""
        if self._carried is None or self._carried_targets is None:
            return None
        continues = (self._carried_targets.shape[0] == x.shape[0]
                     and torch.equal(self._carried_targets.to(x.device), x[:, 0]))
        restored, self._carried_restored = self._carried_restored, False
        if continues:
            return self._carried
        if restored:
            # Under DDP every rank restores rank 0's streams; other ranks restart theirs from zeros.
            self._reset_carried()
            return None
        raise ConfigError("model.carry_state=true needs batches that continue each other (row b of a batch picks up "
                          "where row b of the previous one ended): set data.text_order=streams, or turn "
                          "model.carry_state off")

    def _reset_carried(self) -> None:
        self._carried, self._carried_targets, self._carried_restored = None, None, False

    def on_epoch_start(self, epoch: int) -> None:
        # Each epoch reads the streams from their beginning again. The trainer also calls this hook when it
        # resumes mid-epoch; the state restored for that epoch must survive it.
        if epoch != self._carried_epoch:
            self._reset_carried()
        self._carried_epoch = epoch

    def extra_state(self) -> dict[str, Any]:
        """The carried TBPTT state (per layer h, c), the last target column and its epoch; {} when not carrying."""
        if self._carried is None or self._carried_targets is None:
            return {}
        state: dict[str, Any] = {"carried_epoch": int(self._carried_epoch or 0),
                                 "carried_targets": self._carried_targets.cpu()}
        for index, (h, c) in enumerate(self._carried):
            state[f"carried_h{index}"] = h.cpu()
            state[f"carried_c{index}"] = c.cpu()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "carried_targets" not in state:
            self._reset_carried()
            return
        device = self.head.weight.device
        self._carried = [(state[f"carried_h{i}"].to(device), state[f"carried_c{i}"].to(device))
                         for i in range(len(self.lstms))]
        self._carried_targets = state["carried_targets"].to(device)
        self._carried_epoch = int(state["carried_epoch"])
        self._carried_restored = True

    @torch.no_grad()
    def init_from_data(self, batches: Any) -> None:
        """Keep ``seed_windows`` random windows of the first training batch as seeds for unprompted generation."""
        first = next(iter(batches), None)
        if first is None:
            return
        x, _ = self._text_batch(first)
        width = min(self.config.seed_length, x.shape[1])
        rows = torch.randint(x.shape[0], (self.config.seed_windows,))
        starts = torch.randint(x.shape[1] - width + 1, (self.config.seed_windows,))
        windows = torch.stack([x[r, s:s + width] for r, s in zip(rows.tolist(), starts.tolist())])
        self.seed_text_ids.fill_(-1)
        self.seed_text_ids[:, self.config.seed_length - width:] = windows.to(self.seed_text_ids.device)

    # ------------------------------------------------------------------ evaluation

    def _forward_eval(self, x: Tensor, state: LSTMState | None) -> tuple[Tensor, LSTMState]:
        return self.network(x, state, dropout=False)

    @torch.no_grad()
    def validate(self, batches: Iterable[Any]) -> dict[str, float]:
        """Loss over the whole validation split with ``config.eval_context``: loss, nats_per_char, bits_per_char."""
        result = self._split_loss(batches, None, None)
        return {"loss": result.nats_per_char, **result.metrics()}

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 context: str | None = None, streams: int | None = None, **options: Any) -> dict[str, float]:
        """``val_nats_per_char``, ``val_bits_per_char`` and ``val_chars`` (characters scored) over the split.

        Text corpora have no test split, so ``genlab eval`` passes the validation split. ``context`` and
        ``streams`` override ``config.eval_context`` / ``config.eval_streams`` (see :mod:`genlab.models.text_loss`).
        """
        if options:
            raise ConfigError(f"unknown char-lstm eval option(s) {', '.join(sorted(options))}; "
                              "valid: context=carry|chunk, streams=N")
        if streams is not None and (not isinstance(streams, int) or streams < 1):
            raise ConfigError(f"streams must be an integer >= 1, got {streams!r}")
        return self._split_loss(test_batches, context, streams).metrics("val_")

    def _split_loss(self, batches: Iterable[Any], context: str | None, streams: int | None):
        batches = list(batches)
        chunk_len = batches[0][0].shape[1] if batches else 1
        return text_loss(self._forward_eval, batches, context=context or self.config.eval_context,
                         streams=streams or self.config.eval_streams, chunk_len=chunk_len)

    # ------------------------------------------------------------------ generation

    def encode_prompt(self, prompt: str, unknown: str = "error") -> Tensor:
        """Ids (P,) of ``prompt``; DataError naming characters outside the vocabulary unless a policy handles them."""
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
        try:
            ids = self.vocab.encode(prompt, unknown=unknown)
        except DataError as exc:
            raise DataError(f"prompt: {exc} (from the command line: --unknown skip|replace)") from None
        if len(ids) == 0:
            raise DataError(f"prompt {prompt!r} has no characters left in the vocabulary after unknown={unknown!r}; "
                            "give a prompt with characters the model was trained on")
        return ids

    def _prompt_batch(self, n: int, prompt: str | None, unknown: str,
                      generator: torch.Generator | None) -> Tensor:
        """(n, P) starting ids: the prompt, or a stored training window per sample, or a random character."""
        device = self.head.weight.device
        gen_device = generator.device if generator is not None else device
        if prompt:
            return self.encode_prompt(prompt, unknown).to(device).expand(n, -1)
        stored = self.seed_text_ids
        if bool((stored[:, -1] >= 0).all()):
            rows = torch.randint(stored.shape[0], (n,), generator=generator, device=gen_device).to(device)
            columns = stored[0] >= 0
            return stored[rows][:, columns]
        return torch.randint(len(self.vocab), (n, 1), generator=generator, device=gen_device).to(device)

    # As a decorator (not a with-block) no_grad is entered and left around each step of the generator, so the
    # caller's grad mode is untouched between characters.
    @torch.no_grad()
    def _generate(self, start: Tensor, *, length: int, temperature: float, top_k: int | None,
                  generator: torch.Generator | None) -> Iterator[Tensor]:
        """Yield (n,) ids one step at a time. ``start`` (n, P) is read once; later steps feed one id each."""
        logits, final = self.network(start, None)
        last = logits[:, -1]
        state = [(h[0], c[0]) for h, c in final]
        weights = self._step_weights()
        for step in range(length):
            ids = pick_next(last, temperature=temperature, top_k=top_k, generator=generator)
            yield ids
            if step + 1 < length:
                last, state = self.step(ids, state, weights)

    def _step_weights(self) -> list[tuple[Tensor, Tensor]]:
        """Per layer ``[W_ih | W_hh]`` (4H, in + H) and ``b_ih + b_hh`` (4H,), for one matmul per layer and step."""
        return [(torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1), lstm.bias_ih_l0 + lstm.bias_hh_l0)
                for lstm in self.lstms]

    def step(self, ids: Tensor, state: list[tuple[Tensor, Tensor]],
             weights: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """One character per row: logits (n, V) after ids (n,) and the new per-layer (h, c), each (n, H).

        The same LSTM equations as ``nn.LSTM`` (gate order input, forget, cell, output) written out for a single
        step: for batch-1 generation on CPU, nn.LSTM's per-call setup costs more than the arithmetic.
        """
        weights = self._step_weights() if weights is None else weights
        x = self.embedding(ids)
        new_state = []
        for (weight, bias), (h, c) in zip(weights, state):
            gates = torch.addmm(bias, torch.cat([x, h], dim=1), weight.t())
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
            c = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            h = torch.sigmoid(out_gate) * torch.tanh(c)
            new_state.append((h, c))
            x = h
        return self.head(x), new_state

    @staticmethod
    def _no_extra_options(options: dict[str, Any]) -> None:
        if options:
            raise ConfigError(f"char-lstm generation does not take {', '.join(sorted(options))}; options: "
                              "prompt, length, temperature, top_k, unknown")

    def sample(self, n: int, *, generator: torch.Generator | None = None, prompt: str | None = None,
               length: int = 500, temperature: float = 1.0, top_k: int | None = None, unknown: str = "error",
               **options: Any) -> Tensor:
        """Generated ids (n, length) (the prompt excluded), each row continuing its own start.

        Without a prompt each row starts from a random stored training window (see the module docstring).
        ``temperature`` 0 is argmax; ``top_k`` keeps the k most likely characters; ``unknown`` is the policy for
        prompt characters outside the vocabulary: error (DataError naming them), skip or replace.
        """
        self._no_extra_options(options)
        check_config(isinstance(n, int) and n >= 1, f"n must be an integer >= 1, got {n!r}")
        check_generation_options(length, temperature, top_k, unknown)
        start = self._prompt_batch(n, prompt, unknown, generator)
        return torch.stack(list(self._generate(start, length=length, temperature=temperature, top_k=top_k,
                                               generator=generator)), dim=1)

    def stream(self, *, prompt: str | None = None, length: int = 500, temperature: float = 1.0,
               top_k: int | None = None, generator: torch.Generator | None = None, unknown: str = "error",
               **options: Any) -> Iterator[str]:
        """Characters one at a time as they are generated; the same draws as ``sample(1, ...)`` with this generator.

        Options are checked here, before the first character, so bad input fails at the call.
        """
        self._no_extra_options(options)
        check_generation_options(length, temperature, top_k, unknown)
        start = self._prompt_batch(1, prompt, unknown, generator)
        chars = self.config.vocab
        steps = self._generate(start, length=length, temperature=temperature, top_k=top_k, generator=generator)
        return (chars[int(ids[0])] for ids in steps)

    def snapshots(self, n: int, *, generator: torch.Generator, batch: Any = None) -> dict[str, Any]:
        """The seed's per-epoch table: one start text and a continuation at temperatures 0, 0.25, 0.5, 0.75."""
        start = self._prompt_batch(1, None, "error", generator)
        texts = {"seed text": self.vocab.decode(start[0])}
        for temperature in SNAPSHOT_TEMPERATURES:
            ids = torch.stack(list(self._generate(start, length=self.config.sample_length, temperature=temperature,
                                                  top_k=None, generator=generator)), dim=1)
            texts[f"temperature {temperature:g}"] = self.vocab.decode(ids[0])
        return texts
