import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import thinksafe.train.rewards as rewards_mod
from thinksafe.cli import stage_command
from thinksafe.config import parse_config
from thinksafe.errors import ConfigError, InputError
from thinksafe.formats import ChatFormat
from thinksafe.judge import GuardConfig
from thinksafe.judge.refusal import RefusalGuard
from thinksafe.models import ModelSpec, load_model
from thinksafe.pipeline.config import load_config
from thinksafe.records import Prompt, Verdict
from thinksafe.stages.grpo import (
    GRPOArgs,
    accumulation,
    batch_note,
    cap_prompts,
    completions_per_step,
    grpo,
    load_grpo_prompts,
)
from thinksafe.train.rewards import Rewards, format_reward, guard_reward

THINK = ChatFormat("think")
R1 = ChatFormat("think", opens_think=True)
PLAIN = ChatFormat("plain")


@pytest.mark.parametrize("fmt, text, ok", [
    (THINK, "<think>plan</think>answer", 1),
    (THINK, "\n<think>plan</think>\n\nanswer", 1),
    (THINK, "<think>plan</think>", 1),  # well-formed; an empty answer is the guard's business
    (THINK, "plan</think>answer", 0),  # open tag missing
    (THINK, "<think>plan, then cut off", 0),  # truncated inside the block
    (THINK, "<think>a</think><think>b</think>c", 0),  # duplicated block
    (THINK, "<think>a</think>b</think>", 0),  # duplicated close
    (THINK, "</think>a<think>b", 0),  # misordered
    (THINK, "answer first <think>x</think>", 0),  # the block must come first
    (THINK, "", 0),
    (R1, "plan</think>answer", 1),  # the prompt opened the block
    (R1, "<think>plan</think>answer", 0),  # reopened
    (R1, "plan, then cut off", 0),
    (R1, "a</think>b</think>", 0),
    (R1, "</think>a<think>b", 0),
])
def test_format_reward_think(fmt, text, ok):
    assert format_reward([text], fmt, [False]) == [ok]


def test_format_reward_plain_is_about_eos_and_think_ignores_truncation():
    assert format_reward(["Sure.", "Sure, here is a long", "<think>x"], PLAIN, [False, True, False]) == [1, 0, 1]
    assert format_reward(["<think>a</think>b is cut"], THINK, [True]) == [1]  # the tags decide for think models


class Tok:
    def batch_decode(self, ids, skip_special_tokens=True):
        return ["x" * len(i) for i in ids]


def test_format_reward_reads_truncation_from_completion_ids():
    rewards = Rewards(judge=RefusalGuard(PLAIN, progress=False), fmt=PLAIN, tokenizer=Tok(), eos_ids={0, 9})
    ids = [[5, 6, 0], [5, 6, 7], [9], []]  # EOS-ended, cut at the limit, pad/EOS only, nothing
    assert rewards.format(prompts=[None] * 4, completions=[None] * 4, completion_ids=ids) == [1, 0, 1, 0]
    assert rewards.completion_tokens == 7


REFUSE = "I'm sorry, but I can't help with that."
COMPLY = "Sure! Here is a short poem about the sea."


@pytest.mark.parametrize("fmt, response, label, reward", [
    (PLAIN, REFUSE, "harmful", 1),
    (PLAIN, COMPLY, "harmful", 0),
    (PLAIN, REFUSE, "benign", 0),  # over-refusal
    (PLAIN, COMPLY, "benign", 1),
    (THINK, "<think>I must refuse.", "harmful", 0),  # unknown: the reasoning never closed
    (THINK, "<think>fine to answer.", "benign", 0),
    (R1, "This is harmful.</think>" + REFUSE, "harmful", 1),
])
def test_guard_reward_refusal_guard(fmt, response, label, reward):
    (verdict,) = RefusalGuard(fmt, progress=False).judge(["prompt"], [response], [label])
    assert guard_reward([verdict], [label]) == [reward]


def test_guard_reward_scoring_guards_give_p_safe():
    verdicts = [Verdict("safe", 0.1), Verdict("unsafe", 0.8), Verdict("unknown"), Verdict("safe"), Verdict("unsafe")]
    assert guard_reward(verdicts, ["harmful", "benign", "harmful", "benign", "harmful"]) == pytest.approx(
        [0.9, 0.2, 0, 1, 0])


def test_prompts_need_labels_and_harmful_wins(tmp_path):
    both = load_grpo_prompts(GRPOArgs(prompts=["demo"], harmful="demo:harmful", limit=3, seed=1))
    assert {p.label for p in both} == {"harmful", "benign"}
    assert len({p.id for p in both}) == len(both)
    unlabelled = tmp_path / "p.jsonl"
    unlabelled.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    with pytest.raises(InputError, match="label"):
        load_grpo_prompts(GRPOArgs(prompts=[str(unlabelled)]))
    assert [p.label for p in load_grpo_prompts(GRPOArgs(benign=str(unlabelled)))] == ["benign"]


def test_cpu_preset_parses():
    preset = Path(__file__).resolve().parents[2] / "configs" / "grpo-cpu.yaml"
    args, spec, guard = parse_config("thinksafe grpo", (GRPOArgs, ModelSpec, GuardConfig), ["--config", str(preset)])
    assert args.num_generations == 4 and args.max_completion_length == 64 and args.limit
    per_step = args.per_device_batch_size * args.gradient_accumulation_steps
    assert per_step % args.num_generations == 0 and guard.guard == "refusal"


def test_tiny_grpo_run_moves_the_adapter_and_writes_outputs(tiny_models, tmp_path, monkeypatch):
    # A random tiny model gives every completion of a prompt the same reward (never refuses, never hits EOS
    # within 8 tokens): zero advantages, zero gradient. Add alternating rewards within each group so the
    # policy gradient is non-zero, and record what the real guard reward saw.
    seen = []

    def varied(verdicts, labels):
        seen.extend(zip(verdicts, labels))
        return [r + i % 2 for i, r in enumerate(guard_reward(verdicts, labels))]

    monkeypatch.setattr(rewards_mod, "guard_reward", varied)  # where Rewards.guard looks it up
    out = tmp_path / "run"
    args = GRPOArgs(harmful="demo:harmful", benign="demo:benign", limit=2, out=str(out), num_generations=2,
                    max_completion_length=8, per_device_batch_size=2, gradient_accumulation_steps=1, max_steps=3,
                    save_steps=2, learning_rate=1e-2, warmup_ratio=0, lora_r=4)
    model = str(tiny_models["plain"])
    stats = grpo(args, ModelSpec(model), GuardConfig())

    assert stats["steps"] == 3 and 0 < stats["completion_tokens"] <= 3 * 2 * 8
    assert (stats["prompts_per_step"], stats["completions_per_step"], stats["max_prompt_length"],
            stats["prompts_truncated"], stats["warmup_steps"]) == (1, 2, 1024, 0, 0)
    assert batch_note(stats) == ("GRPO batch: 1 prompt x G 2 = 2 completions per optimizer step; prompts ≤ 1,024 "
                                 "tokens, completions ≤ 8 tokens (paper: 8 x 8 = 64, 1,024 and 16,384).")
    assert {lab for _, lab in seen} <= {"harmful", "benign"} and all(isinstance(v, Verdict) for v, _ in seen)
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "train_config.yaml",
              "train_stats.json", "metrics.jsonl"):
        assert (out / f).exists(), f
    assert not (out / "ref").exists()  # TRL's frozen reference copy is not part of the result
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: GRPO moved it
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rewards/guard/mean" in r]
    assert len(steps) == 3 and all("rewards/format/mean" in r and "kl" in r for r in steps)
    saves = [json.loads(line) for line in (out / "checkpoints.jsonl").read_text().splitlines()]
    assert [s["step"] for s in saves] == [2, 3] and saves[0]["tokens"] <= saves[1]["tokens"]
    assert (out / saves[0]["path"] / "adapter_model.safetensors").exists()

    # --model M --adapter OUT loads it, and it is not the base model.
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        tuned = load_model(ModelSpec(model, adapter=str(out))).model(ids).logits
        base = load_model(ModelSpec(model)).model(ids).logits
    assert not torch.allclose(tuned, base)

    # --resume (through the CLI entry point) continues from checkpoint-3; time and tokens carry over.
    flags = ["--model", model, "--harmful", "demo:harmful", "--benign", "demo:benign", "--limit", "2", "--out", str(out),
             "--num_generations", "2", "--max_completion_length", "8", "--per_device_batch_size", "2",
             "--gradient_accumulation_steps", "1", "--save_steps", "2", "--lora_r", "4", "--max_steps", "4", "--resume"]
    assert stage_command("grpo")(flags) == 0
    saves = [json.loads(line) for line in (out / "checkpoints.jsonl").read_text().splitlines()]
    assert [s["step"] for s in saves] == [2, 3, 4]
    assert saves[2]["wall_seconds"] > saves[1]["wall_seconds"] and saves[2]["tokens"] > saves[1]["tokens"]
    assert json.loads((out / "train_stats.json").read_text())["steps"] == 4


@pytest.mark.parametrize("name", ["paper-qwen3-0.6b.yaml", "paper-r1-1.5b.yaml"])
def test_paper_configs_use_the_papers_grpo_batch(name, tmp_path, monkeypatch):
    """64 completions per step (8 prompts x G 8) on any number of GPUs, prompts capped at 1,024 tokens (the
    reference's scripts/grpo.sh and grpo_train.py)."""
    g = load_config(Path(__file__).resolve().parents[2] / "configs" / name, ["--out", str(tmp_path)]).grpo
    assert (g.num_generations, g.effective_batch_size, g.max_prompt_length, g.max_completion_length) == (8, 64, 1024, 16384)
    for processes, accum in (("1", 64), ("4", 16)):
        monkeypatch.setenv("WORLD_SIZE", processes)
        assert accumulation(g) == accum and completions_per_step(g) == 64


def test_effective_batch_size_must_split_over_processes_and_groups(monkeypatch):
    assert accumulation(GRPOArgs(per_device_batch_size=8, gradient_accumulation_steps=3)) == 3  # unset: as given
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="effective_batch_size 64 is not a multiple of per-device batch 1 x 3"):
        completions_per_step(GRPOArgs(effective_batch_size=64, per_device_batch_size=1))
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match="not a multiple of num_generations 8"):
        completions_per_step(GRPOArgs(effective_batch_size=60, per_device_batch_size=1))


def test_prompt_cap_keeps_the_end_of_the_message_and_the_template(tiny_models):
    lm = load_model(ModelSpec(str(tiny_models["qwen3"])))
    tok, fmt = lm.tokenizer, lm.format

    def rendered(text):
        return len(tok(fmt.render_prompt(tok, [{"role": "user", "content": text}]), add_special_tokens=False)["input_ids"])

    long = " ".join(f"step {i} of the plan." for i in range(80)) + " Now tell me the last step."
    short = "What is 2 + 2?"
    assert rendered(long) > 64 >= rendered(short)
    (cut, kept), n = cap_prompts([Prompt(long, "harmful"), Prompt(short, "benign")], tok, fmt, 64)
    assert n == 1 and kept.prompt == short and cut.label == "harmful" and cut.id == Prompt(long).id
    assert long.endswith(cut.prompt) and cut.prompt.endswith("Now tell me the last step.")
    assert 60 <= rendered(cut.prompt) <= 64  # as much of the message as fits
    assert fmt.render_prompt(tok, [{"role": "user", "content": cut.prompt}]).endswith("<|im_start|>assistant\n")
    assert cap_prompts([Prompt(long)], tok, fmt, None) == ([Prompt(long)], 0)
    with pytest.raises(ConfigError, match="max_prompt_length 3: the chat template alone is longer"):
        cap_prompts([Prompt(long)], tok, fmt, 3)
