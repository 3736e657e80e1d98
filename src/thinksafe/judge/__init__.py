"""One guard interface: judge (prompt, response[, label]) pairs → Verdicts. Guards fail closed.

    guard = make_guard(GuardConfig(guard="refusal"))
    verdicts = guard.judge(prompts, responses, labels)   # labels: "harmful"/"benign" per pair, optional

A verdict is `safe`, `unsafe` or `unknown`; anything a guard cannot parse, or a guard model/server that
fails, gives `unknown` — never `safe`. Which guard (and version) judged is recorded in every verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from thinksafe.config import opt
from thinksafe.errors import ConfigError
from thinksafe.records import Verdict

GUARDS = ("refusal", "llama-guard", "wildguard", "judge-model")


@dataclass
class GuardConfig:
    guard: Literal["refusal", "llama-guard", "wildguard", "judge-model"] = opt(
        "refusal", "safety judge: refusal (CPU default, phrase patterns) | llama-guard | wildguard | judge-model"
    )
    guard_model: str | None = opt(
        None, "guard model (alias, hub id, dir, .gguf); default meta-llama/Llama-Guard-3-8B / allenai/wildguard"
    )
    guard_backend: Literal["transformers", "openai"] = opt("transformers", "where the guard model runs")
    guard_base_url: str | None = opt(None, "OpenAI-compatible server URL for the guard")
    guard_api_key_env: str | None = opt(None, "NAME of the env var holding the guard server's API key")
    guard_sees: Literal["full", "answer"] = opt("full", "what the guard judges: full response with reasoning (paper) or answer only")
    guard_batch_size: int = opt(8, "pairs per guard forward pass")


class Guard(Protocol):
    name: str  # e.g. "llama-guard:meta-llama/Llama-Guard-3-8B" — stored in every Verdict.guard

    def judge(
        self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str] | None = None
    ) -> list[Verdict]: ...


def make_guard(cfg: GuardConfig) -> Guard:
    if cfg.guard == "refusal":
        from thinksafe.judge.refusal import RefusalGuard

        return RefusalGuard()
    if cfg.guard == "llama-guard":
        from thinksafe.judge.llama_guard import LlamaGuard

        return LlamaGuard.from_config(cfg)
    if cfg.guard == "wildguard":
        from thinksafe.judge.wildguard import WildGuard

        return WildGuard.from_config(cfg)
    if cfg.guard == "judge-model":
        from thinksafe.judge.judge_model import JudgeModel

        return JudgeModel.from_config(cfg)
    raise ConfigError(f"guard '{cfg.guard}': expected one of {', '.join(GUARDS)}")
