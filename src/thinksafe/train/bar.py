"""One rich progress line per training run — step, loss, learning rate, tokens/s (GRPO: reward), ETA — in place of
transformers' tqdm bar and the raw log dicts it prints beside it. The full log stays in OUT/metrics.jsonl."""

from __future__ import annotations

from rich.progress import Progress
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from thinksafe.progress import bar_columns, console, log_line, progress_enabled

# What the line shows of a log, in order, and how: SFT logs loss and tokens/s, TRL's GRPO its mean reward.
SHOWN = (("loss", "loss {:.4f}"), ("learning_rate", "lr {:.2e}"), ("tokens_per_second", "{:,.1f} tok/s"),
         ("reward", "reward {:.3f}"))


def describe(logs: dict) -> str:
    return "  ".join(fmt.format(logs[k]) for k, fmt in SHOWN if isinstance(logs.get(k), (int, float)))


class TrainBar(TrainerCallback):
    """Rich bar over the optimizer steps, fed by the Trainer's events (main process only)."""

    def __init__(self, description: str = "train"):
        self.description, self.progress, self.task = description, None, None

    def on_train_begin(self, targs, state, control, **kw):
        self.progress = Progress(*bar_columns("stats"), console=console, disable=not progress_enabled())
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_steps, completed=state.global_step, stats="")

    def on_step_end(self, targs, state, control, **kw):
        self.progress.update(self.task, completed=state.global_step)

    def on_log(self, targs, state, control, logs=None, **kw):
        line = describe(logs or {})
        if line and ("loss" in logs or "reward" in logs):  # not the end-of-training summary (train_loss …)
            self.progress.update(self.task, stats=line)
            log_line(f"step {state.global_step}/{state.max_steps}  {line}")

    def on_train_end(self, targs, state, control, **kw):
        self.progress.stop()


class LiveProgress:
    """Mix-in for a Trainer: the TrainBar instead of transformers' own bar and printer."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.remove_callback(PrinterCallback)
        self.remove_callback(ProgressCallback)
        if self.is_world_process_zero():
            self.add_callback(TrainBar())
