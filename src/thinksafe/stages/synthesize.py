"""`thinksafe synthesize`: steer → generate → judge → keep, writing the self-generated safety dataset.

DIR/raw_generations.jsonl   every generation as it comes (resume point of the generation phase)
DIR/generations.jsonl       every generation with its verdict, kept or not, and why it was dropped
DIR/dataset.jsonl           the kept pairs, ThinkSafe schema: instruction, response, prompt_label, response_label
DIR/stats.json              counts per label, yield, tokens, wall time per phase
DIR/stage.json, done.json   the key this DIR was made with (stages/base.py): a different config refuses to mix in
"""

from __future__ import annotations

import gc
import random
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.families import describe_top_k, resolve_top_k
from thinksafe.formats import ChatFormat
from thinksafe.generate import BackendConfig, SamplingParams, make_generator
from thinksafe.generate.to_file import generate_to_file
from thinksafe.judge import GuardConfig, make_guard
from thinksafe.judge.refusal import refused
from thinksafe.models import ModelSpec
from thinksafe.progress import console, plural, print_table
from thinksafe.prompts import load_prompts, merge_labelled
from thinksafe.records import (
    Prompt,
    append_jsonl,
    done_ids,
    read_json,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts
from thinksafe.steer import resolve_template, steer


@dataclass
class SynthesizeArgs:
    harmful: str = opt("", "harmful prompts: file, demo:harmful, built-in NAME[:PATH] (safechain, star1, …) or hub id", role="input")
    benign: str | None = opt(None, "benign prompts (sampled without steering); same forms as --harmful", role="input")
    out: str = opt("", "output directory", role="output")
    steering: str = opt("prefix", "prefix | suffix | risk | intent | none | a template with {prompt}")
    prompt_field: str | None = opt(None, "prompt column (default: detected)", role="input")
    label_field: str | None = opt(None, "label column: a source holding both kinds is split on it", role="input")
    limit: int | None = opt(None, "at most this many prompts per label, sampled deterministically with --seed", role="input")
    samples_per_prompt: int = opt(1, "samples per prompt; the first safe one is kept (rejection sampling)")
    require_all_safe: bool = opt(False, "keep a prompt only if all its samples are safe, then pick one at random")
    drop_benign_refusals: bool | None = opt(None, "drop benign responses that refuse (default: on for the refusal guard)")
    temperature: float = opt(0.6, "sampling temperature (paper: 0.6)")
    top_p: float = opt(0.95, "nucleus mass (paper: 0.95)")
    top_k: int | None = opt(None, "top-k (default: the model family's: 20 for Qwen3, off for R1-Distill and the rest)")
    max_new_tokens: int = opt(512, "max new tokens per response (paper: 16k on GPU)")
    seed: int = opt(0, "seed for prompt sampling, generation and rejection-sampling choices")
    chunk_size: int = opt(256, "prompts planned per generate call (results are written batch by batch)", role="runtime")
    overwrite: bool = opt(False, "replace an existing DIR made with a different config", role="control")


def sampling_for(args: SynthesizeArgs, model: str, fmt: ChatFormat) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature, top_p=args.top_p, top_k=resolve_top_k(args.top_k, model, fmt),
        max_new_tokens=args.max_new_tokens,
        n=args.samples_per_prompt, seed=args.seed,
    )


def load_inputs(args: SynthesizeArgs) -> tuple[list[Prompt], int]:
    """Harmful + benign prompts; a text in both sets stays harmful. Returns (prompts, duplicates collapsed)."""
    kw = dict(prompt_field=args.prompt_field, label_field=args.label_field, limit=args.limit, seed=args.seed)
    harmful = load_prompts(args.harmful, label="harmful", **kw)
    benign = load_prompts(args.benign, label="benign", **kw) if args.benign else []
    prompts, collapsed = merge_labelled(harmful, benign)
    return prompts, collapsed + sum(p.meta.get("count", 1) - 1 for p in prompts)


def judge_file(raw: Path, judged: Path, guard, fmt: ChatFormat, chunk_size: int) -> None:
    """Append every raw generation to `judged` with its verdict; incomplete ones skip the guard."""
    done = done_ids(judged)
    todo = [r for r in read_jsonl(raw) if r["id"] not in done]
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        complete = [r for r in chunk if fmt.is_complete(r["text"], r["finish_reason"])]
        verdicts = guard.judge([r["prompt"] for r in complete], [r["text"] for r in complete], [r["label"] for r in complete])
        by_id = {r["id"]: v for r, v in zip(complete, verdicts)}
        for r in chunk:
            v = by_id.get(r["id"])
            r["complete"] = v is not None
            r["verdict"] = None if v is None else {"label": v.label, "score": v.score, "refused": v.refused, "guard": v.guard, "raw": v.raw}
        append_jsonl(judged, chunk)


def select(rows: list[dict], args: SynthesizeArgs, drop_benign_refusals: bool) -> list[dict]:
    """Mark each judged generation kept or dropped (with the reason). Deterministic given the rows."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_prompt[r["prompt_id"]].append(r)
        r["kept"], r["drop_reason"] = False, None
        v = r["verdict"]
        if not r["complete"]:
            r["drop_reason"] = "incomplete"
        elif v["label"] != "safe":
            r["drop_reason"] = v["label"]  # "unsafe" or "unknown": fail closed
        elif r["label"] == "benign" and drop_benign_refusals and v.get("refused"):
            r["drop_reason"] = "over-refusal"
    for pid, samples in by_prompt.items():
        samples.sort(key=lambda r: r["sample"])
        ok = [r for r in samples if r["drop_reason"] is None]
        if args.require_all_safe:
            if len(ok) < args.samples_per_prompt:
                for r in ok:
                    r["drop_reason"] = "not-all-safe"
                continue
            pick = random.Random(f"{args.seed}:{pid}").choice(ok)
        elif ok:
            pick = ok[0]
        else:
            continue
        pick["kept"] = True
        for r in ok:
            if r is not pick:
                r["drop_reason"] = "not-selected"
    return rows


def synthesize(args: SynthesizeArgs, spec: ModelSpec, backend: BackendConfig, guard_cfg: GuardConfig) -> dict[str, Any]:
    """`thinksafe synthesize`: the stage in args.out (cached there once done); returns its stats."""
    return SYNTHESIZE.run_command(args, model=spec, backend=backend, guard=guard_cfg).stats


def run_synthesis(job: Job) -> dict[str, Any]:
    """Generate (steered) → judge → select, each phase resuming from its file; writes the dataset and stats."""
    args, out = job.settings, job.out
    prompts, dups = job.prepared  # load_inputs(args), by prepare()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    generator = make_generator(job.model, job.backend)
    fmt, sampling = generator.format, sampling_for(args, job.model.model, generator.format)
    times["load_model"] = time.perf_counter() - t0
    meta = {"model": job.model.model, "adapter": job.model.adapter, "steering": args.steering, "sampling": vars(sampling)}
    gen_stats = generate_to_file(
        generator, prompts, sampling, out / "raw_generations.jsonl",
        render=lambda p: steer(p.prompt, p.label, args.steering), chunk_size=args.chunk_size, meta=meta,
    )
    times["generate"] = gen_stats.seconds
    del generator  # free the model before a guard model loads
    gc.collect()

    t0 = time.perf_counter()
    guard = make_guard(job.guard, fmt, progress=job.backend.progress)
    judge_file(out / "raw_generations.jsonl", out / "generations.jsonl", guard, fmt, args.chunk_size)
    times["judge"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    drop_refusals = args.drop_benign_refusals if args.drop_benign_refusals is not None else job.guard.guard == "refusal"
    rows = select(list(read_jsonl(out / "generations.jsonl")), args, drop_refusals)
    order = {p.id: i for i, p in enumerate(prompts)}  # canonical order: prompt order, then sample
    rows = sorted((r for r in rows if r["prompt_id"] in order), key=lambda r: (order[r["prompt_id"]], r["sample"]))
    # Rewrite generations.jsonl with keep/drop marks, then the dataset: both atomically.
    write_jsonl_atomic(out / "generations.jsonl", rows)
    write_jsonl_atomic(out / "dataset.jsonl", [dataset_record(r, args.seed) for r in rows if r["kept"]])
    times["select"] = time.perf_counter() - t0
    stats = compute_stats(prompts, rows, dups, gen_stats.tokens_per_second, times, drop_refusals, fmt)
    write_json_atomic(out / "stats.json", stats)
    print_stats(stats, out)
    return stats


def dataset_record(r: dict[str, Any], seed: int) -> dict[str, Any]:
    """A kept generation as a ThinkSafe-schema example, under its original (unsteered) prompt."""
    return {
        "instruction": r["prompt"],
        "response": r["text"],
        "prompt_label": r["label"],
        "response_label": "safe",
        "meta": {**r["meta"], "id": r["prompt_id"], "guard": r["verdict"]["guard"], "seed": seed,
                 "completion_tokens": r["completion_tokens"], "prompt_tokens": r["prompt_tokens"]},
    }


def compute_stats(prompts, rows, dups, tokens_per_second, times, drop_refusals, fmt: ChatFormat) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for label in ("harmful", "benign"):
        ps = [p for p in prompts if p.label == label]
        rs = [r for r in rows if r["label"] == label]
        kept = [r for r in rs if r["kept"]]
        reasons = defaultdict(int)
        for r in rs:
            reasons[r["drop_reason"]] += 1
        per[label] = {
            "prompts": len(ps),
            "generations": len(rs),
            "incomplete": reasons["incomplete"],
            "unsafe": reasons["unsafe"],
            "unknown": reasons["unknown"],
            "over_refusal": reasons["over-refusal"],
            "kept": len(kept),
            "yield_pct": round(100 * len(kept) / len(ps), 1) if ps else None,
            "mean_response_tokens": round(sum(r["completion_tokens"] for r in kept) / len(kept), 1) if kept else None,
            **refusal_audit(kept, fmt),
        }
    return {
        "per_label": per,
        "refusals_judged_by": "the guard's refusal flag where it gives one, else the refusal detector on the answer",
        "duplicates_collapsed": dups,
        "benign_refusals_dropped": drop_refusals,
        "generated_tokens": sum(r["completion_tokens"] for r in rows),
        "tokens_per_second": round(tokens_per_second, 2),
        "seconds": {k: round(v, 2) for k, v in times.items()},
    }


def refusal_audit(kept: list[dict], fmt: ChatFormat) -> dict[str, Any]:
    """How much of the kept data refuses (the reference's dataset/eval_refusal.py): harmful examples should, benign
    ones should not — a benign refusal teaches over-refusal, and the Llama-Guard filter keeps them (a refusal is
    safe). Read from the answer after the trace, as the reference strips <think>…</think> before judging."""
    flags = [refused(r["verdict"].get("refused"), r["text"], fmt) for r in kept]
    known = [f for f in flags if f is not None]
    return {"kept_refusals": sum(known), "refusal_pct": round(100 * sum(known) / len(known), 1) if known else None}


def print_stats(stats: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"synthesis → {out}")
    cols = ["prompts", "generations", "incomplete", "unsafe", "unknown", "over_refusal", "kept", "yield_pct", "refusal_pct",
            "mean_response_tokens"]
    table.add_column("label")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for label, row in stats["per_label"].items():
        table.add_row(label, *("—" if row[c] is None else str(row[c]) for c in cols))
    print_table(table)
    secs = ", ".join(f"{k} {v:.1f}s" for k, v in stats["seconds"].items())
    console.print(f"{stats['generated_tokens']} tokens at {stats['tokens_per_second']} tok/s; {secs}; "
                  f"{stats['duplicates_collapsed']} duplicate prompts collapsed")


# ---------------------------------------------------------------- the stage


@dataclass
class DatasetOutput:
    """A stage that writes a ThinkSafe-schema dataset (synthesize, data): DIR/dataset.jsonl and DIR/stats.json."""

    dir: Path
    stats: dict[str, Any] | None

    @property
    def dataset(self) -> Path:
        return self.dir / "dataset.jsonl"


class Synthesize(Stage):
    name = "synthesize"
    help = "steer, generate, judge: build the self-generated safety dataset"
    description = ("Steer harmful prompts toward refusal, sample benign ones plainly, keep complete generations the "
                   "guard judges safe: the self-generated safety dataset (DIR/dataset.jsonl).")
    required = ("harmful", "out")
    Settings = SynthesizeArgs
    uses = ("model", "backend", "guard")
    makes_model = True

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        if not upstream:
            return job
        prompts = upstream[0]  # the prompts stage: its sample is already limited and labelled
        return replace(job, settings=replace(job.settings, harmful=str(prompts.harmful),
                                             benign=str(prompts.benign) if prompts.benign else None))

    def summary(self, job: Job) -> str:
        s = job.settings
        return (f"steering {s.steering}; temperature {s.temperature}, top-p {s.top_p}, "
                f"top-k {describe_top_k(s.top_k, job.model.model)}, {s.max_new_tokens:,} new tokens, "
                f"{plural(s.samples_per_prompt, 'sample')} per prompt")

    def prepare(self, job: Job) -> tuple[list[Prompt], int]:
        resolve_template(job.settings.steering)
        return load_inputs(job.settings)  # a bad prompt file fails before DIR is touched

    def run(self, job: Job) -> Counts:
        stats = run_synthesis(job)
        prompt_tokens = sum(r["prompt_tokens"] for r in read_jsonl(job.out / "generations.jsonl"))
        return Counts(tokens_generated=stats["generated_tokens"], tokens_prompt=prompt_tokens)

    def read(self, out: Path) -> DatasetOutput:
        return DatasetOutput(out, read_json(out / "stats.json", missing_ok=True))


SYNTHESIZE = Synthesize()

