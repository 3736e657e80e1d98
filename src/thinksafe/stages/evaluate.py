"""`thinksafe evaluate`: the stage that runs the benchmarks and writes their results.

DIR/raw/<benchmark>.jsonl   every generation as it comes (resume point of the generation phase)
DIR/<benchmark>.jsonl       one record per prompt: its responses with their verdicts, or parsed answers and correctness
DIR/results.json            per benchmark: metric, value, 95% CI, n, unknown, judge, sampling, model, tokens, time,
                            trace health (think models); the paper's safety / reasoning averages when all four ran
DIR/manifest.json           the prompt ids evaluated per benchmark: `--manifest` evaluates exactly them again

The paper's protocol (SkyThought): 8 samples per reasoning problem at temperature 0.6 / top-p 0.95, 32,768 new
tokens, accuracy averaged over all samples (configs/paper-*.yaml); top-k is the model family's (families.py).

Phases: load every benchmark (a missing file fails before any model loads) → generate, one model load for all
benchmarks → free the model → judge the safety sets (a guard model may load now) and grade the reasoning sets
(evaluate/scoring.py) → results. Each phase appends per chunk and skips what is on disk, so a rerun resumes.
Its key has four parts: what the generations depend on, which prompts (the benchmarks, --limit or --manifest, and
the content of the manifest and of the user's own benchmark files), how they are scored, and how they are
summarized; when only the last three change (a new judge, a new --limit or manifest, a new bootstrap count or
pass@k) the saved generations are kept and re-scored.
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
from thinksafe.evaluate.benchmarks import BENCHMARKS, local_files, select
from thinksafe.evaluate.manifest import frozen_items, manifest, read_manifest
from thinksafe.evaluate.scoring import BenchRun, averages, bench_result, score_all
from thinksafe.evaluate.show import print_results
from thinksafe.evaluate.traces import token_counter
from thinksafe.families import describe_top_k, resolve_top_k
from thinksafe.formats import ChatFormat
from thinksafe.generate import BackendConfig, SamplingParams, make_generator
from thinksafe.generate.to_file import drop_partial, generate_to_file
from thinksafe.judge import GUARDS, GuardConfig
from thinksafe.models import ModelSpec, load_tokenizer
from thinksafe.progress import plural
from thinksafe.prompts import sample
from thinksafe.records import done_ids, read_json, write_json_atomic
from thinksafe.stages.base import Job, Stage, fingerprint
from thinksafe.stages.ledger import Counts

GENERATION = ("temperature", "top_p", "top_k", "max_new_tokens", "reasoning_max_new_tokens", "samples", "safety_samples",
              "seed")
ITEMS = ("benchmarks", "data_dir", "limit", "include_copyright", "manifest")
SCORING = ("check_timeout",)
SUMMARY = ("bootstrap", "pass_k")


@dataclass
class EvaluateArgs:
    benchmarks: str = opt("harmbench,strongreject,xstest,gsm8k", f"comma-separated, from: {', '.join(BENCHMARKS)}; "
                          "or your own file as NAME=PATH:KIND, KIND safety | overrefusal | reasoning (evaluate/custom.py)")
    out: str = opt("", "output directory (rerun the same command to resume)", role="output")
    data_dir: str | None = opt(None, "directory laid out like the reference data (safety/…, reasoning/…); sets missing there come from the hub")
    limit: int | None = opt(None, "at most N prompts per benchmark, sampled with --seed: every model with the same N sees the same prompts")
    manifest: str | None = opt(None, "a manifest.json of an earlier evaluation: evaluate exactly its prompt ids per "
                                     "benchmark (an id missing from the data is an error); not with --limit")
    samples: int = opt(1, "samples per reasoning problem (paper: 8); pass@1 = accuracy over all samples")
    safety_samples: int = opt(1, "samples per safety / over-refusal prompt; with K > 1: rates over all samples, and Safe@K "
                                 "(prompts whose K samples are all safe)")
    pass_k: list[int] = opt([], "also report pass@k for these k (each <= --samples), unbiased estimator (Chen et al. 2021)")
    judge: str | None = opt(None, f"safety judge: {' | '.join(GUARDS)} (same as --guard; default refusal)")
    include_copyright: bool = opt(False, "harmbench-behaviors: keep the copyright rows (HarmBench scores them by hashing, not a judge)")
    temperature: float = opt(0.6, "sampling temperature (paper: 0.6)")
    top_p: float = opt(0.95, "nucleus mass (paper: 0.95)")
    top_k: int | None = opt(None, "top-k, 0 = off (default: the model family's: 20 for Qwen3, off for R1-Distill and the rest)")
    max_new_tokens: int = opt(512, "max new tokens per response (CPU preset; the paper: 16k on safety sets)")
    reasoning_max_new_tokens: int | None = opt(None, "max new tokens on reasoning benchmarks (default: --max_new_tokens; "
                                                     "the paper: 32768); lets safety sets stay short")
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
    if args.safety_samples < 1:
        raise ConfigError("evaluate: --safety-samples must be >= 1")
    if any(not 1 <= k <= args.samples for k in args.pass_k):
        raise ConfigError(f"evaluate: --pass-k {' '.join(map(str, args.pass_k))}: each k must be between 1 and "
                          f"--samples ({args.samples})")
    if args.manifest and args.limit is not None:
        raise ConfigError("evaluate: give --limit or --manifest, not both (the manifest fixes the prompts)")


def bench_runs(args: EvaluateArgs, out: Path) -> list[BenchRun]:
    """Every benchmark's items (after --limit, or those --manifest names) and files; a missing data file or a
    manifest id missing from the data fails here, before any model loads."""
    frozen = read_manifest(args.manifest) if args.manifest else None
    runs = []
    for b in select(args.benchmarks):
        items = b.load(args.data_dir, include_copyright=args.include_copyright)
        items = frozen_items(b, items, frozen, args.manifest) if frozen is not None else sample(items, args.limit, args.seed)
        runs.append(BenchRun(b, items, out / "raw" / f"{b.name}.jsonl", out / f"{b.name}.jsonl"))
    return runs


def run_evaluation(job: Job) -> dict[str, Any]:
    t0 = time.perf_counter()
    args, spec = job.settings, job.model
    runs = job.prepared  # bench_runs(args, job.out), by prepare()
    write_json_atomic(job.out / "manifest.json", manifest([(r.bench, r.items) for r in runs], args.limit, args.seed))
    fmt, sampling = generate_all(runs, spec, job.backend, args)
    count = token_counter(spec) if fmt.reasoning == "think" else None  # trace health: reasoning / answer tokens
    score_all(runs, fmt, job.guard, args, job.backend.progress, count)
    results = {
        "model": vars(spec),
        "judge": vars(job.guard),
        "data_dir": args.data_dir,
        "limit": args.limit,
        "manifest": args.manifest,
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


def samples_for(args: EvaluateArgs, kind: str) -> int:
    return args.samples if kind == "reasoning" else args.safety_samples


def sampling_params(args: EvaluateArgs, reasoning: bool, model: str, fmt: ChatFormat) -> SamplingParams:
    """Reasoning benchmarks: --samples per problem and their own token limit; safety prompts: --safety-samples.
    Top-k: the setting, else the model family's (families.py)."""
    tokens = (args.reasoning_max_new_tokens or args.max_new_tokens) if reasoning else args.max_new_tokens
    return SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=resolve_top_k(args.top_k, model, fmt),
                          max_new_tokens=tokens, n=samples_for(args, "reasoning" if reasoning else "safety"),
                          seed=args.seed)


def generate_all(runs: list[BenchRun], spec: ModelSpec, backend: BackendConfig,
                 args: EvaluateArgs) -> tuple[ChatFormat, dict[bool, SamplingParams]]:
    """Generate for every benchmark with one model load; no load at all when everything is on disk. Returns the
    chat format and the sampling of reasoning (True) and other (False) sets."""
    for r in runs:
        drop_partial(r.raw, samples_for(args, r.bench.kind))
    pending = [r for r in runs if {i.id for i in r.items} - done_ids(r.raw, key="prompt_id")]
    if not pending:
        fmt = ChatFormat.detect(load_tokenizer(spec), spec.reasoning)
        return fmt, {reasoning: sampling_params(args, reasoning, spec.model, fmt) for reasoning in (False, True)}
    generator = make_generator(spec, backend)
    fmt = generator.format
    sampling = {reasoning: sampling_params(args, reasoning, spec.model, fmt) for reasoning in (False, True)}
    for r in pending:
        stats = generate_to_file(
            generator, [i.to_prompt(r.bench.name) for i in r.items], sampling[r.bench.kind == "reasoning"], r.raw,
            chunk_size=args.chunk_size, meta={"model": spec.model, "adapter": spec.adapter, "benchmark": r.bench.name},
        )
        r.seconds["generate"] = round(stats.seconds, 2)
    del generator  # free the model before a guard model loads
    gc.collect()
    return fmt, sampling


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
        # The content of the user's own files (benchmarks, manifest), as base.settings_key hashes input files.
        files = [*local_files(select(s.benchmarks)), *([s.manifest] if s.manifest else [])]
        return {"generation": {**{k: getattr(s, k) for k in GENERATION}, "model": job.model.key(),
                               "backend": job.backend.key()},
                "items": {**{k: getattr(s, k) for k in ITEMS}, "files": {f: fingerprint(f) for f in files}},
                "scoring": {**{k: getattr(s, k) for k in SCORING}, "guard": job.guard.key()},
                "summary": {k: getattr(s, k) for k in SUMMARY}}

    def summary(self, job: Job) -> str:
        s = job.settings
        reasoning = (f"reasoning: {plural(s.samples, 'sample')} x {s.reasoning_max_new_tokens or s.max_new_tokens:,} new tokens, "
                     "pass@1 = accuracy over all samples" + (f", pass@{'/'.join(map(str, s.pass_k))}" if s.pass_k else ""))
        safety = (f"safety: {plural(s.safety_samples, 'sample')} x {s.max_new_tokens:,} new tokens"
                  + (f", Safe@{s.safety_samples}" if s.safety_samples > 1 else ""))
        subset = f"the prompts of {s.manifest}" if s.manifest else f"limit {s.limit}" if s.limit else "all prompts"
        return (f"{reasoning}; {safety}; temperature {s.temperature}, top-p {s.top_p}, "
                f"top-k {describe_top_k(s.top_k, job.model.model)}; {subset}")

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
