"""dtype `auto`: bf16 on CPUs with native bf16 (AVX-512 BF16 / AMX), fp32 elsewhere — the capability faked both
ways; the resolved dtype is part of every stage key; LoRA trains fp32 adapters on a bf16 base, full fine-tuning
keeps fp32 weights."""

from __future__ import annotations

import json

import pytest
import torch

from thinksafe import models
from thinksafe.models import ModelSpec, cpu_flags, load_model, pick_dtype, resolved_dtype

EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
OLD_XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """cpu(text): the machine's /proc/cpuinfo is `text`, with no THINKSAFE_CPU_BF16 override."""
    monkeypatch.delenv("THINKSAFE_CPU_BF16", raising=False)

    def fake(text: str) -> None:
        path = tmp_path / f"cpuinfo-{len(list(tmp_path.glob('cpuinfo-*')))}"  # a new file: cpu_flags caches per path
        path.write_text(text)
        monkeypatch.setattr(models, "cpu_flags", lambda cpuinfo=str(path): cpu_flags(cpuinfo))

    return fake


@pytest.mark.parametrize("info,expected", [(EPYC, torch.bfloat16), (SAPPHIRE, torch.bfloat16),
                                           (OLD_XEON, torch.float32), ("", torch.float32)])
def test_auto_is_bf16_only_on_cpus_with_native_bf16(cpu, info, expected):
    cpu(info)
    assert pick_dtype("auto", "cpu") is expected
    assert pick_dtype("float32", "cpu") is torch.float32 and pick_dtype("bfloat16", "cpu") is torch.bfloat16


def test_no_cpuinfo_means_fp32_and_the_environment_can_decide(monkeypatch, tmp_path):
    monkeypatch.delenv("THINKSAFE_CPU_BF16", raising=False)
    assert cpu_flags(str(tmp_path / "missing")) == set()
    monkeypatch.setattr(models, "cpu_flags", lambda: set())
    assert pick_dtype("auto", "cpu") is torch.float32
    monkeypatch.setenv("THINKSAFE_CPU_BF16", "1")
    assert pick_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setenv("THINKSAFE_CPU_BF16", "0")
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx512_bf16"})
    assert pick_dtype("auto", "cpu") is torch.float32


def test_the_resolved_dtype_is_in_the_key(cpu):
    spec = ModelSpec("some/model", device="cpu")
    cpu(EPYC)
    on_bf16 = spec.key()
    cpu(OLD_XEON)
    on_fp32 = spec.key()
    assert (on_bf16["dtype"], on_fp32["dtype"]) == ("bfloat16", "float32") and on_bf16 != on_fp32
    assert resolved_dtype(ModelSpec("m", dtype="float16")) == "float16"


def test_auto_loads_bf16_on_a_bf16_cpu(cpu, tiny_models):
    cpu(EPYC)
    assert load_model(ModelSpec(str(tiny_models["plain"]))).model.dtype == torch.bfloat16
    cpu(OLD_XEON)
    assert load_model(ModelSpec(str(tiny_models["plain"]))).model.dtype == torch.float32


def test_lora_on_a_bf16_base_trains_fp32_adapters_and_full_keeps_fp32(cpu, tiny_models, tmp_path):
    from thinksafe.stages.sft import TrainArgs, master_weights, train
    from thinksafe.train.lora import add_lora

    cpu(EPYC)
    model = load_model(ModelSpec(str(tiny_models["plain"]))).model
    peft = add_lora(model, TrainArgs(lora_r=4, lora_alpha=8))
    trainable = [p for p in peft.parameters() if p.requires_grad]
    frozen = [p for p in peft.parameters() if not p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == torch.bfloat16 for p in frozen)

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Question {i}?", "response": f"Answer {i}.",
                                        "prompt_label": "benign"}) + "\n" for i in range(4)))
    out = tmp_path / "run"
    stats = train(TrainArgs(data=str(data), out=str(out), epochs=4, learning_rate=5e-3, effective_batch_size=2,
                            lora_r=4, lora_alpha=8), ModelSpec(str(tiny_models["plain"])))
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert stats["steps"] == 8 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-2:]) < sum(losses[:2])  # it learns in bf16 too

    assert master_weights(TrainArgs(full=True), ModelSpec("m")).dtype == "float32"
    assert master_weights(TrainArgs(full=True), ModelSpec("m", dtype="bfloat16")).dtype == "bfloat16"  # asked for
    assert master_weights(TrainArgs(), ModelSpec("m")).dtype == "auto"
