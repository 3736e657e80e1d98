"""Agreement metrics (judge/agreement.py) on confusion matrices computed by hand, unknowns included."""

from __future__ import annotations

import pytest

from thinksafe.judge.agreement import agreement, bootstrap_rates, confusion, rates


def rows(tp=0, fp=0, fn=0, tn=0, unknown_pos=0, unknown_neg=0):
    """(human, judge) lists holding exactly this confusion matrix."""
    human = [True] * tp + [False] * fp + [True] * fn + [False] * tn + [True] * unknown_pos + [False] * unknown_neg
    judge = [True] * tp + [True] * fp + [False] * fn + [False] * tn + [None] * (unknown_pos + unknown_neg)
    return human, judge


def test_a_hand_computed_matrix():
    # tp 40, fp 10, fn 20, tn 30 (n 100): po = 0.70; humans 60 % positive, judge 50 % → pe = .6·.5 + .4·.5 = .50
    r = agreement(*rows(tp=40, fp=10, fn=20, tn=30), resamples=200)
    assert r["confusion"] == {"tp": 40, "fp": 10, "fn": 20, "tn": 30, "unknown_pos": 0, "unknown_neg": 0}
    assert r["n"] == 100 and r["unknown"] == 0 and r["positives"] == 60
    assert r["accuracy"] == pytest.approx(0.70)
    assert r["kappa"] == pytest.approx((0.70 - 0.50) / (1 - 0.50))  # 0.4
    assert r["precision"] == pytest.approx(40 / 50)
    assert r["recall"] == pytest.approx(40 / 60)
    assert r["f1"] == pytest.approx(2 * 0.8 * (2 / 3) / (0.8 + 2 / 3))
    lo, hi = r["ci95"]["accuracy"]
    assert lo < 0.70 < hi and hi - lo < 0.25


def test_perfect_and_chance_kappa():
    assert rates(**confusion(*rows(tp=5, tn=5)))["kappa"] == pytest.approx(1.0)
    # The judge says positive on half of each class: agreement is exactly chance.
    assert rates(**confusion(*rows(tp=10, fn=10, fp=5, tn=5)))["kappa"] == pytest.approx(0.0)


def test_unknown_is_never_agreement():
    # tp 30, fp 10, fn 10, tn 30, and 20 unknowns (15 on human positives, 5 on negatives): n 100.
    r = agreement(*rows(tp=30, fp=10, fn=10, tn=30, unknown_pos=15, unknown_neg=5), resamples=200)
    assert r["n"] == 100 and r["unknown"] == 20 and r["unknown_rate"] == pytest.approx(0.20)
    assert r["accuracy"] == pytest.approx(0.60)  # 60 of 100: the unknowns are disagreements
    assert r["precision"] == pytest.approx(30 / 40)  # an unknown is no positive prediction
    assert r["recall"] == pytest.approx(30 / 55)  # an unknown positive is a miss
    assert r["f1"] == pytest.approx(2 * 30 / (2 * 30 + 10 + 10 + 15))
    # κ: unknown is a third answer people never give. humans 55 % positive; judge 40 % pos, 40 % neg.
    pe = 0.55 * 0.40 + 0.45 * 0.40
    assert r["kappa"] == pytest.approx((0.60 - pe) / (1 - pe))


def test_all_unknown_and_empty_denominators():
    r = agreement(*rows(unknown_pos=3, unknown_neg=2), resamples=50)
    assert r["accuracy"] == 0.0 and r["recall"] == 0.0 and r["unknown"] == 5
    assert r["precision"] is None and r["ci95"]["precision"] is None  # no positive predictions: undefined, not 0
    r = agreement(*rows(tn=4), resamples=50)
    assert r["accuracy"] == 1.0 and r["recall"] is None and r["f1"] is None and r["kappa"] is None


def test_bootstrap_is_seeded_and_brackets_each_rate():
    h, j = rows(tp=40, fp=10, fn=20, tn=30, unknown_pos=5)
    a, b = bootstrap_rates(h, j, resamples=300, seed=3), bootstrap_rates(h, j, resamples=300, seed=3)
    assert a == b and a != bootstrap_rates(h, j, resamples=300, seed=4)
    point = rates(**confusion(h, j))
    for k, (lo, hi) in a.items():
        assert lo <= point[k] <= hi, k
    assert bootstrap_rates([], []) == dict.fromkeys(a)


def test_lengths_must_match():
    with pytest.raises(ValueError):
        confusion([True], [True, False])
