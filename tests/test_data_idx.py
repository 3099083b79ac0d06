"""IDX reading/writing: round trips, every header check, truncation/trailing bytes, corrupt gzip, and a fuzz test."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlab.data.idx import encode_idx, read_idx, write_idx
from genlab.errors import DataError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_all_types(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a.idx{suffix}", array)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 3, 4), (0,), (3, 0, 2)])
def test_round_trip_shapes(tmp_path, shape):
    array = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    out = read_idx(write_idx(tmp_path / "a.idx", array))
    assert out.shape == shape
    np.testing.assert_array_equal(out, array)


def test_big_endian_on_disk(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.array([1, 258], dtype=np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 1]) + struct.pack(">i", 2) + b"\x00\x01\x01\x02"


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = tmp_path / "raw.gz"
    gz_named_raw.write_bytes(encode_idx(array))
    raw_named_gz = tmp_path / "compressed.idx"
    raw_named_gz.write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_result_is_writable_native_array(tmp_path):
    out = read_idx(write_idx(tmp_path / "a.gz", np.ones((2, 2), dtype=np.float32)))
    assert out.dtype.isnative
    out[0, 0] = 5  # does not raise


def _raw(tmp_path: Path, data: bytes, name: str = "x.idx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _header(code=0x08, dims=(2, 3)) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}i", *dims)


@pytest.mark.parametrize("data, fragment", [
    (b"", "too short"),
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x01" + struct.pack(">i", 1) + b"x", "two zero bytes"),
    (b"\x00\x07\x08\x01" + struct.pack(">i", 1) + b"x", "two zero bytes"),
    (b"\x00\x00\x07\x01" + struct.pack(">i", 1) + b"x", "type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x05" + b"\x00" * 20, "5 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">i", 1), "truncated header"),
    (_header(dims=(2, -3)), "negative dimension"),
    (_header(code=0x0E, dims=(65536, 65536, 65536)), "more than the limit"),
    (_header(dims=(2, 3)) + b"\x00" * 5, "truncated: header says 6 bytes of data"),
    (_header(dims=(2, 3)) + b"\x00" * 7, "1 unexpected trailing bytes"),
    (_header(code=0x0B, dims=(2,)) + b"\x00" * 3, "truncated"),
])
def test_header_and_length_errors(tmp_path, data, fragment):
    for name, payload in (("x.idx", data), ("x.idx.gz", gzip.compress(data))):
        path = _raw(tmp_path, payload, name)
        with pytest.raises(DataError) as info:
            read_idx(path)
        message = str(info.value)
        assert fragment in message, message
        assert name in message


def test_truncated_message_names_file_and_sizes(tmp_path):
    images = np.zeros((60000, 28, 28), dtype=np.uint8)
    data = encode_idx(images)[: 16 + 1000]
    path = _raw(tmp_path, gzip.compress(data), "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: truncated: header says 47040000 bytes "
                                        r"of data .* file has 1000"):
        read_idx(path)


def test_size_bound_checked_before_allocating(tmp_path):
    path = _raw(tmp_path, _header(code=0x0E, dims=(1 << 20, 1 << 20)) + b"\x00" * 8)
    with pytest.raises(DataError, match="limit"):
        read_idx(path)
    small = _raw(tmp_path, encode_idx(np.zeros(100, dtype=np.uint8)), "small.idx")
    with pytest.raises(DataError, match="limit of 50 bytes"):
        read_idx(small, max_bytes=50)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)), mtime=0)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0x01  # the CRC32 trailer
    for data in (bytes(flipped), bytes(bad_crc), good[:-4], good[: len(good) // 2], good[:12]):
        with pytest.raises(DataError, match=r"x\.gz"):
            read_idx(_raw(tmp_path, data, "x.gz"))


def test_missing_and_directory(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(DataError, match="directory"):
        read_idx(tmp_path)


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(DataError, match="dtype"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="1 to 4"):
        write_idx(tmp_path / "a.idx", np.zeros((1,) * 5, dtype=np.uint8))
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------- fuzzing

_ORIGINAL = (np.arange(2 * 3 * 4, dtype=np.int16) * 37 - 100).reshape(2, 3, 4)
_VALID = encode_idx(_ORIGINAL)
_VALID_GZ = gzip.compress(_VALID, mtime=0)
_FUZZ_DIR = tempfile.TemporaryDirectory(prefix="genlab-idx-fuzz-")

_mutation = st.one_of(
    st.tuples(st.just("header"), st.integers(0, 15), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(_VALID) - 1)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("gzip-flip"), st.integers(0, len(_VALID_GZ) - 1), st.integers(1, 255)),
    st.tuples(st.just("gzip-truncate"), st.integers(0, len(_VALID_GZ) - 1)),
    st.tuples(st.just("gzip-append"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("gzip-of-mutated"), st.integers(0, 15), st.integers(0, 255)),
)


def _apply(mutation) -> tuple[bytes, bytes | None]:
    """(file content, the uncompressed IDX bytes when known)."""
    kind = mutation[0]
    if kind in ("header", "gzip-of-mutated"):
        data = bytearray(_VALID)
        data[mutation[1]] = mutation[2]
        raw = bytes(data)
        return (raw if kind == "header" else gzip.compress(raw)), raw
    if kind == "truncate":
        return _VALID[: mutation[1]], _VALID[: mutation[1]]
    if kind == "append":
        return _VALID + mutation[1], _VALID + mutation[1]
    if kind == "gzip-flip":
        data = bytearray(_VALID_GZ)
        data[mutation[1]] ^= mutation[2]
        return bytes(data), None
    if kind == "gzip-truncate":
        return _VALID_GZ[: mutation[1]], None
    return _VALID_GZ + mutation[1], None


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutation=_mutation)
def test_fuzz_read_idx_returns_valid_array_or_data_error(mutation):
    content, uncompressed = _apply(mutation)
    path = Path(_FUZZ_DIR.name) / ("fuzz.gz" if mutation[0].startswith("gzip") else "fuzz.idx")
    path.write_bytes(content)
    try:
        out = read_idx(path)
    except DataError as exc:
        assert path.name in str(exc)
        return
    assert isinstance(out, np.ndarray)
    assert 1 <= out.ndim <= 4
    if uncompressed is not None:
        # Whatever header was accepted, it must describe the payload exactly.
        assert uncompressed[3] == out.ndim
        dims = struct.unpack(f">{out.ndim}i", uncompressed[4: 4 + 4 * out.ndim])
        assert out.shape == dims
        assert 4 + 4 * out.ndim + out.nbytes == len(uncompressed)
    else:
        # Gzip damage either is detected or touched only bytes that do not matter (e.g. the mtime field).
        np.testing.assert_array_equal(out, _ORIGINAL)
