"""Bootstrap confidence intervals: coverage, seeded determinism, degenerate data."""

import random

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
