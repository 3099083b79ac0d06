"""genlab studio: a local web page to browse runs and play with trained models (``genlab serve``).

Needs the ``studio`` extra (``pip install -e ".[studio]"``: FastAPI, uvicorn). Importing this package does not
import FastAPI; :func:`create_app` and :func:`serve` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def create_app(runs_dir: str | Path, **options: Any):
    """The FastAPI app for ``runs_dir`` (see :func:`genlab.studio.app.create_app`)."""
    from genlab.studio.app import create_app as build

    return build(runs_dir, **options)


def serve(runs_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str = "cpu",
          cache_size: int = 4, threads: int | None = 1, log_level: str = "warning") -> None:
    """Serve the studio with uvicorn until interrupted. Binds to 127.0.0.1 unless told otherwise."""
    import uvicorn

    app = create_app(runs_dir, device=device, cache_size=cache_size, threads=threads)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
