"""Typed errors. Every error a user can cause is one of these; the CLI prints its message on one line."""


class GenlabError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class ConfigError(GenlabError, ValueError):
    """A bad configuration value, CLI argument, preset or override."""


class DataError(GenlabError):
    """A dataset that is missing, corrupt, truncated or of the wrong shape or range."""


class CheckpointError(GenlabError):
    """A checkpoint that is missing, truncated, tampered with or incompatible."""


class TrainingError(GenlabError):
    """Training stopped on purpose, e.g. because the loss became non-finite."""


class TrainingInterrupted(GenlabError):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM after writing a checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def check_config(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds: the one-line validation of config
    values and options used across genlab."""
    if not condition:
        raise ConfigError(message)
