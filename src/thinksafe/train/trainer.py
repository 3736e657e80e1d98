"""The SFT Trainer, and the process / batch arithmetic that `thinksafe train` and `thinksafe grpo` share.

Runs single-process or under `accelerate launch` / `torchrun` (DDP): the launcher's RANK and WORLD_SIZE decide.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from transformers import Trainer

from thinksafe.errors import ConfigError
from thinksafe.train.bar import LiveProgress
from thinksafe.train.loss import loss_divisor, response_loss


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
        warmup_steps=0,  # RatioWarmup sets the step count from args.warmup_ratio once the total is known
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
        disable_tqdm=True,  # thinksafe.train.bar draws one rich line instead, on the main process
    )


def warmup_steps(ratio: float, total_steps: int) -> int:
    """Warm-up steps for a ratio of the optimizer steps, rounded up as transformers rounds a ratio."""
    return math.ceil(total_steps * ratio)


class RatioWarmup:
    """Mix-in for a Trainer: warm-up over `warmup_ratio` of the optimizer steps on every supported transformers.

    transformers 4.x reads `warmup_steps` as an integer step count (4.56 rejects a float outright) and a ratio only
    as `warmup_ratio`; 5.x removed `warmup_ratio` and reads a float warmup_steps < 1 as a ratio. No one spelling
    serves both, so we turn the ratio into a step count ourselves, from the total the Trainer computed (epochs x
    batches, or max_steps), when it builds the scheduler; an integer warmup_steps means the same to both.
    """

    def __init__(self, *a, warmup_ratio: float = 0.0, **kw):
        self.warmup_ratio = warmup_ratio
        super().__init__(*a, **kw)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.args.warmup_steps = warmup_steps(self.warmup_ratio, num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)


class ThinkSafeTrainer(RatioWarmup, LiveProgress, Trainer):
    """Trainer with thinksafe's response loss (prompt-masked CE, optional KL on benign rows) and tokens/s logs.

    kl_benign: forward KL to the adapter-free model on benign examples (ThinkSafe+KL).
    loss_weighting: "token" or "example", how a step averages its loss (thinksafe.train.loss).
    tokens_seen: tokens (prompt + response, no padding) this process has trained on.
    """

    loss_is_scaled_for_ga = True  # we normalise by the divisor of the whole accumulated batch (5.x reads this)

    def __init__(self, *a, kl_benign: bool = False, loss_weighting: str = "token", group_by_length: bool = False, **kw):
        self.group_by_length = group_by_length  # read by _get_train_sampler, which Trainer may call while building
        super().__init__(*a, **kw)
        # So Trainer hands compute_loss our divisor and doesn't divide by the accumulation steps again (4.x and 5.x).
        self.model_accepts_loss_kwargs = True
        self.kl_benign, self.loss_weighting = kl_benign, loss_weighting
        self.tokens_seen = 0
        self.t_train = time.perf_counter()  # reset when training starts: the clock behind tokens_per_second

    def train(self, *a, **kw):
        self.t_train = time.perf_counter()
        return super().train(*a, **kw)

    def _get_train_sampler(self, *a, **kw):
        """group_by_length: transformers' LengthGroupedSampler (random megabatches, each sorted by length) over the
        examples of one optimizer step, so micro-batches pad to similar lengths. Trainer can't measure our
        examples itself (they are not dicts), so we hand it their lengths."""
        if not self.group_by_length:
            return super()._get_train_sampler(*a, **kw)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(per_step, lengths=[len(x.input_ids) for x in self.train_dataset])

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The step's micro-batches and the divisor of its summed loss: loss_divisor over all of them, summed over
        processes. Counted here, not by transformers: it counts only tokens, and 5.x counts labels[:, 1:] where
        4.x counts all labels (one token too many per example without prompt masking)."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            return batches, None
        divisor = sum(loss_divisor(b["labels"], self.loss_weighting) for b in batches).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            divisor = self.accelerator.gather(divisor).sum()
        return batches, divisor

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, n, _ = response_loss(model, inputs, kl_benign=self.kl_benign, weighting=self.loss_weighting)
        self.tokens_seen += int(inputs["attention_mask"].sum())
        loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else max(n, 1))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        return (loss, None) if return_outputs else loss

    def log(self, logs, *a, **kw):
        logs["tokens_per_second"] = round(self.tokens_seen / max(time.perf_counter() - self.t_train, 1e-9), 1)
        super().log(logs, *a, **kw)
