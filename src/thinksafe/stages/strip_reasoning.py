"""The `data` stage of the thinksafe-no-reasoning ablation: ThinkSafe's data with the reasoning removed from
the harmful examples (the think block is kept, empty, so the format stays valid).

DIR/dataset.jsonl   the synthesized dataset, harmful responses stripped (meta.reasoning_removed)
DIR/stats.json      examples, harmful examples whose reasoning was removed
"""

from __future__ import annotations

from pathlib import Path

from thinksafe.formats import THINK_CLOSE
from thinksafe.progress import console
from thinksafe.records import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts
from thinksafe.stages.synthesize import DatasetOutput
from thinksafe.train.data import strip_think


def empty_reasoning(response: str) -> str:
    """The response with its reasoning removed and the think block kept, empty."""
    if THINK_CLOSE not in response:
        return response
    return f"<think>\n\n</think>\n\n{strip_think(response, 'answer')}"


class StripReasoning(Stage):
    has_command = False  # a step of `thinksafe run` only
    name = "data"
    help = "empty the think block of harmful examples (the no-reasoning ablation)"
    makes_model = True

    def run(self, job: Job) -> Counts:
        rows = list(read_jsonl(job.inputs[0].dataset))  # the synthesize stage's dataset
        stripped = 0
        for r in rows:
            if r["prompt_label"] == "harmful":
                new = empty_reasoning(r["response"])
                stripped += new != r["response"]
                r["response"], r["meta"] = new, {**r.get("meta", {}), "reasoning_removed": True}
        write_jsonl_atomic(job.out / "dataset.jsonl", rows)
        write_json_atomic(job.out / "stats.json", {"examples": len(rows), "harmful_reasoning_removed": stripped})
        note = "" if stripped else " (none had a think block: a plain model, so this is thinksafe's data)"
        console.print(f"data: reasoning removed from {stripped} harmful examples{note} → {job.out}")
        return Counts()

    def read(self, out: Path) -> DatasetOutput:
        return DatasetOutput(out, read_json(out / "stats.json", missing_ok=True))


STRIP_REASONING = StripReasoning()
