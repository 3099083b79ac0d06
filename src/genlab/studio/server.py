"""Run the studio on a background thread (for tests, benchmarks and notebooks): a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class BackgroundServer:
    """``with BackgroundServer(runs_dir) as server: server.url`` — uvicorn serving the studio until the block ends.

    Binds to 127.0.0.1 on a free port; :meth:`stop` asks uvicorn to shut down and joins its thread.
    """

    def __init__(self, runs_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout_s: float = 30.0, **app_options: Any):
        import uvicorn

        from genlab.studio.app import create_app

        self.host = host
        self.port = port or free_port(host)
        self.app = create_app(runs_dir, **app_options)
        config = uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", access_log=False,
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="genlab-studio-server", daemon=True)
        self._startup_timeout_s = startup_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the studio server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
