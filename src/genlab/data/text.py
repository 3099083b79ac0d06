"""Character-level text: loading a corpus strictly as UTF-8, the nanoGPT train/val split, and a char vocabulary."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.data import sources
from genlab.errors import ConfigError, DataError

TEXT_DATASETS = sources.names_of_kind("text")
UNKNOWN_POLICIES = ("error", "skip", "replace")
_BOM = b"\xef\xbb\xbf"


def load_corpus(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                download: bool = True) -> str:
    """The text of a named corpus (``tinyshakespeare``) or of a UTF-8 file (gzipped or not)."""
    path: Path
    key = sources.dataset_name(name_or_path)
    if key is not None:
        spec = sources.get_spec(key)
        if spec.kind != "text":
            raise DataError(f"{key} is an {spec.kind} dataset, not a text corpus; text corpora: "
                            f"{', '.join(TEXT_DATASETS)} or the path of a UTF-8 text file")
        directory = sources.locate(key, data_dir, download)
        found = sources.resolve_file(directory, spec.files[0].name)
        if found is None:
            raise DataError(f"{directory}: {spec.files[0].name} disappeared")
        path = found
    else:
        path = sources.existing_user_file(name_or_path, "text", "the path of a UTF-8 text file")
    return decode_text(sources.read_uncompressed(path), str(path))


def decode_text(data: bytes, where: str) -> str:
    """Strict UTF-8 decoding of a whole corpus (a leading BOM is dropped); DataError naming what is wrong."""
    if not data:
        raise DataError(f"{where}: the file is empty")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{where}: looks binary (NUL byte at offset {nul}); expected a UTF-8 text file")
    start = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[start:].decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        raise DataError(f"{where}: not valid UTF-8 at byte offset {offset} (byte 0x{data[offset]:02x}); convert "
                        f"it first, e.g. iconv -f latin1 -t utf-8") from None
    if not text.strip():
        raise DataError(f"{where}: contains only whitespace")
    return text


def split_corpus(text: str, val_fraction: float) -> tuple[str, str]:
    """(first 1-f, last f) of ``text`` by characters, the nanoGPT split: ``n_train = int(len(text) * (1 - f))``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = int(len(text) * (1.0 - val_fraction))
    return text[:n_train], text[n_train:]


class CharVocab:
    """A character vocabulary: index ``i`` is ``chars[i]``. Saved and restored as the plain string ``chars``."""

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise DataError("a character vocabulary needs at least one character")
        if len(set(chars)) != len(chars):
            dupes = sorted({c for c in chars if chars.count(c) > 1})
            raise DataError(f"vocabulary characters must be unique; repeated: {', '.join(map(repr, dupes))}")
        self.chars = chars
        self.replacement = " " if " " in chars else chars[0]
        codes = np.frombuffer(chars.encode("utf-32-le", errors="surrogatepass"), dtype="<u4").astype(np.int64)
        self._max_code = int(codes.max())
        self._table = np.full(self._max_code + 1, -1, dtype=np.int32)
        self._table[codes] = np.arange(len(chars), dtype=np.int32)
        self._char_array = np.frombuffer(chars.encode("utf-32-le", errors="surrogatepass"), dtype="<U1")

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        """The sorted unique characters of ``text``."""
        if not text:
            raise DataError("cannot build a vocabulary from empty text")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} chars: {self.chars[:40]!r}{'...' if len(self) > 40 else ''})"

    def encode(self, text: str, unknown: str = "error") -> Tensor:
        """Character ids as a LongTensor. ``unknown``: "error" (DataError), "skip" (drop) or "replace"."""
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
        if not text:
            return torch.empty(0, dtype=torch.long)
        codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")
        ids = np.full(codes.shape[0], -1, dtype=np.int64)
        known = codes <= self._max_code
        ids[known] = self._table[codes[known]]
        bad = ids < 0
        if bad.any():
            if unknown == "error":
                values, counts = np.unique(codes[bad], return_counts=True)
                order = np.argsort(-counts, kind="stable")[:20]
                listed = ", ".join(f"{chr(int(values[i]))!r} x{int(counts[i])}" for i in order)
                more = f" and {len(values) - len(order)} more" if len(values) > len(order) else ""
                raise DataError(
                    f"text has {int(bad.sum())} character(s) not in the {len(self)}-character vocabulary: "
                    f"{listed}{more}; use unknown='skip' to drop them or unknown='replace' to map them to "
                    f"{self.replacement!r}"
                )
            if unknown == "skip":
                ids = ids[~bad]
            else:
                ids[bad] = self._table[ord(self.replacement)]
        return torch.from_numpy(ids)

    def decode(self, ids: Tensor | np.ndarray | Iterable[int]) -> str:
        """The string for a sequence of ids (any shape is flattened)."""
        if isinstance(ids, Tensor):
            array = ids.detach().to("cpu", torch.int64).reshape(-1).numpy()
        else:
            array = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1)
            if array.size and array.dtype.kind not in "iu":
                raise DataError(f"token ids must be integers, got {array.dtype}")
            array = array.astype(np.int64)
        if array.size == 0:
            return ""
        if array.min() < 0 or array.max() >= len(self):
            raise DataError(f"token ids must be in 0..{len(self) - 1}, found {array.min()}..{array.max()}")
        return self._char_array[array].tobytes().decode("utf-32-le", errors="surrogatepass")
