"""Image datasets as numpy arrays: MNIST / Fashion-MNIST by name, or the user's own ``.npy`` / ``.npz`` file.

Whatever the source, :func:`load_images` returns images of shape (N, C, H, W), either uint8 in 0..255 or
float32 in [0, 1], and int64 labels (or None). User files are never unpickled.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.data import sources
from genlab.data.idx import read_idx
from genlab.errors import DataError

SPLITS = ("train", "test")
IMAGE_DATASETS = sources.names_of_kind("image")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass
class ImageArrays:
    """One split of an image dataset."""

    images: np.ndarray  # (N, C, H, W), uint8 0..255 or float32 in [0, 1]
    labels: np.ndarray | None  # (N,) int64, or None when the source has no labels
    source: str  # human-readable origin, for logs

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """One example's shape, (C, H, W)."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]


def load_images(name_or_path: str | os.PathLike, split: str, data_dir: str | os.PathLike | None = None,
                download: bool = True) -> ImageArrays:
    """Load split ``"train"`` or ``"test"`` of a named dataset (mnist, fashion-mnist) or a .npy/.npz file."""
    if split not in SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    name = sources.dataset_name(name_or_path)
    if name is not None:
        if sources.get_spec(name).kind != "image":
            raise DataError(f"{name} is a {sources.get_spec(name).kind} dataset, not an image dataset; "
                            f"image datasets: {', '.join(IMAGE_DATASETS)}")
        return _load_idx_dataset(name, split, data_dir, download)
    path = sources.existing_user_file(name_or_path, "image", "the path of a .npy/.npz file")
    if path.suffix.lower() not in (".npy", ".npz"):
        raise DataError(f"{path}: unsupported image file; give a .npy or .npz file (or one of "
                        f"{', '.join(IMAGE_DATASETS)})")
    return _load_numpy_file(path, split)


# ------------------------------------------------------------------------------------------ named (IDX)


def _load_idx_dataset(name: str, split: str, data_dir, download: bool) -> ImageArrays:
    directory = sources.locate(name, data_dir, download)
    image_name, label_name = _IDX_FILES[split]
    image_path = sources.resolve_file(directory, image_name)
    label_path = sources.resolve_file(directory, label_name)
    if image_path is None or label_path is None:
        raise DataError(f"{directory}: {image_name if image_path is None else label_name} disappeared")
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{image_path}: expected a 3-D unsigned-byte array (N, H, W), got {images.dtype} "
                        f"of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label_path}: expected a 1-D integer label array, got {labels.dtype} of shape "
                        f"{labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{name} {split}: {images.shape[0]} images in {image_path.name} but {labels.shape[0]} "
                        f"labels in {label_path.name}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{label_path}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return ImageArrays(images=images[:, None, :, :], labels=labels.astype(np.int64),
                       source=f"{name}:{split} ({directory})")


# ------------------------------------------------------------------------------------------- user files


def _load_numpy_file(path: Path, split: str) -> ImageArrays:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(_load_error(path, exc)) from None
    if isinstance(loaded, np.ndarray):
        if split == "test":
            raise DataError(f"{path}: a single array has no test split; save an .npz with x_train/x_test "
                            f"(and y_train/y_test) to provide one, or evaluate on a held-out part of train")
        return ImageArrays(images=_normalize_images(loaded, str(path)), labels=None, source=str(path))
    with loaded:
        keys = set(loaded.files)
        if "x_train" in keys or "x_test" in keys:
            image_key, label_key = f"x_{split}", f"y_{split}"
            if image_key not in keys:
                raise DataError(f"{path}: no {split} split: the file has no {image_key!r} array "
                                f"(arrays: {', '.join(sorted(keys))})")
        else:
            image_key = next((k for k in ("images", "x") if k in keys), None)
            if image_key is None:
                raise DataError(f"{path}: no image array; expected a key 'images' or 'x' (with optional "
                                f"'labels'/'y'), or 'x_train'/'x_test' (with 'y_train'/'y_test'); found "
                                f"{', '.join(sorted(keys)) or 'no arrays'}")
            if split == "test":
                raise DataError(f"{path}: has no test split (arrays: {', '.join(sorted(keys))}); add x_test "
                                f"(and y_test) arrays, or evaluate on a held-out part of train")
            label_key = next((k for k in ("labels", "y") if k in keys), "")
        where = f"{path}[{image_key}]"
        images = _normalize_images(_member(loaded, image_key, path), where)
        labels = None
        if label_key in keys:
            labels = _normalize_labels(_member(loaded, label_key, path), images.shape[0], f"{path}[{label_key}]")
    return ImageArrays(images=images, labels=labels, source=f"{path}:{split}")


def _load_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "allow_pickle" in text or "Object arrays" in text or "pickle" in text.lower():
        return (f"{path}: holds Python objects (an object array), which genlab never unpickles; save plain "
                f"numeric arrays (uint8 or float32) instead")
    return f"{path}: not a readable .npy/.npz file ({text or type(exc).__name__})"


def _member(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(_load_error(path, exc).replace(f"{path}:", f"{path}[{key}]:", 1)) from None


def _normalize_images(array: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W) | (N,C,H,W) | (N,H,W,C) | (N,D=s*s) with C in {1,3} -> (N,C,H,W) uint8 or float32 in [0,1]."""
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise DataError(f"{where}: images must be uint8 (0..255) or float in [0, 1], got dtype {array.dtype}")
    shape = array.shape
    if array.ndim == 2:
        side = math.isqrt(shape[1])
        if shape[1] == 0 or side * side != shape[1]:
            raise DataError(f"{where}: flat images of shape {shape} need a square number of pixels per row "
                            f"(e.g. 784 = 28x28); reshape to (N, H, W) or (N, C, H, W)")
        array = array.reshape(shape[0], 1, side, side)
    elif array.ndim == 3:
        array = array[:, None, :, :]
    elif array.ndim == 4:
        if shape[1] in (1, 3):
            pass
        elif shape[3] in (1, 3):
            array = np.ascontiguousarray(array.transpose(0, 3, 1, 2))
        else:
            raise DataError(f"{where}: 4-D images of shape {shape} need 1 or 3 channels, either (N, C, H, W) "
                            f"or (N, H, W, C)")
    else:
        raise DataError(f"{where}: images must have shape (N, H, W), (N, C, H, W), (N, H, W, C) or (N, H*W), "
                        f"got {shape}")
    if array.shape[0] == 0:
        raise DataError(f"{where}: contains no images (shape {shape})")
    if min(array.shape[2:]) == 0:
        raise DataError(f"{where}: images have zero size (shape {shape})")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "b":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        raise DataError(f"{where}: integer images must be uint8 (0..255), got {array.dtype}; convert with "
                        f"x.astype(np.uint8) if the values are 0..255, or to float32 in [0, 1]")
    finite = np.isfinite(array)
    if not finite.all():
        raise DataError(f"{where}: {int(array.size - finite.sum())} pixel value(s) are NaN or infinite")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        hint = " (looks like 0..255: store as uint8 or divide by 255)" if high > 1.0 and high <= 255.0 else ""
        raise DataError(f"{where}: float pixel values must be in [0, 1], found {low:g}..{high:g}{hint}")
    return array.astype(np.float32, copy=False)


def _normalize_labels(labels: np.ndarray, count: int, where: str) -> np.ndarray:
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.shape[0] != count:
        raise DataError(f"{where}: {labels.shape[0]} labels for {count} images")
    if labels.dtype.kind == "f":
        if not (np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))):
            raise DataError(f"{where}: labels must be integers, got non-integer {labels.dtype} values")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, found {labels.min()}")
    return labels
