"""Image loading: named IDX datasets (toy copies and the real files) and user .npy/.npz files."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from genlab.data import sources
from genlab.data.idx import write_idx
from genlab.data.images import ImageArrays, load_images
from genlab.data.sources import DATASETS, DataFile, compute_md5
from genlab.errors import DataError

REAL_DATA = Path(os.environ.get("GENLAB_DATA") or "/work/shared/data")
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATA_ROOT", tmp_path / "system")


def fake_mnist(monkeypatch, root: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write a tiny MNIST look-alike under root/mnist and register its checksums in place of the real ones."""
    rng = np.random.default_rng(0)
    defaults = {
        NAMES[0]: rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        NAMES[1]: np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        NAMES[3]: np.array([5, 6, 7], dtype=np.uint8),
    }
    defaults.update(arrays or {})
    directory = root / "mnist"
    directory.mkdir(parents=True)
    files = tuple(DataFile(name, compute_md5(write_idx(directory / name, array)))
                  for name, array in defaults.items())
    monkeypatch.setitem(DATASETS, "mnist", replace(DATASETS["mnist"], files=files))
    return directory


def test_named_dataset_from_idx(tmp_path, monkeypatch):
    directory = fake_mnist(monkeypatch, tmp_path)
    train = load_images("mnist", "train", tmp_path, download=False)
    assert isinstance(train, ImageArrays)
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [0, 1, 2, 3, 4, 9]
    assert len(train) == 6 and train.shape == (1, 28, 28)
    assert "mnist" in train.source and str(directory) in train.source
    test = load_images("MNIST", "test", tmp_path, download=False)
    assert test.images.shape == (3, 1, 28, 28) and test.labels.tolist() == [5, 6, 7]


@pytest.mark.parametrize("arrays, fragment", [
    ({NAMES[1]: np.array([0, 1, 2, 3, 4], dtype=np.uint8)}, "6 images .* but 5 labels"),
    ({NAMES[1]: np.array([0, 1, 2, 3, 4, 10], dtype=np.uint8)}, r"labels must be 0\.\.9"),
    ({NAMES[0]: np.zeros((6, 784), dtype=np.uint8)}, "3-D"),
    ({NAMES[0]: np.zeros((6, 28, 28), dtype=np.float32)}, "unsigned-byte"),
    ({NAMES[1]: np.zeros((6, 1), dtype=np.uint8)}, "1-D"),
])
def test_named_dataset_checks(tmp_path, monkeypatch, arrays, fragment):
    fake_mnist(monkeypatch, tmp_path, arrays)
    with pytest.raises(DataError, match=fragment):
        load_images("mnist", "train", tmp_path, download=False)


def test_named_dataset_missing(tmp_path):
    with pytest.raises(DataError, match="mnist not found"):
        load_images("mnist", "train", tmp_path, download=False)


def test_bad_split_and_wrong_kind(tmp_path):
    with pytest.raises(DataError, match="split"):
        load_images("mnist", "validation")
    with pytest.raises(DataError, match="text dataset"):
        load_images("tinyshakespeare", "train", download=False)
    with pytest.raises(DataError, match="unknown image dataset 'cifar10'"):
        load_images("cifar10", "train")
    with pytest.raises(DataError, match="not found"):
        load_images(str(tmp_path / "x.npy"), "train")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match=r"\.npy or \.npz"):
        load_images(tmp_path / "x.png", "train")


# -------------------------------------------------------------------------------------------- user files


@pytest.mark.parametrize("shape, expected", [
    ((5, 8, 8), (5, 1, 8, 8)),
    ((5, 1, 8, 8), (5, 1, 8, 8)),
    ((5, 3, 8, 6), (5, 3, 8, 6)),
    ((5, 8, 6, 3), (5, 3, 8, 6)),
    ((5, 8, 6, 1), (5, 1, 8, 6)),
    ((5, 64), (5, 1, 8, 8)),
])
def test_npy_shapes(tmp_path, shape, expected):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    out = load_images(tmp_path / "x.npy", "train")
    assert out.images.shape == expected and out.images.dtype == np.uint8 and out.labels is None
    if len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3):
        np.testing.assert_array_equal(out.images, array.transpose(0, 3, 1, 2))
    else:
        np.testing.assert_array_equal(out.images.reshape(-1), array.reshape(-1))


def test_npy_float_and_bool(tmp_path):
    np.save(tmp_path / "f.npy", np.linspace(0, 1, 5 * 16, dtype=np.float64).reshape(5, 4, 4))
    out = load_images(tmp_path / "f.npy", "train")
    assert out.images.dtype == np.float32 and out.images.max() == 1.0
    np.save(tmp_path / "b.npy", np.ones((2, 4, 4), dtype=bool))
    assert load_images(tmp_path / "b.npy", "train").images.dtype == np.float32


@pytest.mark.parametrize("array, fragment", [
    (np.full((2, 4, 4), np.nan, dtype=np.float32), "NaN or infinite"),
    (np.full((2, 4, 4), np.inf, dtype=np.float32), "NaN or infinite"),
    (np.full((2, 4, 4), 200.0, dtype=np.float32), r"\[0, 1\], found 200..200 \(looks like 0..255"),
    (np.full((2, 4, 4), -0.5, dtype=np.float32), r"\[0, 1\], found -0.5"),
    (np.zeros((2, 4, 4), dtype=np.int64), "uint8"),
    (np.zeros((2, 5, 5, 5), dtype=np.uint8), "1 or 3 channels"),
    (np.zeros((2, 10), dtype=np.uint8), "square"),
    (np.zeros((2,), dtype=np.uint8), "shape"),
    (np.zeros((0, 4, 4), dtype=np.uint8), "no images"),
    (np.array([["a"]]), "dtype"),
])
def test_npy_rejects(tmp_path, array, fragment):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(DataError, match=fragment):
        load_images(tmp_path / "x.npy", "train")


def test_object_arrays_are_never_unpickled(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="object array.*never unpickles"):
        load_images(tmp_path / "o.npy", "train")
    np.savez(tmp_path / "o.npz", images=np.array([[1, 2]], dtype=object))
    with pytest.raises(DataError, match="object array"):
        load_images(tmp_path / "o.npz", "train")


def test_corrupt_numpy_files(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="bad.npy"):
        load_images(tmp_path / "bad.npy", "train")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match="bad.npz"):
        load_images(tmp_path / "bad.npz", "train")


def test_npy_has_no_test_split(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match="no test split"):
        load_images(tmp_path / "x.npy", "test")


@pytest.mark.parametrize("image_key, label_key", [("images", "labels"), ("x", "y"), ("images", None)])
def test_npz_single_split(tmp_path, image_key, label_key):
    arrays = {image_key: np.zeros((4, 6, 6), dtype=np.uint8)}
    if label_key:
        arrays[label_key] = np.array([0, 1, 2, 11], dtype=np.int32)
    np.savez(tmp_path / "d.npz", **arrays)
    out = load_images(tmp_path / "d.npz", "train")
    assert out.images.shape == (4, 1, 6, 6)
    if label_key:
        assert out.labels.dtype == np.int64 and out.labels.tolist() == [0, 1, 2, 11]
    else:
        assert out.labels is None
    with pytest.raises(DataError, match="has no test split"):
        load_images(tmp_path / "d.npz", "test")


def test_npz_train_test(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", x_train=np.zeros((4, 2, 2, 3), dtype=np.uint8),
                        y_train=np.arange(4), x_test=np.ones((2, 2, 2, 3), dtype=np.float32))
    train = load_images(tmp_path / "d.npz", "train")
    test = load_images(tmp_path / "d.npz", "test")
    assert train.images.shape == (4, 3, 2, 2) and train.labels.tolist() == [0, 1, 2, 3]
    assert test.images.shape == (2, 3, 2, 2) and test.images.dtype == np.float32 and test.labels is None
    np.savez(tmp_path / "only_train.npz", x_train=np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="no test split.*x_test"):
        load_images(tmp_path / "only_train.npz", "test")


@pytest.mark.parametrize("labels, fragment", [
    (np.array([0, 1, 2]), "3 labels for 4 images"),
    (np.zeros((4, 1), dtype=np.int64), "1-D"),
    (np.array([0, 1, -1, 2]), ">= 0"),
    (np.array([0.5, 1, 2, 3]), "integers"),
    (np.array(["a", "b", "c", "d"]), "integers"),
])
def test_npz_label_errors(tmp_path, labels, fragment):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 2, 2), dtype=np.uint8), labels=labels)
    with pytest.raises(DataError, match=fragment):
        load_images(tmp_path / "d.npz", "train")


def test_npz_without_known_keys(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="expected a key 'images' or 'x'.*found pixels"):
        load_images(tmp_path / "d.npz", "train")


# --------------------------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_dataset(name):
    if not (REAL_DATA / name).is_dir():
        pytest.skip(f"no {name} under {REAL_DATA}")
    train = load_images(name, "train", REAL_DATA, download=False)
    test = load_images(name, "test", REAL_DATA, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == np.uint8
    assert train.labels.shape == (60000,) and test.labels.shape == (10000,)
    assert set(np.unique(train.labels).tolist()) == set(range(10))
    assert train.images.max() == 255 and train.images.min() == 0
    if name == "mnist":
        assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
        assert test.labels[:3].tolist() == [7, 2, 1]
