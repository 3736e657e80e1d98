"""Percentile-bootstrap confidence intervals of a mean, seeded so that a rerun reports the same interval; pass@k."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BLOCK = 100  # resamples drawn at once: bounds memory at BLOCK x n indices


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """CI of the mean of `values` (one value per unit resampled: a prompt, or a problem's mean over its k
    samples for pass@k). None when there is nothing to resample."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.concatenate([
        x[rng.integers(0, x.size, size=(min(BLOCK, resamples - done), x.size))].mean(axis=1)
        for done in range(0, resamples, BLOCK)
    ])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarize(values: Sequence[float], *, resamples: int = 1000, seed: int = 0) -> dict:
    """{value, ci95, n} for a list of per-unit values; value and ci95 are None when n = 0."""
    ci = bootstrap_ci(values, resamples=resamples, seed=seed)
    return {
        "value": float(np.mean(values)) if len(values) else None,
        "ci95": list(ci) if ci else None,
        "n": len(values),
    }


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples with c correct (Chen et al. 2021, as SkyThought computes it):
    1 - C(n-c, k) / C(n, k), the chance that k of the n samples drawn without replacement hold a correct one.
    Exact integer binomials: no float product to drift for large n."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_per_unit(groups: Sequence[Sequence[float | None]]) -> list[float]:
    """Each unit's mean over its known values (None = unknown), for units with any: a prompt's K samples become
    one value, so the bootstrap resamples prompts, not samples (samples of one prompt are not independent)."""
    out = []
    for values in groups:
        known = [v for v in values if v is not None]
        if known:
            out.append(sum(known) / len(known))
    return out
