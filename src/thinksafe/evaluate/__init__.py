"""Evaluation: safety, over-refusal and reasoning benchmarks as small typed pieces.

    benchmarks.py   Benchmark = data source + rows → Items (prompt with template, judge label, reference answer)
    answers.py      reasoning scorer: final-answer extraction + time-limited math-verify equivalence
    stats.py        seeded percentile-bootstrap CIs
    run.py          the stage: generate (resumable) → judge / grade → results.json + table; `thinksafe evaluate`
"""

from thinksafe.evaluate.benchmarks import BENCHMARKS, Benchmark, Item
from thinksafe.evaluate.run import EvaluateArgs, cmd_evaluate, evaluate

__all__ = ["BENCHMARKS", "Benchmark", "EvaluateArgs", "Item", "cmd_evaluate", "evaluate"]
