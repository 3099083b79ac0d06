"""Known datasets: where their files live on disk, how they are verified, and how they are downloaded.

:func:`locate` looks for a dataset's files in this order and returns the first directory that holds all of
them:

1. the explicit ``data_dir`` argument (``--data-dir``): ``<data_dir>/<name>/`` or the files directly in it;
2. ``$GENLAB_DATA/<name>/``;
3. the user cache, ``$XDG_CACHE_HOME/genlab/<name>/`` or ``~/.cache/genlab/<name>/``;
4. Debian's ``/usr/share/datasets/<name>/`` (e.g. ``apt-get install dataset-fashion-mnist``).

A file counts whether it is stored gzip-compressed or not (``train-images-idx3-ubyte.gz`` or
``train-images-idx3-ubyte``): checksums are of the *uncompressed* content. Found files are verified once per
(path, size, mtime). If nothing is found and ``download`` is true, the missing files are fetched into the cache
from the mirrors, in order, each verified before it is moved into place.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genlab.data.idx import reading
from genlab.errors import DataError

Fetcher = Callable[[str, Path], None]

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")
DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class DataFile:
    name: str  # the canonical file name, as published
    md5: str  # of the uncompressed content


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[DataFile, ...]
    mirrors: tuple[str, ...]  # base URLs ending in "/"; a file's URL is mirror + file name
    apt_package: str = ""
    kind: str = "image"  # "image" or "text"

    def file(self, name: str) -> DataFile:
        for data_file in self.files:
            if data_file.name == name:
                return data_file
        raise DataError(f"dataset {self.name} has no file {name!r}")

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


_MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_dataset(name: str, md5s: tuple[str, str, str, str], mirrors: tuple[str, ...],
                 apt_package: str = "") -> DatasetSpec:
    """An MNIST-format dataset: the four IDX files under their standard names, each with its md5."""
    return DatasetSpec(name=name, files=tuple(DataFile(n, m) for n, m in zip(_MNIST_NAMES, md5s, strict=True)),
                       mirrors=mirrors, apt_package=apt_package)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": _idx_dataset(
        "mnist",
        ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
         "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    ),
    "fashion-mnist": _idx_dataset(
        "fashion-mnist",
        ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
         "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        apt_package="dataset-fashion-mnist",
    ),
    "tinyshakespeare": DatasetSpec(
        name="tinyshakespeare",
        files=(DataFile("input.txt", "6fb458f1232090904fb40fe944165e91"),),
        mirrors=("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",),
        kind="text",
    ),
}


def dataset_name(text: object) -> str | None:
    """The table's name of a dataset however it is spelled (``MNIST``, ``fashion_mnist``, ``Fashion-MNIST``,
    ``tiny-shakespeare``: any case, with ``-``, ``_`` or neither), or None when ``text`` names none."""
    if not isinstance(text, str):
        return None
    squeezed = text.strip().lower().replace("-", "").replace("_", "")
    return next((name for name in DATASETS if name.replace("-", "") == squeezed), None)


def names_of_kind(kind: str) -> tuple[str, ...]:
    """The table's datasets of one kind (``image`` or ``text``), in table order."""
    return tuple(name for name, spec in DATASETS.items() if spec.kind == kind)


def existing_user_file(name_or_path: str | os.PathLike, kind: str, file_hint: str) -> Path:
    """The path of a user's own data file that names no dataset of the table. A missing file is a DataError;
    a bare word (no separator, no dot) is taken for a misspelt dataset name and answered with the ``kind``
    datasets and ``file_hint`` (what file to give instead)."""
    path = Path(name_or_path).expanduser()
    if not path.exists():
        text = str(name_or_path)
        if os.sep not in text and "." not in text:
            raise DataError(f"unknown {kind} dataset {text!r}: known {kind} datasets are "
                            f"{', '.join(names_of_kind(kind))}; or give {file_hint}")
        raise DataError(f"{path}: file not found")
    return path


def get_spec(name: str) -> DatasetSpec:
    """The table entry for dataset ``name``; DataError listing the known names otherwise."""
    spec = DATASETS.get(dataset_name(name) or name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return spec


# ---------------------------------------------------------------------------------------------- checksums


def read_uncompressed(path: str | os.PathLike) -> bytes:
    """The content of ``path``, gunzipped if it starts with the gzip magic bytes. DataError on any problem."""
    with reading(str(path)):
        with open(path, "rb") as handle:
            data = handle.read()
        return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data


def compute_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of the uncompressed content of ``path`` (streamed; no caching)."""
    digest = hashlib.md5()
    with reading(str(path)), open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
        handle.seek(0)
        stream = gzip.GzipFile(fileobj=handle, mode="rb") if compressed else handle
        with stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


class Md5Cache:
    """Remembers uncompressed MD5s per (resolved path, size, mtime), so each file is hashed once per process."""

    def __init__(self) -> None:
        self._digests: dict[tuple[str, int, int], str] = {}
        self.computed = 0  # how many files were actually hashed (for tests and diagnostics)

    @staticmethod
    def _key(path: Path) -> tuple[str, int, int]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc}") from None
        return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    def md5(self, path: str | os.PathLike) -> str:
        key = self._key(Path(path))
        digest = self._digests.get(key)
        if digest is None:
            digest = compute_md5(path)
            self.computed += 1
            self._digests[key] = digest
        return digest

    def remember(self, path: str | os.PathLike, digest: str) -> None:
        self._digests[self._key(Path(path))] = digest

    def clear(self) -> None:
        self._digests.clear()


MD5_CACHE = Md5Cache()


def verify_md5(path: str | os.PathLike, expected: str, *, dataset: str = "") -> None:
    """Check that the uncompressed content of ``path`` has MD5 ``expected``; DataError saying how to fix it."""
    actual = MD5_CACHE.md5(path)
    if actual != expected.lower():
        what = f"the canonical {dataset} file" if dataset else "the expected file"
        raise DataError(
            f"{path}: checksum mismatch (md5 of the uncompressed content is {actual}, expected {expected}): "
            f"the file is corrupt, truncated or not {what}; delete it and let genlab download it again "
            f"(data.download=true), or replace it with a fresh copy"
        )


# ------------------------------------------------------------------------------------------------- lookup


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/genlab`` (when set to an absolute path) or ``~/.cache/genlab``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "genlab"


def _alternate_name(file_name: str) -> str:
    return file_name[: -len(".gz")] if file_name.endswith(".gz") else file_name + ".gz"


def resolve_file(directory: str | os.PathLike, file_name: str) -> Path | None:
    """``directory/file_name``, or its gzipped/uncompressed twin, whichever exists as a file; else None."""
    directory = Path(directory)
    for candidate in (file_name, _alternate_name(file_name)):
        path = directory / candidate
        if path.is_file():
            return path
    return None


def _candidates(name: str, data_dir: str | os.PathLike | None) -> tuple[list[tuple[str, Path]], list[str]]:
    """(label, directory) pairs in lookup order, and notes on places that were not set."""
    places: list[tuple[str, Path]] = []
    notes: list[str] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        places += [("--data-dir", root / name), ("--data-dir", root)]
    env = os.environ.get("GENLAB_DATA", "")
    if env:
        places.append(("$GENLAB_DATA", Path(env).expanduser() / name))
    else:
        notes.append("$GENLAB_DATA (not set)")
    places.append(("user cache", cache_root() / name))
    places.append(("system", SYSTEM_DATA_ROOT / name))
    return places, notes


def _inspect(spec: DatasetSpec, directory: Path) -> tuple[dict[str, Path], list[str], str]:
    """(found files by canonical name, missing names, status text) for one candidate directory."""
    if not directory.exists():
        return {}, list(spec.file_names), "does not exist"
    if not directory.is_dir():
        return {}, list(spec.file_names), "not a directory"
    found: dict[str, Path] = {}
    missing: list[str] = []
    for file_name in spec.file_names:
        path = resolve_file(directory, file_name)
        if path is None:
            missing.append(file_name)
        else:
            found[file_name] = path
    status = "complete" if not missing else f"missing {', '.join(missing)}"
    return found, missing, status


def _how_to_get(spec: DatasetSpec, *, download: bool) -> str:
    ways = [f"put {', '.join(spec.file_names)} (gzipped or not) in <dir>/{spec.name}/ and set GENLAB_DATA=<dir> "
            f"or pass --data-dir <dir>"]
    if spec.apt_package:
        ways.append(f"`sudo apt-get install {spec.apt_package}` (installs {SYSTEM_DATA_ROOT / spec.name})")
    if not download:
        ways.append(f"allow downloading (data.download=true) into {cache_root() / spec.name} "
                    f"from {spec.mirrors[0]}")
    return "; or ".join(ways)


def locate(name: str, data_dir: str | os.PathLike | None = None, download: bool = True, *,
           fetch: Fetcher | None = None, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """The directory holding every file of dataset ``name`` (verified), downloading into the cache if allowed.

    ``fetch(url, dest)`` downloads one URL to a file; the default uses urllib with ``timeout`` seconds.
    """
    spec = get_spec(name)
    places, notes = _candidates(spec.name, data_dir)
    looked: list[str] = []
    seen: set[Path] = set()
    for label, directory in places:
        key = directory.resolve() if directory.exists() else directory
        if key in seen:
            continue
        seen.add(key)
        found, missing, status = _inspect(spec, directory)
        if not missing:
            for file_name, path in found.items():
                verify_md5(path, spec.file(file_name).md5, dataset=spec.name)
            return directory
        looked.append(f"{label} {directory} ({status})")
    looked += notes
    if not download:
        raise DataError(f"dataset {spec.name} not found and downloading is off (data.download=false); looked in: "
                        f"{'; '.join(looked)}. To get it: {_how_to_get(spec, download=False)}")
    if fetch is None:
        fetch = functools.partial(urllib_fetch, timeout=timeout)
    return _download(spec, cache_root() / spec.name, fetch, looked)


# ----------------------------------------------------------------------------------------------- download


def urllib_fetch(url: str, dest: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Download ``url`` to the file ``dest`` with urllib (raises OSError/URLError/HTTPError on failure)."""
    request = urllib.request.Request(url, headers={"User-Agent": "genlab"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        if status != 200:
            raise OSError(f"HTTP status {status}")
        expected = response.headers.get("Content-Length")
        with open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
            written = out.tell()
    if expected is not None and expected.isdigit() and int(expected) != written:
        raise OSError(f"incomplete download: got {written} of {expected} bytes")


def _fetch_one(spec: DatasetSpec, data_file: DataFile, dest_dir: Path, fetch: Fetcher,
               failures: list[str]) -> bool:
    """Try every mirror for one file; True once a verified copy is in ``dest_dir``."""
    for mirror in spec.mirrors:
        url = mirror + data_file.name
        fd, tmp_name = tempfile.mkstemp(prefix=f".{data_file.name}.", suffix=".part", dir=dest_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch(url, tmp)
            digest = compute_md5(tmp)
            if digest != data_file.md5:
                failures.append(f"{url}: md5 of the uncompressed download is {digest}, expected {data_file.md5} "
                                f"(deleted)")
                continue
            final = dest_dir / data_file.name
            os.replace(tmp, final)
            MD5_CACHE.remember(final, digest)
            return True
        except (OSError, http.client.HTTPException, ValueError, DataError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) and not isinstance(
                exc, urllib.error.HTTPError) else exc
            failures.append(f"{url}: {reason or type(exc).__name__}")
        finally:
            tmp.unlink(missing_ok=True)
    return False


def _download(spec: DatasetSpec, dest_dir: Path, fetch: Fetcher, looked: list[str]) -> Path:
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"dataset {spec.name} not found and the cache directory {dest_dir} cannot be created "
                        f"({exc}); looked in: {'; '.join(looked)}. To get it: "
                        f"{_how_to_get(spec, download=True)}") from None
    failures: list[str] = []
    for data_file in spec.files:
        present = resolve_file(dest_dir, data_file.name)
        if present is not None:
            verify_md5(present, data_file.md5, dataset=spec.name)
            continue
        if not _fetch_one(spec, data_file, dest_dir, fetch, failures):
            raise DataError(
                f"dataset {spec.name} not found and the download of {data_file.name} failed: {'; '.join(failures)}. "
                f"Looked in: {'; '.join(looked)}. To get it: {_how_to_get(spec, download=True)}"
            )
    return dest_dir
