"""The RBM's partition function and test log-likelihood: :class:`RBMLikelihood`, the mixin that gives
:class:`genlab.models.rbm.RBM` ``log_partition`` (exact enumeration and/or AIS, Salakhutdinov & Murray 2008)
and ``evaluate``.

Split out of :mod:`genlab.models.rbm`; the estimators themselves are in :mod:`genlab.models.partition`. The mixin
uses the RBM's ``config``, ``W``, ``b``, ``c``, ``base_rate_logits``, ``free_energy``, ``_visible`` and
``_fixed_generator``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from genlab.errors import ConfigError, DataError
from genlab.models.partition import (
    ais_confidence,
    ais_log_partition,
    default_betas,
    exact_log_partition,
)
from genlab.progress import Progress

# Enumerating 2^n states beyond this is impractical; it also bounds exact_max_hidden.
_EXACT_LIMIT = 32


class RBMLikelihood:
    """log Z and the test log-likelihood of :class:`genlab.models.rbm.RBM` (a mixin; see the module docstring)."""

    def _exact_possible(self, limit: int) -> bool:
        return min(self.config.n_hidden, self.config.n_visible) <= limit

    @torch.no_grad()
    def log_partition(self, *, generator: torch.Generator | None = None, ais_runs: int | None = None,
                      ais_betas: int | None = None, exact: bool | None = None) -> dict[str, float]:
        """log Z by enumeration and/or AIS; see :meth:`evaluate` for the options and the keys."""
        cfg = self.config
        runs = cfg.ais_runs if ais_runs is None else int(ais_runs)
        n_betas = cfg.ais_betas if ais_betas is None else int(ais_betas)
        can_exact = self._exact_possible(cfg.exact_max_hidden)
        if exact and not can_exact:
            raise ConfigError(
                f"exact log Z needs 2^{min(cfg.n_hidden, cfg.n_visible)} terms, above "
                f"model.exact_max_hidden={cfg.exact_max_hidden}; use AIS (ais_runs > 0) instead"
            )
        use_exact = can_exact if exact is None else bool(exact)
        if use_exact and ais_runs is None:
            runs = 0  # enumeration is exact and takes seconds; AIS only as a cross-check asked for by ais_runs
        if runs < 0:
            raise ConfigError(f"ais_runs must be >= 0, got {runs}")
        if runs == 0 and not use_exact:
            raise ConfigError("ais_runs=0 turns AIS off, which leaves no way to compute log Z for this RBM; "
                              "set ais_runs > 0")
        result: dict[str, float] = {}
        if use_exact:
            result["log_z_exact"] = exact_log_partition(self.W, self.b, self.c, max_hidden=_EXACT_LIMIT)
        if runs > 0:
            if generator is None:
                generator = self._fixed_generator(0)
            betas = default_betas(n_betas)
            progress = Progress(len(betas) - 1, f"AIS log Z ({runs} runs, {self.config.n_hidden} hidden), "
                                "temperature", hint="fewer runs or temperatures are faster and less exact: "
                                "--option ais_runs=N --option ais_betas=N")
            try:
                log_z, log_weights = ais_log_partition(self.W, self.b, self.c, self.base_rate_logits, betas, runs,
                                                       generator, progress=progress)
            finally:
                progress.close()
            lower, upper = ais_confidence(log_weights)
            result.update(log_z_ais=log_z, log_z_ais_lower=lower, log_z_ais_upper=upper,
                          ais_runs=float(runs), ais_betas=float(n_betas))
        result["log_z_is_exact"] = 1.0 if use_exact else 0.0
        result["log_z"] = result["log_z_exact"] if use_exact else result["log_z_ais"]
        return result

    @torch.no_grad()
    def evaluate(self, test_batches: Iterable[Any], *, generator: torch.Generator | None = None,
                 ais_runs: int | None = None, ais_betas: int | None = None, exact: bool | None = None,
                 **options: Any) -> dict[str, float]:
        """Average test log-likelihood in nats per image, ``mean(-F(v)) - log Z``, for *binary* test data.

        log Z is exact when min(n_hidden, n_visible) <= ``config.exact_max_hidden`` (``exact=None``: whenever
        possible; ``True``: insist; ``False``: never) and estimated by AIS with ``ais_runs`` runs over
        ``ais_betas`` inverse temperatures (defaults from the config; ``ais_runs=0`` skips AIS). When log Z is
        exact, AIS runs only if ``ais_runs`` is given, as a cross-check. ``generator``
        drives AIS (default: a fixed seed, so evaluation is reproducible).

        Keys (all floats): ``test_loglik_nats``, ``test_free_energy``, ``n_test``, ``log_z``, ``log_z_is_exact``
        (1.0 when ``log_z`` was enumerated), ``log_z_exact`` (when computed), and with AIS ``log_z_ais``,
        ``log_z_ais_lower`` / ``log_z_ais_upper`` (log(Ẑ ∓ 3 standard errors), Salakhutdinov & Murray 2008),
        ``test_loglik_nats_ais`` with ``test_loglik_nats_lower`` / ``_upper`` from that interval, ``ais_runs``
        and ``ais_betas``.
        """
        if options:
            raise ConfigError(f"RBM.evaluate got unknown option(s): {', '.join(sorted(options))}; "
                              "valid: ais_runs, ais_betas, exact")
        neg_energy, count = 0.0, 0
        for batch in test_batches:
            x = self._visible(batch)
            if not bool(((x == 0) | (x == 1)).all()):
                raise DataError("the test log-likelihood of a Bernoulli RBM is defined for binary data only; "
                                "binarize the test set (data.binarize=dynamic or threshold)")
            neg_energy -= float(self.free_energy(x).sum(dtype=torch.float64))
            count += x.shape[0]
        if count == 0:
            raise DataError("evaluate got no test examples")
        mean_neg_energy = neg_energy / count
        result = self.log_partition(generator=generator, ais_runs=ais_runs, ais_betas=ais_betas, exact=exact)
        result.update(test_loglik_nats=mean_neg_energy - result["log_z"], test_free_energy=-mean_neg_energy,
                      n_test=float(count))
        if "log_z_ais" in result:
            result["test_loglik_nats_ais"] = mean_neg_energy - result["log_z_ais"]
            result["test_loglik_nats_lower"] = mean_neg_energy - result["log_z_ais_upper"]
            result["test_loglik_nats_upper"] = mean_neg_energy - result["log_z_ais_lower"]
        return result
