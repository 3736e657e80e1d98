"""LoRA adapters for `thinksafe train` and `thinksafe grpo`: one config, so both baselines train the same adapter."""

from __future__ import annotations

import functools
from typing import Any


def add_lora(model, args: Any):
    """Wrap `model` in a fresh LoRA adapter; `args` is anything with lora_r, lora_alpha, lora_dropout and
    target_modules (TrainArgs, GRPOArgs)."""
    from peft import LoraConfig, get_peft_model

    targets = "all-linear" if args.target_modules == "all-linear" else [t.strip() for t in args.target_modules.split(",")]
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config, autocast_adapter_dtype=True)  # fp32 adapters on a bf16 base


def name_base(model, name: str) -> None:
    """Record the base as the user named it (alias / hub id), not our cache path, in every saved adapter config
    (checkpoints too), so `--model NAME --adapter OUT` finds it again."""
    model.peft_config["default"].base_model_name_or_path = name
    # PEFT's save_embedding_layers="auto" asks the hub for NAME's config.json on every save (two warnings each
    # time for an alias or offline) to learn whether the vocabulary was resized. We never resize it, and embeddings
    # in target_modules make PEFT save them without asking, so every save (Trainer's checkpoints too) skips it.
    targets = model.peft_config["default"].target_modules or ()
    if not any("embed" in m for m in ([targets] if isinstance(targets, str) else targets)):
        model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=False)


def param_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
