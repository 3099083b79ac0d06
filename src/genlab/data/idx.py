"""IDX files, the container format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Layout: two zero bytes, a type code, the number of dimensions ``ndim``, then ``ndim`` big-endian 32-bit sizes,
then the values in C order, big-endian. :func:`read_idx` checks the whole header before it allocates anything
and insists that the payload is exactly as long as the header says; every problem becomes a
:class:`~genlab.errors.DataError` that names the file.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from genlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# Upper bound on the payload a header may claim. MNIST's largest file is 47 MB; anything near this is a
# corrupt header rather than a dataset one would load into memory whole.
MAX_IDX_BYTES = 4 * 1024**3

# type code -> (description, big-endian numpy dtype)
IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: ("unsigned byte", ">u1"),
    0x09: ("signed byte", ">i1"),
    0x0B: ("short", ">i2"),
    0x0C: ("int", ">i4"),
    0x0D: ("float", ">f4"),
    0x0E: ("double", ">f8"),
}

_CHUNK = 1 << 20


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (whatever its suffix)."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _type_list() -> str:
    return ", ".join(f"0x{code:02X} ({name})" for code, (name, _) in IDX_TYPES.items())


def _read_upto(stream, n: int) -> bytes:
    """Read ``n`` bytes, fewer only at end of stream."""
    parts = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _parse_header(stream, where: str, max_bytes: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """Read and validate the header; return (big-endian dtype, dims, payload bytes, header bytes)."""
    head = _read_upto(stream, 4)
    if len(head) < 4:
        raise DataError(f"{where}: too short to be an IDX file ({len(head)} bytes; the header alone needs at "
                        f"least 8)")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{where}: not an IDX file: it starts with bytes {head[:2].hex(' ')}, "
                        f"IDX files start with two zero bytes")
    code, ndim = head[2], head[3]
    if code not in IDX_TYPES:
        raise DataError(f"{where}: unknown IDX type code 0x{code:02X}; expected one of {_type_list()}")
    if not 1 <= ndim <= 4:
        raise DataError(f"{where}: IDX header gives {ndim} dimensions; expected 1 to 4")
    raw_dims = _read_upto(stream, 4 * ndim)
    header_len = 4 + 4 * ndim
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{where}: truncated header: {ndim} dimensions need {header_len} header bytes, "
                        f"file has {4 + len(raw_dims)}")
    dims = struct.unpack(f">{ndim}i", raw_dims)
    if any(d < 0 for d in dims):
        raise DataError(f"{where}: IDX header has a negative dimension: {dims}")
    dtype = np.dtype(IDX_TYPES[code][1])
    nbytes = math.prod(dims) * dtype.itemsize
    if nbytes > max_bytes:
        raise DataError(f"{where}: IDX header claims shape {dims} of {IDX_TYPES[code][0]}s = {nbytes} bytes, "
                        f"more than the limit of {max_bytes} bytes; the header is probably corrupt")
    return dtype, dims, nbytes, header_len


def _to_native(buffer, dtype: np.dtype, dims: tuple[int, ...]) -> np.ndarray:
    if math.prod(dims) == 0:
        return np.zeros(dims, dtype=dtype.newbyteorder("="))
    array = np.frombuffer(buffer, dtype=dtype).reshape(dims)
    if dtype.itemsize == 1:
        return array.view(dtype.newbyteorder("="))
    return array.astype(dtype.newbyteorder("="))


def _read_raw(handle, where: str, max_bytes: int) -> np.ndarray:
    dtype, dims, nbytes, header_len = _parse_header(handle, where, max_bytes)
    available = os.fstat(handle.fileno()).st_size - header_len
    if available < nbytes:
        raise DataError(f"{where}: truncated: header says {nbytes} bytes of data (shape {dims}), "
                        f"file has {max(available, 0)}")
    if available > nbytes:
        raise DataError(f"{where}: {available - nbytes} unexpected trailing bytes after the {nbytes} bytes of "
                        f"data the header describes (shape {dims})")
    buffer = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(buffer)
    filled = 0
    while filled < nbytes:
        count = handle.readinto(view[filled:])
        if not count:
            raise DataError(f"{where}: truncated while reading (the file changed?): header says {nbytes} "
                            f"bytes of data, got {filled}")
        filled += count
    return _to_native(buffer, dtype, dims)


def _read_gzip(stream, where: str, max_bytes: int) -> np.ndarray:
    dtype, dims, nbytes, _ = _parse_header(stream, where, max_bytes)
    # The uncompressed size is unknown until the end, so grow a buffer by chunks instead of trusting the header
    # with a big allocation; keep reading to the end so that gzip checks its CRC and length trailer.
    buffer = bytearray()
    while len(buffer) <= nbytes:
        chunk = stream.read(min(_CHUNK, nbytes + 1 - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    if len(buffer) < nbytes:
        raise DataError(f"{where}: truncated: header says {nbytes} bytes of data (shape {dims}), "
                        f"file has {len(buffer)}")
    if len(buffer) > nbytes:
        extra = len(buffer) - nbytes
        while extra <= max_bytes:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            extra += len(chunk)
        raise DataError(f"{where}: {extra} unexpected trailing bytes after the {nbytes} bytes of data the header "
                        f"describes (shape {dims})")
    return _to_native(buffer, dtype, dims)


@contextlib.contextmanager
def reading(where: str, what: str = "a file") -> Iterator[None]:
    """Turn each way reading a (possibly gzipped) file can fail into one DataError naming the file."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a directory, not {what}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{where}: corrupt or truncated gzip data ({exc or type(exc).__name__})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read: {exc}") from None


def _drain(stream, limit: int) -> None:
    """Read and discard up to ``limit`` more bytes (so gzip validates what it can)."""
    seen = 0
    while seen <= limit:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        seen += len(chunk)


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw, detected by its magic bytes) into a native-endian array.

    Raises DataError for a missing file, a bad header, a payload that is shorter or longer than the header
    says, or corrupt gzip data.
    """
    where = str(path)
    with reading(where, "an IDX file"), open(path, "rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
        handle.seek(0)
        if not compressed:
            return _read_raw(handle, where, max_bytes)
        with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
            try:
                return _read_gzip(stream, where, max_bytes)
            except DataError:
                # A damaged deflate stream can yield a garbled header before gzip sees its CRC: report the
                # corruption rather than the symptom when the rest of the stream proves it.
                _drain(stream, max_bytes)
                raise


_WRITE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def encode_idx(array: np.ndarray) -> bytes:
    """The bytes of an (uncompressed) IDX file holding ``array``."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _WRITE_CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}; use one of "
                        f"{', '.join(str(d) for d in _WRITE_CODES)}")
    if not 1 <= array.ndim <= 4:
        raise DataError(f"IDX stores 1 to 4 dimensions, got an array of shape {array.shape}")
    if any(d >= 2**31 for d in array.shape):
        raise DataError(f"IDX dimensions must be below 2**31, got shape {array.shape}")
    code = _WRITE_CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = np.ascontiguousarray(array, dtype=np.dtype(IDX_TYPES[code][1])).tobytes()
    return header + payload


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when the name ends in ``.gz``. Returns the path."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
