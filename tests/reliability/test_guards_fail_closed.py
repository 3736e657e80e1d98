"""Guards fail closed against a real HTTP guard server: errors, timeouts, malformed or empty replies and missing
log-prob tokens are `unknown` — counted, never `safe` — per verdict, in synthesize's stats.json and in evaluate's
results.json.

The parsing side is covered in tests/test_judge.py (malformed WildGuard replies, Llama-Guard's missing or shared
answer tokens, non-finite logits, the judge model's first-word fallback, AnswerOnly's empty answers); here the
same guards talk to a local stdlib server through the real openai client.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading

import pytest
from reliability_kit import TIMEOUT, StubServer, chat_reply

from thinksafe.judge import GuardConfig, make_guard

SAFE_TOP = [("safe", -0.05), ("unsafe", -3.0)]
NAN = float("nan")

# mode → (status, body, delay, counts as a request error)
MODES = {
    "ok-safe": (200, chat_reply("safe", [("safe", SAFE_TOP)]), 0, False),
    "ok-unsafe": (200, chat_reply("unsafe", [("unsafe", [("unsafe", -0.05), ("safe", -3.0)])]), 0, False),
    "http-500": (500, {"error": {"message": "internal error", "type": "server_error"}}, 0, True),
    "timeout": (200, chat_reply("safe", [("safe", SAFE_TOP)]), TIMEOUT + 1.5, True),
    "not-json": (200, b"<html>502 Bad Gateway</html>", 0, True),
    "empty-body": (200, b"", 0, True),
    "no-choices": (200, {**chat_reply("safe"), "choices": []}, 0, True),
    "null-message": (200, {**chat_reply("safe"), "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]}, 0, True),
    "empty-reply": (200, chat_reply("", None), 0, False),
    "blank-tokens": (200, chat_reply("\n\n", [("\n\n", [("\n\n", -0.01)]), (" ", [(" ", -0.02)])]), 0, False),
    # the reply *text* says safe, but neither answer word is among the first token's top log-probs
    "missing-answer-tokens": (200, chat_reply("safe", [("Sure", [("Sure", -0.1), ("I", -1.2)])]), 0, False),
    "nan-logprob": (200, chat_reply("safe", [("safe", [("safe", NAN), ("unsafe", NAN)])]), 0, False),
    "inf-logprob": (200, chat_reply("safe", [("safe", [("safe", float("inf"))])]), 0, False),
    "positive-logprob": (200, chat_reply("safe", [("safe", [("safe", 1000.0), ("unsafe", -1.0)])]), 0, False),
    "string-logprob": (200, chat_reply("safe", [("safe", [("safe", "high")])]), 0, True),
    "token-missing": (200, {**chat_reply("safe"), "choices": [{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "safe"},
                      "logprobs": {"content": [{"logprob": -0.1, "top_logprobs": [{"logprob": -0.1}]}]}}]}, 0, True),
}
FAILURES = [m for m in MODES if not m.startswith("ok-")]


def by_marker(body: dict, headers: dict):
    """Reply in the mode named by the `case:` marker inside the judged conversation."""
    text = json.dumps(body.get("messages", []))
    mode = next((m for m in MODES if f"case:{m}." in text), "http-500")
    status, payload, delay, _ = MODES[mode]
    return status, payload, delay


def server_guard(kind: str, url: str):
    return make_guard(GuardConfig(guard=kind, guard_model="stub-guard", guard_backend="openai", guard_base_url=url,
                                  guard_timeout=TIMEOUT, guard_max_retries=0), progress=False)


@pytest.mark.parametrize("kind", ["llama-guard", "judge-model"])
def test_every_malformed_or_failed_reply_is_unknown_and_counted(kind, caplog):
    modes = list(MODES)
    with StubServer(by_marker) as server, caplog.at_level(logging.WARNING):
        g = server_guard(kind, server.url)
        verdicts = g.judge([f"case:{m}. How do I pick a lock?" for m in modes], ["Here is how."] * len(modes),
                           ["harmful"] * len(modes))
    got = {m: v.label for m, v in zip(modes, verdicts)}
    assert got == {**dict.fromkeys(FAILURES, "unknown"), "ok-safe": "safe", "ok-unsafe": "unsafe"}
    # Transport and parse failures are counted. On a loaded machine a reply that is unknown anyway (e.g. an
    # empty one) may also time out: it can add to the count, a safe/unsafe reply cannot (checked above).
    counted = sum(MODES[m][3] for m in modes)
    assert counted <= g.scorer.errors <= counted + sum(not MODES[m][3] for m in FAILURES)
    assert f"{g.scorer.errors} of {len(modes)} requests failed; judged unknown" in caplog.text
    assert all(v.guard == f"{kind}:stub-guard" for v in verdicts)


def test_llama_guard_does_not_guess_from_text_without_logprobs():
    """A server that returns no log-probs: Llama Guard reads probabilities only, so the reply text "safe" is
    not trusted (the judge model's documented first-word fallback is tested in tests/test_judge.py)."""
    reply = chat_reply("safe", None)
    with StubServer(lambda body, headers: (200, reply, 0)) as server:
        (v,) = server_guard("llama-guard", server.url).judge(["p"], ["r"])
    assert v.label == "unknown" and "no logprobs" in v.raw


def test_wildguard_server_failure_is_unknown_and_counted():
    from thinksafe.generate import BackendConfig
    from thinksafe.generate.openai import OpenAIGenerator
    from thinksafe.judge.wildguard import WildGuard, use_raw_prompts
    from thinksafe.models import ModelSpec

    with StubServer(lambda body, headers: MODES["http-500"][:3]) as server:
        gen = OpenAIGenerator.from_spec(ModelSpec("stub-guard", reasoning="plain"),
                                        BackendConfig(backend="openai", base_url=server.url, max_retries=0, timeout=TIMEOUT,
                                                      progress=False))
        use_raw_prompts(gen)
        g = WildGuard(gen, "stub-guard", batch_size=2, progress=False)
        verdicts = g.judge(["a", "b", "c"], ["x", "y", "z"], ["harmful"] * 3)
    assert [v.label for v in verdicts] == ["unknown"] * 3 and g.errors == 3
    assert all("server error" in v.raw and "HTTP 500" in v.raw for v in verdicts)


# ---------------------------------------------------------------- through the stages


def cycling():
    """Each request gets the next failure mode, whatever the order the requests arrive in."""
    lock, modes = threading.Lock(), itertools.cycle(FAILURES)

    def respond(body, headers):
        with lock:
            mode = next(modes)
        return MODES[mode][:3]

    return respond


def test_synthesize_counts_unknown_and_keeps_none(stopping_model, tmp_path):
    from thinksafe.generate import BackendConfig
    from thinksafe.models import ModelSpec
    from thinksafe.records import read_jsonl
    from thinksafe.stages.synthesize import SynthesizeArgs, synthesize

    out = tmp_path / "s"
    with StubServer(cycling()) as server:
        guard = GuardConfig(guard="judge-model", guard_model="stub-guard", guard_backend="openai",
                            guard_base_url=server.url, guard_timeout=TIMEOUT, guard_max_retries=0)
        stats = synthesize(SynthesizeArgs(harmful="demo:harmful", benign="demo:benign", limit=12, max_new_tokens=6,
                                          out=str(out), chunk_size=8),
                           ModelSpec(str(stopping_model)), BackendConfig(progress=False), guard)
    gens = list(read_jsonl(out / "generations.jsonl"))
    complete = [g for g in gens if g["complete"]]
    assert len(complete) >= 4 and len(server.requests) == len(complete)  # every complete one went to the guard
    assert all(g["verdict"]["label"] == "unknown" and g["drop_reason"] == "unknown" for g in complete)
    assert not any(g["kept"] for g in gens) and (out / "dataset.jsonl").read_text() == ""
    per = stats["per_label"]
    assert per["harmful"]["unknown"] + per["benign"]["unknown"] == len(complete)
    assert per["harmful"]["kept"] == per["benign"]["kept"] == 0
    assert json.loads((out / "stats.json").read_text())["per_label"] == per


def test_evaluate_counts_unknown_and_reports_no_rate(stopping_model, bench_data, tmp_path):
    from thinksafe.generate import BackendConfig
    from thinksafe.models import ModelSpec
    from thinksafe.records import read_jsonl
    from thinksafe.stages.evaluate import EvaluateArgs, evaluate

    out = tmp_path / "e"
    with StubServer(cycling()) as server:
        guard = GuardConfig(guard="llama-guard", guard_model="stub-guard", guard_backend="openai",
                            guard_base_url=server.url, guard_timeout=TIMEOUT, guard_max_retries=0)
        results = evaluate(EvaluateArgs(benchmarks="strongreject,xstest", data_dir=str(bench_data), out=str(out),
                                        max_new_tokens=4, bootstrap=20),
                           ModelSpec(str(stopping_model)), BackendConfig(progress=False), guard)
    sr = results["benchmarks"]["strongreject"]
    assert (sr["unknown"], sr["n"], sr["value"]) == (8, 0, None)  # no harmful-response rate out of nothing
    for name in ("strongreject", "xstest"):
        labels = [x["verdict"]["label"] for r in read_jsonl(out / f"{name}.jsonl") for x in r["responses"]]
        assert labels == ["unknown"] * 8
    assert json.loads((out / "results.json").read_text())["benchmarks"]["strongreject"]["unknown"] == 8
