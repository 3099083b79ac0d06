"""Character-level language-model evaluation: nats and bits per character over a whole text split.

The loss of a character model on a text ``c_1 .. c_N`` is the average negative log-likelihood of each character
given the ones before it, ``-1/(N-1) Σ_t log p(c_{t+1} | c_{≤t})``, in nats per character; bits per character
is the same number divided by ``ln 2`` (Graves 2013, "Generating sequences with recurrent neural networks").

Two ways to supply the context ``c_{≤t}``:

* ``chunk``: each ``seq_len`` row of the split is read from a zero state, exactly as it is trained without a
  carried state. Characters early in a row see little context, so this is an upper bound on the model's loss.
* ``carry``: the split is rejoined into one sequence and read as ``streams`` contiguous pieces with the
  recurrent state carried from chunk to chunk, so every character sees all the text before it in its piece.
  With ``streams=1`` this is the exact likelihood of the whole split; more streams run in parallel at the cost
  of ``streams - 1`` cold starts.

A model enters as ``forward(x, state) -> (logits, state)`` with ``x`` a (B, T) LongTensor of ids, ``logits``
(B, T, V) and ``state`` an opaque recurrent state (``None``: zeros), so nothing here depends on the model class.

This module sits in the models layer so the character LSTM can use it; :mod:`genlab.eval.text` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data.datasets import IGNORE_INDEX
from genlab.errors import ConfigError, DataError

LN2 = math.log(2.0)
CONTEXTS = ("carry", "chunk")

Forward = Callable[[Tensor, Any], tuple[Tensor, Any]]


def bits_from_nats(nats: float) -> float:
    """Nats per character -> bits per character."""
    return nats / LN2


@dataclass(frozen=True)
class TextLoss:
    """A summed negative log-likelihood and the number of characters it scores."""

    total_nats: float
    chars: int

    @property
    def nats_per_char(self) -> float:
        return self.total_nats / self.chars if self.chars else math.nan

    @property
    def bits_per_char(self) -> float:
        return bits_from_nats(self.nats_per_char)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}nats_per_char``, ``{prefix}bits_per_char`` and ``{prefix}chars`` as floats."""
        return {f"{prefix}nats_per_char": self.nats_per_char, f"{prefix}bits_per_char": self.bits_per_char,
                f"{prefix}chars": float(self.chars)}


def _summed_nll(logits: Tensor, targets: Tensor) -> tuple[float, int]:
    """Sum of -log p(target) over positions whose target is not IGNORE_INDEX, and their count."""
    flat_targets = targets.reshape(-1)
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat_targets,
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return float(total), int((flat_targets != IGNORE_INDEX).sum())


def _rows(batch: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DataError(f"text batches must be (inputs, targets) pairs, got {type(batch).__name__}")
    inputs, targets = batch[0], batch[1]
    if inputs.shape != targets.shape or inputs.dim() != 2:
        raise DataError(f"text batches must be two (B, seq_len) tensors of the same shape, got "
                        f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
    return inputs, targets


@torch.no_grad()
def chunk_nll(forward: Forward, batches: Iterable[Any]) -> TextLoss:
    """Every row of every batch read from a zero state; positions with IGNORE_INDEX targets are skipped."""
    total, count = 0.0, 0
    for batch in batches:
        inputs, targets = _rows(batch)
        logits, _ = forward(inputs, None)
        batch_total, batch_count = _summed_nll(logits, targets)
        total += batch_total
        count += batch_count
    return TextLoss(total, count)


def rejoin(batches: Iterable[Any]) -> tuple[Tensor, Tensor]:
    """The split as one sequence: 1-D ``inputs`` and ``targets`` with ``targets[t]`` the character after ``inputs[t]``.

    The batches must be the text loader's ordered, non-overlapping rows (validation layout), possibly ending with
    a row padded with IGNORE_INDEX targets; DataError if they do not continue each other.
    """
    input_rows, target_rows = [], []
    for batch in batches:
        inputs, targets = _rows(batch)
        input_rows.append(inputs.reshape(-1))
        target_rows.append(targets.reshape(-1))
    if not input_rows:
        raise DataError("the text split to evaluate is empty")
    inputs, targets = torch.cat(input_rows), torch.cat(target_rows)
    scored = targets != IGNORE_INDEX
    inputs, targets = inputs[scored], targets[scored]
    if len(inputs) > 1 and not torch.equal(inputs[1:], targets[:-1]):
        raise DataError("context='carry' needs the split's sequences in their original order (each row "
                        "continuing the previous one); these batches are shuffled or overlap: use context='chunk'")
    return inputs, targets


@torch.no_grad()
def stream_nll(forward: Forward, inputs: Tensor, targets: Tensor, *, streams: int, chunk_len: int) -> TextLoss:
    """Score a 1-D sequence read as ``streams`` contiguous pieces, ``chunk_len`` steps at a time, state carried.

    The pieces have equal length ``ceil(N / streams)``; the last one is padded with IGNORE_INDEX targets, so every
    position is scored exactly once.
    """
    if streams < 1 or chunk_len < 1:
        raise ConfigError(f"streams and chunk_len must be >= 1, got {streams} and {chunk_len}")
    count = len(inputs)
    if count == 0:
        return TextLoss(0.0, 0)
    streams = min(streams, count)
    piece = -(-count // streams)
    padding = piece * streams - count
    padded_inputs = torch.cat([inputs, inputs.new_zeros(padding)]).reshape(streams, piece)
    padded_targets = torch.cat([targets, targets.new_full((padding,), IGNORE_INDEX)]).reshape(streams, piece)
    total, scored, state = 0.0, 0, None
    for start in range(0, piece, chunk_len):
        logits, state = forward(padded_inputs[:, start:start + chunk_len], state)
        chunk_total, chunk_count = _summed_nll(logits, padded_targets[:, start:start + chunk_len])
        total += chunk_total
        scored += chunk_count
    return TextLoss(total, scored)


def text_loss(forward: Forward, batches: Iterable[Any], *, context: str = "carry", streams: int = 16,
              chunk_len: int = 256) -> TextLoss:
    """Loss over a whole split, with the context policy of the module docstring."""
    if context not in CONTEXTS:
        raise ConfigError(f"context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    if context == "chunk":
        return chunk_nll(forward, batches)
    inputs, targets = rejoin(batches)
    return stream_nll(forward, inputs, targets, streams=streams, chunk_len=chunk_len)
