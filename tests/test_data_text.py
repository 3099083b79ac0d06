"""Text corpora: strict UTF-8 loading, the nanoGPT split, and the character vocabulary."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.data import sources
from genlab.data.text import CharVocab, load_corpus, split_corpus
from genlab.errors import ConfigError, DataError

REAL_DATA = Path(os.environ.get("GENLAB_DATA") or "/work/shared/data")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATA_ROOT", tmp_path / "system")


def write(tmp_path: Path, data: bytes, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_load_file(tmp_path):
    text = "Héllo, wörld!\nΣ ✓\n"
    assert load_corpus(write(tmp_path, text.encode())) == text
    assert load_corpus(str(write(tmp_path, gzip.compress(text.encode()), "c.txt.gz"))) == text
    assert load_corpus(write(tmp_path, b"\xef\xbb\xbfabc", "bom.txt")) == "abc"


def test_invalid_utf8_names_offset(tmp_path):
    path = write(tmp_path, "abc é ".encode() + b"caf\xe9 au lait")
    with pytest.raises(DataError, match=r"corpus\.txt: not valid UTF-8 at byte offset 10 \(byte 0xe9\)"):
        load_corpus(path)
    with pytest.raises(DataError, match="offset 5"):
        load_corpus(write(tmp_path, b"\xef\xbb\xbfab\xff", "bom.txt"))


@pytest.mark.parametrize("data, fragment", [
    (b"text\x00more", "looks binary"),
    (b"", "empty"),
    (b" \n\t\r\n  ", "only whitespace"),
])
def test_rejected_contents(tmp_path, data, fragment):
    with pytest.raises(DataError, match=fragment):
        load_corpus(write(tmp_path, data))


def test_missing_and_unknown(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="unknown text dataset 'warandpeace'"):
        load_corpus("warandpeace")
    with pytest.raises(DataError, match="image dataset"):
        load_corpus("mnist", download=False)
    with pytest.raises(DataError, match="tinyshakespeare not found"):
        load_corpus("tinyshakespeare", tmp_path, download=False)


def test_split_corpus():
    text = "abcdefghij"
    assert split_corpus(text, 0.1) == ("abcdefghi", "j")
    assert split_corpus(text, 0.0) == (text, "")
    assert split_corpus(text, 0.25) == ("abcdefg", "hij")  # int(10 * 0.75) = 7
    with pytest.raises(ConfigError):
        split_corpus(text, 1.0)
    with pytest.raises(ConfigError):
        split_corpus(text, -0.1)


def test_vocab_round_trip():
    text = "hello world, ünïcödé ✓ 🙂\n"
    vocab = CharVocab.from_text(text)
    assert vocab.chars == "".join(sorted(set(text)))
    assert len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == torch.long and ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.decode(ids.tolist()) == text
    assert vocab.decode(ids.numpy().reshape(1, -1)) == text
    assert vocab.decode([]) == "" and vocab.encode("").shape == (0,)
    restored = CharVocab(vocab.chars)
    assert restored == vocab and torch.equal(restored.encode(text), ids)


def test_vocab_keeps_saved_order():
    vocab = CharVocab("zya")
    assert vocab.encode("azy").tolist() == [2, 0, 1]
    with pytest.raises(DataError, match="unique"):
        CharVocab("abca")
    with pytest.raises(DataError):
        CharVocab("")


def test_unknown_policies():
    vocab = CharVocab.from_text("ab c")
    with pytest.raises(DataError) as info:
        vocab.encode("abXcYX")
    message = str(info.value)
    assert "'X' x2" in message and "'Y' x1" in message
    assert "unknown='skip'" in message and "unknown='replace'" in message
    assert vocab.encode("abXcYX", unknown="skip").tolist() == vocab.encode("abc").tolist()
    assert vocab.decode(vocab.encode("abXcYX", unknown="replace")) == "ab c  "
    no_space = CharVocab("xyz")
    assert no_space.replacement == "x"
    assert no_space.decode(no_space.encode("y?z", unknown="replace")) == "yxz"
    # far-away code points (above the vocabulary's largest) are unknown too
    assert no_space.encode("x🙂", unknown="skip").tolist() == [0]
    with pytest.raises(ConfigError):
        vocab.encode("a", unknown="ignore")


def test_decode_rejects_bad_ids():
    vocab = CharVocab("abc")
    with pytest.raises(DataError, match=r"0\.\.2"):
        vocab.decode([0, 3])
    with pytest.raises(DataError):
        vocab.decode(torch.tensor([-1]))
    with pytest.raises(DataError, match="integers"):
        vocab.decode(np.array([0.5]))


def test_tinyshakespeare():
    if not (REAL_DATA / "tinyshakespeare").is_dir():
        pytest.skip(f"no tinyshakespeare under {REAL_DATA}")
    text = load_corpus("tinyshakespeare", REAL_DATA, download=False)
    assert len(text) == 1115394
    train, val = split_corpus(text, 0.1)
    assert (len(train), len(val)) == (1003854, 111540)
    vocab = CharVocab.from_text(text)
    assert len(vocab) == 65 and vocab.chars[0] == "\n" and vocab.chars[1] == " "
    assert vocab.decode(vocab.encode(val)) == val
