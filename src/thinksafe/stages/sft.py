"""`thinksafe train`: LoRA (or full) SFT on ThinkSafe-schema data with prompt masking and optional KL.

Defaults are the paper's: LoRA r=32, α=16, dropout 0.05 on q_proj/v_proj; AdamW lr 1e-5, cosine, 10 %
warm-up, 3 epochs (baseline presets carry their own), effective batch 8, grad-norm clip 1.0, seed 42; the loss
averaged per example with --kl-benign and per token without, as the reference's two trainers do.
OUT/examples.jsonl records every example as rendered and trained on.
Runs single-process or under `accelerate launch` / `torchrun` (DDP) with the same code.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import ConfigError, InputError
from thinksafe.models import ModelSpec, apply_adapter, load_model
from thinksafe.records import ensure_dir
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts
from thinksafe.stages.trained import TrainedOutput, read_trained
from thinksafe.train.lora import add_lora, name_base, param_counts


@dataclass
class TrainArgs:
    data: str = opt("", "ThinkSafe-schema .jsonl/.json (or a synthesize DIR), a baseline: star1 | safechain | direct-refusal, "
                        "or a released ThinkSafe set: thinksafe-0.6B … thinksafe-r1-8B-wildguard (each also NAME:PATH)", role="input")
    out: str = opt("", "output directory (adapter, tokenizer, metrics)", role="output")
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
    loss_weighting: str = opt("auto", "how a step averages its loss: example (each example's token mean, examples "
                                      "equal) | token (every response token equal) | auto: the reference's choice, "
                                      "example with --kl-benign, token without")
    strip_think: str = opt("auto", "teacher traces for plain models: auto | none | plain (reasoning then answer) | answer")
    limit: int | None = opt(None, "use at most this many examples (seeded sample)")
    seed: int = opt(42, "seed")
    max_grad_norm: float = opt(1.0, "gradient-norm clip")
    save_steps: int = opt(50, "checkpoint every N optimizer steps (for --resume)", role="runtime")
    save_every_epoch: bool = opt(False, "checkpoint at the end of every epoch instead, and keep them all (resume per "
                                        "epoch; `thinksafe run` evaluates each for its safety-vs-time curve)")
    resume: bool = opt(False, "continue from the last checkpoint in OUT/checkpoints (rerunning the same command does)", role="control")
    group_by_length: bool = opt(True, "batch examples of similar length together (random groups, each sorted): on "
                                      "mixed lengths ~30 % of a random batch is padding")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward (less memory, ~30 % slower)")
    report_to: str = opt("none", "none | tensorboard | wandb", role="runtime")
    logging_steps: int = opt(1, "log every N optimizer steps", role="runtime")


def train(args: TrainArgs, spec: ModelSpec, callbacks: list | None = None) -> dict[str, Any]:
    """Train and save to args.out; returns train_stats (empty on non-main processes). The stage's work:
    `thinksafe train` and `thinksafe run` call it inside the stage directory guard (stages/base.py)."""
    from transformers import set_seed

    from thinksafe.records import write_jsonl_atomic
    from thinksafe.train import checkpoints as ckpt
    from thinksafe.train.data import load_examples, trained_records
    from thinksafe.train.trainer import grad_accumulation, is_main_process, world_size

    check_args(args)
    out = Path(args.out)
    accum = grad_accumulation(args)  # a batch that doesn't divide fails before anything loads
    set_seed(args.seed)  # before loading: the LoRA init draws from it
    t0 = time.perf_counter()

    examples, preset_epochs = load_examples(args.data, limit=args.limit, seed=args.seed)
    if is_main_process():
        ensure_dir(out)  # an unusable --out fails before the model loads
    epochs = args.epochs if args.epochs is not None else preset_epochs
    loaded = load_model(master_weights(args, spec), with_adapter=False)
    tok = loaded.tokenizer
    strip = strip_mode(args.strip_think, loaded.format.reasoning)
    tokenized, counts = tokenize_examples(args, examples, loaded, strip)
    if is_main_process():  # what the model learns from, exactly as rendered (a resume rewrites the same file)
        write_jsonl_atomic(out / "examples.jsonl", trained_records(tokenized, kl_benign=args.kl_benign))
    model = trainable_model(args, spec, loaded.model)
    trainable, total = param_counts(model)

    # The ledger counts the trainer's tokens, so it reads them through the trainer built right after it.
    resume = ckpt.resuming(args, out)
    ledger = ckpt.CheckpointLedger(out, resume, tokens=lambda: trainer.tokens_seen)
    trainer = sft_trainer(args, out, model, tok, tokenized, epochs, accum,
                          callbacks=[ckpt.MetricsLog(out), ledger.callback(), *(callbacks or [])])
    if not args.full:
        name_base(model, spec.model)
    ckpt.start_run(out, resume, ledger, f"train: {len(tokenized)} examples, {epochs:g} epochs, {trainable:,} / {total:,} "
                   f"params trainable, batch {args.per_device_batch_size} x {accum} accum x {world_size()} proc, "
                   f"loss averaged per {loss_weighting(args)}")
    result, train_seconds = ckpt.timed_train(trainer, resume)
    if not trainer.is_world_process_zero():
        return {}  # the main process alone writes the result

    config = {"train": asdict(args), "model": asdict(spec), "epochs": epochs, "strip_think": strip,
              "loss_weighting": loss_weighting(args)}
    ckpt.save_outputs(out, model, tok, config)  # adapter (PEFT format) or full weights
    stats = {
        **data_stats(examples, tokenized, counts),
        "epochs": epochs,
        "steps": result.global_step,
        "final_loss": result.training_loss,
        **ckpt.run_stats(t0, train_seconds, trainable, tokens=trainer.tokens_seen),
        "mode": "full" if args.full else "lora",
        "kl_benign": args.kl_benign,
        "loss_weighting": loss_weighting(args),
        "warmup_steps": trainer.args.warmup_steps,
        "prompt_masking": args.prompt_masking,
    }
    return ckpt.finish(out, stats, f"loss {stats['final_loss']:.4f}, {stats['tokens_per_second']} tok/s")


def master_weights(args: TrainArgs, spec: ModelSpec) -> ModelSpec:
    """Full fine-tuning keeps fp32 weights (bf16 updates of 1e-5 round away); LoRA trains fp32 adapters (PEFT
    casts them up) on the base in whatever dtype `auto` picks, bf16 on a GPU or a bf16 CPU."""
    return replace(spec, dtype="float32") if args.full and spec.dtype == "auto" else spec


def check_args(args: TrainArgs) -> None:
    """Option errors, before anything loads."""
    if not args.data or not args.out:
        raise InputError("train: --data and --out are required")
    if args.kl_benign and args.full:
        raise ConfigError("--kl-benign needs LoRA: the reference is the model with adapters disabled")
    if args.overlong not in ("drop", "truncate"):
        raise ConfigError(f"overlong '{args.overlong}': expected drop or truncate")
    if args.loss_weighting not in ("auto", "example", "token"):
        raise ConfigError(f"loss_weighting '{args.loss_weighting}': expected auto, example or token")


def loss_weighting(args: TrainArgs) -> str:
    """--loss_weighting auto: the reference averages per example in its KL trainer (ThinkSafe+KL) and per token
    in plain SFT (TRL's SFTTrainer), so each arm trains as the paper's did."""
    if args.loss_weighting != "auto":
        return args.loss_weighting
    return "example" if args.kl_benign else "token"


def sft_trainer(args: TrainArgs, out: Path, model, tok, tokenized: list, epochs: float, accum: int, callbacks: list):
    """The ThinkSafeTrainer over the tokenized examples, with args' loss and warm-up."""
    from thinksafe.train.data import collate
    from thinksafe.train.trainer import ThinkSafeTrainer

    return ThinkSafeTrainer(
        model=model, args=training_arguments(args, out, epochs, accum), train_dataset=tokenized,
        data_collator=lambda b: collate(b, tok.pad_token_id), kl_benign=args.kl_benign,
        loss_weighting=loss_weighting(args), warmup_ratio=args.warmup_ratio, group_by_length=args.group_by_length,
        callbacks=callbacks,
    )


def strip_mode(strip_think: str, reasoning: str) -> str:
    """--strip_think auto: a plain model learns the teacher's reasoning as plain text, a think model keeps the tags."""
    if strip_think != "auto":
        return strip_think
    return "plain" if reasoning == "plain" else "none"


def tokenize_examples(args: TrainArgs, examples: list, loaded, strip: str) -> tuple[list, dict[str, int]]:
    """Render and tokenize in the model's chat format; an empty result (everything too long) is an error."""
    from thinksafe.train.data import tokenize

    tokenized, counts = tokenize(examples, loaded.tokenizer, loaded.format, max_length=args.max_length,
                                 prompt_masking=args.prompt_masking, overlong=args.overlong, strip=strip)
    if not tokenized:
        raise InputError(f"{args.data}: zero examples left after dropping {counts['dropped_overlong']} longer than {args.max_length} tokens")
    return tokenized, counts


def trainable_model(args: TrainArgs, spec: ModelSpec, model):
    """The model in train mode: all weights (--full), the given adapter continued, or a fresh LoRA adapter."""
    if not args.full:
        if spec.adapter:  # continue training an existing adapter
            model = apply_adapter(model, spec.adapter, is_trainable=True)
        else:
            model = add_lora(model, args)
    model.train()
    return model


def training_arguments(args: TrainArgs, out: Path, epochs: float, accum: int):
    """HF TrainingArguments from TrainArgs."""
    from transformers import TrainingArguments

    from thinksafe.train.trainer import shared_arguments

    return TrainingArguments(
        **shared_arguments(args, out),
        num_train_epochs=epochs,
        per_device_train_batch_size=args.per_device_batch_size,
        gradient_accumulation_steps=accum,
        save_strategy="epoch" if args.save_every_epoch else "steps",
        save_total_limit=None if args.save_every_epoch else 1,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="no",
    )


def data_stats(examples: list, tokenized: list, counts: dict[str, int]) -> dict[str, Any]:
    """train_stats.json's data fields: what was read, kept, dropped or truncated, and its size in tokens."""
    return {
        "examples": len(tokenized),
        "examples_in": len(examples),
        **counts,
        "harmful": sum(not x.benign for x in tokenized),
        "benign": sum(x.benign for x in tokenized),
        "tokens_per_epoch": sum(len(x.input_ids) for x in tokenized),
        "response_tokens_per_epoch": sum(sum(1 for t in x.labels[1:] if t != -100) for x in tokenized),
    }


# ---------------------------------------------------------------- the stage


class Train(Stage):
    name = "train"
    help = "LoRA / full SFT on a ThinkSafe-schema dataset"
    description = ("LoRA (or full) SFT with prompt masking on ThinkSafe-schema data or a teacher baseline. "
                   "Multi-process: accelerate launch -m thinksafe train … (or torchrun).")
    Settings = TrainArgs
    uses = ("model",)
    required = ("data", "out")
    makes_model = True
    trains = True

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        # Train on what the upstream stage made (a synthesize or data dir: its dataset.jsonl).
        return replace(job, settings=replace(job.settings, data=str(upstream[0].dir))) if upstream else job

    def prepare(self, job: Job) -> None:
        check_args(job.settings)

    def run(self, job: Job) -> Counts:
        stats = train(job.settings, job.model)
        if not stats:  # a DDP worker: rank 0 counts
            return Counts()
        tokens = round(stats["tokens_per_epoch"] * stats["epochs"])
        benign_share = stats["benign"] / max(stats["examples"], 1)  # the KL reference runs on benign examples
        return Counts(tokens_trained=tokens, tokens_forward=round(tokens * benign_share) if stats["kl_benign"] else 0,
                      full=stats["mode"] == "full")

    def read(self, out: Path) -> TrainedOutput:
        return read_trained(out, self.name)


TRAIN = Train()

