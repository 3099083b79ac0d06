"""Sample-quality metrics on feature vectors: k-NN precision/recall, density/coverage and a memorisation check.

Every metric here compares sets of feature vectors (torch tensors of shape (n, d), one row per image), e.g. the
judge's 128 penultimate-layer features (:mod:`genlab.eval.judge`) or Inception-v3 pool features, through the
Euclidean k-nearest-neighbour (k-NN) balls that the points of one set span: the ball of a point has the
point at its centre and the distance to its k-th nearest *other* point of the same set as its radius.

* **Improved precision and recall** (:func:`precision_recall`), Kynkäänniemi, Karras, Laine, Lehtinen & Aila
  (2019), "Improved Precision and Recall Metric for Assessing Generative Models", NeurIPS 2019. Precision is the
  fraction of generated samples that fall inside at least one real k-NN ball (fidelity); recall is the fraction
  of real samples inside at least one generated k-NN ball (diversity). The paper uses k = 3.
* **Density and coverage** (:func:`density_coverage`), Naeem, Oh, Uh, Choi & Yoo (2020), "Reliable Fidelity and
  Diversity Metrics for Generative Models", ICML 2020. Both use only the real balls, which makes them robust to
  generated outliers: density counts how many real balls each sample falls into, divided by k (its expectation
  is 1 when both sets are drawn from the same distribution; it is unbounded above), and coverage is the
  fraction of real balls that contain at least one sample. The paper uses k = 5.
* **Memorisation check** (:func:`memorisation`): the nearest-neighbour distances of generated samples to the
  training set, compared with those of held-out test images to the same training set. This is the comparison
  behind the data-copying test of Meehan, Chaudhuri & Dasgupta (2020), "A Non-Parametric Test to Detect
  Data-Copying in Generative Models", AISTATS 2020, summarised here by medians and a copied fraction. As Theis,
  van den Oord & Bethge (2016), "A note on the evaluation of generative models", ICLR 2016, point out, a
  nearest-neighbour check in pixel space only catches near-exact copies (a copy shifted by one pixel can be far
  away in Euclidean distance), so a clean result is necessary evidence against memorisation, not proof of it.

How it is computed. Pairwise distances are never held as a full n x m matrix: rows are processed ``chunk`` at a
time (and columns in blocks, so that no block exceeds 2**24 float64 entries, 128 MiB), all in float64 whatever
the input dtype. Squared distances come from the Gram expansion ||x||² + ||y||² - 2 xᵀy (one matrix product per
block) after both sets are centred on their common mean, which keeps the expansion's cancellation error small:
the standard dot-product error bound puts it below ``tol = 4 (d + 2) eps ||x||²_max`` (eps = float64 machine
epsilon, ||x||²_max the largest squared norm after centring). A point whose squared distance is within ``tol``
of a ball's squared radius counts as inside, so exact ties (e.g. the k-th neighbour of a real point that also
appears in the generated set) are decided as ``<=``, as in the papers and as a brute-force computation decides
them. Radii and nearest distances are not taken from the expansion: it proposes the k + 4 nearest candidates
and these are re-ranked by the direct formula ||x - y||, so returned distances carry no cancellation error (an
exact copy is at distance 0.0, even next to a near-duplicate).

10,000 real against 10,000 generated 128-d features take about 1-2 s per metric on two idle CPU cores and
under 200 MB beyond the inputs (one float64 copy of each set plus one 1024 x 10,000 block).
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
from torch import Tensor

from genlab.errors import ConfigError

__all__ = [
    "density_coverage",
    "kth_neighbour_radii",
    "memorisation",
    "nearest_distances",
    "precision_recall",
]

DEFAULT_CHUNK = 1024  # rows of a distance block
_BLOCK_ELEMENTS = 1 << 24  # at most this many float64 entries (128 MiB) in one distance block
_EPS64 = torch.finfo(torch.float64).eps
_EXTRA_CANDIDATES = 4  # neighbours beyond the k-th that are re-ranked with the direct distance formula
COPY_PERCENTILE = 0.01  # memorisation: a sample is "copied" below this quantile of the test NN distances


# ---------------------------------------------------------------------------------------------------- validation

def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _as_features(x, name: str, *, flatten: bool = False) -> Tensor:
    """Validate one feature set; returns it as an (n, d) tensor (a view, no copy; any real dtype)."""
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    if flatten:
        if x.ndim < 2:
            raise ConfigError(f"{name} must be a batch of shape (n, ...) with at least 2 dimensions, "
                              f"got shape {tuple(x.shape)}")
        x = x.reshape(x.shape[0], -1)
    elif x.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D tensor of shape (n, d), got shape {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise ConfigError(f"{name} must hold real numbers, got dtype {x.dtype}")
    n, d = x.shape
    if n == 0:
        raise ConfigError(f"{name} has no rows (shape {tuple(x.shape)})")
    if d == 0:
        raise ConfigError(f"{name} has no feature columns (shape {tuple(x.shape)})")
    if x.is_floating_point():
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ConfigError(f"{name} has {bad} non-finite (NaN or infinite) entries")
    return x


def _check_pair(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"{name_a} and {name_b} must have the same feature dimension, "
                          f"got {a.shape[1]} and {b.shape[1]}")
    if a.device != b.device:
        raise ConfigError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")


def _check_k(k, sets: dict[str, Tensor]) -> int:
    k = _check_int(k, "k")
    for name, x in sets.items():
        if x.shape[0] <= k:
            raise ConfigError(f"k = {k} nearest neighbours need more than {k} rows in {name}, got {x.shape[0]}")
    return k


def _result_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float64


# ----------------------------------------------------------------------------------------------------- kernels

def _column_width(rows: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, rows))


def _centre(*sets: Tensor) -> list[Tensor]:
    """float64 copies of the sets minus the common mean of all their rows (distances are translation invariant;
    centring shrinks the norms and so the cancellation error of the Gram expansion)."""
    total = sum(x.shape[0] for x in sets)
    mean = sum(x.sum(0, dtype=torch.float64) for x in sets) / total
    return [torch.sub(x, mean) for x in sets]  # promotes to float64 without an intermediate copy


def _squared_norms(x: Tensor) -> Tensor:
    return x.square().sum(1)


def _candidates(queries: Tensor, references: Tensor, count: int, chunk: int, *, exclude_self: bool) -> Tensor:
    """Indices (q, count) of each query's ``count`` nearest reference rows by the Gram expansion, nearest first;
    with ``exclude_self`` the query set is the reference set and row i is never its own candidate. Inputs are
    centred float64; needs count <= number of (other) reference rows."""
    n_q, n_r = queries.shape[0], references.shape[0]
    ref_sq = _squared_norms(references)
    width = _column_width(chunk)
    out = torch.empty(n_q, count, dtype=torch.long, device=queries.device)
    for r0 in range(0, n_q, chunk):
        r1 = min(n_q, r0 + chunk)
        best_v: Tensor | None = None
        best_i: Tensor | None = None
        for c0 in range(0, n_r, width):
            c1 = min(n_r, c0 + width)
            # ||y||² - 2 xᵀy: the squared distance minus the row constant ||x||², so the same order along a row.
            block = torch.addmm(ref_sq[c0:c1].unsqueeze(0), queries[r0:r1], references[c0:c1].T, alpha=-2.0)
            if exclude_self:
                lo, hi = max(r0, c0), min(r1, c1)
                if lo < hi:
                    own = torch.arange(lo, hi, device=queries.device)
                    block[own - r0, own - c0] = math.inf
            v, i = torch.topk(block, min(count, c1 - c0), dim=1, largest=False)
            del block  # free before the next block is allocated: one block alive at a time
            i += c0
            if best_v is not None:  # merge with the best of the earlier column blocks
                v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
                v, sel = torch.topk(v, min(count, v.shape[1]), dim=1, largest=False)
                i = i.gather(1, sel)
            best_v, best_i = v, i
        out[r0:r1] = best_i
    return out


def _refined_kth_squared(queries: Tensor, references: Tensor, candidates: Tensor, k: int) -> Tensor:
    """The k-th smallest of ||queries[i] - references[j]||² over the candidates j of row i, (q,) float64,
    computed directly from the (uncentred) inputs, so free of the Gram expansion's cancellation error."""
    n_q, count = candidates.shape
    out = torch.empty(n_q, dtype=torch.float64, device=queries.device)
    rows = max(1, (_BLOCK_ELEMENTS // 8) // (count * queries.shape[1]))
    for r0 in range(0, n_q, rows):
        r1 = min(n_q, r0 + rows)
        diff = queries[r0:r1].to(torch.float64).unsqueeze(1) - references[candidates[r0:r1]].to(torch.float64)
        squared = diff.square().sum(2)
        out[r0:r1] = squared.kthvalue(k, dim=1).values
    return out


def _kth_squared(queries: Tensor, references: Tensor, k: int, chunk: int, *, exclude_self: bool) -> Tensor:
    """Exact squared distance (q,) float64 from each query row to its k-th nearest reference row (to its k-th
    nearest *other* row with ``exclude_self``, where ``references`` is ``queries``).

    The Gram expansion picks the k + _EXTRA_CANDIDATES nearest candidates and the direct formula ranks them, so
    the result is the exact k-th distance unless more than _EXTRA_CANDIDATES rows lie within rounding error
    (the bound in the module docstring) of it, and is within that bound of it even then.
    """
    if exclude_self:
        (q_c,) = _centre(queries)
        r_c = q_c
    else:
        q_c, r_c = _centre(queries, references)
    available = references.shape[0] - (1 if exclude_self else 0)
    candidates = _candidates(q_c, r_c, min(k + _EXTRA_CANDIDATES, available), chunk, exclude_self=exclude_self)
    del q_c, r_c
    return _refined_kth_squared(queries, references, candidates, k)


def _cross_setup(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """Centred float64 copies, their squared norms and the Gram-expansion error bound on a squared distance."""
    real_c, fake_c = _centre(real, fake)
    real_sq, fake_sq = _squared_norms(real_c), _squared_norms(fake_c)
    largest = float(torch.maximum(real_sq.max(), fake_sq.max()))
    tol = 4.0 * (real.shape[1] + 2) * _EPS64 * largest
    return real_c, fake_c, real_sq, fake_sq, tol


def _precision_recall_pass(real: Tensor, fake: Tensor, real_r2: Tensor, fake_r2: Tensor,
                           chunk: int) -> tuple[Tensor, Tensor]:
    """Ball memberships from one streamed pass over the (n_fake, n_real) squared distances d²_ji.

    ``real_r2`` (n_real,) and ``fake_r2`` (n_fake,) are the exact squared k-NN radii. Returns ``fake_in_real``
    (n_fake,) bool, fake_j inside at least one real ball, and ``real_in_fake`` (n_real,) bool, real_i inside at
    least one fake ball. A pair within the error bound of a boundary counts as inside.
    """
    real_c, fake_c, real_sq, fake_sq, tol = _cross_setup(real, fake)
    n_f, n_r = fake.shape[0], real.shape[0]
    fake_in_real = torch.zeros(n_f, dtype=torch.bool, device=real.device)
    real_in_fake = torch.zeros(n_r, dtype=torch.bool, device=real.device)
    col_bias = real_sq - (real_r2 + tol)  # d²_ji - (r²_i + tol) = ||fake_j||² + col_bias_i - 2 fake_jᵀ real_i
    row_bias = fake_sq - (fake_r2 + tol)
    neg_real_thr = -(real_r2 + tol)
    for r0, r1, c0, c1, block in _distance_blocks(fake_c, real_c, col_bias, chunk):
        fake_in_real[r0:r1] |= block.amin(1) <= -fake_sq[r0:r1]
        # d²_ji - (r²_j + tol) for the fake radius r_j = block_ji + row_bias_j + (r²_i + tol)
        block.add_(row_bias[r0:r1].unsqueeze(1))
        real_in_fake[c0:c1] |= block.amin(0) <= neg_real_thr[c0:c1]
        del block  # free before the next block is allocated: one block alive at a time
    return fake_in_real, real_in_fake


def _distance_blocks(fake_c: Tensor, real_c: Tensor, col_bias: Tensor, chunk: int):
    """Yields (r0, r1, c0, c1, block) with block = col_bias[c0:c1] - 2 fake_c[r0:r1] real_c[c0:c1]ᵀ, one
    (rows, columns) block of the streamed (n_fake, n_real) pass at a time."""
    n_f, n_r = fake_c.shape[0], real_c.shape[0]
    width = _column_width(chunk)
    for r0 in range(0, n_f, chunk):
        r1 = min(n_f, r0 + chunk)
        for c0 in range(0, n_r, width):
            c1 = min(n_r, c0 + width)
            yield r0, r1, c0, c1, torch.addmm(col_bias[c0:c1].unsqueeze(0), fake_c[r0:r1], real_c[c0:c1].T,
                                              alpha=-2.0)


def _density_coverage_pass(real: Tensor, fake: Tensor, real_r2: Tensor, chunk: int) -> tuple[int, Tensor]:
    """One streamed pass over the (n_fake, n_real) squared distances d²_ji with the exact squared real radii
    ``real_r2`` (n_real,). Returns the number of pairs with fake_j inside real_i's ball and ``covered``
    (n_real,) bool, real_i's ball containing at least one fake point. Boundary ties within the error bound count
    as inside."""
    real_c, fake_c, real_sq, fake_sq, tol = _cross_setup(real, fake)
    n_r = real.shape[0]
    covered = torch.zeros(n_r, dtype=torch.bool, device=real.device)
    count = torch.zeros((), dtype=torch.int64, device=real.device)
    col_bias = real_sq - (real_r2 + tol)
    for r0, r1, c0, c1, block in _distance_blocks(fake_c, real_c, col_bias, chunk):
        inside = block <= -fake_sq[r0:r1].unsqueeze(1)
        count += inside.count_nonzero()
        covered[c0:c1] |= inside.any(0)
        del block, inside
    return int(count), covered


def _fraction(mask: Tensor) -> float:
    return float(mask.count_nonzero()) / mask.numel()


# ---------------------------------------------------------------------------------------------------- public API

def kth_neighbour_radii(features: Tensor, k: int, *, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Euclidean distance from each row to its k-th nearest neighbour among the *other* rows, (n, d) -> (n,).

    The row itself is excluded by index, so a duplicate of a row does count as a neighbour (at distance 0).
    These are the k-NN ball radii of Kynkäänniemi et al. (2019) and Naeem et al. (2020). ``chunk`` rows of the
    distance matrix are computed at a time; the result is the same for every chunk size. Needs n > k. The result
    has the dtype of ``features`` (float64 for integer input).
    """
    x = _as_features(features, "features")
    k = _check_k(k, {"features": x})
    chunk = _check_int(chunk, "chunk")
    return _kth_squared(x, x, k, chunk, exclude_self=True).sqrt().to(_result_dtype(features))


def nearest_distances(queries: Tensor, references: Tensor, *, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Euclidean distance from each query row to its nearest reference row, (q, d), (r, d) -> (q,).

    ``chunk`` query rows are processed at a time; the result is the same for every chunk size. The distance is
    computed directly (not from the Gram expansion), so a query that equals a reference row gets exactly 0.0.
    The result has the dtype of ``queries`` (float64 for integer input).
    """
    q = _as_features(queries, "queries")
    r = _as_features(references, "references")
    _check_pair(q, r, "queries", "references")
    chunk = _check_int(chunk, "chunk")
    return _kth_squared(q, r, 1, chunk, exclude_self=False).sqrt().to(_result_dtype(queries))


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of Kynkäänniemi et al. (2019), real (n, d) and fake (m, d) -> two floats.

    precision = (1/m) Σ_j 1[fake_j lies in at least one real ball B(real_i, r_k(real_i))],
    recall    = (1/n) Σ_i 1[real_i lies in at least one fake ball B(fake_j, r_k(fake_j))],

    where r_k(x) is the distance from x to its k-th nearest other point of its own set
    (:func:`kth_neighbour_radii`) and a ball includes its boundary (distance <= radius). Both are in [0, 1].
    Needs n > k and m > k. The paper's default is k = 3.
    """
    r = _as_features(real, "real")
    f = _as_features(fake, "fake")
    _check_pair(r, f, "real", "fake")
    k = _check_k(k, {"real": r, "fake": f})
    real_r2 = _kth_squared(r, r, k, DEFAULT_CHUNK, exclude_self=True)
    fake_r2 = _kth_squared(f, f, k, DEFAULT_CHUNK, exclude_self=True)
    fake_in_real, real_in_fake = _precision_recall_pass(r, f, real_r2, fake_r2, DEFAULT_CHUNK)
    return _fraction(fake_in_real), _fraction(real_in_fake)


def density_coverage(real: Tensor, fake: Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage of Naeem et al. (2020), real (n, d) and fake (m, d) -> two floats.

    density  = 1/(k m) Σ_j Σ_i 1[d(fake_j, real_i) <= r_k(real_i)],
    coverage = (1/n) Σ_i 1[min_j d(fake_j, real_i) <= r_k(real_i)],

    with r_k the real k-NN radii (:func:`kth_neighbour_radii`). Coverage is in [0, 1]; density is >= 0 and
    unbounded above (about 1 when fake and real come from the same distribution, above 1 when samples crowd
    into dense real regions, (k + 1) / k when fake is an exact copy of real). Needs n > k; m >= 1 suffices.
    The paper's default is k = 5.
    """
    r = _as_features(real, "real")
    f = _as_features(fake, "fake")
    _check_pair(r, f, "real", "fake")
    k = _check_k(k, {"real": r})
    real_r2 = _kth_squared(r, r, k, DEFAULT_CHUNK, exclude_self=True)
    count, covered = _density_coverage_pass(r, f, real_r2, DEFAULT_CHUNK)
    return count / (k * f.shape[0]), _fraction(covered)


def memorisation(samples: Tensor, test: Tensor, train: Tensor) -> dict[str, float]:
    """Nearest-neighbour memorisation check: are generated samples closer to the training set than unseen data?

    ``samples`` (m, ...), ``test`` (t, ...) and ``train`` (n, ...) are flattened to (rows, -1), e.g. images in
    [0, 1] of one shape, and must have the same number of values per row. ``test`` must be held out: images from
    the data distribution that the model never trained on. For each sample and each test image this takes the
    Euclidean distance to its nearest training image and returns:

    * ``sample_nn_train_median``: median NN distance of the samples to the training set;
    * ``test_nn_train_median``: the same for the test images: how far a genuinely new image typically is;
    * ``nn_ratio``: sample median / test median. About 1 for a model that generalises; well below 1 means the
      samples sit much closer to training images than new data does (near-copies); 0 means at least half the
      samples are exact copies. Above 1 is not memorisation (samples are off the data, e.g. blurry or noisy);
    * ``copied_frac``: the fraction of samples whose NN distance is below the 1st percentile of the test
      images' NN distances (an exact copy, at distance 0, always counts). A model that does not copy gets about
      0.01 by construction; a large value means many samples are closer to a training image than 99% of new
      images are.

    Medians and the percentile interpolate linearly as ``numpy.median`` / ``numpy.percentile`` do. Meehan et
    al. (2020) compare the same two distance distributions with a rank test; Theis et al. (2016) explain why a
    pixel-space NN check only catches near-exact copies. Raises ConfigError when at least half the test images
    are exact copies of training images (the test set is not held out, so the ratio is undefined).
    """
    s = _as_features(samples, "samples", flatten=True)
    te = _as_features(test, "test", flatten=True)
    tr = _as_features(train, "train", flatten=True)
    _check_pair(s, tr, "samples", "train")
    _check_pair(te, tr, "test", "train")
    sample_nn = _kth_squared(s, tr, 1, DEFAULT_CHUNK, exclude_self=False).sqrt()
    test_nn = _kth_squared(te, tr, 1, DEFAULT_CHUNK, exclude_self=False).sqrt()
    sample_median = float(torch.quantile(sample_nn, 0.5))
    test_median = float(torch.quantile(test_nn, 0.5))
    if test_median == 0.0:
        raise ConfigError("the test set is not held out: at least half of its rows are exact copies of training rows")
    threshold = torch.quantile(test_nn, COPY_PERCENTILE)
    copied = (sample_nn < threshold) | (sample_nn == 0)
    return {
        "sample_nn_train_median": sample_median,
        "test_nn_train_median": test_median,
        "nn_ratio": sample_median / test_median,
        "copied_frac": _fraction(copied),
    }
