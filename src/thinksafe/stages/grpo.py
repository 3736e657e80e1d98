"""`thinksafe grpo`: the online-RL baseline — GRPO (TRL's GRPOTrainer) with a guard reward and a format reward.

Prompts go in *unsteered*, as chat messages; TRL samples G completions per prompt through its own generation
path (transformers `generate`, or vLLM with --use_vllm) and each completion gets two rewards, summed:

- guard reward = P(safe). The `refusal` guard has no probability: 1 when the response refuses a harmful prompt
  or answers a benign one, else 0. Guards that score give 1 - P(unsafe); `unknown` (e.g. an empty answer) is 0.
- format reward, 0/1. `think` models: exactly one well-formed `<think>…</think>` (R1-style prompts open the
  block themselves, so there the completion needs exactly one `</think>` and no `<think>`). `plain` models:
  the completion ended with EOS rather than being cut at max_completion_length. TRL hands reward functions
  the completion token ids, trimmed after the first EOS; a completion is truncated when its last id is not an
  EOS/pad id — the same rule TRL uses for its `completions/clipped_ratio` metric.

A step is `effective_batch_size` completions (paper: 64 = 8 prompts x G 8) or, unset, per-device batch x
gradient_accumulation_steps x processes. Prompts are capped at max_prompt_length tokens, chat template included
(paper: 1,024): a longer one keeps the end of its user message. TRL 0.2x cut the rendered prompt's head (the
reference's max_prompt_length); TRL 1.x has no such option, and cutting the message keeps the template whole.

OUT mirrors `thinksafe train`: the PEFT adapter + tokenizer (`--model M --adapter OUT`), train_config.yaml,
metrics.jsonl (TRL's logs: rewards, KL, clip ratio, lengths), train_stats.json. OUT/checkpoints/checkpoint-N
is written every save_steps and all are kept; OUT/checkpoints.jsonl lists them with wall seconds and tokens
generated so far (`tokens`), for safety-vs-compute curves (`--adapter OUT/checkpoints/checkpoint-N`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import ConfigError, InputError
from thinksafe.formats import ChatFormat
from thinksafe.judge import GuardConfig
from thinksafe.models import ModelSpec
from thinksafe.prompts import load_prompts, merge_labelled
from thinksafe.records import Prompt
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts
from thinksafe.stages.trained import TrainedOutput, read_trained
from thinksafe.train.lora import add_lora, name_base, param_counts


@dataclass
class GRPOArgs:
    prompts: list[str] = opt([], "labelled prompt sources: demo, a file with --label_field, safechain[:PATH], …", role="input")
    harmful: str | None = opt(None, "harmful prompts: file, demo:harmful, built-in NAME[:PATH] (star1, advbench, …) or hub id", role="input")
    benign: str | None = opt(None, "benign prompts; same forms as --harmful", role="input")
    prompt_field: str | None = opt(None, "prompt column (default: detected)", role="input")
    label_field: str | None = opt(None, "label column (harmful/benign) of the --prompts sources", role="input")
    limit: int | None = opt(None, "at most this many prompts per source, sampled deterministically with --seed", role="input")
    out: str = opt("", "output directory (adapter, tokenizer, metrics, checkpoints)", role="output")
    num_generations: int = opt(8, "completions per prompt, G (paper: 8)")
    beta: float = opt(0.04, "KL coefficient to the reference model (paper: 0.04)")
    epsilon: float = opt(0.2, "PPO clip range (paper: 0.2)")
    temperature: float = opt(0.7, "sampling temperature (paper: 0.7)")
    max_completion_length: int = opt(1024, "max new tokens per completion (longer ones are cut)")
    max_prompt_length: int | None = opt(1024, "max prompt tokens, chat template included; a longer prompt keeps the "
                                              "end of its message (paper: 1024; none: no cap)")
    loss_type: str = opt("grpo", "TRL loss: grpo (per-sequence mean, the original objective) | dapo | dr_grpo | bnpo")
    format_weight: float = opt(1.0, "weight of the format reward (the guard reward has weight 1)")
    epochs: float = opt(1.0, "epochs over the prompts (paper: 1)")
    max_steps: int = opt(-1, "stop after this many optimizer steps (-1: --epochs decides)")
    learning_rate: float = opt(1e-5, "AdamW learning rate (paper: 1e-5)")
    lr_scheduler: str = opt("cosine", "learning-rate schedule (paper: cosine)")
    warmup_ratio: float = opt(0.1, "share of steps used for warm-up (paper: 0.1)")
    per_device_batch_size: int = opt(8, "completions (not prompts) per forward pass on each process")
    effective_batch_size: int | None = opt(None, "completions per optimizer step over all processes (paper: 64 = 8 "
                                                 "prompts x G 8); sets the accumulation, whatever the process count")
    gradient_accumulation_steps: int = opt(4, "forward passes per optimizer step when effective_batch_size is unset; "
                                              "completions per step (batch x accumulation x processes) must be a "
                                              "multiple of G")
    lora_r: int = opt(32, "LoRA rank (paper: 32)")
    lora_alpha: int = opt(16, "LoRA alpha (paper: 16)")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    target_modules: str = opt("q_proj,v_proj", "comma-separated modules, or all-linear")
    max_grad_norm: float = opt(1.0, "gradient-norm clip")
    save_steps: int = opt(50, "checkpoint every N optimizer steps; all are kept (curves, --resume)", role="runtime")
    resume: bool = opt(False, "continue from the last checkpoint in OUT/checkpoints (rerunning the same command does)", role="control")
    seed: int = opt(42, "seed for prompt sampling, generation and training")
    use_vllm: bool = opt(False, "generate with vLLM inside TRL instead of transformers generate")
    vllm_mode: str = opt("colocate", "colocate (same process/GPUs) | server (a running `trl vllm-serve`)")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward (less memory, slower)")
    report_to: str = opt("none", "none | tensorboard | wandb", role="runtime")
    logging_steps: int = opt(1, "log every N optimizer steps", role="runtime")


def load_grpo_prompts(args: GRPOArgs) -> list[Prompt]:
    """Labelled prompts from --prompts, --harmful and --benign; a text in both sets stays harmful."""
    sources = [(s, "") for s in args.prompts] + [(s, lab) for lab, s in (("harmful", args.harmful), ("benign", args.benign)) if s]
    if not sources:
        raise InputError("grpo: give --prompts and/or --harmful / --benign")
    kw = dict(prompt_field=args.prompt_field, limit=args.limit, seed=args.seed)
    groups = []
    for source, label in sources:
        group = load_prompts(source, label=label, label_field=None if label else args.label_field, **kw)
        if any(p.label not in ("harmful", "benign") for p in group):
            raise InputError(f"{source}: prompts need a harmful/benign label (name the column with --label_field, "
                             "or pass the source as --harmful / --benign)")
        groups.append(group)
    return merge_labelled(*groups)[0]


def grpo(args: GRPOArgs, spec: ModelSpec, guard_cfg: GuardConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train a LoRA adapter with GRPO and save it to args.out; returns train_stats (empty on non-main processes)."""
    from transformers import set_seed

    from thinksafe.judge import make_guard
    from thinksafe.models import load_model
    from thinksafe.train import checkpoints as ckpt
    from thinksafe.train.rewards import Rewards

    if not args.out:
        raise InputError("grpo: --out is required")
    per_step = completions_per_step(args)  # a batch that splits a group fails before anything loads
    out = Path(args.out)
    set_seed(args.seed)  # before loading: the LoRA init draws from it
    t0 = time.perf_counter()

    prompts = load_grpo_prompts(args)
    loaded = load_model(spec, with_adapter=False)
    tok, fmt = loaded.tokenizer, loaded.format
    prompts, cut = cap_prompts(prompts, tok, fmt, args.max_prompt_length)
    counts = prompt_counts(prompts) | {"prompts_truncated": cut}
    model = policy_model(args, spec, loaded.model)
    trainable, total = param_counts(model)
    data = prompt_dataset(prompts)

    # Tokens generated are counted by the format reward; checkpoints.jsonl and metrics.jsonl both report them.
    resume = ckpt.resuming(args, out)
    rewards = Rewards(make_guard(guard_cfg, fmt, progress=False), fmt, tok)
    ledger = ckpt.CheckpointLedger(out, resume, tokens=lambda: rewards.completion_tokens)
    metrics = ckpt.MetricsLog(out, extra=lambda: {"wall_seconds": ledger.seconds(), "completion_tokens": ledger.total_tokens()})
    trainer = grpo_trainer(args, out, model, tok, fmt, rewards, data, callbacks=[metrics, ledger.callback(), *(callbacks or [])])
    rewards.eos_ids = {*trainer.eos_token_ids, tok.pad_token_id}
    capped = f"{cut} cut to {args.max_prompt_length} tokens" if args.max_prompt_length else "uncapped"
    ckpt.start_run(out, resume, ledger, f"grpo: {counts['prompts']} prompts ({counts['harmful']} harmful, {counts['benign']} "
                   f"benign; {capped}), G={args.num_generations}, {per_step // args.num_generations} prompts = "
                   f"{per_step} completions/step, {trainable:,} / {total:,} params trainable, guard {guard_cfg.guard}, "
                   f"format {fmt.reasoning}")
    result, train_seconds = ckpt.timed_train(trainer, resume)
    if not trainer.is_world_process_zero():
        return {}  # the main process alone writes the result

    config = {"grpo": asdict(args), "model": asdict(spec), "guard": asdict(guard_cfg), "format": asdict(fmt)}
    policy = trainer.accelerator.unwrap_model(trainer.model)
    ckpt.save_outputs(out, policy, tok, config, selected_adapters=["default"])  # not TRL's frozen "ref" copy
    stats = {
        **counts,
        **batch_stats(args, per_step),
        "warmup_steps": trainer.args.warmup_steps,
        "steps": result.global_step,
        "final_loss": result.training_loss,
        "completion_tokens": ledger.total_tokens(),  # this process, over the whole run (resumes included)
        **ckpt.run_stats(t0, train_seconds, trainable, steps=result.global_step),
        "mode": "grpo-lora",
        "guard": guard_cfg.guard,
        "reasoning": fmt.reasoning,
    }
    return ckpt.finish(out, stats, f"{stats['seconds_per_step']} s/step, {stats['completion_tokens']} tokens generated")


def accumulation(args: GRPOArgs) -> int:
    """Forward passes per optimizer step: from effective_batch_size when set, else gradient_accumulation_steps."""
    from thinksafe.train.trainer import grad_accumulation

    return grad_accumulation(args) if args.effective_batch_size else args.gradient_accumulation_steps


def completions_per_step(args: GRPOArgs) -> int:
    """Completions per optimizer step; each step must hold whole groups of G completions."""
    from thinksafe.train.trainer import world_size

    per_step = args.per_device_batch_size * accumulation(args) * world_size()
    if per_step % args.num_generations:
        raise ConfigError(f"completions per step {per_step} (batch x accumulation x processes) is not a multiple of "
                          f"num_generations {args.num_generations}")
    return per_step


def batch_stats(args: GRPOArgs, per_step: int) -> dict[str, Any]:
    """train_stats.json's batch fields: what one optimizer step held, and the length caps."""
    return {"num_generations": args.num_generations, "prompts_per_step": per_step // args.num_generations,
            "completions_per_step": per_step, "max_prompt_length": args.max_prompt_length,
            "max_completion_length": args.max_completion_length}


def batch_note(stats: dict[str, Any]) -> str | None:
    """One sentence on the batch a grpo run used (from its train_stats.json), for cost tables; None for runs that
    predate these fields."""
    if "completions_per_step" not in stats:
        return None
    cap, prompts = stats["max_prompt_length"], stats["prompts_per_step"]
    return (f"GRPO batch: {prompts} prompt{'' if prompts == 1 else 's'} x G {stats['num_generations']} = "
            f"{stats['completions_per_step']} completions per optimizer step; prompts "
            f"{'uncapped' if cap is None else f'≤ {cap:,} tokens'}, completions ≤ {stats['max_completion_length']:,} tokens "
            f"(paper: 8 x 8 = 64, 1,024 and 16,384).")


def cap_prompts(prompts: list[Prompt], tok, fmt: ChatFormat, max_tokens: int | None) -> tuple[list[Prompt], int]:
    """(prompts, how many were cut): each rendered prompt fits max_tokens (None: no cap) — see the module docstring."""
    if max_tokens is None:
        return prompts, 0
    capped = [replace(p, prompt=fit_prompt(p.prompt, tok, fmt, max_tokens)) for p in prompts]
    return capped, sum(a.prompt != b.prompt for a, b in zip(prompts, capped))


def fit_prompt(text: str, tok, fmt: ChatFormat, max_tokens: int) -> str:
    """The text, or the shortest cut of its head that makes the rendered prompt at most max_tokens tokens."""
    def rendered(t: str) -> int:
        return len(tok(fmt.render_prompt(tok, [{"role": "user", "content": t}]), add_special_tokens=False)["input_ids"])

    over = rendered(text) - max_tokens
    if over <= 0:
        return text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    for keep in range(len(ids) - over, 0, -1):  # re-tokenizing at the cut can shift a token or two
        cut = tok.decode(ids[-keep:], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if rendered(cut) <= max_tokens:
            return cut
    raise ConfigError(f"max_prompt_length {max_tokens}: the chat template alone is longer")


def policy_model(args: GRPOArgs, spec: ModelSpec, model):
    """The LoRA policy: the given adapter continued, or a fresh one."""
    from peft import PeftModel

    if spec.adapter:  # continue an existing adapter; TRL keeps a frozen copy of it as the KL reference
        model = PeftModel.from_pretrained(model, spec.adapter, is_trainable=True)
    else:  # GRPOArgs carries TrainArgs' LoRA fields, so this is `thinksafe train`'s LoRA config
        model = add_lora(model, args)
    name_base(model, spec.model)
    return model


def prompt_counts(prompts: list[Prompt]) -> dict[str, int]:
    """train_stats.json's data fields: prompts by label."""
    harmful = sum(p.label == "harmful" for p in prompts)
    return {"prompts": len(prompts), "harmful": harmful, "benign": len(prompts) - harmful}


def prompt_dataset(prompts: list[Prompt]):
    """TRL's conversational prompt format; `label` reaches the guard reward as a column."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}], "label": p.label, "prompt_id": p.id}
                              for p in prompts])


def grpo_trainer(args: GRPOArgs, out: Path, model, tok, fmt: ChatFormat, rewards, data, callbacks: list):
    """TRL's GRPOTrainer (with our ratio warm-up) on the prompt dataset, rewarded by the guard and the format."""
    from thinksafe.train.grpo_trainer import ThinkSafeGRPOTrainer

    return ThinkSafeGRPOTrainer(
        model=model, reward_funcs=[rewards.guard, rewards.format], args=grpo_config(args, out, fmt, model),
        train_dataset=data, processing_class=tok, callbacks=callbacks, warmup_ratio=args.warmup_ratio,
    )


def grpo_config(args: GRPOArgs, out: Path, fmt: ChatFormat, model):
    """TRL's GRPOConfig from GRPOArgs."""
    import torch
    from trl import GRPOConfig

    from thinksafe.train.trainer import shared_arguments

    return GRPOConfig(
        **shared_arguments(args, out),
        num_generations=args.num_generations,
        beta=args.beta,
        epsilon=args.epsilon,
        temperature=args.temperature,
        max_completion_length=args.max_completion_length,
        loss_type=args.loss_type,
        reward_weights=[1.0, args.format_weight],
        chat_template_kwargs=fmt.template_kwargs(),  # Qwen3: enable_thinking for think models
        use_vllm=args.use_vllm,
        vllm_mode=args.vllm_mode,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_batch_size,
        gradient_accumulation_steps=accumulation(args),
        save_strategy="steps",
        save_total_limit=None,  # keep every checkpoint: each is a point on the safety-vs-compute curve
        bf16=model.dtype == torch.bfloat16,  # GRPOConfig defaults to bf16 autocast, slow and lossy on CPU fp32
    )



# ---------------------------------------------------------------- the stage


class GRPOStage(Stage):
    name = "grpo"
    help = "GRPO baseline with a guard reward"
    description = ("GRPO baseline: sample G completions per unsteered prompt, reward P(safe) from the guard plus a "
                   "format reward, train a LoRA adapter (TRL GRPOTrainer).")
    Settings = GRPOArgs
    uses = ("model", "guard")
    makes_model = True
    trains = True

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        if not upstream:
            return job
        prompts = upstream[0]  # the prompts stage of a run
        return replace(job, settings=replace(job.settings, prompts=[], harmful=str(prompts.harmful),
                                             benign=str(prompts.benign) if prompts.benign else None))

    def summary(self, job: Job) -> str:
        s = job.settings
        per_step = (f"{s.effective_batch_size} completions per step" if s.effective_batch_size
                    else f"{s.per_device_batch_size} x {s.gradient_accumulation_steps} accumulation completions per step per process")
        cap = "uncapped" if s.max_prompt_length is None else f"≤ {s.max_prompt_length:,} tokens"
        return (f"G {s.num_generations}, {per_step}; prompts {cap}, completions ≤ {s.max_completion_length:,} tokens; "
                f"temperature {s.temperature}")

    def prepare(self, job: Job) -> None:
        completions_per_step(job.settings)

    def run(self, job: Job) -> Counts:
        gen = grpo(job.settings, job.model, job.guard).get("completion_tokens", 0)
        # The policy's forward+backward on every completion, and the frozen reference's forward when beta > 0.
        return Counts(tokens_generated=gen, tokens_trained=gen, tokens_forward=gen if job.settings.beta else 0)

    def flops(self, counts: Counts, params: int) -> float:
        # Its generated tokens are also its trained tokens: generation is counted once.
        return 2 * params * (counts.tokens_generated + counts.tokens_forward) + 4 * params * counts.tokens_trained

    def read(self, out: Path) -> TrainedOutput:
        return read_trained(out, self.name)


GRPO = GRPOStage()

