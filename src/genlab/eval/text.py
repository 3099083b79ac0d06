"""Character-level language-model evaluation (nats and bits per character), as evaluation names.

The loss functions moved to :mod:`genlab.models.text_loss`, so the character LSTM uses them without importing
the eval layer; this module re-exports them under their old names.
"""

from genlab.models.text_loss import (
    CONTEXTS,
    LN2,
    Forward,
    TextLoss,
    bits_from_nats,
    chunk_nll,
    rejoin,
    stream_nll,
    text_loss,
)

__all__ = [
    "CONTEXTS",
    "LN2",
    "Forward",
    "TextLoss",
    "bits_from_nats",
    "chunk_nll",
    "rejoin",
    "stream_nll",
    "text_loss",
]
