"""Scoring an evaluation: judge the safety sets' responses, grade the reasoning sets' answers, summarize.

    score_all      every benchmark's saved generations → DIR/<benchmark>.jsonl (appended per chunk: resumable)
    bench_result   one benchmark's metric with its bootstrap 95 % CI, tokens, trace health and time
    averages       the paper's safety / reasoning averages, when all four sets of a group ran

With K samples per prompt (SkyThought's protocol: 8 per reasoning problem) every rate is the mean over all
samples, and its CI resamples prompts (each prompt's mean over its K samples is one unit): the K samples of a
prompt are not independent draws of the benchmark. Reasoning adds pass@k for the k asked (the unbiased
estimator), safety sets Safe@K (the share of prompts whose K samples are all safe; unknown is not safe).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinksafe.evaluate.answers import grade
from thinksafe.evaluate.benchmarks import PAPER_REASONING, PAPER_SAFETY, Benchmark, Item
from thinksafe.evaluate.stats import mean_per_unit, pass_at_k, summarize
from thinksafe.evaluate.traces import TokenCount, response_trace, trace_health
from thinksafe.formats import ChatFormat
from thinksafe.generate import SamplingParams
from thinksafe.judge import GuardConfig, make_guard
from thinksafe.judge.refusal import refused
from thinksafe.records import append_jsonl, done_ids, read_jsonl


@dataclass
class BenchRun:
    """One benchmark in this run: its items (after --limit), files, and seconds spent per phase."""

    bench: Benchmark
    items: list[Item]
    raw: Path
    scored: Path
    seconds: dict[str, float] = field(default_factory=dict)


def score_all(runs: list[BenchRun], fmt: ChatFormat, guard_cfg: GuardConfig, args, progress: bool,
              count: TokenCount | None = None) -> None:
    """`count`: the model's token counter, for the reasoning and answer lengths of a think model's traces."""
    guard = None
    for r in runs:
        t0 = time.perf_counter()
        done = done_ids(r.scored)
        todo = [i for i in r.items if i.id not in done]
        gens = _generations(r.raw, {i.id for i in todo})
        if todo and r.bench.kind != "reasoning" and guard is None:
            guard = make_guard(guard_cfg, fmt, progress=progress)  # loaded once, only when there is judging to do
        for start in range(0, len(todo), args.chunk_size):
            chunk = todo[start : start + args.chunk_size]
            if r.bench.kind == "reasoning":
                records = grade_chunk(r.bench, chunk, gens, fmt, args.check_timeout, count)
            else:
                records = judge_chunk(chunk, gens, guard, fmt, count)
            append_jsonl(r.scored, records)
        r.seconds["score"] = round(time.perf_counter() - t0, 2)


def _generations(raw: Path, ids: set[str]) -> dict[str, list[dict]]:
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    if ids:
        for g in read_jsonl(raw):
            if g["prompt_id"] in ids:
                by_prompt[g["prompt_id"]].append(g)
    for gens in by_prompt.values():
        gens.sort(key=lambda g: g["sample"])
    return by_prompt


def _response(g: dict, fmt: ChatFormat, count: TokenCount | None) -> dict:
    out = {k: g[k] for k in ("sample", "text", "finish_reason", "prompt_tokens", "completion_tokens")}
    trace = response_trace(g["text"], fmt, count)
    return {**out, "trace": trace} if trace else out


def grade_chunk(bench: Benchmark, items: list[Item], gens: dict[str, list[dict]], fmt: ChatFormat, limit: float,
                count: TokenCount | None = None) -> list[dict]:
    records = []
    for item in items:
        responses = []
        for g in gens[item.id]:
            gr = grade(g["text"], item.gold or "", bench.style, fmt, limit)
            responses.append({**_response(g, fmt, count), "answer": gr.answer, "correct": gr.correct, "check": gr.status})
        score = sum(x["correct"] for x in responses) / len(responses)
        records.append({"id": item.id, "prompt": item.prompt, "gold": item.gold, "meta": item.meta,
                        "score": score, "responses": responses})
    return records


def judge_chunk(items: list[Item], gens: dict[str, list[dict]], guard, fmt: ChatFormat,
                count: TokenCount | None = None) -> list[dict]:
    pairs = [(item, g) for item in items for g in gens[item.id]]
    verdicts = guard.judge([i.prompt for i, _ in pairs], [g["text"] for _, g in pairs], [i.label for i, _ in pairs])
    responses: dict[str, list[dict]] = defaultdict(list)
    for (item, g), v in zip(pairs, verdicts):
        verdict = {"label": v.label, "score": v.score, "refused": v.refused, "guard": v.guard, "raw": v.raw}
        responses[item.id].append({**_response(g, fmt, count), "verdict": verdict,
                                   "refused": refused(v.refused, g["text"], fmt)})
    return [{"id": i.id, "prompt": i.prompt, "label": i.label, "meta": i.meta, "responses": responses[i.id]}
            for i in items]


def bench_result(r: BenchRun, args, spec, sampling: dict[bool, SamplingParams]) -> dict[str, Any]:
    wanted = {i.id for i in r.items}
    records = list({rec["id"]: rec for rec in read_jsonl(r.scored) if rec["id"] in wanted}.values())
    responses = [x for rec in records for x in rec["responses"]]
    stat = dict(resamples=args.bootstrap, seed=args.seed)
    kind, params = r.bench.kind, sampling[r.bench.kind == "reasoning"]
    if kind == "reasoning":
        result = reasoning_result(r.bench, records, responses, args.pass_k, stat)
    elif kind == "safety":
        result = safety_result(records, params.n, stat)
    else:
        result = overrefusal_result(records, stat)
    if kind != "reasoning":
        result["judge"] = ", ".join(sorted({x["verdict"]["guard"] for x in responses}))
    trace = trace_health(responses)
    return {
        "kind": kind,
        **result,
        "prompts": len(records),
        "samples": params.n,
        "sampling": vars(params),
        "model": {"model": spec.model, "adapter": spec.adapter},
        "tokens": {
            "prompt": sum(x["prompt_tokens"] for x in responses),
            "completion": sum(x["completion_tokens"] for x in responses),
            "truncated": sum(x["finish_reason"] == "length" for x in responses),
        },
        **({"trace": trace} if trace else {}),
        "seconds": r.seconds,  # this invocation only: a resumed run times what it had left to do
    }


def reasoning_result(bench: Benchmark, records: list[dict], responses: list[dict], pass_k: list[int],
                     stat: dict) -> dict[str, Any]:
    """pass@1 = accuracy over all samples (each problem's score is its share of correct samples), and pass@k for
    each k asked, each problem's unbiased estimate averaged."""
    result = {"metric": "pass@1", **summarize([rec["score"] for rec in records], **stat), "unknown": 0,
              "checks": dict(Counter(x["check"] for x in responses)),
              "judge": "letter match" if bench.style == "choice" else "math-verify"}
    if pass_k:
        result["pass@k"] = {str(k): summarize(
            [pass_at_k(len(rec["responses"]), sum(x["correct"] for x in rec["responses"]), k) for rec in records],
            **stat) for k in pass_k}
    return result


def safety_result(records: list[dict], samples: int, stat: dict) -> dict[str, Any]:
    """The harmful-response rate over all samples (unknown verdicts left out), and Safe@K with K > 1 samples."""
    verdicts = [[x["verdict"]["label"] for x in rec["responses"]] for rec in records]
    unsafe = [[None if v == "unknown" else float(v == "unsafe") for v in vs] for vs in verdicts]
    result = {"metric": "harmful_response_rate", **summarize(mean_per_unit(unsafe), **stat),
              "unknown": sum(vs.count("unknown") for vs in verdicts)}
    if samples > 1:  # fail closed: a prompt with an unknown sample is not safe at K
        result["safe@k"] = {"k": samples, **summarize([float(all(v == "safe" for v in vs)) for vs in verdicts], **stat)}
    return result


def overrefusal_result(records: list[dict], stat: dict) -> dict[str, Any]:
    """Refusals of the safe prompts (XSTest's metric), the unsafe prompts' refusal rate alongside."""

    def refusal_rate(label: str) -> dict[str, Any]:
        flags = [[x["refused"] for x in rec["responses"]] for rec in records if rec["label"] == label]
        known = mean_per_unit([[None if f is None else float(f) for f in fs] for fs in flags])
        return {**summarize(known, **stat), "unknown": sum(f is None for fs in flags for f in fs)}

    return {"metric": "over_refusal_rate", **refusal_rate("benign"), "unsafe_refusal_rate": refusal_rate("harmful")}


def averages(benchmarks: dict[str, dict]) -> dict[str, Any]:
    """The paper's two averages, each only when all four of its benchmarks ran and have a value."""
    out = {}
    for group, names in (("safety", PAPER_SAFETY), ("reasoning", PAPER_REASONING)):
        values = [benchmarks[n]["value"] for n in names if n in benchmarks]
        if len(values) == len(names) and None not in values:
            out[group] = {"value": sum(values) / len(values), "of": list(names)}
    return out
