"""genlab studio: a FastAPI app over a runs directory, serving one static page and a small JSON/PNG API.

Start it with ``genlab serve [RUNS_DIR]``. Everything is local: the page has no build step and loads nothing from
the network. Endpoints that run torch are plain ``def`` functions, so FastAPI runs them in its thread pool and the
event loop keeps answering. Every parameter is bounded; anything out of bounds is a 4xx with a JSON body
``{"detail": "..."}`` that says what was wrong. Run names are checked by :class:`~genlab.studio.runs.RunsIndex`,
so no request reads outside the runs directory.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from genlab.studio import engine
from genlab.studio.errors import StudioError
from genlab.studio.runs import RunsIndex, text_samples_tail

# Bounds of every parameter (also shown by the page's controls).
LIMITS = {
    "grid_size": (1, 30),
    "bound": (-50.0, 50.0),
    "latent_dim_index": (0, 4095),
    "z_dim": 4096,
    "samples": (1, 64),
    "sample_steps": (1, 5000),
    "chain_steps": (0, 2000),
    "chain_frames": 201,
    "interpolation_steps": (2, 32),
    "example_index": (0, engine.MAX_EXAMPLES - 1),
    "text_length": (1, 5000),
    "prompt_chars": 2000,
    "temperature": (0.0, 5.0),
    "top_k": (1, 1000),
    "label": (0, 999),
    "hopfield_steps": (1, 1000),
    "hopfield_units": 16384,
    "noise": (0.0, 1.0),
    "seed": (0, 2**31 - 1),
}
_STATIC = resources.files("genlab.studio") / "static"
_NO_STORE = {"Cache-Control": "no-store"}

RunName = Annotated[str, Query(min_length=1, max_length=512, description="run name from /api/runs")]
Seed = Annotated[int, Query(ge=LIMITS["seed"][0], le=LIMITS["seed"][1])]
Bound = Annotated[float, Query(ge=LIMITS["bound"][0], le=LIMITS["bound"][1], allow_inf_nan=False)]
Dim = Annotated[int, Query(ge=LIMITS["latent_dim_index"][0], le=LIMITS["latent_dim_index"][1])]
Index = Annotated[int, Query(ge=LIMITS["example_index"][0], le=LIMITS["example_index"][1])]
Label = Annotated[int | None, Query(ge=LIMITS["label"][0], le=LIMITS["label"][1])]
InterpolationSteps = Annotated[int, Query(ge=LIMITS["interpolation_steps"][0], le=LIMITS["interpolation_steps"][1])]
ZValue = Annotated[float, Field(ge=LIMITS["bound"][0], le=LIMITS["bound"][1], allow_inf_nan=False)]


class Studio:
    """The state behind one app: the runs index, the model LRU and a scratch folder for rendered curves."""

    def __init__(self, runs_dir: Path, *, device: str = "cpu", cache_size: int = 4):
        self.runs = RunsIndex(Path(runs_dir))
        self.models = engine.ModelCache(cache_size, device)
        self.scratch = Path(tempfile.mkdtemp(prefix="genlab-studio-"))
        # matplotlib's pyplot is not thread-safe; curve rendering is rare, so one lock is enough.
        self._plot_lock = threading.Lock()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def loaded(self, name: str) -> engine.LoadedRun:
        return self.models.get(self.runs.resolve(name))

    def curves(self, name: str) -> Path:
        """The run's training curves as a PNG (re-rendered when metrics.jsonl changes)."""
        from genlab.errors import GenlabError
        from genlab.viz.plots import plot_metrics

        run = self.runs.resolve(name)
        metrics = run.path / "metrics.jsonl"
        if not metrics.is_file():
            raise StudioError(404, f"run {name} has no metrics.jsonl yet")
        stamp = metrics.stat().st_mtime_ns
        key = hashlib.sha256(f"{run.path}\0{stamp}".encode()).hexdigest()[:24]
        out = self.scratch / f"curves-{key}.png"
        with self._plot_lock:
            if not out.is_file():
                try:
                    plot_metrics(metrics, out)
                except GenlabError as exc:
                    raise StudioError(404, f"run {name}: {exc}") from None
        return out


def create_app(runs_dir: str | Path, *, device: str = "cpu", cache_size: int = 4,
               threads: int | None = 1) -> FastAPI:
    """The studio app for ``runs_dir``; models load onto ``device``, at most ``cache_size`` kept in memory.

    ``threads`` sets torch's intra-op threads for the process (None leaves them alone). Requests already run in
    parallel on the server's thread pool, and the studio's models are small, so one thread per request is the
    fast choice: on a busy 2-core machine two intra-op threads per request made a Langevin chain 70x slower.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (or None), got {threads}")
        import torch

        torch.set_num_threads(threads)
    studio = Studio(Path(runs_dir), device=device, cache_size=cache_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        studio.close()

    app = FastAPI(title="genlab studio", lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.studio = studio
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    _add_page_routes(app)
    _add_run_routes(app, studio)
    _add_model_routes(app, studio)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=_NO_STORE)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422, headers=_NO_STORE)


# ---------------------------------------------------------------------- the page


def _add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = (_STATIC / "index.html").read_text(encoding="utf-8")
        return Response(page, media_type="text/html; charset=utf-8", headers=_NO_STORE)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/api/limits")
    def limits() -> dict[str, Any]:
        return LIMITS


# ---------------------------------------------------------------------- runs


def _add_run_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/runs")
    def list_runs() -> dict[str, Any]:
        summaries = [studio.runs.summary(studio.runs.resolve(name)) for name in studio.runs.names()]
        return {"root": str(studio.runs.root), "runs": summaries}

    @app.get("/api/run")
    def run_detail(run: RunName) -> dict[str, Any]:
        from genlab.config import load_yaml

        ref = studio.runs.resolve(run)
        summary = dict(studio.runs.summary(ref))
        try:
            summary["config"] = load_yaml(ref.path / "config.yaml")
        except Exception as exc:  # a broken config.yaml is shown, not fatal for the listing
            summary["config"] = {"error": str(exc)}
        summary["text_samples"] = text_samples_tail(ref)
        return summary

    @app.get("/api/run/curves.png")
    def run_curves(run: RunName) -> FileResponse:
        return FileResponse(studio.curves(run), media_type="image/png", headers=_NO_STORE)

    @app.get("/api/run/file")
    def run_file(run: RunName, file: Annotated[str, Query(min_length=1, max_length=140)]) -> FileResponse:
        path = studio.runs.sample_file(studio.runs.resolve(run), file)
        media = "image/gif" if path.suffix == ".gif" else "image/png"
        return FileResponse(path, media_type=media, headers=_NO_STORE)


# ---------------------------------------------------------------------- models


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers=_NO_STORE)


def _add_model_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/model")
    def model_info(run: RunName) -> dict[str, Any]:
        """Load the run's model and describe what the panels need (latent size, units, labels, vocabulary)."""
        loaded = studio.loaded(run)
        return _describe(loaded)

    @app.get("/api/sample.png")
    def sample_png(run: RunName, n: Annotated[int, Query(ge=1, le=LIMITS["samples"][1])] = 16, seed: Seed = 0,
                   steps: Annotated[int | None, Query(ge=1, le=LIMITS["sample_steps"][1])] = None) -> Response:
        return _png(engine.sample_grid(studio.loaded(run), n=n, seed=seed, steps=steps))

    @app.get("/api/example")
    def example(run: RunName, index: Index = 0,
                split: Literal["test", "train"] = "test") -> dict[str, Any]:
        return engine.example_image(studio.loaded(run), split=split, index=index)

    @app.get("/api/latent/grid.png")
    def latent_grid(run: RunName, size: Annotated[int, Query(ge=1, le=LIMITS["grid_size"][1])] = 20,
                    xmin: Bound = -4.0, xmax: Bound = 4.0, ymin: Bound = -4.0, ymax: Bound = 4.0,
                    dx: Dim = 0, dy: Dim = 1) -> Response:
        if not (xmin < xmax and ymin < ymax):
            raise StudioError(400, f"bounds must satisfy xmin < xmax and ymin < ymax, got x [{xmin}, {xmax}], "
                                   f"y [{ymin}, {ymax}]")
        return _png(engine.latent_grid(studio.loaded(run), size=size, bounds=(xmin, xmax, ymin, ymax),
                                       dims=(dx, dy)))

    @app.get("/api/latent/point.png")
    def latent_point(run: RunName, x: Bound = 0.0, y: Bound = 0.0, dx: Dim = 0, dy: Dim = 1) -> Response:
        return _png(engine.latent_point(studio.loaded(run), x=x, y=y, dims=(dx, dy)))

    @app.get("/api/latent/interpolate")
    def latent_interpolate(run: RunName, a: Index = 0, b: Index = 1, steps: InterpolationSteps = 10) -> dict:
        return engine.interpolate(studio.loaded(run), a=a, b=b, steps=steps)

    @app.get("/api/gan/info")
    def gan_info(run: RunName, seed: Seed = 0) -> dict[str, Any]:
        """z size, prior, slider range and classes of a GAN, and a z drawn from its prior with ``seed``."""
        return engine.gan_info(studio.loaded(run), seed=seed)

    @app.post("/api/gan/generate")
    def gan_generate(run: Annotated[str, Body(min_length=1, max_length=512)],
                     z: Annotated[list[ZValue], Body(min_length=1, max_length=LIMITS["z_dim"])],
                     label: Annotated[int | None, Body(ge=LIMITS["label"][0], le=LIMITS["label"][1])] = None
                     ) -> Response:
        """PNG of the generator's image for one z (and, for conditional models, one class label)."""
        return _png(engine.gan_image(studio.loaded(run), z=z, label=label))

    @app.get("/api/gan/interpolate")
    def gan_interpolate(run: RunName, seed: Seed = 0, steps: InterpolationSteps = 10,
                        label: Label = None) -> dict[str, Any]:
        """A strip of ``steps`` images slerped between two latents drawn from the prior with ``seed``."""
        return engine.gan_interpolate(studio.loaded(run), seed=seed, steps=steps, label=label)

    @app.get("/api/text/stream")
    def text_stream(run: RunName, prompt: Annotated[str, Query(max_length=LIMITS["prompt_chars"])] = "",
                    length: Annotated[int, Query(ge=1, le=LIMITS["text_length"][1])] = 300,
                    temperature: Annotated[float, Query(ge=0.0, le=LIMITS["temperature"][1],
                                                        allow_inf_nan=False)] = 1.0,
                    top_k: Annotated[int | None, Query(ge=1, le=LIMITS["top_k"][1])] = None,
                    seed: Seed = 0) -> StreamingResponse:
        stream = engine.text_stream(studio.loaded(run), prompt=prompt, length=length, temperature=temperature,
                                    top_k=top_k, seed=seed)
        headers = {**_NO_STORE, "X-Content-Type-Options": "nosniff"}
        return StreamingResponse(iter(stream), media_type="text/plain; charset=utf-8", headers=headers)

    @app.get("/api/chain")
    def run_chain(run: RunName, n: Annotated[int, Query(ge=1, le=LIMITS["samples"][1])] = 8,
                  steps: Annotated[int, Query(ge=0, le=LIMITS["chain_steps"][1])] = 100,
                  every: Annotated[int, Query(ge=1, le=LIMITS["chain_steps"][1])] = 5,
                  start: Literal["noise", "test"] = "noise", index: Index = 0,
                  label: Annotated[int | None, Query(ge=0, le=LIMITS["label"][1])] = None,
                  seed: Seed = 0) -> dict[str, Any]:
        frames = steps // every + 1
        if frames > LIMITS["chain_frames"]:
            raise StudioError(400, f"steps={steps} with every={every} gives {frames} frames; at most "
                                   f"{LIMITS['chain_frames']} are sent: raise every to {-(-steps // 200)} or more")
        return engine.chain(studio.loaded(run), n=n, steps=steps, every=every, start=start, index=index,
                            label=label, seed=seed)

    @app.get("/api/hopfield/pattern")
    def hopfield_pattern(run: RunName, index: Index = 0, split: Literal["test", "train"] = "train",
                         noise: Annotated[float, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0,
                         seed: Seed = 0) -> dict[str, Any]:
        loaded = studio.loaded(run)
        units = engine.hopfield_pattern(loaded, split=split, index=index)
        corrupted = engine.corrupt(units, noise=noise, seed=seed)
        return {"pattern": engine.signs_to_text(units), "state": engine.signs_to_text(corrupted),
                "units": len(units), "shape": engine.hopfield_shape(loaded)}

    @app.post("/api/hopfield/recall")
    def hopfield_recall(run: Annotated[str, Body(min_length=1, max_length=512)],
                        state: Annotated[str, Body(min_length=1, max_length=LIMITS["hopfield_units"],
                                                   pattern=r"^[+-]+$")],
                        steps: Annotated[int, Body(ge=1, le=LIMITS["hopfield_steps"][1])] = 10,
                        mode: Annotated[Literal["async", "sync"], Body()] = "async",
                        seed: Annotated[int, Body(ge=LIMITS["seed"][0], le=LIMITS["seed"][1])] = 0
                        ) -> dict[str, Any]:
        units = [1 if char == "+" else -1 for char in state]
        return engine.hopfield_recall(studio.loaded(run), state=units, steps=steps, mode=mode, seed=seed)


def _describe(loaded: engine.LoadedRun) -> dict[str, Any]:
    import inspect

    from genlab.studio.runs import model_capabilities

    model = loaded.model
    info: dict[str, Any] = {"run": loaded.run.name, "model": loaded.model_name, "checkpoint": loaded.checkpoint,
                            "kind": getattr(model, "kind", "image"), "capabilities": model_capabilities(type(model)),
                            "parameters": sum(p.numel() for p in model.parameters()),
                            "value_range": list(loaded.value_range), "dataset": loaded.config.data.dataset}
    if "latent" in info["capabilities"]:
        info["latent_dim"] = engine.latent_dim(loaded)
    if "chain" in info["capabilities"]:
        parameters = inspect.signature(model.sample_chain).parameters
        info["chain_label"] = "label" in parameters
        info["num_labels"] = engine.num_labels(loaded) if info["chain_label"] else 0
    if "hopfield" in info["capabilities"]:
        info["units"] = engine.hopfield_size(loaded)
        info["shape"] = engine.hopfield_shape(loaded)
    if "text" in info["capabilities"]:
        info["vocab_size"] = engine.vocab_size(loaded)
    if "gan" in info["capabilities"]:
        info["z_dim"] = int(model.config.z_dim)
        info["conditional"] = bool(model.conditional)
    return info


__all__ = ["LIMITS", "Studio", "create_app"]
