"""The generation stage: prompts in, a resumable JSONL of Generation records out."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.generate import Generator, SamplingParams
from thinksafe.records import (
    Completion,
    Generation,
    Prompt,
    append_jsonl,
    done_ids,
    read_jsonl,
    repair_jsonl,
    write_text_atomic,
)


@dataclass
class GenerationStats:
    prompts: int = 0
    skipped: int = 0  # already in the output file (resume)
    generations: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


def generate_to_file(
    generator: Generator,
    prompts: Sequence[Prompt],
    sampling: SamplingParams,
    out: str | Path,
    *,
    render: Callable[[Prompt], str] = lambda p: p.prompt,
    system: str | None = None,
    chunk_size: int = 256,
    meta: dict[str, Any] | None = None,
) -> GenerationStats:
    """Generate `sampling.n` responses per prompt and append them to `out` as each batch finishes.

    `render` turns a prompt into the user message actually sent (steering hooks in here); the record
    keeps the original prompt. Prompts whose id is already in `out` are skipped, so a rerun after a crash
    continues where it stopped and loses at most the batch in flight. `chunk_size` bounds how many
    prompts one generate call plans batches over.
    """
    out = Path(out)
    drop_partial(out, sampling.n)
    done = done_ids(out, key="prompt_id")
    todo = [p for p in prompts if p.id not in done]
    stats = GenerationStats(prompts=len(prompts), skipped=len(prompts) - len(todo))
    t0 = time.perf_counter()
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        requests = [_messages(render(p), system) for p in chunk]

        def write(i: int, completions: list[Completion], chunk=chunk) -> None:
            p = chunk[i]
            records = [
                Generation(
                    id=p.id if sampling.n == 1 else f"{p.id}-{k}",
                    prompt_id=p.id,
                    prompt=p.prompt,
                    label=p.label,
                    sample=k,
                    text=c.text,
                    finish_reason=c.finish_reason,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    meta=dict(meta or {}),
                )
                for k, c in enumerate(completions)
            ]
            append_jsonl(out, records)  # all samples of a prompt in one write: resume is per prompt
            stats.generations += len(records)
            stats.completion_tokens += sum(r.completion_tokens for r in records)

        generator.generate(requests, sampling, on_result=write)
    stats.seconds = time.perf_counter() - t0
    return stats


def _messages(user: str, system: str | None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


def drop_partial(raw: Path, n: int) -> None:
    """A write cut short (full disk, killed writer) can keep some of a prompt's n samples, and a prompt with
    any sample counts as done: rewrite the file without such prompts so that they are generated again."""
    if not raw.exists():
        return
    repair_jsonl(raw)
    rows = list(read_jsonl(raw))
    counts = Counter(g["prompt_id"] for g in rows)
    if any(c < n for c in counts.values()):
        write_text_atomic(raw, "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in rows if counts[g["prompt_id"]] >= n))
