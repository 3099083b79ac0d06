"""Image tensor transforms."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.transforms import (
    check_unit_range,
    flatten,
    from_symmetric,
    pad_to,
    stochastic_binarize,
    threshold_binarize,
    to_symmetric,
    to_unit_float,
)
from genlab.errors import DataError


def test_to_unit_float_divides_by_255():
    x = torch.arange(256, dtype=torch.uint8)
    y = to_unit_float(x)
    assert y.dtype == torch.float32
    assert y[255].item() == 1.0 and y[0].item() == 0.0
    assert y[128].item() == torch.tensor(128 / 255, dtype=torch.float32).item()
    assert torch.equal(y, torch.arange(256, dtype=torch.float32) / 255)
    assert y.max().item() == 1.0  # not 255/256


def test_to_unit_float_passes_floats_through():
    x = torch.rand(2, 3)
    assert to_unit_float(x) is x
    assert to_unit_float(torch.tensor([True, False])).tolist() == [1.0, 0.0]
    with pytest.raises(DataError):
        to_unit_float(torch.tensor([1, 2], dtype=torch.int64))


def test_threshold_binarize():
    x = torch.tensor([0.0, 0.4999, 0.5, 0.5001, 1.0])
    assert threshold_binarize(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert threshold_binarize(x, threshold=0.75).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert threshold_binarize(x.double()).dtype == torch.float64
    # exactly 0.5 after /255 rounding is not possible, but 128/255 > 0.5 and 127/255 < 0.5
    pixels = to_unit_float(torch.tensor([127, 128], dtype=torch.uint8))
    assert threshold_binarize(pixels).tolist() == [0.0, 1.0]


def test_stochastic_binarize_frequencies():
    probs = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    x = probs.repeat(20000, 1)
    generator = torch.Generator().manual_seed(0)
    sample = stochastic_binarize(x, generator)
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    freq = sample.mean(dim=0)
    tolerance = 4 * math.sqrt(0.25 / 20000)  # 4 standard errors at worst
    assert torch.allclose(freq, probs, atol=tolerance)
    assert freq[0] == 0.0 and freq[-1] == 1.0
    again = stochastic_binarize(x, torch.Generator().manual_seed(0))
    assert torch.equal(sample, again)  # reproducible with the same seed
    other = stochastic_binarize(x, torch.Generator().manual_seed(1))
    assert not torch.equal(sample, other)
    with pytest.raises(DataError):
        stochastic_binarize(torch.zeros(3, dtype=torch.uint8), generator)


def test_stochastic_binarize_draws_what_torch_bernoulli_draws():
    # The fast comparison must keep every seeded binarization (fixed test sets, resumed runs) as it was.
    probs = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    for dtype in (torch.float32, torch.float64):
        x = probs.to(dtype)
        expected = torch.bernoulli(x, generator=torch.Generator().manual_seed(11))
        assert torch.equal(stochastic_binarize(x, torch.Generator().manual_seed(11)), expected)
    torch.manual_seed(2)
    expected = torch.bernoulli(probs)
    torch.manual_seed(2)
    assert torch.equal(stochastic_binarize(probs, None), expected)


def test_pad_to_is_central_and_zero():
    x = torch.ones(2, 1, 28, 28)
    y = pad_to(x, 32)
    assert y.shape == (2, 1, 32, 32)
    assert y[:, :, 2:30, 2:30].eq(1).all() and y.sum() == x.sum()
    assert y[:, :, :2].eq(0).all() and y[:, :, 30:].eq(0).all()
    odd = pad_to(torch.ones(1, 1, 2, 3), 6)
    assert odd[0, 0].tolist() == [[0] * 6, [0] * 6, [0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0], [0] * 6, [0] * 6]
    assert pad_to(x, 28) is x
    with pytest.raises(DataError, match="smaller"):
        pad_to(x, 20)


def test_symmetric_and_flatten():
    x = torch.tensor([0.0, 0.25, 1.0])
    assert to_symmetric(x).tolist() == [-1.0, -0.5, 1.0]
    assert torch.equal(from_symmetric(to_symmetric(x)), x)
    assert flatten(torch.zeros(4, 1, 28, 28)).shape == (4, 784)
    assert flatten(torch.zeros(0, 3, 2, 2)).shape == (0, 12)


def test_check_unit_range():
    check_unit_range(torch.tensor([0.0, 0.5, 1.0]), "ok")
    check_unit_range(torch.tensor([0, 1], dtype=torch.uint8), "ok")
    check_unit_range(torch.empty(0), "empty")
    with pytest.raises(DataError, match=r"batch: values must be in \[0, 1\], found -0.1..1"):
        check_unit_range(torch.tensor([-0.1, 1.0]), "batch")
    with pytest.raises(DataError, match="above"):
        check_unit_range(torch.tensor([1.5]), "above")
    with pytest.raises(DataError, match="1 value\\(s\\) are NaN or infinite"):
        check_unit_range(torch.tensor([0.5, float("nan")]), "x")
    with pytest.raises(DataError, match="NaN or infinite"):
        check_unit_range(torch.tensor([float("inf")]), "x")
