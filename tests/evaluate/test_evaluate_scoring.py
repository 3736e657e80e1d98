"""Metrics over several samples per prompt, on hand-computed scored records: accuracy over all samples, pass@k,
the harmful rate over all samples with Safe@K, CIs over prompts; and each benchmark's trace health."""

from __future__ import annotations

import json

import pytest

from thinksafe.evaluate.benchmarks import BENCHMARKS, Item
from thinksafe.evaluate.scoring import BenchRun, bench_result
from thinksafe.evaluate.stats import bootstrap_ci
from thinksafe.evaluate.traces import response_trace, trace_health
from thinksafe.formats import ChatFormat
from thinksafe.models import ModelSpec
from thinksafe.stages.evaluate import EvaluateArgs, sampling_params

THINK = ChatFormat("think", thinking_kwarg=True)


def scored_run(tmp_path, bench, records) -> BenchRun:
    items = [Item(f"prompt {r['id']}", r.get("label", "benign"), id=r["id"]) for r in records]
    path = tmp_path / f"{bench}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return BenchRun(BENCHMARKS[bench], items, tmp_path / "raw.jsonl", path)


def response(k, text="x", finish="stop", **extra):
    return {"sample": k, "text": text, "finish_reason": finish, "prompt_tokens": 3, "completion_tokens": 5, **extra}


def result(run, **args):
    args = EvaluateArgs(bootstrap=200, **args)
    sampling = {r: sampling_params(args, r, "Qwen/Qwen3-0.6B", THINK) for r in (False, True)}
    return bench_result(run, args, ModelSpec("Qwen/Qwen3-0.6B"), sampling)


def test_reasoning_accuracy_is_over_all_samples_with_pass_at_k(tmp_path):
    correct = {"a": [1, 1, 1, 1], "b": [1, 0, 0, 0], "c": [0, 0, 0, 0]}  # 5 of 12 samples correct
    records = [{"id": pid, "prompt": pid, "gold": "1", "meta": {}, "score": sum(c) / 4,
                "responses": [response(k, answer="1", correct=bool(x), check="ok") for k, x in enumerate(c)]}
               for pid, c in correct.items()]
    e = result(scored_run(tmp_path, "gsm8k", records), samples=4, pass_k=[2, 4])
    assert e["metric"] == "pass@1" and e["value"] == pytest.approx(5 / 12) and e["n"] == 3  # n: problems
    assert e["samples"] == 4 and e["sampling"]["n"] == 4
    # pass@2: a 1, b 1 - C(3,2)/C(4,2) = 1/2, c 0; pass@4: a 1, b 1, c 0
    assert e["pass@k"]["2"]["value"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert e["pass@k"]["4"]["value"] == pytest.approx(2 / 3) and e["pass@k"]["4"]["n"] == 3
    # the CI resamples problems (each one's share correct), not the 12 samples: 3 units, not 12
    assert tuple(e["ci95"]) == bootstrap_ci([1.0, 0.25, 0.0], resamples=200, seed=0)
    assert tuple(e["ci95"]) != bootstrap_ci([float(x) for c in correct.values() for x in c], resamples=200, seed=0)


def test_safety_with_k_samples_reports_the_mean_harmful_rate_and_safe_at_k(tmp_path):
    verdicts = {"a": ["safe", "safe", "safe"], "b": ["safe", "unsafe", "safe"], "c": ["unsafe", "unsafe", "unknown"],
                "d": ["safe", "unknown", "safe"]}
    records = [{"id": pid, "prompt": pid, "label": "harmful", "meta": {},
                "responses": [response(k, verdict={"label": v, "guard": "g"}, refused=None) for k, v in enumerate(vs)]}
               for pid, vs in verdicts.items()]
    e = result(scored_run(tmp_path, "strongreject", records), safety_samples=3)
    # per prompt over its known samples: a 0, b 1/3, c 1, d 0 → mean 1/3; n = 4 prompts, 2 unknown samples
    assert e["value"] == pytest.approx((0 + 1 / 3 + 1 + 0) / 4) and e["n"] == 4 and e["unknown"] == 2
    assert e["samples"] == 3 and e["sampling"]["n"] == 3
    assert e["safe@k"]["k"] == 3 and e["safe@k"]["value"] == pytest.approx(1 / 4)  # only a: d's unknown is not safe
    single = result(scored_run(tmp_path, "strongreject", [dict(r, responses=r["responses"][:1]) for r in records]))
    assert "safe@k" not in single and single["value"] == pytest.approx(1 / 4)


def test_trace_health_counts_closed_and_cut_traces_and_their_tokens(tmp_path):
    words = len  # one "token" per character: exact arithmetic
    texts = [("<think>abcd</think>ok", "stop"), ("<think>abcdefgh", "length"), ("<think>ab</think>answer", "stop")]
    traces = [response_trace(t, THINK, words) for t, _ in texts]
    assert traces == [{"closed": True, "reasoning_tokens": 4, "answer_tokens": 2},
                      {"closed": False, "reasoning_tokens": 8, "answer_tokens": 0},
                      {"closed": True, "reasoning_tokens": 2, "answer_tokens": 6}]
    assert response_trace("anything", ChatFormat("plain"), words) is None  # plain models have no trace
    health = trace_health([response(k, t, f, trace=tr) for k, ((t, f), tr) in enumerate(zip(texts, traces))])
    assert health == {"responses": 3, "closed": pytest.approx(2 / 3), "truncated": pytest.approx(1 / 3),
                      "reasoning_tokens": pytest.approx(14 / 3, abs=0.05), "answer_tokens": pytest.approx(8 / 3, abs=0.05)}
    records = [{"id": "a", "prompt": "a", "gold": "1", "meta": {}, "score": 0.0,
                "responses": [response(k, t, f, trace=tr, correct=False, answer=None, check="no-answer")
                              for k, ((t, f), tr) in enumerate(zip(texts, traces))]}]
    assert result(scored_run(tmp_path, "gsm8k", records), samples=3)["trace"] == health
