"""Nested containers of tensors (state dicts, optimizer states, gathered metrics) mapped tensor by tensor."""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor


def map_tensors(function: Callable[[Tensor], Tensor], value: Any) -> Any:
    """``value`` with ``function`` applied to every tensor in it; dicts, lists and tuples are rebuilt around the
    results and anything else is returned as it is."""
    if isinstance(value, Tensor):
        return function(value)
    if isinstance(value, dict):
        return {key: map_tensors(function, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(function, item) for item in value)
    return value
