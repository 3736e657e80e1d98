"""`thinksafe train`: LoRA (or full) SFT on ThinkSafe-schema data with prompt masking and optional KL.

Defaults are the paper's: LoRA r=32, α=16, dropout 0.05 on q_proj/v_proj; AdamW lr 1e-5, cosine, 10 %
warm-up, 3 epochs (baseline presets carry their own), effective batch 8, grad-norm clip 1.0, seed 42.
Runs single-process or under `accelerate launch` / `torchrun` (DDP) with the same code.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from thinksafe.config import opt
from thinksafe.errors import ConfigError, InputError
from thinksafe.models import ModelSpec, apply_adapter, load_model
from thinksafe.progress import console
from thinksafe.records import append_jsonl, ensure_dir, read_jsonl, write_json_atomic, write_text_atomic


@dataclass
class TrainArgs:
    data: str = opt("", "ThinkSafe-schema .jsonl/.json (or a synthesize DIR), or a baseline: star1 | safechain | direct-refusal [:PATH]")
    out: str = opt("", "output directory (adapter, tokenizer, metrics)")
    epochs: float | None = opt(None, "epochs (default: 3, or the baseline preset: star1 5, direct-refusal 5, safechain 3)")
    learning_rate: float = opt(1e-5, "AdamW learning rate")
    lr_scheduler: str = opt("cosine", "learning-rate schedule")
    warmup_ratio: float = opt(0.1, "share of steps used for warm-up")
    effective_batch_size: int = opt(8, "per-device batch x grad accumulation x processes")
    per_device_batch_size: int = opt(1, "examples per forward pass on each process")
    max_length: int = opt(1024, "max tokens per example (prompt + response)")
    overlong: str = opt("drop", "longer examples: drop | truncate (both counted)")
    full: bool = opt(False, "full fine-tuning instead of LoRA")
    lora_r: int = opt(32, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA alpha (paper: r/2)")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    target_modules: str = opt("q_proj,v_proj", "comma-separated modules, or all-linear")
    prompt_masking: bool = opt(True, "loss on response tokens only")
    kl_benign: bool = opt(False, "ThinkSafe+KL: forward KL to the adapter-free model on benign examples")
    strip_think: str = opt("auto", "teacher traces for plain models: auto | none | plain (reasoning then answer) | answer")
    limit: int | None = opt(None, "use at most this many examples (seeded sample)")
    seed: int = opt(42, "seed")
    max_grad_norm: float = opt(1.0, "gradient-norm clip")
    save_steps: int = opt(50, "checkpoint every N optimizer steps (for --resume)")
    save_every_epoch: bool = opt(False, "checkpoint at the end of every epoch instead, and keep them all (resume per "
                                        "epoch; `thinksafe run` evaluates each for its safety-vs-time curve)")
    resume: bool = opt(False, "continue from the last checkpoint in OUT/checkpoints")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward (less memory, ~30 % slower)")
    report_to: str = opt("none", "none | tensorboard | wandb")
    logging_steps: int = opt(1, "log every N optimizer steps")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def grad_accumulation(args: TrainArgs) -> int:
    per_step = args.per_device_batch_size * world_size()
    if args.effective_batch_size % per_step:
        raise ConfigError(
            f"effective_batch_size {args.effective_batch_size} is not a multiple of per-device batch "
            f"{args.per_device_batch_size} x {world_size()} processes"
        )
    return args.effective_batch_size // per_step


class CheckpointLedger:
    """OUT/checkpoints.jsonl: one line per saved checkpoint with the training wall seconds and tokens so far.

    Both carry over a resume (from the last line), so a curve of checkpoints stays on one axis; the work lost
    after the last checkpoint is not counted. `tokens` is what the caller counts: trained tokens for SFT,
    generated tokens for GRPO.
    """

    def __init__(self, out: Path, resume: bool, tokens: Callable[[], int]):
        self.path, self.tokens, self.resume = out / "checkpoints.jsonl", tokens, resume
        last = list(read_jsonl(self.path))[-1:] if resume and self.path.exists() else []
        self.base = last[0] if last else {"wall_seconds": 0.0, "tokens": 0}
        self.t0 = time.perf_counter()

    def start(self) -> None:
        if not self.resume:
            self.path.unlink(missing_ok=True)
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return round(self.base["wall_seconds"] + time.perf_counter() - self.t0, 2)

    def total_tokens(self) -> int:
        return self.base["tokens"] + self.tokens()

    def callback(self):
        from transformers import TrainerCallback

        ledger = self

        class OnSave(TrainerCallback):
            def on_save(self, targs, state, control, **kw):
                if state.is_world_process_zero:
                    append_jsonl(ledger.path, [{"step": state.global_step, "epoch": state.epoch,
                                                "path": f"checkpoints/checkpoint-{state.global_step}",
                                                "wall_seconds": ledger.seconds(), "tokens": ledger.total_tokens()}])

        return OnSave()


def add_lora(model, args: TrainArgs):
    from peft import LoraConfig, get_peft_model

    targets = "all-linear" if args.target_modules == "all-linear" else [t.strip() for t in args.target_modules.split(",")]
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def train(args: TrainArgs, spec: ModelSpec, callbacks: list | None = None) -> dict[str, Any]:
    """Train and save to args.out; returns train_stats (empty on non-main processes)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from thinksafe.train.data import collate, load_examples, tokenize
    from thinksafe.train.loss import response_loss

    if not args.data or not args.out:
        raise InputError("train: --data and --out are required")
    if args.kl_benign and args.full:
        raise ConfigError("--kl-benign needs LoRA: the reference is the model with adapters disabled")
    if args.overlong not in ("drop", "truncate"):
        raise ConfigError(f"overlong '{args.overlong}': expected drop or truncate")
    out = Path(args.out)
    accum = grad_accumulation(args)
    set_seed(args.seed)
    t0 = time.perf_counter()

    examples, preset_epochs = load_examples(args.data, limit=args.limit, seed=args.seed)
    if is_main_process():
        ensure_dir(out)  # an unusable --out fails before the model loads
    epochs = args.epochs if args.epochs is not None else preset_epochs
    loaded = load_model(spec, with_adapter=False)
    model, tok, fmt = loaded.model, loaded.tokenizer, loaded.format
    strip = args.strip_think if args.strip_think != "auto" else ("plain" if fmt.reasoning == "plain" else "none")
    tokenized, counts = tokenize(examples, tok, fmt, max_length=args.max_length, prompt_masking=args.prompt_masking,
                                 overlong=args.overlong, strip=strip)
    if not tokenized:
        raise InputError(f"{args.data}: zero examples left after dropping {counts['dropped_overlong']} longer than {args.max_length} tokens")
    if not args.full:
        if spec.adapter:  # continue training an existing adapter
            model = apply_adapter(model, spec.adapter, is_trainable=True)
        else:
            model = add_lora(model, args)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    metrics_path = out / "metrics.jsonl"

    class MetricsLog(TrainerCallback):
        """Append every log line (loss, lr, tokens/s) to metrics.jsonl on the main process."""

        def on_log(self, targs, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                append_jsonl(metrics_path, [{"step": state.global_step, "epoch": state.epoch, **logs}])

    class ThinkSafeTrainer(Trainer):
        loss_is_scaled_for_ga = True  # we normalise by the token count of the whole accumulated batch

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.model_accepts_loss_kwargs = True  # so Trainer counts num_items_in_batch for us
            self.tokens_seen = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss_sum, n, _ = response_loss(model, inputs, kl_benign=args.kl_benign)
            self.tokens_seen += int(inputs["attention_mask"].sum())
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else max(n, 1))
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
            return (loss, None) if return_outputs else loss

        def log(self, logs, *a, **kw):
            logs["tokens_per_second"] = round(self.tokens_seen / max(time.perf_counter() - t_train, 1e-9), 1)
            super().log(logs, *a, **kw)

    targs = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=args.per_device_batch_size,
        gradient_accumulation_steps=accum,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=args.max_grad_norm,
        optim="adamw_torch",
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=args.logging_steps,
        save_strategy="epoch" if args.save_every_epoch else "steps",
        save_steps=args.save_steps,
        save_total_limit=None if args.save_every_epoch else 1,
        report_to=[] if args.report_to == "none" else [args.report_to],
        remove_unused_columns=False,
        gradient_checkpointing=args.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="no",
        disable_tqdm=not is_main_process(),
    )
    resume = args.resume and any((out / "checkpoints").glob("checkpoint-*"))
    ledger = CheckpointLedger(out, resume, tokens=lambda: trainer.tokens_seen)
    trainer = ThinkSafeTrainer(
        model=model, args=targs, train_dataset=tokenized, data_collator=lambda b: collate(b, tok.pad_token_id),
        callbacks=[MetricsLog(), ledger.callback(), *(callbacks or [])],
    )
    if not args.full:  # name the base as the user did (alias / hub id), not our cache path, in checkpoints too
        model.peft_config["default"].base_model_name_or_path = spec.model
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            metrics_path.unlink(missing_ok=True)
        ledger.start()
        console.print(f"train: {len(tokenized)} examples, {epochs:g} epochs, {trainable:,} / {total:,} params trainable, "
                      f"batch {args.per_device_batch_size} x {accum} accum x {world_size()} proc")
    t_train = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - t_train
    if not trainer.is_world_process_zero():
        return {}

    model.save_pretrained(out)  # adapter (PEFT format) or full weights
    tok.padding_side = "right"
    tok.save_pretrained(out)
    write_text_atomic(out / "train_config.yaml", yaml.safe_dump({"train": asdict(args), "model": asdict(spec),
                                                                  "epochs": epochs, "strip_think": strip}, sort_keys=False))
    response_tokens = sum(sum(1 for t in x.labels[1:] if t != -100) for x in tokenized)
    stats = {
        "examples": len(tokenized),
        "examples_in": len(examples),
        **counts,
        "harmful": sum(not x.benign for x in tokenized),
        "benign": sum(x.benign for x in tokenized),
        "tokens_per_epoch": sum(len(x.input_ids) for x in tokenized),
        "response_tokens_per_epoch": response_tokens,
        "epochs": epochs,
        "steps": result.global_step,
        "final_loss": result.training_loss,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "tokens_per_second": round(trainer.tokens_seen / train_seconds, 1) if train_seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: KiB
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
        "trainable_params": trainable,
        "world_size": world_size(),
        "mode": "full" if args.full else "lora",
        "kl_benign": args.kl_benign,
        "prompt_masking": args.prompt_masking,
    }
    write_json_atomic(out / "train_stats.json", stats)
    console.print(f"saved → {out}  ({stats['steps']} steps, loss {stats['final_loss']:.4f}, "
                  f"{stats['tokens_per_second']} tok/s, {stats['train_seconds']:.0f}s)")
    return stats


def merge(adapter: str, out: str, dtype: str = "auto") -> Path:
    """Merge a LoRA adapter into its base model and save a plain model directory."""
    cfg_path = Path(adapter) / "adapter_config.json"
    if not cfg_path.exists():
        raise InputError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
    base = json.loads(cfg_path.read_text())["base_model_name_or_path"]
    loaded = load_model(ModelSpec(model=base, adapter=adapter, dtype=dtype, device="cpu"))
    merged = loaded.model.merge_and_unload()
    merged.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return Path(out)
