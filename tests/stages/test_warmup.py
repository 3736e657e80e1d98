"""Warm-up over `warmup_ratio` of the optimizer steps on every supported transformers, SFT and GRPO (issue 17,
item 3). 4.x reads warmup_steps as an integer count (4.56 rejects a float) and 5.x reads a float < 1 as a ratio;
"4.x" below replaces the installed reading with 4.56's, so a 5.x install checks both."""

import math

import pytest
from transformers import TrainingArguments

from thinksafe.judge import GuardConfig, make_guard
from thinksafe.models import ModelSpec, load_model
from thinksafe.stages.grpo import GRPOArgs, grpo_trainer, load_grpo_prompts, policy_model, prompt_dataset
from thinksafe.stages.sft import TrainArgs, sft_trainer
from thinksafe.train.data import Example, tokenize
from thinksafe.train.lora import add_lora
from thinksafe.train.rewards import Rewards

LR, RATIO, TOTAL = 1e-3, 0.25, 8  # warm-up: ceil(0.25 x 8) = 2 steps


def warmup_steps_4x(self, num_training_steps):
    """transformers 4.56 (training_args.py): __post_init__ requires an int warmup_steps, get_warmup_steps takes it
    as a count when > 0 and falls back to warmup_ratio (a field 5.x no longer has) otherwise."""
    if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
        raise ValueError("warmup_steps must be of type int and must be 0 or a positive integer.")
    ratio = getattr(self, "warmup_ratio", 0.0)
    return self.warmup_steps if self.warmup_steps > 0 else math.ceil(num_training_steps * ratio)


@pytest.fixture(params=["installed", "4.x"])
def reading(request, monkeypatch):
    if request.param == "4.x":
        monkeypatch.setattr(TrainingArguments, "get_warmup_steps", warmup_steps_4x)  # GRPOConfig inherits it
    return request.param


def expected(step: int, warmup: int = 2) -> float:
    """transformers' cosine schedule with linear warm-up, written out."""
    if step < warmup:
        return LR * step / warmup
    return LR * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (TOTAL - warmup)))


def scheduled_lrs(trainer, steps: int = 5) -> list[float]:
    trainer.create_optimizer_and_scheduler(num_training_steps=TOTAL)
    lrs = []
    for _ in range(steps):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return lrs


def test_sft_warmup_follows_the_ratio(reading, tiny_models, tmp_path):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    items, _ = tokenize([Example("What is 2 + 2?", "4.", "benign")], lm.tokenizer, lm.format, max_length=128)
    args = TrainArgs(data="x", out=str(tmp_path), learning_rate=LR, warmup_ratio=RATIO, effective_batch_size=1)
    trainer = sft_trainer(args, tmp_path, add_lora(lm.model, args), lm.tokenizer, items, epochs=1, accum=1, callbacks=[])
    assert scheduled_lrs(trainer) == pytest.approx([expected(s) for s in range(5)])  # 0, lr/2, lr, then cosine
    assert trainer.args.warmup_steps == 2


def test_grpo_warmup_follows_the_ratio(reading, tiny_models, tmp_path):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    args = GRPOArgs(harmful="demo:harmful", limit=2, out=str(tmp_path), num_generations=2, per_device_batch_size=2,
                    gradient_accumulation_steps=1, max_completion_length=8, learning_rate=LR, warmup_ratio=RATIO,
                    lora_r=4)
    model = policy_model(args, ModelSpec(str(tiny_models["plain"])), lm.model)
    rewards = Rewards(make_guard(GuardConfig(), lm.format, progress=False), lm.format, lm.tokenizer)
    trainer = grpo_trainer(args, tmp_path, model, lm.tokenizer, lm.format, rewards,
                           prompt_dataset(load_grpo_prompts(args)), callbacks=[])
    assert scheduled_lrs(trainer) == pytest.approx([expected(s) for s in range(5)])
    assert trainer.args.warmup_steps == 2


def test_no_warmup_stays_off(tiny_models, tmp_path):
    lm = load_model(ModelSpec(str(tiny_models["plain"])))
    items, _ = tokenize([Example("hi", "hello", "benign")], lm.tokenizer, lm.format, max_length=128)
    args = TrainArgs(data="x", out=str(tmp_path), learning_rate=LR, warmup_ratio=0.0, effective_batch_size=1)
    trainer = sft_trainer(args, tmp_path, add_lora(lm.model, args), lm.tokenizer, items, epochs=1, accum=1, callbacks=[])
    assert scheduled_lrs(trainer, 2) == pytest.approx([expected(s, warmup=0) for s in range(2)])
    assert trainer.args.warmup_steps == 0
