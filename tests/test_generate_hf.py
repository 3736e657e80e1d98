from hypothesis import given
from hypothesis import strategies as st

from thinksafe.generate import BackendConfig, SamplingParams, make_generator
from thinksafe.generate.hf import HFGenerator, plan_batches
from thinksafe.models import ModelSpec, load_model

MSGS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Write a poem about the sea and the lazy dog, please, step by step."}],
    [{"role": "user", "content": "Explain photosynthesis."}],
    [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "How do I kill a Python process?"}],
]


@given(
    st.lists(st.integers(1, 300), min_size=0, max_size=60),
    st.integers(1, 200),
    st.integers(1, 5000),
    st.integers(1, 16),
)
def test_plan_batches_respects_budget_and_covers_all(lengths, new, budget, max_bs):
    batches = plan_batches(lengths, new, budget, max_bs)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # every item exactly once
    for b in batches:
        assert len(b) <= max_bs
        width = max(lengths[i] for i in b) + new
        assert len(b) == 1 or len(b) * width <= budget
    # longest first: padding inside a batch only comes from shorter prompts
    assert [lengths[i] for i in flat] == sorted((lengths[i] for i in flat), reverse=True)


def gen(path, **backend):
    return HFGenerator(load_model(ModelSpec(str(path))), BackendConfig(progress=False, **backend))


def test_batched_equals_one_by_one_greedy(tiny64):
    g_batch = gen(tiny64, token_budget=10_000)
    g_single = gen(tiny64, max_batch_size=1)
    s = SamplingParams(max_new_tokens=12)
    batched = g_batch.generate(MSGS, s)
    single = g_single.generate(MSGS, s)
    assert [r[0].text for r in batched] == [r[0].text for r in single]
    assert [r[0].prompt_tokens for r in batched] == [len(g_batch.encode(m)) for m in MSGS]
    assert len({r[0].prompt_tokens for r in batched}) > 1  # mixed lengths, so padding was exercised


def test_length_finish_and_token_counts(tiny_models):
    g = gen(tiny_models["plain"])
    out = g.generate(MSGS[:2], SamplingParams(max_new_tokens=5))
    for (c,) in out:
        # a random model practically never emits EOS within 5 tokens
        assert c.finish_reason == "length" and c.completion_tokens == 5


def test_stop_finish_when_model_emits_eos(tiny_models):
    g = gen(tiny_models["plain"])
    eos = g.tokenizer.eos_token_id
    calls = []

    def eos_on_third_step(module, inputs, logits):  # forward 0 = prefill → token 1, …, forward 2 → token 3
        calls.append(1)
        if len(calls) == 3:
            logits[..., eos] += 1e4
        return logits

    handle = g.model.lm_head.register_forward_hook(eos_on_third_step)
    try:
        (c,) = g.generate(MSGS[:1], SamplingParams(max_new_tokens=8))[0]
    finally:
        handle.remove()
    assert c.finish_reason == "stop"
    assert c.completion_tokens == 3  # two text tokens + the EOS
    assert "<|im_end|>" not in c.text and len(g.tokenizer(c.text, add_special_tokens=False)["input_ids"]) >= 1


def test_sampling_seed_and_n(tiny_models):
    g = gen(tiny_models["plain"])
    s = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=10, n=3, seed=7)
    a = g.generate(MSGS[:2], s)
    b = g.generate(MSGS[:2], s)
    c = g.generate(MSGS[:2], SamplingParams(temperature=1.0, max_new_tokens=10, n=3, seed=8))
    assert [len(r) for r in a] == [3, 3]
    assert [[x.text for x in r] for r in a] == [[x.text for x in r] for r in b]
    assert [[x.text for x in r] for r in a] != [[x.text for x in r] for r in c]
    assert len({x.text for x in a[0]}) > 1  # the n samples differ from each other


def test_r1_outputs_get_think_tag_back(tiny_models):
    g = make_generator(ModelSpec(str(tiny_models["r1"])), BackendConfig(progress=False))
    assert g.format.opens_think
    (c,) = g.generate(MSGS[:1], SamplingParams(max_new_tokens=4))[0]
    assert c.text.startswith("<think>\n")
