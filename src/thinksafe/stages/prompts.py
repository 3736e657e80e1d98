"""The `prompts` stage of a run: pool each label's training prompt sources and take a seeded sample of each.

DIR/harmful.jsonl, DIR/benign.jsonl   {prompt, label, source}; benign.jsonl only when there are benign prompts
DIR/stats.json                        per label: the sources, the pool size, the prompts kept

A text in both pools stays harmful. Every arm that trains on prompts (synthesis, GRPO) reads the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.progress import console
from thinksafe.prompts import load_prompts, merge_labelled, sample
from thinksafe.records import read_json, write_json_atomic, write_jsonl_atomic
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts

LABELS = ("harmful", "benign")


@dataclass
class PromptsArgs:
    harmful: list[str] = opt(["demo:harmful"], "harmful training prompt sources, pooled: files, demo:harmful, star1[:PATH], harmful-pool:PATH, …", role="input")
    benign: list[str] = opt(["demo:benign"], "benign training prompt sources, pooled (empty list: none)", role="input")
    limit: int | None = opt(None, "at most this many training prompts per label, a seeded sample of the pool")
    seed: int = opt(0, "seed of the prompt sample")


@dataclass
class PromptsOutput:
    harmful: Path
    benign: Path | None
    stats: dict[str, Any] | None


class Prompts(Stage):
    has_command = False  # a step of `thinksafe run` only
    name = "prompts"
    help = "pool the training prompt sources and sample --limit per label"
    Settings = PromptsArgs
    section = "run"  # its settings are top-level keys of a run config
    makes_model = True

    def run(self, job: Job) -> Counts:
        s: PromptsArgs = job.settings
        loaded = [load_prompts(src, label=label) for label in LABELS for src in getattr(s, label)]
        pool, _ = merge_labelled(*loaded)
        stats: dict[str, Any] = {}
        for label in LABELS:
            mine = [p for p in pool if p.label == label]
            chosen = sample(mine, s.limit, s.seed)
            if chosen:
                write_jsonl_atomic(job.out / f"{label}.jsonl",
                                   [{"prompt": p.prompt, "label": label, "source": p.source} for p in chosen])
            stats[label] = {"sources": getattr(s, label), "pool": len(mine), "prompts": len(chosen)}
        write_json_atomic(job.out / "stats.json", stats)
        console.print(f"prompts: {stats['harmful']['prompts']} harmful (pool {stats['harmful']['pool']}), "
                      f"{stats['benign']['prompts']} benign (pool {stats['benign']['pool']}) → {job.out}")
        return Counts()

    def read(self, out: Path) -> PromptsOutput:
        benign = out / "benign.jsonl"
        return PromptsOutput(out / "harmful.jsonl", benign if benign.exists() else None,
                             read_json(out / "stats.json", missing_ok=True))


PROMPTS = Prompts()
