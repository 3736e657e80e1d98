"""`thinksafe evaluate`: the stage that runs the benchmarks and writes their results.

DIR/raw/<benchmark>.jsonl   every generation as it comes (resume point of the generation phase)
DIR/<benchmark>.jsonl       one record per prompt: its responses with their verdicts, or parsed answers and correctness
DIR/results.json            per benchmark: metric, value, 95% CI, n, unknown, judge, sampling, model, tokens, time;
                            the paper's safety / reasoning averages when all four sets of a group ran

Phases: load every benchmark (a missing file fails before any model loads) → generate, one model load for all
benchmarks → free the model → judge the safety sets (a guard model may load now) and grade the reasoning sets
(evaluate/scoring.py) → results. Each phase appends per chunk and skips what is on disk, so a rerun resumes.
Its key has four parts: what the generations depend on, which prompts, how they are scored, and how they are
summarized; when only the last three change (a new judge, a new --limit, a new bootstrap count) the saved
generations are kept and re-scored.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import ConfigError
from thinksafe.evaluate.answers import DEFAULT_LIMIT
from thinksafe.evaluate.benchmarks import BENCHMARKS, PAPER_REASONING, PAPER_SAFETY, select
from thinksafe.evaluate.scoring import BenchRun, averages, bench_result, score_all
from thinksafe.formats import ChatFormat
from thinksafe.generate import BackendConfig, SamplingParams, make_generator
from thinksafe.generate.to_file import drop_partial, generate_to_file
from thinksafe.judge import GUARDS, GuardConfig
from thinksafe.models import ModelSpec, load_tokenizer
from thinksafe.progress import wide_console
from thinksafe.prompts import sample
from thinksafe.records import done_ids, read_json, write_json_atomic
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts

GENERATION = ("temperature", "top_p", "top_k", "max_new_tokens", "reasoning_max_new_tokens", "samples", "seed")
ITEMS = ("benchmarks", "data_dir", "limit", "include_copyright")
SCORING = ("check_timeout",)
SUMMARY = ("bootstrap",)


@dataclass
class EvaluateArgs:
    benchmarks: str = opt("harmbench,strongreject,xstest,gsm8k", f"comma-separated, from: {', '.join(BENCHMARKS)}")
    out: str = opt("", "output directory (rerun the same command to resume)", role="output")
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
    chunk_size: int = opt(32, "prompts per generation / judging chunk (a crash loses at most one chunk)", role="runtime")
    overwrite: bool = opt(False, "clear DIR when it was generated with a different model or sampling config", role="control")


def evaluate(args: EvaluateArgs, spec: ModelSpec, backend: BackendConfig, guard_cfg: GuardConfig) -> dict[str, Any]:
    """`thinksafe evaluate`: the stage in args.out (cached there once done); returns results.json."""
    return EVALUATE.run_command(args, model=spec, backend=backend, guard=guard_cfg).results


def check_args(args: EvaluateArgs) -> None:
    if args.samples < 1 or args.check_timeout <= 0 or args.bootstrap < 1:
        raise ConfigError("evaluate: --samples and --bootstrap must be >= 1, --check-timeout > 0")


def bench_runs(args: EvaluateArgs, out: Path) -> list[BenchRun]:
    """Every benchmark's items (after --limit) and files; a missing data file fails here, before any model loads."""
    return [BenchRun(b, sample(b.load(args.data_dir, include_copyright=args.include_copyright), args.limit, args.seed),
                     out / "raw" / f"{b.name}.jsonl", out / f"{b.name}.jsonl")
            for b in select(args.benchmarks)]


def run_evaluation(job: Job) -> dict[str, Any]:
    t0 = time.perf_counter()
    args, spec = job.settings, job.model
    sampling = {reasoning: sampling_params(args, reasoning) for reasoning in (False, True)}
    runs = job.prepared  # bench_runs(args, job.out), by prepare()
    fmt = generate_all(runs, spec, job.backend, sampling, args)
    score_all(runs, fmt, job.guard, args, job.backend.progress)
    results = {
        "model": vars(spec),
        "judge": vars(job.guard),
        "data_dir": args.data_dir,
        "limit": args.limit,
        "seed": args.seed,
        "benchmarks": {r.bench.name: bench_result(r, args, spec, sampling) for r in runs},
    }
    results["averages"] = averages(results["benchmarks"])
    results["wall_seconds"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(job.out / "results.json", results)
    print_results(results, job.out)
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


def _pct(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "—"
    ci = entry.get("ci95")
    return f"{100 * entry['value']:.1f}" + (f" ± {100 * (ci[1] - ci[0]) / 2:.1f}" if ci else "")


def print_results(results: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    wide = wide_console()
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


# ---------------------------------------------------------------- the stage


@dataclass
class EvaluateOutput:
    dir: Path
    results: dict[str, Any] | None

    def records(self, benchmark: str) -> dict[str, dict]:
        """The scored per-prompt records of one benchmark, by prompt id."""
        from thinksafe.records import read_jsonl

        path = self.dir / f"{benchmark}.jsonl"
        return {r["id"]: r for r in read_jsonl(path)} if path.exists() else {}


class Evaluate(Stage):
    name = "evaluate"
    help = "safety and reasoning benchmarks with CIs"
    description = ("Safety (harmful-response rate), over-refusal (XSTest) and reasoning (pass@1) benchmarks with "
                   "bootstrap 95% CIs; DIR/results.json plus one JSONL per benchmark. Rerun the same command to resume.")
    Settings = EvaluateArgs
    uses = ("model", "backend", "guard")

    def command_job(self, settings: EvaluateArgs, **shared: Any) -> Job:
        job = super().command_job(replace(settings, judge=None), **shared)
        return replace(job, guard=with_judge(job.guard, settings.judge))  # --judge names the guard

    def key(self, job: Job) -> dict[str, Any]:
        s = job.settings
        return {"generation": {**{k: getattr(s, k) for k in GENERATION}, "model": job.model.key(),
                               "backend": job.backend.key()},
                "items": {k: getattr(s, k) for k in ITEMS},
                "scoring": {**{k: getattr(s, k) for k in SCORING}, "guard": job.guard.key()},
                "summary": {k: getattr(s, k) for k in SUMMARY}}

    def reuse(self, changed: set[str]) -> list[str] | None:
        # The scored files derive from the raw generations, which stay valid for other prompts or judges;
        # results.json is replaced atomically at the end, so a failed re-score keeps the previous one.
        if changed <= {"summary"}:
            return []
        return ["*.jsonl"] if changed <= {"items", "scoring", "summary"} else None

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        # Evaluate what the upstream stage trained: its adapter on the base model.
        return replace(job, model=replace(job.model, adapter=str(upstream[0].adapter))) if upstream else job

    def prepare(self, job: Job) -> list[BenchRun]:
        check_args(job.settings)
        return bench_runs(job.settings, job.out)

    def run(self, job: Job) -> Counts:
        benches = run_evaluation(job)["benchmarks"].values()
        return Counts(tokens_generated=sum(b["tokens"]["completion"] for b in benches),
                      tokens_prompt=sum(b["tokens"]["prompt"] for b in benches))

    def read(self, out: Path) -> EvaluateOutput:
        return EvaluateOutput(out, read_json(out / "results.json", missing_ok=True))


EVALUATE = Evaluate()
