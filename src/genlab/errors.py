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
