"""How well a judge agrees with human labels: accuracy, Cohen's κ, precision / recall / F1 of the positive class,
each with a seeded percentile-bootstrap 95 % CI over rows.

    agreement(human=[True, False, True], judge=[True, None, False])

`judge` holds True / False / None (unknown). An unknown is never agreement (fail closed):
- accuracy = (tp + tn) / n, over every row: an unknown counts as a disagreement;
- κ treats unknown as a third answer of the judge that people never give, so it can only lower agreement
  (with no unknowns it is the usual 2×2 Cohen's κ);
- precision = tp / (tp + fp): an unknown is not a positive prediction;
- recall = tp / (all human positives): an unknown on a positive row is a miss;
- `unknown` is also reported as a count, and `unknown_rate` with its CI.
A rate whose denominator is empty (precision with no positive predictions) is None, not 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from thinksafe.evaluate.stats import BLOCK

RATES = ("accuracy", "kappa", "precision", "recall", "f1", "unknown_rate")


def confusion(human: Sequence[bool], judge: Sequence[bool | None]) -> dict[str, int]:
    """tp, fp, fn, tn over the decided rows, and the unknowns split by the human label."""
    if len(human) != len(judge):
        raise ValueError(f"agreement: {len(human)} human labels, {len(judge)} judge answers")
    c = dict.fromkeys(("tp", "fp", "fn", "tn", "unknown_pos", "unknown_neg"), 0)
    for h, j in zip(human, judge):
        if j is None:
            c["unknown_pos" if h else "unknown_neg"] += 1
        else:
            c[("tp" if j else "fn") if h else ("fp" if j else "tn")] += 1
    return c


def rates(tp, fp, fn, tn, unknown_pos, unknown_neg) -> dict[str, Any]:
    """The rates of one confusion matrix. Works elementwise on numpy arrays (the bootstrap's resamples), where
    an empty denominator gives NaN; on plain ints it gives None."""
    n = tp + fp + fn + tn + unknown_pos + unknown_neg
    with np.errstate(divide="ignore", invalid="ignore"):
        pos, pred_pos, pred_neg = tp + fn + unknown_pos, tp + fp, fn + tn
        accuracy = np.divide(tp + tn, n)
        # Chance agreement: the judge's unknown share matches no human label, so it adds nothing here.
        chance = (np.divide(pos, n) * np.divide(pred_pos, n)) + (np.divide(n - pos, n) * np.divide(pred_neg, n))
        kappa = np.divide(accuracy - chance, 1 - chance)
        precision = np.divide(tp, pred_pos)
        recall = np.divide(tp, pos)
        f1 = np.divide(2 * tp, 2 * tp + fp + fn + unknown_pos)  # = 2PR/(P+R), and defined when P or R is 0
        unknown_rate = np.divide(unknown_pos + unknown_neg, n)
    out = dict(accuracy=accuracy, kappa=kappa, precision=precision, recall=recall, f1=f1, unknown_rate=unknown_rate)
    if np.ndim(accuracy) == 0:
        return {k: (None if not np.isfinite(v) else float(v)) for k, v in out.items()}
    return out


def bootstrap_rates(human: Sequence[bool], judge: Sequence[bool | None], *, resamples: int = 1000,
                    level: float = 0.95, seed: int = 0) -> dict[str, list[float] | None]:
    """Percentile CI of each rate, resampling rows with replacement (seeded like evaluate/stats.bootstrap_ci).
    Resamples where a rate is undefined are left out of its interval; None if it is undefined in all."""
    n = len(human)
    if n == 0 or resamples < 1:
        return dict.fromkeys(RATES)
    h = np.asarray(human, dtype=bool)
    known = np.asarray([j is not None for j in judge])
    j = np.asarray([bool(x) for x in judge])
    cells = {"tp": h & known & j, "fp": ~h & known & j, "fn": h & known & ~j, "tn": ~h & known & ~j,
             "unknown_pos": h & ~known, "unknown_neg": ~h & ~known}
    rng = np.random.default_rng(seed)
    blocks = []
    for done in range(0, resamples, BLOCK):
        idx = rng.integers(0, n, size=(min(BLOCK, resamples - done), n))
        blocks.append(rates(**{k: v[idx].sum(axis=1) for k, v in cells.items()}))
    out: dict[str, list[float] | None] = {}
    for k in RATES:
        values = np.concatenate([b[k] for b in blocks])
        values = values[np.isfinite(values)]
        out[k] = None if values.size == 0 else [float(q) for q in np.quantile(values, [(1 - level) / 2, (1 + level) / 2])]
    return out


def agreement(human: Sequence[bool], judge: Sequence[bool | None], *, resamples: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """{n, unknown, accuracy, kappa, precision, recall, f1, unknown_rate, ci95: {rate: [lo, hi]}, confusion,
    positives (human base rate)}."""
    c = confusion(human, judge)
    n = len(human)
    return {
        "n": n,
        "unknown": c["unknown_pos"] + c["unknown_neg"],
        **rates(**c),
        "ci95": bootstrap_rates(human, judge, resamples=resamples, seed=seed),
        "confusion": c,
        "positives": sum(map(bool, human)),
    }
