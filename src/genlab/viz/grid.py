"""Image grids, kept at this path for notebooks and scripts written against it: the functions live in
:mod:`genlab.image_files` (below the training layer, whose callbacks save sample grids)."""

from genlab.image_files import make_grid, save_grid, to_image_batch

__all__ = ["make_grid", "save_grid", "to_image_batch"]
