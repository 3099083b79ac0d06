"""Partition functions of Bernoulli-Bernoulli RBMs (exact enumeration and AIS), as evaluation names.

The estimators moved to :mod:`genlab.models.partition`, so the RBM and DBN use them without importing the eval
layer; this module re-exports them under their old names.
"""

from genlab.models import partition as _partition
from genlab.models.partition import (
    ais_confidence,
    ais_log_partition,
    bernoulli,
    default_betas,
    exact_log_partition,
)

__all__ = list(_partition.__all__)  # one list of names: the one in models/partition.py
