"""Animated GIFs, kept at this path for notebooks and scripts written against it: :func:`save_gif` lives in
:mod:`genlab.image_files` (below the training layer, whose callbacks save the progress GIF)."""

from genlab.image_files import save_gif

__all__ = ["save_gif"]
