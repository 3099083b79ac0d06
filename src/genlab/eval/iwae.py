"""Importance-weighted estimates of log p(x) for latent-variable models (Burda et al. 2015), as evaluation names.

The estimator and the Gaussian log densities moved to :mod:`genlab.models.importance`, so the VAE uses them
without importing the eval layer; this module re-exports them under their old names.
"""

from genlab.models import importance as _importance
from genlab.models.importance import (
    LOG_2PI,
    ImportanceWeightedEstimate,
    diag_gaussian_log_density,
    importance_weighted_estimate,
    log_mean_exp,
    mean_and_standard_error,
    standard_normal_log_density,
)

__all__ = ["LOG_2PI", *_importance.__all__]  # the names are listed once, in models/importance.py
