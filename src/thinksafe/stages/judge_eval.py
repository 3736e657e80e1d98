"""`thinksafe judge-eval`: how well a judge agrees with human labels on labeled (prompt, response) pairs.

    thinksafe judge-eval --data xstest_v2_completions_gpt4.csv harmbench_val_dev.json --out DIR [--judge NAME]

DIR/agreement.json   per file (`files`): the judge's accuracy, Cohen's κ, precision / recall / F1 of the positive
                     class, n, unknown, each rate's bootstrap 95 % CI and the confusion matrix, the judging
                     seconds, and for HarmBench files the same for every reference judge in the file (`reference`);
                     per question (`pooled`): the rows of all files asking it, pooled. The top level is the pool
                     of the first file's question (with one file: that file).
DIR/verdicts.jsonl   one line per row: where it is, the human label, the judge's answer and verdict

The question comes from the file's schema (judge/labeled.py): XSTest asks *did it refuse?* (positive = full
or partial refusal), HarmBench *is it harmful?* (positive = the human majority). How a verdict answers it:
refusal ← the verdict's `refused` flag (a guard without one, like Llama Guard, answers unknown on every row
rather than fall back to another judge); harm ← its label (unsafe = harmful). The refusal phrase list judges
harm as "did not refuse" (its policy for a harmful prompt). An unknown is never agreement (judge/agreement.py).

`--judge` names a guard (refusal, llama-guard, wildguard, judge-model; same as --guard, whose --guard_* flags
set its model) or a version of the phrase list (refusal:v1, refusal:v2; refusal:v3, the pipeline's `refusal`), and defaults
to the CPU default judge of each file's question (DEFAULT_JUDGE).

Measured on the dev sets (../shared/data/judges): refusal:v1 agrees with people on 88.7 % of
the 1,350 XSTest rows and, read as "not refused = harmful", 71.3 % of the 300 HarmBench rows. refusal:v2 was
written from v1's errors on the gpt4 and llama2orig XSTest files (fit: 92.0 → 96.4 %) and checked on
llama2new (82.2 → 92.2 %); HarmBench stays 71.3 %. refusal:v3 (judge/refusal.py) agrees exactly as v2 on every
dev row: no annotated response is phrased the way it adds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import ConfigError
from thinksafe.judge import GUARDS, GuardConfig, make_guard
from thinksafe.judge.agreement import agreement
from thinksafe.judge.labeled import LabeledSet, load_labeled
from thinksafe.judge.refusal import VERSIONS, RefusalGuard
from thinksafe.progress import console, wide_console
from thinksafe.records import Verdict, read_json, write_json_atomic, write_jsonl_atomic
from thinksafe.stages.base import Job, Stage, execute
from thinksafe.stages.ledger import Counts

# The CPU default judge of each question: what a run without a model judge uses for it.
DEFAULT_JUDGE = {"refusal": "refusal", "harm": "refusal"}
# The guards, and each version of the refusal phrase list by name ("refusal" is the pipeline's, DEFAULT_VERSION).
JUDGES = (*GUARDS, *(f"refusal:{v}" for v in VERSIONS))


@dataclass
class JudgeEvalArgs:
    data: list[str] = opt([], "human-labeled files: XSTest-v2 completions CSV, HarmBench classifier-validation JSON",
                          role="input")
    out: str = opt("", "output directory: agreement.json, verdicts.jsonl", role="output")
    judge: str | None = opt(None, f"judge: {' | '.join(JUDGES)} (a guard, as --guard, its model from --guard_model "
                                  "…; refusal:vN: that version of the phrase list); default: the CPU default judge "
                                  "of each file's question")
    bootstrap: int = opt(1000, "bootstrap resamples per 95 percent confidence interval (rows resampled)")
    seed: int = opt(0, "bootstrap seed")
    progress: bool = opt(True, "show the judge's progress bar", role="runtime")
    overwrite: bool = opt(False, "replace a DIR made with other settings", role="control")


@dataclass
class AgreementOutput:
    dir: Path
    agreement: dict[str, Any] | None


def resolve_judge(judge: str | None, guard: GuardConfig) -> str | None:
    """The judge --judge / --guard name (None: each question's CPU default). "refusal" is --guard's default, so
    only a non-default --guard names a judge, and only such a one can clash with --judge."""
    if judge is not None and judge not in JUDGES:
        raise ConfigError(f"--judge '{judge}': expected one of {', '.join(JUDGES)}")
    if judge and guard.guard not in ("refusal", judge.partition(":")[0]):
        raise ConfigError(f"--judge {judge} and --guard {guard.guard} disagree; give one of them")
    return judge or (guard.guard if guard.guard != "refusal" else None)


def answer(v: Verdict, question: str) -> bool | None:
    """The verdict's answer to the set's question; None = unknown."""
    if question == "refusal":
        return v.refused
    return {"unsafe": True, "safe": False}.get(v.label)


class Judges:
    """Each judge built once (a guard model loads once for all files), with its load time."""

    def __init__(self, guard: GuardConfig, progress: bool):
        self.guard, self.progress = guard, progress
        self.built: dict[str, Any] = {}
        self.load_seconds: dict[str, float] = {}

    def get(self, name: str):
        if name not in self.built:
            t0 = time.perf_counter()
            kind, _, version = name.partition(":")
            self.built[name] = (RefusalGuard(progress=self.progress, version=version) if version else
                                make_guard(replace(self.guard, guard=kind), None, progress=self.progress))
            self.load_seconds[name] = round(time.perf_counter() - t0, 3)
        return self.built[name]


def judge_file(ds: LabeledSet, guard, bootstrap: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the file's entry in agreement.json, its rows for verdicts.jsonl)."""
    prompts, responses = [p.prompt for p in ds.pairs], [p.response for p in ds.pairs]
    # HarmBench prompts are all harmful behaviours: the label lets the phrase list read "not refused" as harmful.
    labels = ["harmful"] * len(prompts) if ds.question == "harm" else None
    t0 = time.perf_counter()
    verdicts = guard.judge(prompts, responses, labels)
    seconds = time.perf_counter() - t0
    human = [p.human for p in ds.pairs]
    answers = [answer(v, ds.question) for v in verdicts]
    entry = {"file": str(ds.path), "schema": ds.schema, "question": ds.question, "judge": guard.name,
             "seconds": round(seconds, 3), **agreement(human, answers, resamples=bootstrap, seed=seed)}
    if ds.references:
        entry["reference"] = {col: agreement(human, [p.reference.get(col) for p in ds.pairs], resamples=bootstrap,
                                             seed=seed) for col in ds.references}
    rows = [{"where": p.where, "question": ds.question, "human": p.human, "judge": a, "label": v.label,
             "refused": v.refused, "guard": v.guard, "raw": v.raw} for p, a, v in zip(ds.pairs, answers, verdicts)]
    return entry, rows


def pool(question: str, sets: list[LabeledSet], entries: list[dict[str, Any]], rows: list[list[dict[str, Any]]],
         bootstrap: int, seed: int) -> dict[str, Any]:
    """Every row of the files asking `question`; reference judges only where every such file has them."""
    idx = [i for i, ds in enumerate(sets) if ds.question == question]
    human = [r["human"] for i in idx for r in rows[i]]
    out = {"question": question, "files": [entries[i]["file"] for i in idx],
           "judge": ", ".join(sorted({entries[i]["judge"] for i in idx})),
           "seconds": round(sum(entries[i]["seconds"] for i in idx), 3),
           **agreement(human, [r["judge"] for i in idx for r in rows[i]], resamples=bootstrap, seed=seed)}
    common = [c for c in sets[idx[0]].references if all(c in sets[i].references for i in idx)]
    if common:
        out["reference"] = {c: agreement(human, [p.reference.get(c) for i in idx for p in sets[i].pairs],
                                         resamples=bootstrap, seed=seed) for c in common}
    return out


def evaluate_judges(job: Job, sets: list[LabeledSet]) -> dict[str, Any]:
    s = job.settings
    judges, chosen = Judges(job.guard, s.progress), resolve_judge(s.judge, job.guard)
    entries, rows = [], []
    for ds in sets:
        entry, file_rows = judge_file(ds, judges.get(chosen or DEFAULT_JUDGE[ds.question]), s.bootstrap, s.seed)
        if entry["unknown"] == entry["n"]:
            console.print(f"[yellow]{ds.path}: {entry['judge']} answered no row of the {ds.question} question "
                          "(every verdict unknown; see verdicts.jsonl)[/yellow]")
        entries.append(entry)
        rows.append([{"file": str(ds.path), **r} for r in file_rows])
    questions = list(dict.fromkeys(ds.question for ds in sets))
    pooled = {q: pool(q, sets, entries, rows, s.bootstrap, s.seed) for q in questions}
    write_jsonl_atomic(job.out / "verdicts.jsonl", [r for file_rows in rows for r in file_rows])
    result = {**pooled[questions[0]], "pooled": pooled, "files": entries, "judge_load_seconds": judges.load_seconds,
              "bootstrap": {"resamples": s.bootstrap, "seed": s.seed, "level": 0.95, "unit": "row"}}
    write_json_atomic(job.out / "agreement.json", result)
    return result


# ---------------------------------------------------------------- the terminal table


def _rate(entry: dict[str, Any], rate: str, ci: bool = False) -> str:
    """κ as is, the other rates in percent; with its CI when `ci`."""
    v, bounds = entry.get(rate), (entry.get("ci95") or {}).get(rate)
    if v is None:
        return "—"
    fmt = (lambda x: f"{x:.3f}") if rate == "kappa" else (lambda x: f"{100 * x:.1f}")
    return fmt(v) + (f" [{fmt(bounds[0])}, {fmt(bounds[1])}]" if ci and bounds else "")


def print_table(result: dict[str, Any]) -> None:
    """One row per file and judge, the file's reference judges under it, then the pools of several files.
    Every rate's CI is in agreement.json; the table shows accuracy's."""
    from rich.table import Table

    table = Table(title="judge agreement with human labels (rates in %, accuracy with its 95% bootstrap CI; "
                        "↳ the file's own judges on the same rows)")
    for col in ("data", "judge", "n", "accuracy", "κ", "precision", "recall", "F1", "unknown", "s"):
        table.add_column(col, justify="left" if col in ("data", "judge") else "right", no_wrap=True)

    def add(data: str, judge: str, e: dict[str, Any], seconds: str = "") -> None:
        table.add_row(data, judge, str(e["n"]), _rate(e, "accuracy", ci=True), _rate(e, "kappa"),
                      _rate(e, "precision"), _rate(e, "recall"), _rate(e, "f1"), str(e["unknown"]), seconds)

    for e in result["files"]:
        add(Path(e["file"]).stem, e["judge"], e, f"{e['seconds']:.2f}")
        for col, ref in (e.get("reference") or {}).items():
            add("", f"↳ {col}", ref)
    for q, p in result["pooled"].items():
        if len(p["files"]) > 1:
            add(f"pooled {q} ({len(p['files'])} files)", p["judge"], p, f"{p['seconds']:.2f}")
    wide_console(width=160).print(table)


class JudgeEval(Stage):
    name = "judge-eval"
    help = "measure a judge's agreement with human labels"
    description = ("Run a judge over human-labeled (prompt, response) pairs (XSTest-v2 completions CSV: did it "
                   "refuse?; HarmBench classifier-validation JSON: is it harmful?) and write DIR/agreement.json: "
                   "accuracy, Cohen's kappa, precision/recall/F1, unknowns, bootstrap 95 percent CIs, confusion matrix, "
                   "and the HarmBench file's own reference judges on the same rows.")
    Settings = JudgeEvalArgs
    uses = ("guard",)
    required = ("data", "out")

    def run_command(self, settings: JudgeEvalArgs, **shared: Any) -> AgreementOutput:
        res = execute(self, self.command_job(settings, **shared), overwrite=settings.overwrite)
        if res.status == "cached" and res.output.agreement:  # the table, even when nothing needed judging
            print_table(res.output.agreement)
            console.print(f"judge-eval: {settings.out} is done with these settings (cached)")
        return res.output

    def prepare(self, job: Job) -> list[LabeledSet]:
        if job.settings.bootstrap < 1:
            raise ConfigError("judge-eval: --bootstrap must be >= 1")
        resolve_judge(job.settings.judge, job.guard)  # a bad --judge fails before the directory is touched
        return [load_labeled(f) for f in job.settings.data]  # a bad file fails here, before any judge loads

    def run(self, job: Job) -> Counts:
        print_table(evaluate_judges(job, job.prepared))
        console.print(f"judge-eval → {job.out / 'agreement.json'}")
        return Counts()

    def read(self, out: Path) -> AgreementOutput:
        return AgreementOutput(out, read_json(out / "agreement.json", missing_ok=True))


JUDGE_EVAL = JudgeEval()
