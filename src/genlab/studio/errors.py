"""The one error type of the studio: an HTTP status and a message the page shows as it is."""

from __future__ import annotations


class StudioError(Exception):
    """A request the studio refuses; ``status`` is a 4xx code, ``message`` says what was wrong and what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
