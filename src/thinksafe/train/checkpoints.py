"""What `thinksafe train` and `thinksafe grpo` both write to OUT, and how a run resumes.

OUT/checkpoints/checkpoint-N (the Trainer's), OUT/checkpoints.jsonl (one line per checkpoint: wall seconds and
tokens so far), OUT/metrics.jsonl (every log line), then the adapter + tokenizer, train_config.yaml and
train_stats.json. A fresh run starts the two .jsonl files over; --resume appends to them.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback

from thinksafe.progress import console
from thinksafe.records import append_jsonl, read_jsonl, write_json_atomic, write_text_atomic
from thinksafe.train.trainer import is_main_process, world_size

METRICS = "metrics.jsonl"


def resuming(args: Any, out: Path) -> bool:
    """--resume continues only when a checkpoint exists; otherwise the run starts fresh."""
    return args.resume and any((out / "checkpoints").glob("checkpoint-*"))


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
        ledger = self

        class OnSave(TrainerCallback):
            def on_save(self, targs, state, control, **kw):
                if state.is_world_process_zero:
                    append_jsonl(ledger.path, [{"step": state.global_step, "epoch": state.epoch,
                                                "path": f"checkpoints/checkpoint-{state.global_step}",
                                                "wall_seconds": ledger.seconds(), "tokens": ledger.total_tokens()}])

        return OnSave()


class MetricsLog(TrainerCallback):
    """OUT/metrics.jsonl: every log line (loss, lr, tokens/s; TRL's rewards, KL, …) on the main process.

    `extra` adds fields between step/epoch and the logs (GRPO: wall seconds and tokens generated so far).
    """

    def __init__(self, out: Path, extra: Callable[[], dict[str, Any]] | None = None):
        self.path, self.extra = out / METRICS, extra

    def on_log(self, targs, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs:
            extra = self.extra() if self.extra else {}
            append_jsonl(self.path, [{"step": state.global_step, "epoch": state.epoch, **extra, **logs}])


def start_run(out: Path, resume: bool, ledger: CheckpointLedger, banner: str) -> None:
    """On the main process: clear the previous run's logs unless resuming, start the ledger's clock, say what
    is about to train."""
    if not is_main_process():
        return
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        (out / METRICS).unlink(missing_ok=True)
    ledger.start()
    console.print(banner)


def timed_train(trainer, resume: bool) -> tuple[Any, float]:
    """trainer.train(), from the last checkpoint when resuming; returns (TrainOutput, seconds it took)."""
    t = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    return result, time.perf_counter() - t


def save_outputs(out: Path, model, tok, config: dict[str, Any], **save_kw) -> None:
    """The result: weights (PEFT adapter, or full), tokenizer and train_config.yaml."""
    model.save_pretrained(out, **save_kw)
    tok.padding_side = "right"  # load_model pads left for generation; save the tokenizer's training default
    tok.save_pretrained(out)
    write_text_atomic(out / "train_config.yaml", yaml.safe_dump(config, sort_keys=False))


def run_stats(t0: float, train_seconds: float, trainable: int, *, steps: int | None = None,
              tokens: int | None = None) -> dict[str, Any]:
    """train_stats.json's shared fields, in the order both stages write them: times, memory, size.

    With `steps` adds seconds_per_step (GRPO), with `tokens` tokens_per_second (SFT). t0: when the stage began.
    """
    stats: dict[str, Any] = {"train_seconds": round(train_seconds, 2)}
    if steps is not None:
        stats["seconds_per_step"] = round(train_seconds / steps, 2) if steps else None
    stats["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if tokens is not None:
        stats["tokens_per_second"] = round(tokens / train_seconds, 1) if train_seconds else None
    return stats | {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: KiB
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
        "trainable_params": trainable,
        "world_size": world_size(),
    }


def finish(out: Path, stats: dict[str, Any], summary: str) -> dict[str, Any]:
    """Write train_stats.json and say where the result is."""
    write_json_atomic(out / "train_stats.json", stats)
    console.print(f"saved → {out}  ({stats['steps']} steps, {summary}, {stats['train_seconds']:.0f}s)")
    return stats

