"""Statistics for comparing retrievers: seed confidence intervals and paired tests.

The paper reports single runs without significance tests; ``babelir compare`` adds
* a 95% confidence interval per cell over seeds (Student t),
* a paired two-sided sign-flip permutation test over queries (per-query AP of two
  models on the same questions), and a paired bootstrap CI of the mean difference,
* Holm's correction over all comparisons a report makes,
so that its verdict only claims what the numbers support.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: The most resamples a test takes: a permutation test draws n_queries x resamples signs
#: (1e6 x 1190 XQuAD-R questions is seconds), the bootstrap loops resamples times (1e6
#: is ~15 s per test); 1e12 would run for days or exhaust memory.
MAX_RESAMPLES = 1_000_000


def _check_resamples(n_resamples: int, what: str) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise ValueError(f"{what}: n_resamples must be an integer, got {n_resamples!r}")
    if not 1 <= n_resamples <= MAX_RESAMPLES:
        raise ValueError(f"{what}: n_resamples must be in 1..{MAX_RESAMPLES}, got {n_resamples}")


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based confidence interval; a single value has a zero-width interval."""
    from scipy import stats  # here: compare's config imports this module's bounds

    x = np.asarray([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        return (float("nan"),) * 3
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


#: The most seeds :func:`seeds_to_resolve` reports; past it the answer is "more than".
MAX_PLANNED_SEEDS = 1000


def seeds_to_resolve(std: float, target: float, level: float = 0.95) -> int | None:
    """Fewest seeds n >= 2 whose t-interval half-width ``t(n-1) * std / sqrt(n)`` is below
    ``target``, taking the measured spread of the paired seed differences as the truth.

    A planning estimate, not a promise: the mean and spread of a few seeds are themselves
    noisy. ``target`` is how far the interval may reach (e.g. the measured mean difference
    for a "best" claim, so that the interval excludes 0). Returns None when no number of
    seeds up to :data:`MAX_PLANNED_SEEDS` does (``target <= 0``: the mean itself sits on
    the decision boundary).
    """
    from scipy import stats

    if not np.isfinite(std) or not np.isfinite(target) or target <= 0:
        return None
    if std == 0:
        return 2
    for n in range(2, MAX_PLANNED_SEEDS + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * std / np.sqrt(n) < target:
            return n
    return None


# Not scipy.stats.permutation_test: its exact mode, flip draws and 2*min(p) change seeded p-values.
def paired_permutation_test(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10000, seed: int = 0
) -> float:
    """Two-sided p-value that mean(a - b) = 0, by random sign flips of the differences.

    NaN pairs (a query undefined in either model) are dropped. The observed statistic
    counts as one resample, so p is never 0.
    """
    _check_resamples(n_resamples, "permutation test")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0 or not np.any(d):
        return 1.0
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    extreme = 0
    chunk = max(1, min(n_resamples, 4_000_000 // max(len(d), 1)))
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(k, len(d)), dtype=np.int8) * 2 - 1
        extreme += int((np.abs(signs @ d) / len(d) >= observed - 1e-15).sum())
        done += k
    return (extreme + 1) / (n_resamples + 1)


# Not scipy.stats.bootstrap: same draws, but last-bit rounding differs and it holds B x n floats.
def paired_bootstrap_ci(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of a - b over queries and its percentile bootstrap confidence interval."""
    _check_resamples(n_resamples, "bootstrap")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for i in range(n_resamples):
        means[i] = d[rng.integers(0, len(d), len(d))].mean()
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(d.mean()), float(lo), float(hi)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    m = len(p)
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def per_query_settings(
    pair_ap: np.ndarray,
    multi_ap: np.ndarray,
    question_blocks: np.ndarray,
    rank_distance: np.ndarray,
    lang_pref: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per-question values of each setting, for paired tests.

    mono: AP against the question's own language; cross: mean AP against the other
    languages; multi: pooled AP; rank_distance: as computed by the metrics engine.
    ``lang_pref`` (per_query.npz's ``lang_pref_k``, ``lang_pref``, ``lang_pref_expected``)
    adds ``lang_pref@k`` and ``lang_pref_excess@k`` for each cut-off k.
    """
    nq, n_lang = pair_ap.shape
    own = pair_ap[np.arange(nq), question_blocks]
    others = pair_ap.copy()
    others[np.arange(nq), question_blocks] = np.nan
    with warnings.catch_warnings():  # all-NaN rows (no other language) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        cross = np.nanmean(others, axis=1) if n_lang > 1 else np.full(nq, np.nan)
    out = {"mono": own, "cross": cross, "multi": multi_ap, "rank_distance": rank_distance}
    if lang_pref is not None:
        ks, shares, expected = lang_pref
        for j, k in enumerate(np.asarray(ks).tolist()):
            out[f"lang_pref@{k}"] = np.asarray(shares, dtype=float)[:, j]
            out[f"lang_pref_excess@{k}"] = out[f"lang_pref@{k}"] - expected
    return out
