"""Bootstrap confidence intervals: coverage, seeded determinism, degenerate data."""

import random

import pytest

from thinksafe.evaluate.stats import bootstrap_ci, summarize


def test_bootstrap_covers_the_true_mean_about_95_percent_of_the_time():
    rng, p, hits, trials = random.Random(1), 0.3, 0, 200
    for t in range(trials):
        lo, hi = bootstrap_ci([float(rng.random() < p) for _ in range(200)], resamples=400, seed=t)
        hits += lo <= p <= hi
    assert 0.88 <= hits / trials <= 0.99


def test_seeded_determinism_and_degenerate_data():
    values = [float(i % 3 == 0) for i in range(101)]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)
    assert bootstrap_ci([0.0] * 50) == (0.0, 0.0)
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)
    assert bootstrap_ci([]) is None
    assert summarize([]) == {"value": None, "ci95": None, "n": 0}


def test_ci_brackets_the_mean_and_narrows_with_n():
    small = summarize([float(i % 2) for i in range(20)])
    large = summarize([float(i % 2) for i in range(2000)])
    assert small["ci95"][0] <= small["value"] <= small["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < small["ci95"][1] - small["ci95"][0]
    assert bootstrap_ci([0.5, 0.25, 1.0], resamples=250) is not None  # resamples not a multiple of the block


def test_pass_at_k_is_the_unbiased_estimator():
    from math import comb

    import numpy as np

    from thinksafe.evaluate.stats import pass_at_k

    assert pass_at_k(8, 2, 2) == 1 - 15 / 28  # 1 - C(6,2)/C(8,2), by hand
    assert pass_at_k(8, 2, 1) == 2 / 8  # pass@1 is the share correct
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0 and pass_at_k(4, 3, 2) == 1.0
    for n, c, k in ((8, 3, 4), (16, 5, 8), (64, 10, 16)):
        skythought = 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))  # SkyThought's product form
        assert abs(pass_at_k(n, c, k) - skythought) < 1e-12
        assert pass_at_k(n, c, k) == 1 - comb(n - c, k) / comb(n, k)
    for bad in ((8, 2, 0), (8, 2, 9), (8, 9, 2)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_several_samples_per_prompt_are_one_unit_of_the_bootstrap():
    from thinksafe.evaluate.stats import mean_per_unit

    assert mean_per_unit([[1.0, 0.0, None], [None, None], [0.0]]) == [0.5, 0.0]  # all-unknown prompts drop out
