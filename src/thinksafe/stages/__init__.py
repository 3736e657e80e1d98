"""The pipeline's stages, in pipeline order. Adding a stage: one module with a Stage subclass + one line here.

    prompts → synthesize → data (strip reasoning) → train (sft) | grpo → evaluate → curve → shift
    (judge-eval: a command of its own, measuring a judge against human labels)
"""

from __future__ import annotations

from thinksafe.stages.base import Job, Result, Stage, StageDir, execute

__all__ = ["Job", "Result", "Stage", "StageDir", "execute", "registry", "get"]


def registry() -> dict[str, Stage]:
    """name → stage, in pipeline order (imported on first use: the stage modules import torch-side code)."""
    from thinksafe.stages.curve import CURVE
    from thinksafe.stages.evaluate import EVALUATE
    from thinksafe.stages.grpo import GRPO
    from thinksafe.stages.judge_eval import JUDGE_EVAL
    from thinksafe.stages.prompts import PROMPTS
    from thinksafe.stages.sft import TRAIN
    from thinksafe.stages.shift import SHIFT
    from thinksafe.stages.strip_reasoning import STRIP_REASONING
    from thinksafe.stages.synthesize import SYNTHESIZE

    stages = (PROMPTS, SYNTHESIZE, STRIP_REASONING, TRAIN, GRPO, EVALUATE, CURVE, SHIFT, JUDGE_EVAL)
    return {s.name: s for s in (*stages, *EXTRA)}


EXTRA: list[Stage] = []  # stages registered at run time (plugins, tests): register(stage)


def register(stage: Stage) -> Stage:
    EXTRA.append(stage)
    return stage


def get(name: str) -> Stage:
    stages = registry()
    if name not in stages:
        from thinksafe.errors import InputError

        raise InputError(f"unknown stage '{name}' (stages: {', '.join(stages)})")
    return stages[name]
