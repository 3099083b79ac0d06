"""Studio latency: what a person dragging a latent point, moving the grid slider or generating text waits for.

Measured end to end over HTTP against a real uvicorn on 127.0.0.1 (:class:`genlab.studio.server.BackgroundServer`,
the server ``genlab serve`` runs, one torch thread per request), with models of the sizes the studio is for:
the TF.js Fashion-MNIST VAE (MLP 784-512-2, latent 2; the seed's 20×20 decoder page) and the char-LSTM of the
tinyshakespeare preset (2×384). Latency does not depend on how well a model is trained, so each is trained for
two steps on a synthetic 28×28 image set / a short text, which keeps the benchmark independent of the datasets.
Target (issue 7): a dragged point or a moved slider redraws within 100 ms at the 95th percentile on this CPU.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import numpy as np

from genlab.bench import BenchContext, benchmark

POINT_REQUESTS = 200
GRID_REQUESTS = 40
STREAMS = 5
STREAM_LENGTH = 1000
TARGET_MS = 100.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _images_28(path: Path, count: int = 256, seed: int = 0) -> Path:
    """Random binary 28×28 uint8 images with labels: only their shape matters for latency."""
    rng = np.random.default_rng(seed)
    images = (rng.random((count, 28, 28)) > 0.7).astype(np.uint8) * 255
    labels = rng.integers(0, 10, size=count)
    np.savez(path, x_train=images, y_train=labels, x_test=images[:64], y_test=labels[:64])
    return path


def _train_runs(work_dir: Path) -> tuple[Path, str, str]:
    from genlab.studio.demo import tiny_text, train_tiny_run

    runs = work_dir / "runs"
    if runs.exists():
        import shutil

        shutil.rmtree(runs)
    images = _images_28(work_dir / "images28.npz")
    text = tiny_text(work_dir / "verse.txt", repeats=200)
    vae = train_tiny_run("vae", images, runs, epochs=1, extra=(
        "model.architecture=mlp", "model.hidden_sizes=512", "model.latent_dim=2", "model.likelihood=bernoulli",
        "data.binarize=none", "train.max_steps=2"))
    lstm = train_tiny_run("char-lstm", text, runs, epochs=1, extra=(
        "model.layers=384,384", "model.embedding_dim=64", "data.seq_len=64", "train.max_steps=2"))
    return runs, vae.name, lstm.name


def _timed_get(http, path: str, params: dict) -> float:
    started = time.perf_counter()
    response = http.get(path, params=params)
    response.raise_for_status()
    _ = response.content
    return (time.perf_counter() - started) * 1000.0


def _latent_latencies(http, run: str) -> tuple[list[float], list[float]]:
    rng = random.Random(0)
    http.get("/api/model", params={"run": run}).raise_for_status()  # load once; the page does the same
    points = [_timed_get(http, "/api/latent/point.png",
                         {"run": run, "x": rng.uniform(-4, 4), "y": rng.uniform(-4, 4)})
              for _ in range(POINT_REQUESTS)]
    grids = [_timed_get(http, "/api/latent/grid.png",
                        {"run": run, "size": 20, "xmin": -4 + 0.01 * i, "xmax": 4, "ymin": -4, "ymax": 4})
             for i in range(GRID_REQUESTS)]
    return points, grids


def _stream_rates(http, run: str) -> tuple[list[float], list[float]]:
    """Characters per second over whole streams, and milliseconds to the first chunk."""
    http.get("/api/model", params={"run": run}).raise_for_status()
    rates, firsts = [], []
    for seed in range(STREAMS):
        params = {"run": run, "prompt": "ROMEO:", "length": STREAM_LENGTH, "temperature": 0.8, "seed": seed}
        started = time.perf_counter()
        count, first = 0, None
        with http.stream("GET", "/api/text/stream", params=params) as response:
            response.raise_for_status()
            for chunk in response.iter_text():
                if chunk and first is None:
                    first = (time.perf_counter() - started) * 1000.0
                count += len(chunk)
        elapsed = time.perf_counter() - started
        if count != STREAM_LENGTH:
            raise RuntimeError(f"the stream sent {count} characters, expected {STREAM_LENGTH}")
        rates.append(count / elapsed)
        firsts.append(first or 0.0)
    return rates, firsts


@benchmark("studio-latency", suites=("quick", "full"),
           description="genlab serve: latent point / 20x20 grid redraw p50/p95 (ms) and text streaming chars/s")
def studio_latency(ctx: BenchContext) -> list[dict]:
    import httpx

    from genlab.studio.server import BackgroundServer

    runs, vae_run, lstm_run = _train_runs(ctx.work_dir)
    with BackgroundServer(runs, device=ctx.device) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        points, grids = _latent_latencies(http, vae_run)
        rates, firsts = _stream_rates(http, lstm_run)
    vae_model, lstm_model = "vae (mlp 784-512-2)", "char-lstm (2x384)"
    target = {"value": TARGET_MS, "source": "issue 7 target: p95 redraw <= 100 ms", "higher_is_better": False}
    records = [
        {"model": vae_model, "dataset": "synthetic 28x28", "metric": "latent point redraw p50", "unit": "ms",
         "value": round(_percentile(points, 50), 2)},
        {"model": vae_model, "dataset": "synthetic 28x28", "metric": "latent point redraw p95", "unit": "ms",
         "value": round(_percentile(points, 95), 2), "reference": target},
        {"model": vae_model, "dataset": "synthetic 28x28", "metric": "latent 20x20 grid redraw p50", "unit": "ms",
         "value": round(_percentile(grids, 50), 2)},
        {"model": vae_model, "dataset": "synthetic 28x28", "metric": "latent 20x20 grid redraw p95", "unit": "ms",
         "value": round(_percentile(grids, 95), 2), "reference": target},
        {"model": lstm_model, "dataset": "short text", "metric": "text streaming rate", "unit": "chars/s",
         "value": round(statistics.median(rates), 1)},
        {"model": lstm_model, "dataset": "short text", "metric": "text first chunk p50", "unit": "ms",
         "value": round(_percentile(firsts, 50), 2)},
    ]
    ctx.notes.append(f"over HTTP to uvicorn on 127.0.0.1, one torch thread per request; {POINT_REQUESTS} point "
                     f"and {GRID_REQUESTS} grid requests, {STREAMS} streams of {STREAM_LENGTH} characters")
    return records
