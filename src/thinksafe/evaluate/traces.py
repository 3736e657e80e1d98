"""Trace health of a think model's responses: did the reasoning close, was it cut at the token limit, how long
were the reasoning and the answer.

A response cut before `</think>` has no answer: a reasoning set scores it wrong and a safety set `unknown`,
silently unless it is counted (lm-evaluation-harness and olmo-eval users found 20-37 % of reasoning cut this
way). A trace that collapses or stops closing after training is also the first sign of damage. So every
evaluation of a think model records, per response in DIR/<benchmark>.jsonl,

    "trace": {"closed": true, "reasoning_tokens": 812, "answer_tokens": 64}

and per benchmark in results.json, `trace`: the share of responses whose trace closed, the share cut at the
token limit, and the mean reasoning and answer tokens. Plain models have no trace and get neither.

Tokens are counted with the model's tokenizer on each part as `ChatFormat.split` cuts it (tags and the end
token belong to neither part, so the two add up to a few tokens less than the completion).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from thinksafe.formats import THINK_CLOSE, ChatFormat

TokenCount = Callable[[str], int]


def token_counter(spec) -> TokenCount | None:
    """Counts tokens with the model's tokenizer; None where there is no local tokenizer (a model reached only over
    HTTP): the closed and truncated shares are still recorded, the token means are not."""
    from thinksafe.errors import ThinksafeError
    from thinksafe.models import load_tokenizer

    try:
        tok = load_tokenizer(spec)
    except (ThinksafeError, OSError, ValueError):
        return None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0


def response_trace(text: str, fmt: ChatFormat, count: TokenCount | None) -> dict[str, Any] | None:
    """One response's trace record; None for a plain model."""
    if fmt.reasoning != "think":
        return None
    reasoning, answer = fmt.split(text)
    return {"closed": THINK_CLOSE in fmt.normalize(text),
            "reasoning_tokens": count(reasoning) if count else None,
            "answer_tokens": count(answer) if count else None}


def _mean(values: list[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None


def trace_health(responses: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """A benchmark's trace health over all its responses; None when they carry no trace (a plain model)."""
    traced = [x for x in responses if x.get("trace")]
    if not traced:
        return None
    n = len(traced)
    return {"responses": n,
            "closed": sum(x["trace"]["closed"] for x in traced) / n,
            "truncated": sum(x["finish_reason"] == "length" for x in traced) / n,
            "reasoning_tokens": _mean([x["trace"]["reasoning_tokens"] for x in traced]),
            "answer_tokens": _mean([x["trace"]["answer_tokens"] for x in traced])}


def pooled(healths: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Several benchmarks' trace health as one, weighted by their responses (the report's per-group cells)."""
    healths = [h for h in healths if h]
    total = sum(h["responses"] for h in healths)
    if not total:
        return None

    def weighted(key: str) -> float | None:
        parts = [(h[key], h["responses"]) for h in healths if h.get(key) is not None]
        weight = sum(w for _, w in parts)
        return sum(v * w for v, w in parts) / weight if weight else None

    return {"responses": total, **{k: weighted(k) for k in ("closed", "truncated", "reasoning_tokens", "answer_tokens")}}
