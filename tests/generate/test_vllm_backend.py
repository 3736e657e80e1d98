"""vLLM backend on a real model (SmolLM2-135M), checked against the transformers backend.

Opt-in: needs vllm installed (scripts/install-vllm.sh) and `-m vllm`. Each engine start takes ~30 s on
2 CPU cores: one for the base model, shared by the module, and one for the LoRA test.
"""

from dataclasses import replace

import pytest

pytest.importorskip("vllm")

from thinksafe.errors import MissingDependency  # noqa: E402
from thinksafe.generate import BackendConfig, SamplingParams  # noqa: E402
from thinksafe.generate.hf import HFGenerator  # noqa: E402
from thinksafe.generate.vllm import VLLMGenerator  # noqa: E402
from thinksafe.models import ModelSpec, resolve_model  # noqa: E402

pytestmark = pytest.mark.vllm

MODEL = "smollm2-135m-instruct"
MSGS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Write a poem about the sea and the lazy dog, please, step by step."}],
    [
        {"role": "system", "content": "Be safe."},
        {"role": "user", "content": "How do I kill a Python process?"},
    ],
]
VLLM = BackendConfig(backend="vllm", enforce_eager=True, progress=False)
HF = BackendConfig(progress=False)


@pytest.fixture(scope="module")
def spec():
    try:
        resolve_model(MODEL)
    except MissingDependency as e:
        pytest.skip(str(e))
    return ModelSpec(MODEL)


@pytest.fixture(scope="module")
def vgen(spec):
    g = VLLMGenerator.from_spec(spec, VLLM)
    yield g
    g.close()


@pytest.fixture(scope="module")
def hgen(spec):
    return HFGenerator.from_spec(spec, HF)


def first_ids(tokenizer, text, k=16):
    return tokenizer(text, add_special_tokens=False)["input_ids"][:k]


def test_greedy_matches_transformers(vgen, hgen):
    s = SamplingParams(max_new_tokens=32)
    for v, h, m in zip(vgen.generate(MSGS, s), hgen.generate(MSGS, s), MSGS):
        v, h = v[0], h[0]
        assert v.prompt_tokens == h.prompt_tokens == len(hgen.encode(m))  # same chat template rendering
        # fp32 on both sides; kernels differ, so only the opening is required to match exactly
        assert first_ids(hgen.tokenizer, v.text) == first_ids(hgen.tokenizer, h.text)


def test_finish_reason_and_token_counts(vgen):
    (short,) = vgen.generate(MSGS[:1], SamplingParams(max_new_tokens=3))[0]
    assert short.finish_reason == "length" and short.completion_tokens == 3
    (full,) = vgen.generate(MSGS[:1], SamplingParams(max_new_tokens=200))[0]
    assert full.finish_reason == "stop" and 0 < full.completion_tokens < 200
    assert full.text.startswith(short.text)  # greedy: the short run is a prefix of the long one
    # completion_tokens counts the end-of-turn token too; the text holds the rest
    assert len(vgen.tokenizer(full.text, add_special_tokens=False)["input_ids"]) == full.completion_tokens - 1


def test_n_samples_and_seed(vgen):
    s = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, n=3, max_new_tokens=16, seed=7)
    a = vgen.generate(MSGS, s)
    assert [len(r) for r in a] == [3, 3, 3]
    assert len({c.text for c in a[1]}) > 1  # the n samples differ
    assert vgen.generate(MSGS, s) == a  # same seed, same outputs
    assert vgen.generate(MSGS[1:2], s)[0] == a[1]  # a request's samples don't depend on the batch
    assert vgen.generate(MSGS, replace(s, seed=8)) != a
    greedy = vgen.generate(MSGS[:1], SamplingParams(n=2, max_new_tokens=8))[0]
    assert len(greedy) == 2 and greedy[0] == greedy[1]


def test_empty_request_list(vgen):
    assert vgen.generate([], SamplingParams()) == []


def test_lora_adapter_matches_peft(spec, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from thinksafe.models import load_model

    base = load_model(spec)
    torch.manual_seed(0)
    # Random (not zero) B matrices, so the adapter really changes the outputs.
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base.model, cfg).save_pretrained(tmp_path)
    lspec = ModelSpec(MODEL, adapter=str(tmp_path))
    s = SamplingParams(max_new_tokens=24)
    v = VLLMGenerator.from_spec(lspec, VLLM)
    try:
        out = v.generate(MSGS[:2], s)
    finally:
        v.close()
    ref = HFGenerator.from_spec(lspec, HF).generate(MSGS[:2], s)
    for a, b in zip(out, ref):
        assert first_ids(v.tokenizer, a[0].text) == first_ids(v.tokenizer, b[0].text)
