"""Dataset lookup order, verification, download (injected fetcher and a loopback HTTP server), real data md5s."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from genlab.data import sources
from genlab.data.sources import (
    DATASETS,
    DataFile,
    DatasetSpec,
    Md5Cache,
    cache_root,
    compute_md5,
    locate,
    resolve_file,
    urllib_fetch,
    verify_md5,
)
from genlab.errors import DataError

REAL_DATA = Path(os.environ.get("GENLAB_DATA") or "/work/shared/data")

IMAGES = b"toy image bytes " * 50
LABELS = b"0123456789"
TOY = DatasetSpec(
    name="toy",
    files=(DataFile("images.bin.gz", hashlib.md5(IMAGES).hexdigest()),
           DataFile("labels.txt", hashlib.md5(LABELS).hexdigest())),
    mirrors=("http://mirror-one.invalid/toy/", "http://mirror-two.invalid/toy/"),
    apt_package="dataset-toy",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no $GENLAB_DATA, a private system root, and the toy dataset registered."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATA_ROOT", tmp_path / "system")
    monkeypatch.setitem(DATASETS, "toy", TOY)
    return tmp_path


def make_toy(directory: Path, *, gz: bool = True, images: bytes = IMAGES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if gz:
        (directory / "images.bin.gz").write_bytes(gzip.compress(images))
    else:
        (directory / "images.bin").write_bytes(images)
    (directory / "labels.txt").write_bytes(LABELS)
    return directory


def no_fetch(url, dest):
    raise AssertionError(f"unexpected download of {url}")


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    assert cache_root() == tmp_path / "xdg" / "genlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "genlab"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says to ignore relative paths
    assert cache_root() == Path.home() / ".cache" / "genlab"


def test_lookup_order(tmp_path, monkeypatch):
    explicit = make_toy(tmp_path / "explicit" / "toy")
    env = make_toy(tmp_path / "env" / "toy")
    cache = make_toy(tmp_path / "xdg" / "genlab" / "toy")
    system = make_toy(tmp_path / "system" / "toy")
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "env"))
    assert locate("toy", tmp_path / "explicit", fetch=no_fetch) == explicit
    assert locate("toy", fetch=no_fetch) == env
    monkeypatch.delenv("GENLAB_DATA")
    assert locate("toy", fetch=no_fetch) == cache
    (cache / "labels.txt").unlink()  # incomplete: skipped
    assert locate("toy", fetch=no_fetch) == system
    # an explicit directory that lacks the dataset falls through to the others
    assert locate("toy", tmp_path / "empty", fetch=no_fetch) == system
    # a data_dir may hold the files directly
    assert locate("toy", env, fetch=no_fetch) == env


def test_uncompressed_copy_accepted_and_verified(tmp_path):
    directory = make_toy(tmp_path / "d" / "toy", gz=False)
    assert locate("toy", tmp_path / "d", download=False) == directory
    assert resolve_file(directory, "images.bin.gz") == directory / "images.bin"
    assert resolve_file(directory, "labels.txt") == directory / "labels.txt"
    assert resolve_file(directory, "missing.gz") is None


def test_missing_everywhere_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "env"))
    partial_dir = tmp_path / "xdg" / "genlab" / "toy"
    partial_dir.mkdir(parents=True)
    (partial_dir / "labels.txt").write_bytes(LABELS)
    with pytest.raises(DataError) as info:
        locate("toy", tmp_path / "given", download=False)
    message = str(info.value)
    assert "\n" not in message
    for place in (tmp_path / "given" / "toy", tmp_path / "given", tmp_path / "env" / "toy", partial_dir,
                  tmp_path / "system" / "toy"):
        assert str(place) in message
    assert "missing images.bin.gz" in message
    assert "GENLAB_DATA" in message and "--data-dir" in message
    assert "apt-get install dataset-toy" in message
    assert "data.download=true" in message


def test_genlab_data_not_set_is_reported():
    with pytest.raises(DataError, match=r"\$GENLAB_DATA \(not set\)"):
        locate("toy", download=False)


def test_fashion_mnist_hint_mentions_apt():
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        locate("fashion-mnist", download=False)


def test_unknown_dataset():
    with pytest.raises(DataError, match="known datasets: .*mnist"):
        locate("cifar-1000", download=False)


def test_corrupt_local_file_is_rejected(tmp_path):
    make_toy(tmp_path / "d" / "toy", images=b"not the canonical content")
    with pytest.raises(DataError, match="checksum mismatch.*corrupt.*not the canonical toy file.*delete it"):
        locate("toy", tmp_path / "d", download=False)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    directory = make_toy(tmp_path / "d" / "toy")
    (directory / "images.bin.gz").write_bytes(gzip.compress(IMAGES)[:-6])
    with pytest.raises(DataError, match="gzip"):
        locate("toy", tmp_path / "d", download=False)


def test_md5_is_of_uncompressed_content(tmp_path):
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(b"hello"))
    assert compute_md5(path) == hashlib.md5(b"hello").hexdigest()
    verify_md5(path, hashlib.md5(b"hello").hexdigest())
    with pytest.raises(DataError, match="mismatch"):
        verify_md5(path, "0" * 32)


def test_md5_cache_keyed_on_size_and_mtime(tmp_path):
    cache = Md5Cache()
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc")
    first = cache.md5(path)
    assert cache.md5(path) == first and cache.computed == 1
    path.write_bytes(b"abcd")
    assert cache.md5(path) == hashlib.md5(b"abcd").hexdigest() and cache.computed == 2
    stat = path.stat()
    path.write_bytes(b"wxyz")  # same size: only the mtime tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.md5(path) == hashlib.md5(b"wxyz").hexdigest() and cache.computed == 3
    with pytest.raises(DataError, match="not found"):
        cache.md5(tmp_path / "gone")


def test_found_files_are_hashed_once(tmp_path):
    make_toy(tmp_path / "d" / "toy")
    before = sources.MD5_CACHE.computed
    locate("toy", tmp_path / "d", download=False)
    locate("toy", tmp_path / "d", download=False)
    assert sources.MD5_CACHE.computed - before == 2  # two files, once each


# ---------------------------------------------------------------------------------------------- download


def serving(contents: dict[str, bytes], calls: list[str]):
    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        if url not in contents:
            raise OSError("connection refused")
        dest.write_bytes(contents[url])
    return fetch


def test_download_tries_mirrors_in_order(tmp_path):
    calls: list[str] = []
    fetch = serving({
        "http://mirror-two.invalid/toy/images.bin.gz": gzip.compress(IMAGES),
        "http://mirror-one.invalid/toy/labels.txt": LABELS,
    }, calls)
    directory = locate("toy", fetch=fetch)
    assert directory == tmp_path / "xdg" / "genlab" / "toy"
    assert calls == ["http://mirror-one.invalid/toy/images.bin.gz", "http://mirror-two.invalid/toy/images.bin.gz",
                     "http://mirror-one.invalid/toy/labels.txt"]
    assert sorted(p.name for p in directory.iterdir()) == ["images.bin.gz", "labels.txt"]  # no temp files
    assert gzip.decompress((directory / "images.bin.gz").read_bytes()) == IMAGES
    # now found in the cache without fetching
    assert locate("toy", fetch=no_fetch) == directory


def test_download_rejects_md5_mismatch(tmp_path):
    calls: list[str] = []
    fetch = serving({
        "http://mirror-one.invalid/toy/images.bin.gz": gzip.compress(b"tampered"),
        "http://mirror-two.invalid/toy/images.bin.gz": b"\x1f\x8b truncated gzip",
    }, calls)
    with pytest.raises(DataError) as info:
        locate("toy", fetch=fetch)
    message = str(info.value)
    assert "md5 of the uncompressed download is" in message and "(deleted)" in message
    assert "mirror-two.invalid" in message and "gzip" in message
    cache = tmp_path / "xdg" / "genlab" / "toy"
    assert list(cache.iterdir()) == []  # nothing half-written or unverified is left behind


def test_download_bad_first_mirror_good_second(tmp_path):
    fetch = serving({
        "http://mirror-one.invalid/toy/images.bin.gz": gzip.compress(b"tampered"),
        "http://mirror-two.invalid/toy/images.bin.gz": gzip.compress(IMAGES),
        "http://mirror-two.invalid/toy/labels.txt": LABELS,
    }, [])
    directory = locate("toy", fetch=fetch)
    assert sorted(p.name for p in directory.iterdir()) == ["images.bin.gz", "labels.txt"]


def test_download_completes_partial_cache(tmp_path):
    cache = tmp_path / "xdg" / "genlab" / "toy"
    cache.mkdir(parents=True)
    (cache / "labels.txt").write_bytes(LABELS)
    calls: list[str] = []
    locate("toy", fetch=serving({"http://mirror-one.invalid/toy/images.bin.gz": gzip.compress(IMAGES)}, calls))
    assert calls == ["http://mirror-one.invalid/toy/images.bin.gz"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def loopback_server(tmp_path):
    root = tmp_path / "www"
    (root / "toy").mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_urllib_download_over_loopback(tmp_path, monkeypatch, loopback_server):
    root, base = loopback_server
    (root / "toy" / "images.bin.gz").write_bytes(gzip.compress(IMAGES))
    (root / "toy" / "labels.txt").write_bytes(LABELS)
    spec = DatasetSpec(name="toy", files=TOY.files, mirrors=(f"{base}/missing/", f"{base}/toy/"))
    monkeypatch.setitem(DATASETS, "toy", spec)
    start = time.monotonic()
    directory = locate("toy", timeout=5)
    assert time.monotonic() - start < 10
    assert directory == tmp_path / "xdg" / "genlab" / "toy"
    assert (directory / "labels.txt").read_bytes() == LABELS

    dest = tmp_path / "one.txt"
    urllib_fetch(f"{base}/toy/labels.txt", dest, timeout=5)
    assert dest.read_bytes() == LABELS
    with pytest.raises(OSError, match="404"):
        urllib_fetch(f"{base}/toy/nope.txt", dest, timeout=5)


def test_urllib_download_failure_is_a_data_error(tmp_path, monkeypatch, loopback_server):
    _, base = loopback_server
    monkeypatch.setitem(DATASETS, "toy", DatasetSpec(name="toy", files=TOY.files, mirrors=(f"{base}/none/",)))
    with pytest.raises(DataError, match=r"download of images\.bin\.gz failed: .*404"):
        locate("toy", timeout=5)


# --------------------------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "tinyshakespeare"])
def test_real_data_md5s(name):
    if not (REAL_DATA / name).is_dir():
        pytest.skip(f"no {name} under {REAL_DATA}")
    directory = locate(name, REAL_DATA, download=False)
    assert directory == REAL_DATA / name
    for data_file in DATASETS[name].files:
        verify_md5(resolve_file(directory, data_file.name), data_file.md5)


def test_real_data_via_genlab_data(monkeypatch):
    if not (REAL_DATA / "tinyshakespeare").is_dir():
        pytest.skip(f"no tinyshakespeare under {REAL_DATA}")
    monkeypatch.setenv("GENLAB_DATA", str(REAL_DATA))
    assert locate("tinyshakespeare", download=False) == REAL_DATA / "tinyshakespeare"
