"""Data layer: IDX files, dataset lookup/download, image and text loading, tensor transforms.

Names are re-exported lazily (PEP 562) so that ``import genlab.data`` does no work and pulls in neither numpy
nor torch until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "idx": ("read_idx", "write_idx", "encode_idx", "is_gzip", "IDX_TYPES", "MAX_IDX_BYTES"),
    "sources": ("DATASETS", "DataFile", "DatasetSpec", "Md5Cache", "MD5_CACHE", "cache_root", "compute_md5",
                "get_spec", "locate", "read_uncompressed", "resolve_file", "urllib_fetch", "verify_md5"),
    "images": ("IMAGE_DATASETS", "ImageArrays", "load_images"),
    "transforms": ("check_unit_range", "flatten", "from_symmetric", "pad_to", "stochastic_binarize",
                   "threshold_binarize", "to_symmetric", "to_unit_float"),
    "text": ("TEXT_DATASETS", "CharVocab", "decode_text", "load_corpus", "split_corpus"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from genlab.data.idx import IDX_TYPES, MAX_IDX_BYTES, encode_idx, is_gzip, read_idx, write_idx
    from genlab.data.images import IMAGE_DATASETS, ImageArrays, load_images
    from genlab.data.sources import (
        DATASETS,
        MD5_CACHE,
        DataFile,
        DatasetSpec,
        Md5Cache,
        cache_root,
        compute_md5,
        get_spec,
        locate,
        read_uncompressed,
        resolve_file,
        urllib_fetch,
        verify_md5,
    )
    from genlab.data.text import TEXT_DATASETS, CharVocab, decode_text, load_corpus, split_corpus
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
