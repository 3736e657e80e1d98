import pytest
import torch
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
# Mixed lengths, more requests than one batch holds.
MANY = [[{"role": "user", "content": f"Question {i}: " + "why " * (i * 7 % 23)}] for i in range(24)]
ENGINES = ("padded", "continuous")


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


def gen(path_or_loaded, **backend):
    loaded = path_or_loaded if hasattr(path_or_loaded, "model") else load_model(ModelSpec(str(path_or_loaded)))
    return HFGenerator(loaded, BackendConfig(progress=False, **backend))


@pytest.fixture(scope="module")
def lively(tiny_models):
    """The tiny model with an untied, larger-scale random head: its greedy text depends on the prompt and
    on every earlier token (the stock tiny model repeats one token), so engine mismatches show."""
    loaded = load_model(ModelSpec(str(tiny_models["plain"])))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        loaded.model.lm_head.weight = torch.nn.Parameter(torch.empty_like(loaded.model.lm_head.weight))
        for name, p in loaded.model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else p.shape[1] ** -0.5))
    return loaded


def stop_on_some_rows(model, eos):
    """Hook: EOS wherever the top token id is a multiple of 5, a rule that depends only on the row itself,
    so both engines stop the same rows at the same step."""

    def hook(module, inputs, logits):
        rows = logits.argmax(-1) % 5 == 0
        logits[..., eos] += 1e4 * rows
        return logits

    return model.lm_head.register_forward_hook(hook)


@pytest.mark.parametrize("engine", ENGINES)
def test_batched_equals_one_by_one_greedy(tiny64, engine):
    g_batch = gen(tiny64, token_budget=10_000, hf_engine=engine)
    g_single = gen(tiny64, max_batch_size=1, hf_engine=engine)
    s = SamplingParams(max_new_tokens=12)
    batched = g_batch.generate(MSGS, s)
    single = g_single.generate(MSGS, s)
    assert [r[0].text for r in batched] == [r[0].text for r in single]
    assert [r[0].prompt_tokens for r in batched] == [len(g_batch.encode(m)) for m in MSGS]
    assert len({r[0].prompt_tokens for r in batched}) > 1  # mixed lengths, so padding was exercised


@pytest.mark.parametrize("backend", [{}, {"max_batch_size": 5}, {"max_batch_size": 3, "token_budget": 64}])
def test_continuous_greedy_equals_padded(lively, backend):
    """Same texts, finish reasons and token counts; `token_budget` 64 is a KV cache too small for all the
    requests in flight, so continuous batching also evicts and re-prefills requests."""
    padded = gen(lively, hf_engine="padded", **backend)
    continuous = gen(lively, hf_engine="continuous", **backend)
    handle = stop_on_some_rows(lively.model, padded.tokenizer.eos_token_id)
    try:
        s = SamplingParams(max_new_tokens=24)
        a, b = padded.generate(MANY, s), continuous.generate(MANY, s)
    finally:
        handle.remove()
    assert a == b
    assert len({r[0].text for r in b}) > len(b) // 2  # a model that really depends on its prompt
    reasons = [r[0].finish_reason for r in b]
    assert 0 < reasons.count("stop") < len(reasons)  # both kinds of finish, mixed in flight
    for (c,) in b:
        assert c.completion_tokens == 24 if c.finish_reason == "length" else 1 <= c.completion_tokens < 24


def test_continuous_attends_per_request_and_passes_other_calls_on(lively, monkeypatch):
    from thinksafe.generate import hf

    g = gen(lively, hf_engine="continuous")
    g.generate(MSGS[:1], SamplingParams(max_new_tokens=2))  # installs hf._cb_sdpa as "sdpa"
    stock, calls = hf._STOCK_SDPA["sdpa"], []
    monkeypatch.setitem(hf._STOCK_SDPA, "sdpa", lambda *a, **k: calls.append(1) or stock(*a, **k))
    g.generate(MSGS, SamplingParams(max_new_tokens=4))
    assert calls == []  # every paged call took the per-request path
    gen(lively, hf_engine="padded").generate(MSGS[:1], SamplingParams(max_new_tokens=2))
    assert calls  # plain generate still reaches stock sdpa


def test_continuous_reports_each_request_as_it_finishes(lively):
    g = gen(lively, hf_engine="continuous", max_batch_size=4)
    seen = []
    handle = stop_on_some_rows(lively.model, g.tokenizer.eos_token_id)
    try:
        out = g.generate(MANY, SamplingParams(max_new_tokens=16), on_result=lambda i, cs: seen.append((i, cs)))
    finally:
        handle.remove()
    assert sorted(i for i, _ in seen) == list(range(len(MANY)))  # each request once
    assert [i for i, _ in seen] != list(range(len(MANY)))  # short ones overtake: out of input order
    for i, cs in seen:
        assert cs == out[i]


def test_continuous_error_in_on_result_stops_the_loop(lively):
    g = gen(lively, hf_engine="continuous", max_batch_size=2)

    def boom(i, cs):
        raise KeyError("disk full")

    with pytest.raises(KeyError):
        g.generate(MANY, SamplingParams(max_new_tokens=8), on_result=boom)
    # the model is usable again afterwards, with its own attention implementation
    assert g.generate(MSGS[:1], SamplingParams(max_new_tokens=3))[0][0].completion_tokens == 3
    assert lively.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("engine", ENGINES)
def test_length_finish_and_token_counts(tiny_models, engine):
    g = gen(tiny_models["plain"], hf_engine=engine)
    out = g.generate(MSGS[:2], SamplingParams(max_new_tokens=5))
    for (c,) in out:
        # a random model practically never emits EOS within 5 tokens
        assert c.finish_reason == "length" and c.completion_tokens == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_finish_when_model_emits_eos(tiny_models, engine):
    g = gen(tiny_models["plain"], hf_engine=engine)
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


@pytest.mark.parametrize("engine", ENGINES)
def test_every_stop_id_stops(lively, engine):
    g = gen(lively, hf_engine=engine)
    assert len(g.stop_ids) >= 2  # <|im_end|> and <|endoftext|>
    for stop in g.stop_ids:
        handle = lively.model.lm_head.register_forward_hook(lambda m, i, logits, stop=stop: logits.index_fill(-1, torch.tensor([stop]), 1e4))
        try:
            (c,) = g.generate(MSGS[:1], SamplingParams(max_new_tokens=8))[0]
        finally:
            handle.remove()
        assert (c.finish_reason, c.completion_tokens, c.text) == ("stop", 1, "")


@pytest.mark.parametrize("engine", ENGINES)
def test_sampling_seed_and_n(tiny_models, engine):
    g = gen(tiny_models["plain"], hf_engine=engine)
    s = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=10, n=3, seed=7)
    a = g.generate(MSGS[:2], s)
    b = g.generate(MSGS[:2], s)
    c = g.generate(MSGS[:2], SamplingParams(temperature=1.0, max_new_tokens=10, n=3, seed=8))
    assert [len(r) for r in a] == [3, 3]
    assert [[x.text for x in r] for r in a] == [[x.text for x in r] for r in b]
    assert [[x.text for x in r] for r in a] != [[x.text for x in r] for r in c]
    assert len({x.text for x in a[0]}) > 1  # the n samples differ from each other


def test_continuous_sampling_reproducible_under_pressure(lively):
    """Forked samples, few slots, a cache too small for all of them: still the same samples every run."""
    g = gen(lively, hf_engine="continuous", max_batch_size=4, token_budget=64)
    s = SamplingParams(temperature=0.8, top_p=0.9, top_k=40, max_new_tokens=12, n=3, seed=3)
    a, b = g.generate(MANY[:8], s), g.generate(MANY[:8], s)
    assert a == b and [len(r) for r in a] == [3] * 8
    assert all(len({c.text for c in r}) > 1 for r in a)
    assert all(c.prompt_tokens == len(g.encode(m)) for m, r in zip(MANY, a) for c in r)


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_n_copies(tiny_models, engine):
    g = gen(tiny_models["plain"], hf_engine=engine)
    (r,) = g.generate(MSGS[:1], SamplingParams(max_new_tokens=4, n=3))
    assert len(r) == 3 and len({c.text for c in r}) == 1 and r[0] is not r[1]


def test_continuous_falls_back_when_generate_needs_more(lively):
    """A repetition penalty in the model's generation_config needs each row's history, which continuous
    batching does not apply: those runs use the padded engine and still match it."""
    lively.model.generation_config.repetition_penalty = 1.5
    try:
        g = gen(lively, hf_engine="continuous")
        assert "RepetitionPenalty" in g.continuous_unsupported(g.generation_config(SamplingParams()))
        s = SamplingParams(max_new_tokens=10)
        assert g.generate(MSGS, s) == gen(lively, hf_engine="padded").generate(MSGS, s)
    finally:
        lively.model.generation_config.repetition_penalty = None
    assert g.continuous_unsupported(g.generation_config(SamplingParams())) is None


def test_the_default_engine_is_continuous_batching(lively, monkeypatch):
    """Continuous is the default since its sampled statistics matched padded's (benchmarks/engine_sampling.py):
    a default backend really runs it, not the padded fallback."""
    assert BackendConfig().hf_engine == "continuous"
    g = gen(lively)
    ran = []
    monkeypatch.setattr(g, "_generate_padded", lambda *a, **k: ran.append("padded") or [])
    s = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=4, seed=0)
    assert g.continuous_unsupported(g.generation_config(s)) is None
    assert len(g.generate(MSGS, s)) == len(MSGS) and not ran


def test_empty_request_list(tiny_models):
    for engine in ENGINES:
        assert gen(tiny_models["plain"], hf_engine=engine).generate([], SamplingParams()) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_r1_outputs_get_think_tag_back(tiny_models, engine):
    g = make_generator(ModelSpec(str(tiny_models["r1"])), BackendConfig(progress=False, hf_engine=engine))
    assert g.format.opens_think
    (c,) = g.generate(MSGS[:1], SamplingParams(max_new_tokens=4))[0]
    assert c.text.startswith("<think>\n")


# chi2.ppf(0.999, df=4): a 1-in-1000 false alarm for a 5-outcome goodness-of-fit test (no scipy here)
CHI2_999_DF4 = 18.467


def test_sampled_continuous_and_padded_draw_from_the_model_distribution(lively):
    """Sampling, not just greedy: both engines' first tokens follow the model's own top-5 distribution (a
    chi-square goodness-of-fit test against the exact renormalized softmax), with different seeds' streams."""
    messages = MANY[0]
    probe = gen(lively)
    with torch.no_grad():
        logits = lively.model(torch.tensor([probe.encode(messages)])).logits[0, -1].float()
    top = torch.topk(logits / 0.7, 5)
    expected = dict(zip(top.indices.tolist(), torch.softmax(top.values, -1).tolist()))
    texts = {lively.tokenizer.decode([i]): i for i in expected}
    assert len(texts) == 5  # five distinct first tokens to tell apart
    s = SamplingParams(temperature=0.7, top_p=1.0, top_k=5, max_new_tokens=1, n=600, seed=11)
    for engine in ("padded", "continuous"):
        g = gen(lively, hf_engine=engine, max_batch_size=64)
        if engine == "continuous":
            assert g.continuous_unsupported(g.generation_config(s)) is None  # it really runs continuous batching
        (samples,) = g.generate([messages], s)
        counts = {i: 0 for i in expected}
        for c in samples:
            counts[texts[c.text]] += 1  # a token outside the top 5 would be a KeyError: top-k must hold
        chi2 = sum((counts[i] - 600 * p) ** 2 / (600 * p) for i, p in expected.items())
        assert chi2 < CHI2_999_DF4, (engine, counts, expected)  # sampling at T 1.0 instead gives ~27, T 0.4 ~80
