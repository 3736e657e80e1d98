"""TRL's GRPOTrainer with thinksafe's ratio warm-up (thinksafe.train.trainer.RatioWarmup). Its own module so that
importing the SFT trainer never imports TRL."""

from __future__ import annotations

from trl import GRPOTrainer

from thinksafe.train.trainer import RatioWarmup


class ThinkSafeGRPOTrainer(RatioWarmup, GRPOTrainer):
    """GRPOTrainer whose warm-up is `warmup_ratio` of its optimizer steps on every supported transformers."""
