"""The `curve` stage of a run (`curve: true`): evaluate every intermediate checkpoint of an arm's training
stage, for the report's safety-vs-wall-time plot and its cost-vs-safety table.

DIR/step-N/        an evaluate stage directory per checkpoint (cached and resumable on its own)
DIR/curve.json     the checkpoints with the training seconds and tokens so far, and where their results are

The final checkpoint is left out: it is the arm's adapter, which the arm's `evaluate` stage measures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.records import read_json, write_json_atomic
from thinksafe.stages.base import Job, Stage, execute
from thinksafe.stages.evaluate import EVALUATE, EvaluateArgs
from thinksafe.stages.ledger import Counts


@dataclass
class CurveOutput:
    dir: Path
    curve: dict[str, Any] | None  # training_stage, final_step, points: [{step, epoch, path, wall_seconds, tokens, results}]

    def points(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(checkpoint, its results.json) in training order."""
        return [(p, read_json(self.dir / p["results"], missing_ok=True)) for p in (self.curve or {}).get("points", [])]


class Curve(Stage):
    has_command = False  # a step of `thinksafe run` only
    name = "curve"
    help = "evaluate every intermediate checkpoint of a training stage"
    Settings = EvaluateArgs
    section = "evaluate"  # the arm's evaluation settings, applied to each checkpoint
    uses = EVALUATE.uses

    def key(self, job: Job) -> dict[str, Any]:
        return EVALUATE.key(job)

    def summary(self, job: Job) -> str:
        return EVALUATE.summary(job)

    def run(self, job: Job) -> Counts:
        trained = job.inputs[0]  # the training stage's output: its checkpoints and final step
        final = (trained.stats or {}).get("steps")
        points, counts = [], Counts()
        for c in trained.checkpoints:
            if c["step"] == final:
                continue
            step = replace(job, out=job.out / f"step-{c['step']}", inputs=[],
                           model=replace(job.model, adapter=str(trained.dir / c["path"])))
            led = execute(EVALUATE, step, overwrite=True).ledger or {}
            counts += Counts(tokens_generated=led.get("tokens_generated", 0), tokens_prompt=led.get("tokens_prompt", 0))
            points.append({**c, "results": f"step-{c['step']}/results.json"})
        write_json_atomic(job.out / "curve.json", {"training_stage": trained.stage, "final_step": final, "points": points})
        return counts

    def read(self, out: Path) -> CurveOutput:
        return CurveOutput(out, read_json(out / "curve.json", missing_ok=True))


CURVE = Curve()
