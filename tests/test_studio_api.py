"""The studio's HTTP API against tiny runs trained through the real engine (genlab.training.run.train).

Each family's run is trained once per session, on first use; a family whose module has not landed is skipped
with the registry's reason. Correctness is checked against the models themselves: the latent grid is decode(z)
at the cell centres, streamed text is model.stream's text, chain and recall frames match the capability calls.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the studio extra is not installed: pip install -e '.[studio]'")
pytest.importorskip("httpx", reason="the studio extra is not installed: pip install -e '.[studio]'")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns about its own httpx use, not about genlab
    from fastapi.testclient import TestClient

from PIL import Image

from genlab import registry
from genlab.errors import GenlabError
from genlab.studio import create_app
from genlab.studio.demo import bars_dataset, tiny_text, train_tiny_run
from genlab.studio.engine import ModelCache
from genlab.studio.runs import RunsIndex
from genlab.training.checkpoint import load_model

# family -> (dataset kind, epochs, extra overrides); tiny and seeded, a few seconds each.
FAMILIES = {
    "rbm": ("image", 1, ()),
    "vae": ("image", 3, ("optim.lr=0.01",)),
    "char-lstm": ("text", 3, ("optim.lr=0.01",)),
    "hopfield": ("image", 1, ()),
    "ebm": ("image", 1, ()),
    "dbn": ("image", 2, ()),  # one greedy epoch per RBM of the 64-16-16 stack
    # GANs: z_dim 20 > the page's 16 sliders (normal prior); the conditional one on the seed's uniform prior.
    "dcgan": ("image", 3, ("optim.lr=0.005", "model.g_width=8", "model.d_width=8", "model.z_dim=20")),
    "cgan": ("image", 3, ("optim.lr=0.005", "model.g_width=8", "model.d_width=8", "model.z_dim=6",
                          "model.prior=uniform")),
}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The studio's own setting (create_app(threads=1)), restored after conftest's per-test default."""
    torch.set_num_threads(1)
    yield


class StudioRuns:
    """A runs directory filled on demand with one tiny run per family (shared by the API and browser tests)."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.images = bars_dataset(base / "bars.npz")
        self.text = tiny_text(base / "verse.txt")
        self._names: dict[str, str] = {}

    def get(self, family: str) -> str:
        """The run name of ``family``'s tiny run; skips the test when the family is not registered yet."""
        if family not in self._names:
            try:
                registry.get(family)
            except GenlabError as exc:
                pytest.skip(f"model family {family!r} is not available yet: {exc}")
            kind, epochs, extra = FAMILIES[family]
            dataset = self.text if kind == "text" else self.images
            run_dir = train_tiny_run(family, dataset, self.root, epochs=epochs, extra=extra)
            self._names[family] = run_dir.relative_to(self.root).as_posix()
        return self._names[family]

    def path(self, family: str) -> Path:
        return self.root / self.get(family)


_SHARED: dict[str, StudioRuns] = {}


def shared_runs(tmp_path_factory) -> StudioRuns:
    """One StudioRuns per test session, whichever studio test module asks first."""
    if "runs" not in _SHARED:
        _SHARED["runs"] = StudioRuns(tmp_path_factory.mktemp("studio"))
    return _SHARED["runs"]


@pytest.fixture(scope="session")
def studio_runs(tmp_path_factory) -> StudioRuns:
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def client(studio_runs):
    with TestClient(create_app(studio_runs.root)) as test_client:
        yield test_client


def png_array(content: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(content)) as picture:
        return np.asarray(picture.convert("L"), dtype=np.int16)


def data_url_array(url: str) -> np.ndarray:
    import base64

    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return png_array(base64.b64decode(url[len(prefix):]))


def to_uint8(images: torch.Tensor, value_range=(0.0, 1.0)) -> np.ndarray:
    low, high = value_range
    scaled = ((images.float() - low) / (high - low)).clamp(0, 1)
    return (scaled.numpy() * 255.0 + 0.5).astype(np.int16)


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word in detail, detail


# ---------------------------------------------------------------------- pictures


@pytest.mark.parametrize("count, ncol, padding, channels", [(400, 20, 0, 1), (7, 3, 1, 1), (5, 2, 2, 3), (1, 1, 0, 1)])
def test_fast_tiles_and_png_match_make_grid_and_pillow(count, ncol, padding, channels):
    from genlab.studio.engine import encode_png, tile_images
    from genlab.image_files import make_grid

    images = torch.rand(count, channels, 9, 7, generator=torch.Generator().manual_seed(count))
    tiles = tile_images(images, ncol=ncol, padding=padding)
    reference = make_grid(images, ncol=ncol, padding=padding)
    assert tiles.shape == reference.shape and np.abs(tiles.astype(int) - reference).max() <= 1
    for level in (0, 1):
        with Image.open(io.BytesIO(encode_png(tiles, level=level))) as decoded:
            assert np.array_equal(np.asarray(decoded), tiles)


# ---------------------------------------------------------------------- the page


def test_page_and_static_files_are_served_and_load_nothing_from_the_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js">' in page.text
    for name in ("app.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


# ---------------------------------------------------------------------- runs


def test_runs_listing_has_models_datasets_metrics_and_pictures(client, studio_runs):
    names = {family: studio_runs.get(family) for family in ("rbm", "vae")}
    listing = client.get("/api/runs").json()
    assert Path(listing["root"]) == studio_runs.root.resolve()
    by_name = {run["name"]: run for run in listing["runs"]}
    rbm, vae = by_name[names["rbm"]], by_name[names["vae"]]
    assert (rbm["model"], rbm["dataset"], vae["model"]) == ("rbm", "bars", "vae")
    assert "latent" in vae["capabilities"] and "latent" not in rbm["capabilities"]
    assert rbm["checkpoint"].startswith("step-") and rbm["step"] > 0
    assert rbm["val"] and all(isinstance(v, float) for v in rbm["val"].values())
    sample = next(s for s in rbm["samples"] if s["file"].endswith(".png"))
    picture = client.get("/api/run/file", params={"run": names["rbm"], "file": sample["file"]})
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    curves = client.get("/api/run/curves.png", params={"run": names["rbm"]})
    assert curves.status_code == 200 and curves.content.startswith(b"\x89PNG")
    detail = client.get("/api/run", params={"run": names["rbm"]}).json()
    assert detail["config"]["model_name"] == "rbm"


def test_eval_json_metrics_are_listed(client, studio_runs, tmp_path):
    run_dir = studio_runs.path("rbm")
    (run_dir / "eval.json").write_text(json.dumps({"model": "rbm", "test_loglik_nats": -12.5, "bad": None}))
    try:
        run = next(r for r in client.get("/api/runs").json()["runs"] if r["name"] == studio_runs.get("rbm"))
        assert run["eval"] == {"test_loglik_nats": -12.5}
    finally:
        (run_dir / "eval.json").unlink()


@pytest.mark.parametrize("name", ["../x", "..", "/etc/passwd", "a/../b", "./runs", "runs\\..\\x", "a//b", "",
                                  ".hidden", "x" * 600, "%2e%2e/x", "~root"])
def test_run_names_cannot_escape_the_runs_directory(client, name):
    response = client.get("/api/run", params={"run": name})
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["detail"], str)


def test_a_symlink_to_a_run_inside_the_runs_directory_lists_that_run_once_by_its_real_name(client, studio_runs):
    real = studio_runs.get("rbm")
    link = studio_runs.root / "alias-of-rbm"
    os.symlink(studio_runs.path("rbm"), link)
    try:
        names = [r["name"] for r in client.get("/api/runs").json()["runs"]]
        assert names.count(real) == 1 and "alias-of-rbm" not in names
    finally:
        link.unlink()


def test_symlinks_out_of_the_runs_directory_are_refused_and_not_listed(client, studio_runs, tmp_path):
    outside = tmp_path / "outside-run"
    outside.mkdir()
    (outside / "config.yaml").write_text("model_name: rbm\n")
    link = studio_runs.root / "escape"
    os.symlink(outside, link)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    sample_link = studio_runs.path("rbm") / "samples" / "leak.png"
    os.symlink(secret, sample_link)
    try:
        assert_error(client.get("/api/run", params={"run": "escape"}), 404, "no run named")
        assert "escape" not in [r["name"] for r in client.get("/api/runs").json()["runs"]]
        assert_error(client.get("/api/model", params={"run": "escape"}), 404)
        run = studio_runs.get("rbm")
        assert_error(client.get("/api/run/file", params={"run": run, "file": "leak.png"}), 404)
        assert_error(client.get("/api/run/file", params={"run": run, "file": "../config.yaml"}), 400)
        assert_error(client.get("/api/run/file", params={"run": run, "file": "/etc/passwd"}), 400)
    finally:
        link.unlink()
        sample_link.unlink()


def test_nested_runs_are_found_and_served(tmp_path, studio_runs):
    group = tmp_path / "root" / "sweep"
    group.mkdir(parents=True)
    os.symlink(studio_runs.path("rbm"), group / "inside-link")  # resolves outside this root: refused
    index = RunsIndex(tmp_path / "root")
    assert index.names() == []
    import shutil

    shutil.copytree(studio_runs.path("rbm"), group / "rbm-copy")
    assert index.names() == ["sweep/rbm-copy"]
    assert index.resolve("sweep/rbm-copy").path == (group / "rbm-copy").resolve()


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("path, params, word", [
    ("/api/latent/grid.png", {"size": 0}, "size"),
    ("/api/latent/grid.png", {"size": 31}, "size"),
    ("/api/latent/grid.png", {"xmin": "nan"}, "xmin"),
    ("/api/latent/grid.png", {"xmax": "inf"}, "xmax"),
    ("/api/latent/grid.png", {"ymin": -51}, "ymin"),
    ("/api/latent/grid.png", {"size": "ten"}, "size"),
    ("/api/latent/point.png", {"x": 1e9}, "x"),
    ("/api/latent/interpolate", {"steps": 1}, "steps"),
    ("/api/latent/interpolate", {"a": 512}, "a"),
    ("/api/sample.png", {"n": 65}, "n"),
    ("/api/sample.png", {"n": 0}, "n"),
    ("/api/sample.png", {"steps": 5001}, "steps"),
    ("/api/sample.png", {"seed": -1}, "seed"),
    ("/api/text/stream", {"length": 0}, "length"),
    ("/api/text/stream", {"length": 5001}, "length"),
    ("/api/text/stream", {"temperature": -0.1}, "temperature"),
    ("/api/text/stream", {"temperature": 5.5}, "temperature"),
    ("/api/text/stream", {"top_k": 0}, "top_k"),
    ("/api/text/stream", {"prompt": "x" * 2001}, "prompt"),
    ("/api/chain", {"steps": 2001}, "steps"),
    ("/api/chain", {"every": 0}, "every"),
    ("/api/chain", {"n": 65}, "n"),
    ("/api/chain", {"start": "elsewhere"}, "start"),
    ("/api/chain", {"label": -1}, "label"),
    ("/api/hopfield/pattern", {"noise": 1.5}, "noise"),
    ("/api/example", {"split": "validation"}, "split"),
    ("/api/gan/info", {"seed": -1}, "seed"),
    ("/api/gan/interpolate", {"steps": 1}, "steps"),
    ("/api/gan/interpolate", {"steps": 33}, "steps"),
    ("/api/gan/interpolate", {"label": -1}, "label"),
    ("/api/gan/interpolate", {"seed": "x"}, "seed"),
])
def test_out_of_bounds_parameters_are_422_json_errors(client, studio_runs, path, params, word):
    response = client.get(path, params={"run": studio_runs.get("rbm"), **params})
    assert_error(response, 422, word)


def test_bad_combinations_are_400_json_errors(client, studio_runs):
    vae = studio_runs.get("vae")
    assert_error(client.get("/api/latent/grid.png", params={"run": vae, "xmin": 2, "xmax": 1}), 400, "xmin < xmax")
    assert_error(client.get("/api/latent/grid.png", params={"run": vae, "dx": 0, "dy": 5}), 400, "latent_dim=2")
    assert_error(client.get("/api/latent/grid.png", params={"run": vae, "dx": 1, "dy": 1}), 400, "different")
    assert_error(client.get("/api/latent/interpolate", params={"run": vae, "a": 200}), 400, "out of range")
    assert_error(client.get("/api/chain", params={"run": studio_runs.get("rbm"), "steps": 1000, "every": 1}), 400,
                 "every")
    bad_body = client.post("/api/hopfield/recall", json={"run": vae, "state": "+-x", "steps": 2})
    assert_error(bad_body, 422, "state")
    assert_error(client.post("/api/hopfield/recall", json={"run": vae, "state": "+-", "steps": 0}), 422, "steps")


def test_a_model_without_the_capability_is_a_4xx_saying_so(client, studio_runs):
    rbm, vae = studio_runs.get("rbm"), studio_runs.get("vae")
    assert_error(client.get("/api/latent/grid.png", params={"run": rbm}), 400, "encode()", "decode()")
    assert_error(client.get("/api/text/stream", params={"run": vae}), 400, "stream()")
    assert_error(client.get("/api/chain", params={"run": vae}), 400, "sample_chain()")
    assert_error(client.post("/api/hopfield/recall", json={"run": vae, "state": "+-"}), 400, "recall()")
    assert_error(client.get("/api/hopfield/pattern", params={"run": vae}), 400, "recall()")
    for response in (client.get("/api/gan/info", params={"run": vae}),
                     client.post("/api/gan/generate", json={"run": vae, "z": [0.0, 0.0]}),
                     client.get("/api/gan/interpolate", params={"run": vae})):
        assert_error(response, 400, "generate()", "sample_z()", "the GAN panel")


def test_a_run_without_a_checkpoint_is_a_409(client, studio_runs):
    pending = studio_runs.root / "rbm-pending"
    pending.mkdir()
    (pending / "config.yaml").write_text((studio_runs.path("rbm") / "config.yaml").read_text())
    try:
        assert_error(client.get("/api/model", params={"run": "rbm-pending"}), 409, "no checkpoints")
        run = next(r for r in client.get("/api/runs").json()["runs"] if r["name"] == "rbm-pending")
        assert run["checkpoint"] is None and "no checkpoint" in run["error"]
    finally:
        (pending / "config.yaml").unlink()
        pending.rmdir()


# ---------------------------------------------------------------------- VAE


def test_latent_grid_is_decode_at_the_cell_centres(client, studio_runs):
    run = studio_runs.get("vae")
    model, _ = load_model(studio_runs.path("vae"))
    size, bounds = 5, (-3.0, 1.0, -2.0, 2.0)
    response = client.get("/api/latent/grid.png", params={"run": run, "size": size, "xmin": bounds[0],
                                                          "xmax": bounds[1], "ymin": bounds[2], "ymax": bounds[3]})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    grid = png_array(response.content)
    height, width = model.config.input_shape[1:]
    assert grid.shape == (size * height, size * width)
    for row, col in [(0, 0), (0, size - 1), (size - 1, 0), (2, 3)]:
        x = bounds[0] + (col + 0.5) / size * (bounds[1] - bounds[0])
        y = bounds[3] - (row + 0.5) / size * (bounds[3] - bounds[2])  # the top row is ymax
        with torch.no_grad():
            expected = to_uint8(model.decode(torch.tensor([[x, y]]))[0, 0])
        tile = grid[row * height:(row + 1) * height, col * width:(col + 1) * width]
        assert np.abs(tile - expected).max() <= 1


def test_latent_point_and_interpolation_match_the_model(client, studio_runs):
    run = studio_runs.get("vae")
    model, _ = load_model(studio_runs.path("vae"))
    point = png_array(client.get("/api/latent/point.png", params={"run": run, "x": 1.5, "y": -0.5}).content)
    with torch.no_grad():
        assert np.abs(point - to_uint8(model.decode(torch.tensor([[1.5, -0.5]]))[0, 0])).max() <= 1
    data = client.get("/api/latent/interpolate", params={"run": run, "a": 3, "b": 7, "steps": 6}).json()
    example = client.get("/api/example", params={"run": run, "index": 3}).json()
    assert np.allclose(data["mu_a"], example["mu"], atol=1e-5)
    with torch.no_grad():
        image = torch.from_numpy(data_url_array(example["image"]).astype(np.float32) / 255.0)[None, None]
        mu, _ = model.encode(image)
    assert np.allclose(mu[0].numpy(), data["mu_a"], atol=1e-4)
    strip = data_url_array(data["image"])
    assert strip.shape[1] == 1 + (6 + 2) * (8 + 1)  # originals + 6 decoded tiles of 8 px, 1 px padding


# ---------------------------------------------------------------------- text


def test_streamed_text_is_the_models_stream(client, studio_runs):
    run = studio_runs.get("char-lstm")
    model, _ = load_model(studio_runs.path("char-lstm"))
    params = {"run": run, "prompt": "ROMEO:", "length": 300, "temperature": 0.7, "top_k": 5, "seed": 11}
    with client.stream("GET", "/api/text/stream", params=params) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        chunks = list(response.iter_text())
    text = "".join(chunks)
    generator = torch.Generator().manual_seed(11)
    expected = "".join(model.stream(prompt="ROMEO:", length=300, temperature=0.7, top_k=5, generator=generator))
    assert text == expected and len(text) == 300


def test_a_prompt_outside_the_vocabulary_is_a_400_before_streaming(client, studio_runs):
    response = client.get("/api/text/stream", params={"run": studio_runs.get("char-lstm"), "prompt": "ROMEO Ω"})
    assert_error(response, 400, "Ω")


# ---------------------------------------------------------------------- chains


@pytest.mark.parametrize("family", ["ebm", "rbm", "dbn"])
def test_chain_frames_follow_sample_chain(client, studio_runs, family):
    run = studio_runs.get(family)
    model, config = load_model(studio_runs.path(family))
    if not hasattr(model, "sample_chain"):
        assert_error(client.get("/api/chain", params={"run": run}), 400, "sample_chain()")
        pytest.skip(f"{family} has no sample_chain yet (the studio answers 400, checked)")
    data = client.get("/api/chain", params={"run": run, "n": 3, "steps": 20, "every": 5, "start": "test",
                                            "index": 4}).json()
    assert len(data["frames"]) == 20 // 5 + 1 and data["steps"] == [0, 5, 10, 15, 20]
    example = client.get("/api/example", params={"run": run, "index": 4}).json()
    first = data_url_array(data["frames"][0])
    tile = data_url_array(example["image"])
    # Frame 0 is the start: three copies of test image 4 (1 px padding around 8x8 tiles).
    for copy in range(3):
        left = 1 + copy * 9
        assert np.abs(first[1:9, left:left + 8] - tile).max() <= 1
    noise = client.get("/api/chain", params={"run": run, "n": 2, "steps": 10, "every": 10, "seed": 3}).json()
    assert len(noise["frames"]) == 2


def test_dbn_chain_with_a_clamped_label(client, studio_runs):
    run = studio_runs.get("dbn")
    info = client.get("/api/model", params={"run": run}).json()
    if not info.get("chain_label"):
        pytest.skip("this DBN's sample_chain takes no label")
    response = client.get("/api/chain", params={"run": run, "n": 2, "steps": 10, "every": 5, "label": 1})
    assert response.status_code == 200, response.text
    assert_error(client.get("/api/chain", params={"run": run, "label": 999}), 422, "out of range")


def test_a_label_for_a_chain_that_takes_none_is_a_422(client, studio_runs):
    # Was an HTTP 500 (the RBM's sample_chain got an unexpected keyword).
    assert_error(client.get("/api/chain", params={"run": studio_runs.get("rbm"), "label": 3}), 422, "takes no label")


# ---------------------------------------------------------------------- Hopfield


def test_hopfield_recall_frames_and_energies_match_the_model(client, studio_runs):
    run = studio_runs.get("hopfield")
    model, _ = load_model(studio_runs.path("hopfield"))
    pattern = client.get("/api/hopfield/pattern", params={"run": run, "index": 0, "noise": 0.2, "seed": 1}).json()
    assert pattern["units"] == 64 and pattern["shape"] == [8, 8]
    flipped = sum(a != b for a, b in zip(pattern["pattern"], pattern["state"]))
    assert 0 < flipped < 64
    data = client.post("/api/hopfield/recall", json={"run": run, "state": pattern["state"], "steps": 4,
                                                     "mode": "async", "seed": 2}).json()
    assert len(data["frames"]) == 5 and len(data["energies"]) == 5 and data["frames"][0] == pattern["state"]
    states = torch.tensor([[1.0 if c == "+" else -1.0 for c in frame] for frame in data["frames"]])
    assert np.allclose(model.energy(states).numpy(), data["energies"], atol=1e-4)
    assert all(b <= a + 1e-6 for a, b in zip(data["energies"], data["energies"][1:]))  # async never climbs


# ---------------------------------------------------------------------- GAN


def gan_generate(client, run: str, z, label=None):
    body = {"run": run, "z": z} if label is None else {"run": run, "z": z, "label": label}
    return client.post("/api/gan/generate", json=body)


def test_gan_runs_have_the_gan_capability(client, studio_runs):
    names = {family: studio_runs.get(family) for family in ("dcgan", "cgan", "vae")}
    by_name = {run["name"]: run for run in client.get("/api/runs").json()["runs"]}
    assert {"gan", "sample"} <= set(by_name[names["dcgan"]]["capabilities"])
    assert "gan" in by_name[names["cgan"]]["capabilities"] and "gan" not in by_name[names["vae"]]["capabilities"]
    info = client.get("/api/model", params={"run": names["cgan"]}).json()
    assert (info["z_dim"], info["conditional"]) == (6, True)
    sample = client.get("/api/sample.png", params={"run": names["dcgan"], "n": 4})
    assert sample.status_code == 200 and png_array(sample.content).shape == (16, 16)


@pytest.mark.parametrize("family, z_dim, prior, bounds, classes", [
    ("dcgan", 20, "normal", [-3.0, 3.0], 0), ("cgan", 6, "uniform", [-1.0, 1.0], 4)])
def test_gan_info_is_the_prior_and_a_seeded_z_from_it(client, studio_runs, family, z_dim, prior, bounds, classes):
    run = studio_runs.get(family)
    model, _ = load_model(studio_runs.path(family))
    info = client.get("/api/gan/info", params={"run": run, "seed": 5}).json()
    assert (info["z_dim"], info["prior"], info["range"]) == (z_dim, prior, bounds)
    assert (info["conditional"], info["num_classes"]) == (classes > 0, classes)
    assert info["range"] == list(model.prior_range()) and info["value_range"] == [0.0, 1.0]
    expected = model.sample_z(1, torch.Generator().manual_seed(5))[0]
    assert np.allclose(info["z"], expected.numpy(), atol=1e-6)
    again = client.get("/api/gan/info", params={"run": run, "seed": 5}).json()["z"]
    other = client.get("/api/gan/info", params={"run": run, "seed": 6}).json()["z"]
    assert again == info["z"] and other != info["z"]
    if prior == "uniform":
        assert all(bounds[0] <= value <= bounds[1] for value in info["z"] + other)


def test_gan_generate_is_the_models_generate(client, studio_runs):
    for family, label in (("dcgan", None), ("cgan", 2)):
        run = studio_runs.get(family)
        model, _ = load_model(studio_runs.path(family))
        z = client.get("/api/gan/info", params={"run": run, "seed": 3}).json()["z"]
        response = gan_generate(client, run, z, label)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        labels = None if label is None else torch.tensor([label])
        with torch.no_grad():
            expected = to_uint8(model.generate(torch.tensor([z]), labels)[0, 0])
        picture = png_array(response.content)
        assert picture.shape == (8, 8) and np.abs(picture - expected).max() <= 1
    cgan = studio_runs.get("cgan")
    z = [0.5] * 6
    by_class = [png_array(gan_generate(client, cgan, z, label).content) for label in range(4)]
    assert any(not np.array_equal(by_class[0], picture) for picture in by_class[1:])


def test_gan_interpolation_is_the_models_interpolate(client, studio_runs):
    for family, label, steps in (("dcgan", None, 7), ("cgan", 1, 5)):
        run = studio_runs.get(family)
        model, _ = load_model(studio_runs.path(family))
        params = {"run": run, "seed": 9, "steps": steps} | ({} if label is None else {"label": label})
        data = client.get("/api/gan/interpolate", params=params).json()
        assert (data["steps"], data["seed"], data["label"]) == (steps, 9, label)
        strip = data_url_array(data["image"])
        assert strip.shape == (1 + 8 + 1, 1 + steps * (8 + 1))  # steps 8 px tiles, 1 px padding
        with torch.no_grad():
            frames = model.interpolate(steps, generator=torch.Generator().manual_seed(9), label=label)
        for i in (0, steps - 1):
            left = 1 + i * 9
            assert np.abs(strip[1:9, left:left + 8] - to_uint8(frames[i, 0])).max() <= 1


def test_gan_requests_the_model_cannot_take_are_400_json_errors(client, studio_runs):
    dcgan, cgan = studio_runs.get("dcgan"), studio_runs.get("cgan")
    assert_error(gan_generate(client, dcgan, [0.0] * 19), 400, "19 values", "z_dim=20")
    assert_error(gan_generate(client, cgan, [0.0] * 7, 0), 400, "7 values", "z_dim=6")
    assert_error(gan_generate(client, cgan, [0.0] * 5 + [1.5], 0), 400, "z[5] = 1.5", "[-1, 1]", "U(-1, 1)")
    assert_error(gan_generate(client, cgan, [-1.01] * 6, 0), 400, "z[0]", "6 of 6")
    assert gan_generate(client, cgan, [-1.0, 1.0] * 3, 0).status_code == 200  # the support's ends are in it
    assert gan_generate(client, dcgan, [4.5] * 20).status_code == 200  # a normal prior has no hard support
    assert_error(gan_generate(client, dcgan, [0.0] * 20, 1), 400, "unconditional")
    assert_error(gan_generate(client, cgan, [0.0] * 6, 4), 400, "label 4 is out of range", "0..3")
    assert_error(gan_generate(client, cgan, [0.0] * 6), 400, "class-conditional", "0 to 3")
    assert_error(client.get("/api/gan/interpolate", params={"run": dcgan, "label": 0}), 400, "unconditional")
    assert_error(client.get("/api/gan/interpolate", params={"run": cgan, "label": 9}), 400, "out of range")
    assert_error(client.get("/api/gan/interpolate", params={"run": cgan}), 400, "class-conditional")


@pytest.mark.parametrize("body, word", [
    ({"z": []}, "z"), ({"z": [51.0]}, "z.0"), ({"z": [0.0, -1e9]}, "z.1"), ({"z": ["a"]}, "z.0"),
    ({"z": [0.0] * 4097}, "z"), ({}, "z"), ({"z": [0.0], "label": -1}, "label"), ({"z": [0.0], "label": 1000}, "label"),
    ({"z": 0.5}, "z")])
def test_gan_generate_bodies_out_of_bounds_are_422_json_errors(client, studio_runs, body, word):
    assert_error(client.post("/api/gan/generate", json={"run": studio_runs.get("dcgan"), **body}), 422, word)


def test_gan_generate_refuses_nan(client, studio_runs):
    content = json.dumps({"run": studio_runs.get("dcgan"), "z": [float("nan")]})  # Python's json writes NaN
    assert "NaN" in content
    response = client.post("/api/gan/generate", content=content, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and isinstance(response.json()["detail"], str)


# ---------------------------------------------------------------------- models and serving


def test_model_cache_is_lru_and_reloads_a_new_checkpoint(studio_runs, tmp_path):
    import shutil

    index = RunsIndex(studio_runs.root)
    cache = ModelCache(capacity=2)
    refs = [index.resolve(studio_runs.get(family)) for family in ("rbm", "vae", "hopfield")]
    first = cache.get(refs[0])
    assert cache.get(refs[0]) is first
    cache.get(refs[1])
    cache.get(refs[2])
    assert len(cache) == 2 and cache.get(refs[0]) is not first  # evicted, then loaded again
    copy = tmp_path / "copy"
    shutil.copytree(refs[1].path, copy)
    moved = RunsIndex(tmp_path).resolve("copy")
    before = cache.get(moved)
    checkpoints = sorted((copy / "checkpoints").iterdir())
    shutil.copytree(checkpoints[-1], copy / "checkpoints" / "step-999999999")
    after = cache.get(moved)
    assert after is not before and after.checkpoint == "step-999999999"


def test_sample_png_is_model_sample(client, studio_runs):
    response = client.get("/api/sample.png", params={"run": studio_runs.get("rbm"), "n": 4, "seed": 0,
                                                     "steps": 5})
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert png_array(response.content).shape == (2 * 8, 2 * 8)


def test_fifty_concurrent_requests_against_a_real_server(studio_runs):
    import httpx

    from genlab.studio.server import BackgroundServer

    vae, rbm = studio_runs.get("vae"), studio_runs.get("rbm")
    requests = [("/api/latent/point.png", {"run": vae, "x": i / 10, "y": -i / 10}) for i in range(20)]
    requests += [("/api/latent/grid.png", {"run": vae, "size": 10}) for _ in range(10)]
    requests += [("/api/runs", {}) for _ in range(10)]
    requests += [("/api/run", {"run": rbm}) for _ in range(5)]
    requests += [("/api/run", {"run": "../etc"}) for _ in range(5)]
    with BackgroundServer(studio_runs.root) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/api/health").json() == {"ok": True}
            http.get("/api/model", params={"run": vae})  # load once, so the burst measures serving

            def fetch(item):
                path, params = item
                return http.get(path, params=params).status_code

            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
                statuses = list(pool.map(fetch, requests, timeout=120))
            elapsed = time.perf_counter() - started
            assert statuses.count(200) == 45 and statuses.count(400) == 5
            assert elapsed < 60
            assert http.get("/api/health").json() == {"ok": True}  # still serving afterwards


def test_cli_serve_explains_a_missing_extra_and_a_missing_directory(monkeypatch, capsys, tmp_path):
    import importlib.util

    from genlab.cli import main

    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert main(["serve", str(tmp_path)]) == 2
    assert 'pip install -e ".[studio]"' in capsys.readouterr().err
