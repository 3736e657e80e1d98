"""Evaluation's pieces: benchmarks, answer checking, statistics, scoring. The stage is stages/evaluate.py.

    benchmarks.py   Benchmark = data source + rows → Items (prompt with template, judge label, reference answer)
    answers.py      reasoning scorer: final-answer extraction + time-limited math-verify equivalence
    stats.py        seeded percentile-bootstrap CIs
    scoring.py      judge the safety sets, grade the reasoning sets, each benchmark's metric with its CI
"""

from thinksafe.evaluate.benchmarks import BENCHMARKS, Benchmark, Item

__all__ = ["BENCHMARKS", "Benchmark", "Item"]
