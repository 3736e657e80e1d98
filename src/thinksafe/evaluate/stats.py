"""Percentile-bootstrap confidence intervals of a mean, seeded so that a rerun reports the same interval."""

from __future__ import annotations

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
