"""Top-k by model family (the reference: 20 for Qwen3, off for R1-Distill), in synthesis and evaluation alike."""

from __future__ import annotations

import pytest

from thinksafe.families import default_top_k, describe_top_k, family
from thinksafe.formats import ChatFormat
from thinksafe.models import load_tokenizer
from thinksafe.stages.evaluate import EvaluateArgs, sampling_params
from thinksafe.stages.synthesize import SynthesizeArgs, sampling_for


@pytest.mark.parametrize("model, top_k", [
    ("Qwen/Qwen3-0.6B", 20), ("Qwen/Qwen3-8B", 20), ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 0),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 0), ("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", 0),
])
def test_the_name_decides_where_it_names_the_family(model, top_k):
    assert default_top_k(model) == top_k
    assert default_top_k(model, ChatFormat("plain")) == top_k  # the name wins over the format


def test_otherwise_the_chat_template_decides(tiny_models):
    formats = {style: ChatFormat.detect(load_tokenizer(str(path))) for style, path in tiny_models.items()}
    assert {s: family(str(tiny_models[s]), f) for s, f in formats.items()} == {
        "qwen3": "qwen3", "r1": "r1-distill", "plain": "other"}
    assert {s: default_top_k(str(tiny_models[s]), f) for s, f in formats.items()} == {"qwen3": 20, "r1": 0, "plain": 0}
    assert default_top_k("runs/x/merged") is None  # no name, no format yet: known once the tokenizer is read


def test_synthesis_and_evaluation_sample_r1_with_top_k_off_and_qwen3_with_20():
    r1, qwen3 = ChatFormat("think", opens_think=True), ChatFormat("think", thinking_kwarg=True)
    for model, fmt, want in (("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", r1, 0), ("Qwen/Qwen3-0.6B", qwen3, 20),
                             ("local/finetuned", r1, 0), ("local/finetuned", qwen3, 20)):
        assert sampling_for(SynthesizeArgs(), model, fmt).top_k == want
        assert all(sampling_params(EvaluateArgs(), reasoning, model, fmt).top_k == want for reasoning in (False, True))
    # A set value wins, for either family.
    assert sampling_for(SynthesizeArgs(top_k=20), "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", r1).top_k == 20
    assert sampling_params(EvaluateArgs(top_k=0), True, "Qwen/Qwen3-0.6B", qwen3).top_k == 0


def test_a_plan_says_which_top_k_and_why():
    assert describe_top_k(None, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B") == "off (DeepSeek-R1-Distill default)"
    assert describe_top_k(None, "Qwen/Qwen3-0.6B") == "20 (Qwen3 default)"
    assert describe_top_k(40, "Qwen/Qwen3-0.6B") == "40 (set)" and describe_top_k(0, "x") == "off (set)"
    assert describe_top_k(None, "runs/x/merged").startswith("auto (from the chat template")
