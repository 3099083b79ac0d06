import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_data_dir() -> Path | None:
    """The real datasets, from GENLAB_DATA or ../shared/data; None if absent."""
    candidate = Path(os.environ.get("GENLAB_DATA", SHARED_DATA))
    return candidate if (candidate / "mnist").is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real datasets not found (set GENLAB_DATA)")
    return found


@pytest.fixture
def tiny_images(tmp_path) -> Path:
    """A small structured binary image set as .npz (train/test), 8x8 'bars' so an RBM can learn it fast."""
    rng = np.random.default_rng(0)

    def make(count):
        images = np.zeros((count, 8, 8), dtype=np.uint8)
        labels = rng.integers(0, 4, size=count)
        for i, label in enumerate(labels):
            images[i, :, 2 * label:2 * label + 2] = 255  # a vertical bar per class
            noise = rng.random((8, 8)) < 0.05
            images[i][noise] = 255 - images[i][noise]
        return images, labels

    x_train, y_train = make(512)
    x_test, y_test = make(128)
    path = tmp_path / "bars.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield
