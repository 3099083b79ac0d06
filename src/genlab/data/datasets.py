"""From a DataConfig to ready-to-train loaders and a DataInfo the model is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from genlab.config import DataConfig
from genlab.data.info import DataInfo
from genlab.data.loader import BatchLoader
from genlab.data.sources import dataset_name, names_of_kind
from genlab.errors import DataError

TEXT_DATASETS = names_of_kind("text")
IMAGE_DATASETS = names_of_kind("image")
# Text targets with this value carry no loss: torch.nn.functional.cross_entropy's default ignore_index.
IGNORE_INDEX = -100


@dataclass
class DataBundle:
    info: DataInfo
    train: BatchLoader
    val: BatchLoader | None
    test: BatchLoader | None


def dataset_kind(name: str) -> str:
    """'image' or 'text' from a dataset name or a user file's suffix."""
    name = dataset_name(name) or name
    if name in IMAGE_DATASETS or Path(name).suffix.lower() in (".npy", ".npz"):
        return "image"
    if name in TEXT_DATASETS or Path(name).suffix.lower() in (".txt", ".md", ".text") or Path(name).is_file():
        return "text"
    raise DataError(f"unknown dataset {name!r}: use one of {', '.join(IMAGE_DATASETS + TEXT_DATASETS)}, "
                    "a .npy/.npz image array, or a UTF-8 text file")


def build_data(cfg: DataConfig, *, seed: int, rank: int = 0, world_size: int = 1,
               splits: tuple[str, ...] = ("train", "val", "test")) -> DataBundle:
    kind = dataset_kind(cfg.dataset)
    builder = {"image": _build_images, "text": _build_text}[kind]
    return builder(cfg, seed=seed, rank=rank, world_size=world_size, splits=splits)


def _prepare_images(raw, cfg: DataConfig) -> Tensor:
    from genlab.data import transforms

    images = transforms.to_unit_float(torch.from_numpy(raw))
    if cfg.pad_to:
        images = transforms.pad_to(images, cfg.pad_to)
    return images


def _fixed_binarization(images: Tensor, cfg: DataConfig, salt: int) -> Tensor:
    from genlab.data import transforms

    if cfg.binarize == "threshold":
        return transforms.threshold_binarize(images)
    if cfg.binarize == "dynamic":
        generator = torch.Generator().manual_seed(cfg.test_binarize_seed + salt)
        return transforms.stochastic_binarize(images, generator)
    return images


def _output_scale(images: Tensor, cfg: DataConfig) -> Tensor:
    from genlab.data import transforms

    return transforms.to_symmetric(images) if cfg.scale == "symmetric" else images


def _build_images(cfg: DataConfig, *, seed: int, rank: int, world_size: int, splits) -> DataBundle:
    from genlab.data import transforms
    from genlab.data.images import load_images

    train_raw = load_images(cfg.dataset, "train", data_dir=cfg.data_dir, download=cfg.download)
    images = _prepare_images(train_raw.images, cfg)
    labels = _labels(train_raw.labels, len(images))
    if cfg.limit:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    val_images = val_labels = None
    if cfg.val_size:
        if cfg.val_size >= len(images):
            raise DataError(f"data.val_size={cfg.val_size} leaves no training data ({len(images)} images); "
                            "lower it or set data.val_size=0")
        images, val_images = images[: -cfg.val_size], images[-cfg.val_size:]
        labels, val_labels = labels[: -cfg.val_size], labels[-cfg.val_size:]

    def dynamic_binarization(batch, generator):
        x, y = batch
        return _output_scale(transforms.stochastic_binarize(x, generator), cfg), y

    train_transform = dynamic_binarization if cfg.binarize == "dynamic" else None
    if cfg.binarize != "dynamic":
        images = _output_scale(_fixed_binarization(images, cfg, salt=0), cfg)

    train = BatchLoader((images, labels), cfg.batch_size, shuffle=True, seed=seed, transform=train_transform,
                        rank=rank, world_size=world_size, drop_last=world_size > 1)
    val = None
    if val_images is not None and "val" in splits:
        val_images = _output_scale(_fixed_binarization(val_images, cfg, salt=1), cfg)
        val = BatchLoader((val_images, val_labels), cfg.batch_size, shuffle=False)
    test = None
    if "test" in splits:
        try:
            test_raw = load_images(cfg.dataset, "test", data_dir=cfg.data_dir, download=cfg.download)
        except DataError:
            if Path(cfg.dataset).suffix:
                test_raw = None  # a user array without a test split: eval falls back to validation
            else:
                raise
        if test_raw is not None:
            test_images = _output_scale(_fixed_binarization(_prepare_images(test_raw.images, cfg), cfg, salt=2), cfg)
            test = BatchLoader((test_images, _labels(test_raw.labels, len(test_images))), cfg.batch_size,
                               shuffle=False)
    low, high = cfg.value_range
    info = DataInfo(kind="image", shape=tuple(images.shape[1:]),
                    num_classes=int(labels.max()) + 1 if bool((labels >= 0).any()) else 0,
                    value_range=(low, high), binary=cfg.binarize != "none")
    return DataBundle(info, train, val, test)


def _labels(labels, count: int) -> Tensor:
    if labels is None:
        return torch.full((count,), -1, dtype=torch.long)
    return torch.as_tensor(labels, dtype=torch.long)


def _chunk(ids: Tensor, seq_len: int, what: str) -> tuple[Tensor, Tensor]:
    """Non-overlapping (input, target) rows of length seq_len; targets are inputs shifted by one."""
    count = (len(ids) - 1) // seq_len
    if count < 1:
        raise DataError(f"the {what} text has {len(ids)} characters, fewer than one training sequence of "
                        f"{seq_len + 1}; use a longer text or lower data.seq_len")
    usable = count * seq_len
    inputs = ids[:usable].reshape(count, seq_len)
    targets = ids[1:usable + 1].reshape(count, seq_len)
    return inputs, targets


def _streams(ids: Tensor, seq_len: int, streams: int) -> tuple[Tensor, Tensor]:
    """(input, target) rows laid out as ``streams`` contiguous streams of the text, read in order.

    The text is cut into ``streams`` equal contiguous pieces; row ``i * streams + s`` is chunk ``i`` of piece
    ``s``. An unshuffled loader with ``batch_size * world_size == streams`` then gives every rank, at every
    batch, the next chunk of the same pieces (the loader shards rows ``rank::world_size``), which is what
    truncated BPTT with a carried state needs.
    """
    stride = (len(ids) - 1) // streams
    chunks = stride // seq_len
    if chunks < 1:
        raise DataError(f"the training text has {len(ids)} characters, too few for {streams} contiguous streams "
                        f"of at least one sequence of {seq_len + 1}; lower data.batch_size or data.seq_len, or use "
                        "data.text_order=shuffled")
    starts = torch.arange(streams) * stride
    index = starts[:, None] + torch.arange(chunks * seq_len)[None, :]  # (streams, chunks * seq_len)

    def rows(positions: Tensor) -> Tensor:
        return ids[positions].reshape(streams, chunks, seq_len).transpose(0, 1).reshape(chunks * streams, seq_len)

    return rows(index), rows(index + 1)


def _with_tail(ids: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
    """Like :func:`_chunk`, plus one last row for the characters a whole sequence would drop.

    The last row's inputs are padded with id 0 and its targets with ``IGNORE_INDEX``, so a cross-entropy with
    that ignore_index scores every character of ``ids`` after the first exactly once, in order.
    """
    count = (len(ids) - 1) // seq_len
    inputs, targets = (_chunk(ids, seq_len, "validation") if count >= 1 else
                       (ids.new_empty(0, seq_len), ids.new_empty(0, seq_len)))
    rest = len(ids) - 1 - count * seq_len
    if rest == 0:
        return inputs, targets
    tail_inputs = ids.new_zeros(1, seq_len)
    tail_inputs[0, :rest] = ids[count * seq_len:count * seq_len + rest]
    tail_targets = ids.new_full((1, seq_len), IGNORE_INDEX)
    tail_targets[0, :rest] = ids[count * seq_len + 1:]
    return torch.cat([inputs, tail_inputs]), torch.cat([targets, tail_targets])


def _build_text(cfg: DataConfig, *, seed: int, rank: int, world_size: int, splits) -> DataBundle:
    from genlab.data.text import CharVocab, load_corpus, split_corpus

    text = load_corpus(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download)
    train_text, val_text = split_corpus(text, cfg.val_fraction)
    vocab = CharVocab.from_text(train_text)
    train_ids = vocab.encode(train_text)
    if cfg.limit:
        train_ids = train_ids[: cfg.limit]
    if cfg.text_order == "streams":
        rows = _streams(train_ids, cfg.seq_len, cfg.batch_size * world_size)
        train = BatchLoader(rows, cfg.batch_size, shuffle=False, seed=seed, rank=rank, world_size=world_size,
                            drop_last=world_size > 1)
    else:
        train = BatchLoader(_chunk(train_ids, cfg.seq_len, "training"), cfg.batch_size, shuffle=True, seed=seed,
                            rank=rank, world_size=world_size, drop_last=world_size > 1)
    val = None
    if val_text and "val" in splits:
        val_ids = vocab.encode(val_text, unknown="replace")
        if cfg.text_val_tail and len(val_ids) >= 2:
            val_rows = _with_tail(val_ids, cfg.seq_len)
        else:
            val_rows = _chunk(val_ids, cfg.seq_len, "validation")
        val = BatchLoader(val_rows, cfg.batch_size, shuffle=False)
    info = DataInfo(kind="text", shape=(cfg.seq_len,), vocab=vocab.chars)
    # Text corpora have no separate test split (the nanoGPT convention): evaluation reports validation.
    return DataBundle(info, train, val, val if "test" in splits else None)
