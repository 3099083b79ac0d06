"""Streaming generated text to the studio's HTTP response: :class:`TextStream` runs ``model.stream`` in its own
thread and hands the characters over in chunks, abandoning a stream whose reader went away.

Split out of :mod:`genlab.studio.engine`, whose ``text_stream`` starts one (and which re-exports these names).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

from genlab.studio.errors import StudioError


_END = object()


# A stream whose reader has not taken a character for this long is abandoned (the client went away).
STALLED_READER_S = 30.0


class TextStream:
    """Runs ``model.stream`` in its own thread and hands its characters to the HTTP response in chunks.

    One thread owns the whole generation, so whatever grad mode the model's generator sets stays in that thread
    (the response is iterated from a pool of worker threads). Chunks are whatever has been produced since the
    last one, so a slow reader gets bigger chunks and a fast one gets characters as they come. :meth:`close`
    (called when the client goes away) stops the generation at the next character.
    """

    def __init__(self, loaded: Any, pieces_factory):
        self._queue: queue.Queue = queue.Queue(maxsize=4096)
        self._stop = threading.Event()
        self._loaded = loaded
        self._thread = threading.Thread(target=self._produce, args=(pieces_factory,), daemon=True,
                                        name=f"genlab-stream-{loaded.run.name}")
        self._thread.start()
        self._first = self._queue.get()
        if isinstance(self._first, BaseException):
            self._raise(self._first)

    def _produce(self, pieces_factory) -> None:
        try:
            with torch.no_grad():
                for piece in pieces_factory():
                    waited = 0.0
                    while not self._stop.is_set():
                        try:
                            self._queue.put(piece, timeout=0.1)
                            break
                        except queue.Full:
                            waited += 0.1
                            if waited > STALLED_READER_S:  # nobody reads any more: stop generating
                                self._stop.set()
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # handed to the reader, which turns it into an HTTP error or a log line
            self._queue.put(exc)
            return
        self._queue.put(_END)

    def _raise(self, exc: BaseException):
        from genlab.errors import GenlabError

        if isinstance(exc, GenlabError):
            raise StudioError(400, f"{self._loaded.model_name}.stream: {exc}") from None
        raise exc

    def __iter__(self) -> Iterator[str]:
        item = self._first
        try:
            while item is not _END:
                if isinstance(item, BaseException):
                    # Headers are sent already; the page sees the stream end early and the server logs why.
                    raise item
                chunk = [item]
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                        break
                    if item is _END or isinstance(item, BaseException):
                        break
                    chunk.append(item)
                yield "".join(chunk)
                if item is None:
                    item = self._queue.get()
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
