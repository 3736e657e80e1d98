"""The output layout both training stages (train, grpo) write, and its typed reader.

DIR/adapter_config.json …   the PEFT adapter (or full weights) + tokenizer: `--model M --adapter DIR`
DIR/train_stats.json        examples / prompts, steps, loss, seconds, tokens/s, memory
DIR/checkpoints.jsonl       every saved checkpoint with the training wall seconds and tokens so far
DIR/metrics.jsonl           every log line
DIR/examples.jsonl          train only: every example as rendered and trained on (prompt, completion, label, loss)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.records import read_json, read_jsonl


@dataclass
class TrainedOutput:
    dir: Path
    stage: str  # train | grpo
    stats: dict[str, Any] | None

    @property
    def adapter(self) -> Path:
        return self.dir

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        path = self.dir / "checkpoints.jsonl"
        return list(read_jsonl(path)) if path.exists() else []


def read_trained(out: Path, stage: str) -> TrainedOutput:
    return TrainedOutput(out, stage, read_json(out / "train_stats.json", missing_ok=True))
