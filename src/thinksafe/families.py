"""Model families and the sampling defaults that depend on them: the one place a top-k default is decided.

The reference (seanie12/ThinkSafe) samples Qwen3 with top-k 20 (its model card's setting) and
DeepSeek-R1-Distill with top-k off, in synthesis (synthesize_data.py: `20 if model_type == "qwen" else 0`) and
in evaluation (scripts/qwen/* pass top_k=20, scripts/r1-distill/* leave it out or pass 0). Synthesis and
evaluation both call `default_top_k` when their own top_k setting is unset; a set value always wins.

The family comes from the model name where the name says it (a dry run resolves it without loading anything),
else from the chat template once the tokenizer is read: Qwen3's template takes `enable_thinking`; R1-Distill's
generation prompt opens `<think>`.
"""

from __future__ import annotations

from thinksafe.formats import ChatFormat

QWEN3_TOP_K = 20
FAMILY_TITLES = {"qwen3": "Qwen3", "r1-distill": "DeepSeek-R1-Distill", "other": "other models"}


def family_from_name(model: str) -> str | None:
    """"qwen3" | "r1-distill" when the model name (hub id or path) names the family; None when it doesn't."""
    name = model.lower()
    if "deepseek-r1" in name or "r1-distill" in name:  # checked first: DeepSeek-R1-0528-Qwen3-8B is an R1 distill
        return "r1-distill"
    if "qwen3" in name:
        return "qwen3"
    return None


def family(model: str, fmt: ChatFormat | None = None) -> str | None:
    """The model's family: from its name, else from its chat format ("other" when neither is Qwen3 or R1);
    None when the name doesn't tell and no format is known yet."""
    named = family_from_name(model)
    if named or fmt is None:
        return named
    if fmt.thinking_kwarg:
        return "qwen3"
    return "r1-distill" if fmt.opens_think else "other"


def default_top_k(model: str, fmt: ChatFormat | None = None) -> int | None:
    """Top-k when none is set: 20 for Qwen3, 0 (off) for R1-Distill and every other model; None: not known
    until the chat format is (see `family`)."""
    fam = family(model, fmt)
    return None if fam is None else QWEN3_TOP_K if fam == "qwen3" else 0


def resolve_top_k(top_k: int | None, model: str, fmt: ChatFormat) -> int:
    """The top-k a stage samples with: its setting when given, else its model family's default."""
    return top_k if top_k is not None else default_top_k(model, fmt)


def describe_top_k(top_k: int | None, model: str) -> str:
    """For a plan: the top-k that will be used and why, without loading the model."""
    if top_k is not None:
        return "off (set)" if top_k == 0 else f"{top_k} (set)"
    fam = family_from_name(model)
    if fam is None:
        return "auto (from the chat template at load: 20 for Qwen3-style, else off)"
    value = default_top_k(model)
    return f"{'off' if value == 0 else value} ({FAMILY_TITLES[fam]} default)"
