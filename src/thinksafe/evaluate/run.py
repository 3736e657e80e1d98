"""`thinksafe evaluate`: the stage that runs the benchmarks and writes their results.

DIR/raw/<benchmark>.jsonl   every generation as it comes (resume point of the generation phase)
DIR/<benchmark>.jsonl       one record per prompt: its responses with their verdicts, or parsed answers and correctness
DIR/results.json            per benchmark: metric, value, 95% CI, n, unknown, judge, sampling, model, tokens, time;
                            the paper's safety / reasoning averages when all four sets of a group ran
DIR/eval_config.json        the generation and scoring settings this DIR was made with

Phases: load every benchmark (a missing file fails before any model loads) → generate, one model load for all
benchmarks → free the model → judge the safety sets (a guard model may load now) and grade the reasoning sets
→ results. Each phase appends per chunk and skips what is on disk, so a rerun resumes.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt, parse_config
from thinksafe.errors import ConfigError, InputError
from thinksafe.evaluate.answers import DEFAULT_LIMIT, grade
from thinksafe.evaluate.benchmarks import BENCHMARKS, PAPER_REASONING, PAPER_SAFETY, Benchmark, Item, select
from thinksafe.evaluate.stats import summarize
from thinksafe.formats import ChatFormat
from thinksafe.generate import BackendConfig, SamplingParams, make_generator
from thinksafe.generate.stage import drop_partial, generate_to_file
from thinksafe.judge import GUARDS, GuardConfig, make_guard
from thinksafe.judge.refusal import is_refusal
from thinksafe.models import ModelSpec, load_tokenizer
from thinksafe.progress import console
from thinksafe.prompts import sample
from thinksafe.records import (
    append_jsonl,
    done_ids,
    ensure_dir,
    read_jsonl,
    write_json_atomic,
)

CONFIG_FILE = "eval_config.json"


@dataclass
class EvaluateArgs:
    benchmarks: str = opt("harmbench,strongreject,xstest,gsm8k", f"comma-separated, from: {', '.join(BENCHMARKS)}")
    out: str = opt("", "output directory (rerun the same command to resume)")
    data_dir: str | None = opt(None, "directory laid out like the reference data (safety/…, reasoning/…); sets missing there come from the hub")
    limit: int | None = opt(None, "at most N prompts per benchmark, sampled with --seed: every model with the same N sees the same prompts")
    samples: int = opt(1, "samples per reasoning problem; pass@1 is their mean (safety prompts get one sample)")
    judge: str | None = opt(None, f"safety judge: {' | '.join(GUARDS)} (same as --guard; default refusal)")
    include_copyright: bool = opt(False, "harmbench-behaviors: keep the copyright rows (HarmBench scores them by hashing, not a judge)")
    temperature: float = opt(0.6, "sampling temperature (paper: 0.6)")
    top_p: float = opt(0.95, "nucleus mass (paper: 0.95)")
    top_k: int = opt(0, "top-k, 0 = off")
    max_new_tokens: int = opt(512, "max new tokens per response (CPU preset; the paper allows 16k on GPU)")
    reasoning_max_new_tokens: int | None = opt(None, "max new tokens on reasoning benchmarks (default: --max_new_tokens); "
                                                     "lets safety sets stay short (the refusal judge reads the head)")
    seed: int = opt(0, "seed for --limit sampling, generation and the bootstrap")
    check_timeout: float = opt(DEFAULT_LIMIT, "seconds allowed per answer-equivalence check")
    bootstrap: int = opt(1000, "bootstrap resamples per confidence interval (95 percent, percentile method)")
    chunk_size: int = opt(32, "prompts per generation / judging chunk (a crash loses at most one chunk)")
    overwrite: bool = opt(False, "clear DIR when it was generated with a different model or sampling config")


@dataclass
class BenchRun:
    """One benchmark in this run: its items (after --limit), files, and seconds spent per phase."""

    bench: Benchmark
    items: list[Item]
    raw: Path
    scored: Path
    seconds: dict[str, float] = field(default_factory=dict)


def evaluate(args: EvaluateArgs, spec: ModelSpec, backend: BackendConfig, guard_cfg: GuardConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    if not args.out:
        raise ConfigError("evaluate: --out is required")
    if args.samples < 1 or args.check_timeout <= 0 or args.bootstrap < 1:
        raise ConfigError("evaluate: --samples and --bootstrap must be >= 1, --check-timeout > 0")
    guard_cfg = with_judge(guard_cfg, args.judge)
    benches = select(args.benchmarks)
    sampling = {reasoning: sampling_params(args, reasoning) for reasoning in (False, True)}
    out = Path(args.out)
    runs = [  # every benchmark loads before DIR is touched or a model loads: a missing file fails fast
        BenchRun(b, sample(b.load(args.data_dir, include_copyright=args.include_copyright), args.limit, args.seed),
                 out / "raw" / f"{b.name}.jsonl", out / f"{b.name}.jsonl")
        for b in benches
    ]
    generation = {**vars(spec), "backend": backend.backend, **vars(sampling[True]),
                  "safety_max_new_tokens": sampling[False].max_new_tokens}
    prepare_dir(out, generation, {**guard_cfg.key(), "check_timeout": args.check_timeout}, args.overwrite)
    fmt = generate_all(runs, spec, backend, sampling, args)
    score_all(runs, fmt, guard_cfg, args, backend.progress)
    results = {
        "model": vars(spec),
        "judge": vars(guard_cfg),
        "data_dir": args.data_dir,
        "limit": args.limit,
        "seed": args.seed,
        "benchmarks": {r.bench.name: bench_result(r, args, spec, sampling) for r in runs},
    }
    results["averages"] = averages(results["benchmarks"])
    results["wall_seconds"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(out / "results.json", results)
    print_results(results, out)
    return results


def with_judge(cfg: GuardConfig, judge: str | None) -> GuardConfig:
    if judge is None:
        return cfg
    if judge not in GUARDS:
        raise ConfigError(f"--judge '{judge}': expected one of {', '.join(GUARDS)}")
    if cfg.guard not in ("refusal", judge):  # "refusal" is --guard's default: only a non-default one can clash
        raise ConfigError(f"--judge {judge} and --guard {cfg.guard} disagree; give one of them")
    return replace(cfg, guard=judge)


def sampling_params(args: EvaluateArgs, reasoning: bool) -> SamplingParams:
    """Reasoning benchmarks: --samples per problem and their own token limit; safety prompts: one sample."""
    tokens = (args.reasoning_max_new_tokens or args.max_new_tokens) if reasoning else args.max_new_tokens
    return SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                          max_new_tokens=tokens, n=args.samples if reasoning else 1, seed=args.seed)


# ---------------------------------------------------------------- output directory


def _files(out: Path, scored_only: bool = False) -> list[Path]:
    scored = [out / f"{name}.jsonl" for name in BENCHMARKS] + [out / "results.json"]
    return scored if scored_only else scored + [out / "raw" / f"{name}.jsonl" for name in BENCHMARKS]


def prepare_dir(out: Path, generation: dict[str, Any], scoring: dict[str, Any], overwrite: bool) -> None:
    """Never mix generations of two configs in one DIR. A new judge or check limit only re-scores: the
    scored files derive from the raw generations, which stay valid."""
    cfg_file = out / CONFIG_FILE
    ensure_dir(out)
    if cfg_file.exists():
        try:
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{cfg_file}: unreadable ({e})") from None
        if old.get("generation") != generation:
            if not overwrite:
                before = old.get("generation", {})
                changed = sorted(k for k in set(before) | set(generation) if before.get(k) != generation.get(k))
                raise ConfigError(f"{out}: generated with a different config (changed: {', '.join(changed)}); "
                                  "use --overwrite or a new --out")
            _clear(_files(out))
        elif old.get("scoring") != scoring:
            console.print(f"{out}: judge or check settings changed: re-scoring the saved generations")
            _clear(_files(out, scored_only=True))
    elif any(p.exists() for p in _files(out)):
        if not overwrite:
            raise ConfigError(f"{out}: holds evaluation files but no {CONFIG_FILE}; use --overwrite or a new --out")
        _clear(_files(out))
    write_json_atomic(cfg_file, {"generation": generation, "scoring": scoring})


def _clear(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- generation


def generate_all(runs: list[BenchRun], spec: ModelSpec, backend: BackendConfig,
                 sampling: dict[bool, SamplingParams], args: EvaluateArgs) -> ChatFormat:
    """Generate for every benchmark with one model load; no load at all when everything is on disk."""
    for r in runs:
        drop_partial(r.raw, args.samples if r.bench.kind == "reasoning" else 1)
    pending = [r for r in runs if {i.id for i in r.items} - done_ids(r.raw, key="prompt_id")]
    if not pending:
        return ChatFormat.detect(load_tokenizer(spec), spec.reasoning)
    generator = make_generator(spec, backend)
    fmt = generator.format
    for r in pending:
        stats = generate_to_file(
            generator, [i.to_prompt(r.bench.name) for i in r.items], sampling[r.bench.kind == "reasoning"], r.raw, chunk_size=args.chunk_size,
            meta={"model": spec.model, "adapter": spec.adapter, "benchmark": r.bench.name},
        )
        r.seconds["generate"] = round(stats.seconds, 2)
    del generator  # free the model before a guard model loads
    gc.collect()
    return fmt


# ---------------------------------------------------------------- scoring


def score_all(runs: list[BenchRun], fmt: ChatFormat, guard_cfg: GuardConfig, args: EvaluateArgs, progress: bool) -> None:
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
                records = grade_chunk(r.bench, chunk, gens, fmt, args.check_timeout)
            else:
                records = judge_chunk(chunk, gens, guard, fmt)
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


def _response(g: dict) -> dict:
    return {k: g[k] for k in ("sample", "text", "finish_reason", "prompt_tokens", "completion_tokens")}


def grade_chunk(bench: Benchmark, items: list[Item], gens: dict[str, list[dict]], fmt: ChatFormat, limit: float) -> list[dict]:
    records = []
    for item in items:
        responses = []
        for g in gens[item.id]:
            gr = grade(g["text"], item.gold or "", bench.style, fmt, limit)
            responses.append({**_response(g), "answer": gr.answer, "correct": gr.correct, "check": gr.status})
        score = sum(x["correct"] for x in responses) / len(responses)
        records.append({"id": item.id, "prompt": item.prompt, "gold": item.gold, "meta": item.meta,
                        "score": score, "responses": responses})
    return records


def judge_chunk(items: list[Item], gens: dict[str, list[dict]], guard, fmt: ChatFormat) -> list[dict]:
    pairs = [(item, g) for item in items for g in gens[item.id]]
    verdicts = guard.judge([i.prompt for i, _ in pairs], [g["text"] for _, g in pairs], [i.label for i, _ in pairs])
    responses: dict[str, list[dict]] = defaultdict(list)
    for (item, g), v in zip(pairs, verdicts):
        verdict = {"label": v.label, "score": v.score, "refused": v.refused, "guard": v.guard, "raw": v.raw}
        responses[item.id].append({**_response(g), "verdict": verdict, "refused": refused(v.refused, g["text"], fmt)})
    return [{"id": i.id, "prompt": i.prompt, "label": i.label, "meta": i.meta, "responses": responses[i.id]}
            for i in items]


def refused(guard_says: bool | None, text: str, fmt: ChatFormat) -> bool | None:
    """The guard's refusal flag, else the refusal detector on the answer; None when there is no answer."""
    if guard_says is not None:
        return guard_says
    answer = fmt.split(text)[1]
    return is_refusal(answer) if answer else None


# ---------------------------------------------------------------- results


def bench_result(r: BenchRun, args: EvaluateArgs, spec: ModelSpec, sampling: dict[bool, SamplingParams]) -> dict[str, Any]:
    wanted = {i.id for i in r.items}
    records = list({rec["id"]: rec for rec in read_jsonl(r.scored) if rec["id"] in wanted}.values())
    responses = [x for rec in records for x in rec["responses"]]
    stat = dict(resamples=args.bootstrap, seed=args.seed)
    kind = r.bench.kind
    if kind == "reasoning":
        result = {"metric": "pass@1", **summarize([rec["score"] for rec in records], **stat), "unknown": 0,
                  "checks": dict(Counter(x["check"] for x in responses)),
                  "judge": "letter match" if r.bench.style == "choice" else "math-verify"}
    elif kind == "safety":
        labels = [x["verdict"]["label"] for x in responses]
        result = {"metric": "harmful_response_rate",
                  **summarize([float(v == "unsafe") for v in labels if v != "unknown"], **stat),
                  "unknown": labels.count("unknown")}
    else:  # over-refusal: refusals of XSTest's safe prompts; its unsafe prompts' refusal rate alongside

        def refusal_rate(label: str) -> dict[str, Any]:
            flags = [x["refused"] for rec in records if rec["label"] == label for x in rec["responses"]]
            known = [float(f) for f in flags if f is not None]
            return {**summarize(known, **stat), "unknown": len(flags) - len(known)}

        result = {"metric": "over_refusal_rate", **refusal_rate("benign"), "unsafe_refusal_rate": refusal_rate("harmful")}
    if kind != "reasoning":
        result["judge"] = ", ".join(sorted({x["verdict"]["guard"] for x in responses}))
    return {
        "kind": kind,
        **result,
        "prompts": len(records),
        "sampling": vars(sampling[kind == "reasoning"]),
        "model": {"model": spec.model, "adapter": spec.adapter},
        "tokens": {
            "prompt": sum(x["prompt_tokens"] for x in responses),
            "completion": sum(x["completion_tokens"] for x in responses),
            "truncated": sum(x["finish_reason"] == "length" for x in responses),
        },
        "seconds": r.seconds,  # this invocation only: a resumed run times what it had left to do
    }


def averages(benchmarks: dict[str, dict]) -> dict[str, Any]:
    """The paper's two averages, each only when all four of its benchmarks ran and have a value."""
    out = {}
    for group, names in (("safety", PAPER_SAFETY), ("reasoning", PAPER_REASONING)):
        values = [benchmarks[n]["value"] for n in names if n in benchmarks]
        if len(values) == len(names) and None not in values:
            out[group] = {"value": sum(values) / len(values), "of": list(names)}
    return out


def _pct(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "—"
    ci = entry.get("ci95")
    return f"{100 * entry['value']:.1f}" + (f" ± {100 * (ci[1] - ci[0]) / 2:.1f}" if ci else "")


def print_results(results: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    wide = Console(stderr=True, width=max(console.width, 150))  # ten columns: don't squeeze them into 80 when piped
    bench, avg = results["benchmarks"], results["averages"]
    model = results["model"]["model"] + (f" + {results['model']['adapter']}" if results["model"]["adapter"] else "")
    if any(n in bench for n in PAPER_SAFETY + PAPER_REASONING):
        table = Table(title=f"{model}: safety % ↓ ‖ reasoning pass@1 % ↑  (value ± half-width of the 95% CI)")
        cells = []
        for group, names in (("safety", PAPER_SAFETY), ("reasoning", PAPER_REASONING)):
            if cells:
                table.add_column("‖", justify="center")
                cells.append("‖")
            for n in names:
                table.add_column(BENCHMARKS[n].title, justify="right")
                cells.append(_pct(bench.get(n)))
            table.add_column("Avg", justify="right")
            cells.append(_pct(avg.get(group)))
        table.add_row(*cells)
        wide.print(table)
    detail = Table(title=f"per benchmark → {out}")
    for col in ("benchmark", "metric", "% ± CI", "n", "unknown", "tokens", "seconds"):
        detail.add_column(col, justify="left" if col in ("benchmark", "metric") else "right")
    for name, e in bench.items():
        rows = [(name, e["metric"], e)]
        if "unsafe_refusal_rate" in e:
            rows.append(("", "refusal rate, unsafe prompts", e["unsafe_refusal_rate"]))
        for label, metric, entry in rows:
            secs = sum(e["seconds"].values()) if label else None
            detail.add_row(label, metric, _pct(entry), str(entry["n"]), str(entry["unknown"]),
                           str(e["tokens"]["completion"]) if label else "", f"{secs:.1f}" if secs is not None else "")
    wide.print(detail)


def cmd_evaluate(argv: list[str]) -> int:
    args, spec, backend, guard = parse_config(
        "thinksafe evaluate",
        (EvaluateArgs, ModelSpec, BackendConfig, GuardConfig),
        argv,
        "Safety (harmful-response rate), over-refusal (XSTest) and reasoning (pass@1) benchmarks with bootstrap "
        "95% CIs; DIR/results.json plus one JSONL per benchmark. Rerun the same command to resume.",
    )
    evaluate(args, spec, backend, guard)
    return 0
