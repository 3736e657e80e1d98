"""The SFT Trainer, and the process / batch arithmetic that `thinksafe train` and `thinksafe grpo` share.

Runs single-process or under `accelerate launch` / `torchrun` (DDP): the launcher's RANK and WORLD_SIZE decide.
"""

from __future__ import annotations

import os
import time
from typing import Any

from transformers import Trainer

from thinksafe.errors import ConfigError
from thinksafe.train.loss import response_loss


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def grad_accumulation(args: Any) -> int:
    """Forward passes per optimizer step so that per-device batch x accumulation x processes is the effective
    batch (`args`: anything with effective_batch_size and per_device_batch_size, e.g. TrainArgs)."""
    per_step = args.per_device_batch_size * world_size()
    if args.effective_batch_size % per_step:
        raise ConfigError(
            f"effective_batch_size {args.effective_batch_size} is not a multiple of per-device batch "
            f"{args.per_device_batch_size} x {world_size()} processes"
        )
    return args.effective_batch_size // per_step


def shared_arguments(args: Any, out) -> dict[str, Any]:
    """The TrainingArguments that SFT and GRPO set alike (`args`: TrainArgs or GRPOArgs); checkpoints go to
    OUT/checkpoints."""
    import torch

    return dict(
        output_dir=str(out / "checkpoints"),
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=args.max_grad_norm,
        optim="adamw_torch",
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        report_to=[] if args.report_to == "none" else [args.report_to],
        gradient_checkpointing=args.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=not is_main_process(),
    )


class ThinkSafeTrainer(Trainer):
    """Trainer with thinksafe's response loss (prompt-masked CE, optional KL on benign rows) and tokens/s logs.

    kl_benign: forward KL to the adapter-free model on benign examples (ThinkSafe+KL).
    tokens_seen: tokens (prompt + response, no padding) this process has trained on.
    """

    loss_is_scaled_for_ga = True  # we normalise by the token count of the whole accumulated batch

    def __init__(self, *a, kl_benign: bool = False, **kw):
        super().__init__(*a, **kw)
        self.model_accepts_loss_kwargs = True  # so Trainer counts num_items_in_batch for us
        self.kl_benign = kl_benign
        self.tokens_seen = 0
        self.t_train = time.perf_counter()  # reset when training starts: the clock behind tokens_per_second

    def train(self, *a, **kw):
        self.t_train = time.perf_counter()
        return super().train(*a, **kw)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, n, _ = response_loss(model, inputs, kl_benign=self.kl_benign)
        self.tokens_seen += int(inputs["attention_mask"].sum())
        loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else max(n, 1))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        return (loss, None) if return_outputs else loss

    def log(self, logs, *a, **kw):
        logs["tokens_per_second"] = round(self.tokens_seen / max(time.perf_counter() - self.t_train, 1e-9), 1)
        super().log(logs, *a, **kw)
