"""The cost ledger every stage writes (DIR/ledger.json): wall time, device, tokens and a FLOPs estimate."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

FLOPS_NOTE = ("FLOPs ≈ 2·N per token processed forward (generation: prompt + generated tokens; shift; a KL "
              "reference), 6·N per token trained with full fine-tuning, 4·N per token trained with LoRA (forward "
              "2N + backward through the activations 2N; the frozen weights get no gradient, the adapters' own "
              "cost is negligible). N = the model's parameter count. Guard-model FLOPs are not counted.")


@dataclass
class Counts:
    """What a stage's run returns: the tokens it processed, for the ledger."""

    tokens_generated: int = 0
    tokens_prompt: int = 0
    tokens_forward: int = 0  # forward-only passes: shift, a KL reference, GRPO's reference
    tokens_trained: int = 0
    full: bool = False  # full fine-tuning (6·N per trained token) rather than LoRA (4·N)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tokens_generated + other.tokens_generated, self.tokens_prompt + other.tokens_prompt,
                      self.tokens_forward + other.tokens_forward, self.tokens_trained + other.tokens_trained,
                      self.full or other.full)


_PARAMS: dict[tuple[str, bool], int | None] = {}


def count_params(spec) -> int | None:
    """Parameters of the base model, counted on the meta device (no weights are loaded)."""
    key = (spec.model, spec.trust_remote_code)
    if key not in _PARAMS:
        try:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            from thinksafe.models import resolve_model

            config = AutoConfig.from_pretrained(resolve_model(spec.model), trust_remote_code=spec.trust_remote_code)
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
            _PARAMS[key] = sum(p.numel() for p in model.parameters())
        except Exception:  # the ledger still records time and tokens
            _PARAMS[key] = None
    return _PARAMS[key]


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def ledger_entry(stage, job, key: str, arms: list[str], counts: Counts, wall: float, resumed: bool) -> dict[str, Any]:
    n = count_params(job.model) if job.model is not None else None
    return {
        "stage": stage.name, "arms": arms, "key": key, "wall_seconds": round(wall, 2), "device": device_name(),
        "tokens_generated": counts.tokens_generated, "tokens_prompt": counts.tokens_prompt,
        "tokens_forward": counts.tokens_forward, "tokens_trained": counts.tokens_trained,
        "params": n, "flops": None if n is None else stage.flops(counts, n), "flops_formula": FLOPS_NOTE,
        "resumed": resumed, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
