"""The paper configs evaluate as the paper does (SkyThought: 8 samples, 32,768 tokens, temperature 0.6, top-p
0.95) and sample with the reference's top-k per family; their plans (a dry run) say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinksafe.pipeline.config import load_config
from thinksafe.pipeline.plan import build_plan, plan_settings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name, top_k", [("paper-qwen3-0.6b", "20 (Qwen3 default)"),
                                         ("paper-r1-1.5b", "off (DeepSeek-R1-Distill default)")])
def test_paper_configs_evaluate_like_skythought_and_plans_show_it(name, top_k, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    ev = cfg.evaluate
    assert (ev.samples, ev.reasoning_max_new_tokens, ev.temperature, ev.top_p) == (8, 32768, 0.6, 0.95)
    assert ev.max_new_tokens == 16384 and ev.safety_samples == 1  # the reference's safety generation
    assert ev.top_k is None and cfg.synthesize.top_k is None  # the model family's, decided in one place

    lines = plan_settings(build_plan(cfg, tmp_path / "run"))
    evaluate = [x for x in lines if x.startswith("evaluate (every arm)")]
    assert len(evaluate) == 1
    assert "reasoning: 8 samples x 32,768 new tokens, pass@1 = accuracy over all samples" in evaluate[0]
    assert "temperature 0.6, top-p 0.95" in evaluate[0] and f"top-k {top_k}" in evaluate[0]
    synthesize = [x for x in lines if x.startswith("synthesize (")]
    assert synthesize and all(f"top-k {top_k}" in x for x in synthesize)
