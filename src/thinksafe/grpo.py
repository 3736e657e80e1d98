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

OUT mirrors `thinksafe train`: the PEFT adapter + tokenizer (`--model M --adapter OUT`), train_config.yaml,
metrics.jsonl (TRL's logs: rewards, KL, clip ratio, lengths), train_stats.json. OUT/checkpoints/checkpoint-N
is written every save_steps and all are kept; OUT/checkpoints.jsonl lists them with wall seconds and tokens
generated so far (`tokens`), for safety-vs-compute curves (`--adapter OUT/checkpoints/checkpoint-N`).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thinksafe.config import opt, parse_config
from thinksafe.errors import ConfigError, InputError
from thinksafe.formats import THINK_CLOSE, THINK_OPEN, ChatFormat
from thinksafe.judge import Guard, GuardConfig
from thinksafe.models import ModelSpec
from thinksafe.progress import console
from thinksafe.prompts import load_prompts
from thinksafe.records import Prompt, Verdict, append_jsonl, write_json_atomic, write_text_atomic


@dataclass
class GRPOArgs:
    prompts: list[str] = opt([], "labelled prompt sources: demo, a file with --label_field, safechain[:PATH], …")
    harmful: str | None = opt(None, "harmful prompts: file, demo:harmful, built-in NAME[:PATH] (star1, advbench, …) or hub id")
    benign: str | None = opt(None, "benign prompts; same forms as --harmful")
    prompt_field: str | None = opt(None, "prompt column (default: detected)")
    label_field: str | None = opt(None, "label column (harmful/benign) of the --prompts sources")
    limit: int | None = opt(None, "at most this many prompts per source, sampled deterministically with --seed")
    out: str = opt("", "output directory (adapter, tokenizer, metrics, checkpoints)")
    num_generations: int = opt(8, "completions per prompt, G (paper: 8)")
    beta: float = opt(0.04, "KL coefficient to the reference model (paper: 0.04)")
    epsilon: float = opt(0.2, "PPO clip range (paper: 0.2)")
    temperature: float = opt(0.7, "sampling temperature (paper: 0.7)")
    max_completion_length: int = opt(1024, "max new tokens per completion (longer ones are cut)")
    loss_type: str = opt("grpo", "TRL loss: grpo (per-sequence mean, the original objective) | dapo | dr_grpo | bnpo")
    format_weight: float = opt(1.0, "weight of the format reward (the guard reward has weight 1)")
    epochs: float = opt(1.0, "epochs over the prompts (paper: 1)")
    max_steps: int = opt(-1, "stop after this many optimizer steps (-1: --epochs decides)")
    learning_rate: float = opt(1e-5, "AdamW learning rate (paper: 1e-5)")
    lr_scheduler: str = opt("cosine", "learning-rate schedule (paper: cosine)")
    warmup_ratio: float = opt(0.1, "share of steps used for warm-up (paper: 0.1)")
    per_device_batch_size: int = opt(8, "completions (not prompts) per forward pass on each process")
    gradient_accumulation_steps: int = opt(4, "forward passes per optimizer step; completions per step "
                                              "(batch x accumulation x processes) must be a multiple of G")
    lora_r: int = opt(32, "LoRA rank (paper: 32)")
    lora_alpha: int = opt(16, "LoRA alpha (paper: 16)")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    target_modules: str = opt("q_proj,v_proj", "comma-separated modules, or all-linear")
    max_grad_norm: float = opt(1.0, "gradient-norm clip")
    save_steps: int = opt(50, "checkpoint every N optimizer steps; all are kept (curves, --resume)")
    resume: bool = opt(False, "continue from the last checkpoint in OUT/checkpoints")
    seed: int = opt(42, "seed for prompt sampling, generation and training")
    use_vllm: bool = opt(False, "generate with vLLM inside TRL instead of transformers generate")
    vllm_mode: str = opt("colocate", "colocate (same process/GPUs) | server (a running `trl vllm-serve`)")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward (less memory, slower)")
    report_to: str = opt("none", "none | tensorboard | wandb")
    logging_steps: int = opt(1, "log every N optimizer steps")


# ---------------------------------------------------------------- rewards (pure)


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
    """1 for a well-formed completion (see the module docstring), else 0."""
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


# ---------------------------------------------------------------- data


def load_grpo_prompts(args: GRPOArgs) -> list[Prompt]:
    """Labelled prompts from --prompts, --harmful and --benign; a text in both sets stays harmful."""
    sources = [(s, "") for s in args.prompts] + [(s, lab) for lab, s in (("harmful", args.harmful), ("benign", args.benign)) if s]
    if not sources:
        raise InputError("grpo: give --prompts and/or --harmful / --benign")
    kw = dict(prompt_field=args.prompt_field, limit=args.limit, seed=args.seed)
    by_id: dict[str, Prompt] = {}
    for source, label in sources:
        for p in load_prompts(source, label=label, label_field=None if label else args.label_field, **kw):
            if p.label not in ("harmful", "benign"):
                raise InputError(f"{source}: prompts need a harmful/benign label (name the column with --label_field, "
                                 "or pass the source as --harmful / --benign)")
            if p.id not in by_id or p.label == "harmful":
                by_id[p.id] = p
    return list(by_id.values())


# ---------------------------------------------------------------- training


def grpo(args: GRPOArgs, spec: ModelSpec, guard_cfg: GuardConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train a LoRA adapter with GRPO and save it to args.out; returns train_stats (empty on non-main processes)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import TrainerCallback, set_seed
    from trl import GRPOConfig, GRPOTrainer

    from thinksafe.judge import make_guard
    from thinksafe.models import load_model
    from thinksafe.train import CheckpointLedger, add_lora, is_main_process, world_size

    if not args.out:
        raise InputError("grpo: --out is required")
    per_step = args.per_device_batch_size * args.gradient_accumulation_steps * world_size()
    if per_step % args.num_generations:
        raise ConfigError(f"completions per step {per_step} (batch x accumulation x processes) is not a multiple of "
                          f"num_generations {args.num_generations}")
    out = Path(args.out)
    set_seed(args.seed)
    t0 = time.perf_counter()

    prompts = load_grpo_prompts(args)
    n_harmful = sum(p.label == "harmful" for p in prompts)
    loaded = load_model(spec, with_adapter=False)
    model, tok, fmt = loaded.model, loaded.tokenizer, loaded.format
    if spec.adapter:  # continue an existing adapter; TRL keeps a frozen copy of it as the KL reference
        model = PeftModel.from_pretrained(model, spec.adapter, is_trainable=True)
    else:  # GRPOArgs carries TrainArgs' LoRA fields, so this is `thinksafe train`'s LoRA config
        model = add_lora(model, args)
    model.peft_config["default"].base_model_name_or_path = spec.model  # name the base as the user did, in checkpoints too
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}], "label": p.label, "prompt_id": p.id}
                              for p in prompts])

    metrics_path = out / "metrics.jsonl"
    resume = args.resume and any((out / "checkpoints").glob("checkpoint-*"))
    rewards = Rewards(make_guard(guard_cfg, fmt, progress=False), fmt, tok)
    ledger = CheckpointLedger(out, resume, tokens=lambda: rewards.completion_tokens)  # checkpoints.jsonl

    class Log(TrainerCallback):
        """metrics.jsonl: every TRL log line, with the wall seconds and tokens generated so far."""

        def on_log(self, targs, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                append_jsonl(metrics_path, [{"step": state.global_step, "epoch": state.epoch, "wall_seconds": ledger.seconds(),
                                             "completion_tokens": ledger.total_tokens(), **logs}])

    config = GRPOConfig(
        output_dir=str(out / "checkpoints"),
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
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=args.max_grad_norm,
        optim="adamw_torch",
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=None,  # keep every checkpoint: each is a point on the safety-vs-compute curve
        report_to=[] if args.report_to == "none" else [args.report_to],
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=model.dtype == torch.bfloat16,  # GRPOConfig defaults to bf16 autocast, slow and lossy on CPU fp32
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=not is_main_process(),
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[rewards.guard, rewards.format], args=config, train_dataset=data,
                          processing_class=tok, callbacks=[Log(), ledger.callback(), *(callbacks or [])])
    rewards.eos_ids = {*trainer.eos_token_ids, tok.pad_token_id}
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            metrics_path.unlink(missing_ok=True)
        ledger.start()
        console.print(f"grpo: {len(prompts)} prompts ({n_harmful} harmful, {len(prompts) - n_harmful} benign), "
                      f"G={args.num_generations}, {per_step // args.num_generations} prompts/step, "
                      f"{trainable:,} / {total:,} params trainable, guard {guard_cfg.guard}, format {fmt.reasoning}")
    t_train = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - t_train
    if not trainer.is_world_process_zero():
        return {}

    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    unwrapped.save_pretrained(out, selected_adapters=["default"])  # not TRL's frozen "ref" copy
    tok.padding_side = "right"
    tok.save_pretrained(out)
    write_text_atomic(out / "train_config.yaml", yaml.safe_dump(
        {"grpo": asdict(args), "model": asdict(spec), "guard": asdict(guard_cfg), "format": asdict(fmt)}, sort_keys=False))
    steps = result.global_step
    stats = {
        "prompts": len(prompts),
        "harmful": n_harmful,
        "benign": len(prompts) - n_harmful,
        "num_generations": args.num_generations,
        "steps": steps,
        "final_loss": result.training_loss,
        "completion_tokens": ledger.total_tokens(),  # this process, over the whole run (resumes included)
        "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / steps, 2) if steps else None,
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: KiB
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
        "trainable_params": trainable,
        "world_size": world_size(),
        "mode": "grpo-lora",
        "guard": guard_cfg.guard,
        "reasoning": fmt.reasoning,
    }
    write_json_atomic(out / "train_stats.json", stats)
    console.print(f"saved → {out}  ({steps} steps, {stats['seconds_per_step']} s/step, "
                  f"{stats['completion_tokens']} tokens generated, {stats['train_seconds']:.0f}s)")
    return stats


def cmd_grpo(argv: list[str]) -> int:
    args, spec, guard = parse_config(
        "thinksafe grpo",
        (GRPOArgs, ModelSpec, GuardConfig),
        argv,
        "GRPO baseline: sample G completions per unsteered prompt, reward P(safe) from the guard plus a format "
        "reward, train a LoRA adapter (TRL GRPOTrainer).",
    )
    grpo(args, spec, guard)
    return 0

