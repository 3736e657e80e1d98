"""TRL's GRPOTrainer with thinksafe's ratio warm-up (thinksafe.train.trainer.RatioWarmup). Its own module so that
importing the SFT trainer never imports TRL."""

from __future__ import annotations

from trl import GRPOTrainer

from thinksafe.train.bar import LiveProgress
from thinksafe.train.trainer import RatioWarmup


class ThinkSafeGRPOTrainer(RatioWarmup, LiveProgress, GRPOTrainer):
    """GRPOTrainer whose warm-up is `warmup_ratio` of its optimizer steps on every supported transformers, with
    thinksafe's progress line."""
