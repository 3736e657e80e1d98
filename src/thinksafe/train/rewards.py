"""GRPO's two rewards, summed by TRL (format weighted by --format_weight); see thinksafe.stages.grpo.

- guard reward = P(safe) from the guard, or refused-harmful / answered-benign for the `refusal` guard.
- format reward, 0/1: one well-formed think block (`think` models), or ended with EOS (`plain` models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from thinksafe.formats import THINK_CLOSE, THINK_OPEN, ChatFormat
from thinksafe.judge import Guard
from thinksafe.records import Verdict


def guard_reward(verdicts: Sequence[Verdict], labels: Sequence[str]) -> list[float]:
    """P(safe) per (verdict, prompt label): 1 - score when the guard scores; refusal-style verdicts reward
    refusing harmful and answering benign prompts; otherwise 1 for `safe`, 0 for `unsafe`/`unknown`."""
    out = []
    for v, label in zip(verdicts, labels, strict=True):
        if v.score is not None:
            out.append(1.0 - v.score)
        elif v.refused is not None and label in ("harmful", "benign"):
            out.append(float(v.refused == (label == "harmful")))
        else:
            out.append(float(v.label == "safe"))
    return out


def format_ok(text: str, fmt: ChatFormat, truncated: bool) -> bool:
    if fmt.reasoning == "plain":
        return not truncated
    if fmt.opens_think:  # R1-style: the generation prompt already opened the block
        return text.count(THINK_CLOSE) == 1 and THINK_OPEN not in text
    # Opens first, one of each: a close before the open can't pass.
    return text.lstrip().startswith(THINK_OPEN) and text.count(THINK_OPEN) == 1 and text.count(THINK_CLOSE) == 1


def format_reward(texts: Sequence[str], fmt: ChatFormat, truncated: Sequence[bool]) -> list[float]:
    """1 for a well-formed completion (see thinksafe.stages.grpo's docstring), else 0."""
    return [float(format_ok(t, fmt, cut)) for t, cut in zip(texts, truncated, strict=True)]


@dataclass
class Rewards:
    """The two TRL reward functions (bound methods: TRL logs them as rewards/guard and rewards/format)."""

    judge: Guard
    fmt: ChatFormat
    tokenizer: Any
    eos_ids: set[int] = field(default_factory=set)  # filled from the trainer: the ids TRL stops generation on
    completion_tokens: int = 0

    def texts(self, completion_ids: list[list[int]]) -> list[str]:
        # Decode ourselves: TRL may parse a completion into message fields (splitting off reasoning) when the
        # tokenizer has a response schema, and both rewards need the raw text with its think tags.
        return self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)

    def guard(self, prompts, completions, completion_ids, label, log_metric=None, **_) -> list[float]:
        users = [messages[-1]["content"] for messages in prompts]
        rewards = guard_reward(self.judge.judge(users, self.texts(completion_ids), label), label)
        # Mean per prompt label: with the refusal guard, the refusal rate (harmful) and answer rate (benign).
        for kind in sorted(set(label)) if log_metric else ():
            mine = [r for r, lab in zip(rewards, label) if lab == kind]
            log_metric(f"guard/{kind}", sum(mine) / len(mine))
        return rewards

    def format(self, prompts, completions, completion_ids, **_) -> list[float]:
        self.completion_tokens += sum(map(len, completion_ids))
        truncated = [not ids or ids[-1] not in self.eos_ids for ids in completion_ids]
        return format_reward(self.texts(completion_ids), self.fmt, truncated)
