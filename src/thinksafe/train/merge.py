"""`thinksafe merge`: fold a LoRA adapter into its base model."""

from __future__ import annotations

from pathlib import Path

from thinksafe.errors import InputError
from thinksafe.models import ModelSpec, load_model
from thinksafe.records import read_json


def merge(adapter: str, out: str, dtype: str = "auto") -> Path:
    """Merge a LoRA adapter into its base model and save a plain model directory."""
    cfg_path = Path(adapter) / "adapter_config.json"
    if not cfg_path.exists():
        raise InputError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
    base = read_json(cfg_path)["base_model_name_or_path"]
    loaded = load_model(ModelSpec(model=base, adapter=adapter, dtype=dtype, device="cpu"))
    merged = loaded.model.merge_and_unload()
    merged.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return Path(out)
