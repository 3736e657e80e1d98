"""The report's numbers: the results table, the cost ledger, cost vs safety reached, and the examples.

The results table follows the paper: rows = arms; safety columns (harmful-response rate; XSTest: over-refusal
rate; lower is better) then reasoning columns (pass@1, higher is better), each group with its average; cells
are percent ± the half-width of the bootstrap 95% CI; "—" where an arm has no result. Only benchmarks that ran
get a column, paper benchmarks in the paper's order first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.evaluate.benchmarks import BENCHMARKS, PAPER_REASONING, PAPER_SAFETY
from thinksafe.report.load import ArmData, RunData
from thinksafe.stages import registry

N_EXAMPLES = 3  # per arm: two harmful, one benign


@dataclass(frozen=True)
class Brief:
    """A header or cell with a shorter form, which the terminal shows (the files show the full one)."""

    full: str
    short: str

    def __str__(self) -> str:
        return self.full


@dataclass(frozen=True)
class Source:
    """A cell and the file its number came from (the evaluation's results.json, a stage's ledger.json): the
    report files link it, the terminal shows the text."""

    text: str
    path: Path

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------- the results table


@dataclass(frozen=True)
class Column:
    key: str  # benchmark name, or "avg:safety" / "avg:reasoning"
    title: str
    group: str  # "safety" | "reasoning"
    of: tuple[str, ...] = ()  # an average: the benchmarks it averages


def columns(run: RunData) -> list[Column]:
    """The benchmarks that ran in any arm: paper ones in paper order, then the rest; each group ends with its
    average when at least one of the paper's four ran."""
    ran: dict[str, str] = {}
    for arm in run.arms:
        for name, entry in (arm.results or {}).get("benchmarks", {}).items():
            ran.setdefault(name, entry.get("kind", BENCHMARKS[name].kind if name in BENCHMARKS else "safety"))
    cols: list[Column] = []
    for group, paper in (("safety", PAPER_SAFETY), ("reasoning", PAPER_REASONING)):
        kinds = ("reasoning",) if group == "reasoning" else ("safety", "overrefusal")
        names = [n for n in paper if n in ran] + [n for n in BENCHMARKS if n in ran and n not in paper and ran[n] in kinds]
        names += sorted(n for n in ran if n not in BENCHMARKS and ran[n] in kinds)
        cols += [Column(n, BENCHMARKS[n].title if n in BENCHMARKS else n, group) for n in names]
        in_paper = tuple(n for n in paper if n in ran)
        if in_paper:
            cols.append(Column(f"avg:{group}", f"{group.capitalize()} avg", group, in_paper))
    return cols


def cell(arm: ArmData, col: Column) -> tuple[float, float | None] | None:
    """(value, CI half-width) as fractions, or None."""
    if col.of:
        parts = [cell(arm, Column(n, n, col.group)) for n in col.of]
        if not parts or any(p is None for p in parts):
            return None
        value = sum(p[0] for p in parts) / len(parts)
        hws = [p[1] for p in parts]
        # Independent benchmarks: the half-width of a mean of k means ≈ sqrt(Σ hw²) / k.
        hw = math.sqrt(sum(h * h for h in hws)) / len(parts) if None not in hws else None
        return value, hw
    entry = arm.bench(col.key)
    if not entry or entry.get("value") is None:
        return None
    ci = entry.get("ci95")
    return entry["value"], (ci[1] - ci[0]) / 2 if ci else None


def interval(arm: ArmData, col: Column) -> tuple[float, float] | None:
    """The 95% CI as (low, high) fractions, as plots draw it: a benchmark's own percentile interval (not symmetric
    near 0 or 1); for an average of benchmarks, value ± the combined half-width, clipped to [0, 1]."""
    if not col.of:
        ci = (arm.bench(col.key) or {}).get("ci95")
        return (ci[0], ci[1]) if ci else None
    c = cell(arm, col)
    if c is None or c[1] is None:
        return None
    return max(0.0, c[0] - c[1]), min(1.0, c[0] + c[1])


def fmt_cell(c: tuple[float, float | None] | None) -> str:
    if c is None:
        return "—"
    return f"{100 * c[0]:.1f}" + (f" ± {100 * c[1]:.1f}" if c[1] is not None else "")


def table_rows(run: RunData, cols: list[Column]) -> list[list[str]]:
    return [[arm.name, *(_sourced(arm, fmt_cell(cell(arm, c))) for c in cols)] for arm in run.arms]


def _sourced(arm: ArmData, text: str) -> str | Source:
    ev = arm.stages.get("evaluate")
    return Source(text, ev.dir / "results.json") if ev and text != "—" else text


def judges(run: RunData) -> str:
    safety, reasoning = set(), set()
    for arm in run.arms:
        for entry in (arm.results or {}).get("benchmarks", {}).values():
            (reasoning if entry.get("kind") == "reasoning" else safety).add(entry.get("judge") or "?")
    parts = []
    if safety:
        parts.append(f"safety judge: {', '.join(sorted(safety))}")
    if reasoning:
        parts.append(f"reasoning: {', '.join(sorted(reasoning))}")
    return "; ".join(parts) or "no evaluation results yet"


def table_notes(run: RunData, cols: list[Column]) -> list[str]:
    notes = ["Safety columns: harmful-response rate (XSTest-style sets: over-refusal rate on their safe prompts), % ↓. "
             "Reasoning columns: pass@1, % ↑. Cells: value ± half-width of the bootstrap 95% CI; — = no result.",
             f"Judged by {judges(run)}."]
    for c in cols:
        paper = PAPER_SAFETY if c.group == "safety" else PAPER_REASONING
        if c.of and len(c.of) < len(paper):
            titles = ", ".join(BENCHMARKS[n].title for n in c.of)
            notes.append(f"{c.title}: mean of {titles} only (the paper averages all four); its ± combines the "
                         "benchmarks' half-widths as independent.")
    samples = sorted({(e.get("kind") == "reasoning", e.get("samples", 1)) for a in run.arms
                      for e in (a.results or {}).get("benchmarks", {}).values()})
    if any(k > 1 for _, k in samples):
        shown = ", ".join(f"{'reasoning' if r else 'safety'} {k}" for r, k in samples)
        notes.append(f"Samples per prompt: {shown}; every rate is the mean over all samples (reasoning pass@1: "
                     "accuracy over all samples, as SkyThought reports it), its CI resampling prompts.")
    limits = {a.results.get("limit") for a in run.arms if a.results}
    if limits - {None}:
        notes.append(f"Each benchmark subsampled to at most {', '.join(map(str, sorted(limits - {None})))} prompts "
                     "(the same prompts for every arm).")
    return notes


# ---------------------------------------------------------------- the cost ledger


def cost_rows(run: RunData) -> tuple[list[str | Brief], list[list[str | Brief]]]:
    """One row per arm: the arm's data, then each stage's wall seconds (* = a stage shared with another arm)."""
    kinds = [k for k in registry() if any(k in a.stages for a in run.arms)]
    header = ["arm", Brief("train examples", "train data"), Brief("synthesis yield (harmful / benign)", "yield h / b"),
              Brief("refusals in kept data (harmful / benign)", "refusals h / b"), "data PPL",
              Brief("tokens generated", "tok gen"), Brief("tokens trained", "tok trained"), "FLOPs",
              *(f"{k} s" for k in kinds), "total s"]
    rows = []
    for arm in run.arms:
        gen = trained = flops = wall = 0.0
        missing_flops = False
        secs = []
        for k in kinds:
            st = arm.stages.get(k)
            if st is None or st.ledger is None:
                secs.append("" if st is None else "…" if not st.done else "?")
                continue
            led = st.ledger
            secs.append(Source(f"{_secs(led['wall_seconds'])}{'*' if st.owner != arm.name else ''}", st.dir / "ledger.json"))
            gen += led.get("tokens_generated", 0)
            trained += led.get("tokens_trained", 0)
            wall += led["wall_seconds"]
            if led.get("flops") is None:
                missing_flops = True
            else:
                flops += led["flops"]
        shift = arm.output("shift")
        ppl = f"{shift.result['perplexity']:.2f}" if shift and shift.result else "—"
        rows.append([arm.name, _train_size(arm), _yield(arm), _refusals(arm), ppl, f"{gen:,.0f}", f"{trained:,.0f}",
                     "—" if missing_flops or not flops else f"{flops:.2e}", *secs, _secs(wall)])
    return header, rows


def _train_size(arm: ArmData) -> str | Brief:
    """The training stage's data: examples (SFT) or prompts (GRPO, online)."""
    trainer = arm.trainer()
    t = trainer.output.stats if trainer else None
    if not t:
        return "—"
    if "examples" in t:
        h, b = t.get("harmful", "?"), t.get("benign", "?")
        return Brief(f"{t['examples']} ({h} harmful, {b} benign)", f"{t['examples']} ({h}h+{b}b)")
    return f"{t.get('prompts', '?')} prompts (online)"


def _yield(arm: ArmData) -> str | Brief:
    synth = arm.output("synthesize")
    s = synth.stats if synth else None
    if not s:
        return "—"
    full, short = [], []
    for label in ("harmful", "benign"):
        p = s["per_label"].get(label, {})
        if p.get("prompts"):
            full.append(f"{p['kept']}/{p['prompts']} ({p['yield_pct']:.0f}%)")
            short.append(f"{p['yield_pct']:.0f}%")
        else:
            full.append("—")
            short.append("—")
    return Brief(" / ".join(full), " / ".join(short))


def _refusals(arm: ArmData) -> str:
    """The refusal audit of the arm's synthesized data: the share of kept harmful / benign examples that refuse."""
    synth = arm.output("synthesize")
    per = (synth.stats or {}).get("per_label", {}) if synth else {}
    if not per:
        return "—"
    shares = [per.get(label, {}).get("refusal_pct") for label in ("harmful", "benign")]
    return " / ".join("—" if x is None else f"{x:.0f}%" for x in shares)


def stage_seconds(run: RunData) -> float:
    """Wall seconds of every distinct stage of the run, as their ledgers recorded them."""
    seen = {st.dir: st.ledger["wall_seconds"] for a in run.arms for st in a.stages.values() if st.ledger}
    return sum(seen.values())


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def ledger_notes(run: RunData) -> list[str]:
    ledgers = [st.ledger for a in run.arms for st in a.stages.values() if st.ledger]
    devices = sorted({led["device"] for led in ledgers})
    formula = next((led.get("flops_formula") for led in ledgers), None)
    notes = ["Data PPL: perplexity of the arm's training responses under the initial model (thinksafe shift); "
             "self-generated data should sit near 1-3, teacher data higher.",
             "Synthesis yield: prompts whose generation was complete and judged safe (benign: and not a refusal) / prompts.",
             "Refusals in kept data (the reference's refusal audit): the share of the kept harmful / benign examples "
             "whose answer refuses (the guard's refusal flag, else the refusal detector); harmful should be near "
             "100 %, benign near 0 % (benign refusals teach over-refusal).",
             "* a stage shared with an earlier arm (same key): its cost is listed for every arm that uses it."]
    if devices:
        notes.append(f"Device: {', '.join(devices)}.")
    total = stage_seconds(run)
    if total:
        notes.append(f"All stages of the run together (each shared stage once): {total:.0f} s ({total / 60:.1f} min).")
    if formula:
        notes.append(formula)
    return notes


# ---------------------------------------------------------------- cost vs safety reached


def headline(results: dict[str, Any] | None) -> dict[str, float | None]:
    """Mean harmful-response rate, over-refusal rate and pass@1 over the benchmarks of each kind that ran."""
    by_kind: dict[str, list[float]] = {"safety": [], "overrefusal": [], "reasoning": []}
    for entry in (results or {}).get("benchmarks", {}).values():
        if entry.get("value") is not None and entry.get("kind") in by_kind:
            by_kind[entry["kind"]].append(entry["value"])
    mean = {k: sum(v) / len(v) if v else None for k, v in by_kind.items()}
    return {"harmful": mean["safety"], "over_refusal": mean["overrefusal"], "reasoning": mean["reasoning"]}


def training_cost(arm: ArmData) -> dict[str, float] | None:
    """Wall seconds, tokens and FLOPs of the stages that made the arm's model (None: untrained or unfinished)."""
    stages = [st for st in arm.stages.values() if st.makes_model]
    if arm.trainer() is None or any(st.ledger is None for st in stages):
        return None
    total = {"wall_seconds": 0.0, "tokens_generated": 0, "tokens_trained": 0, "flops": 0.0}
    for st in stages:
        for k in total:
            total[k] += st.ledger.get(k) or 0
    return total


def curve_points(run: RunData, arm: ArmData) -> list[tuple[float, dict[str, float | None]]]:
    """(cumulative wall seconds, headline) from the untrained model to the arm's final adapter: the initial arm's
    result at 0 and again once the data exists (ThinkSafe: after synthesis), then each checkpoint, then the end."""
    cost, initial = training_cost(arm), run.arm("initial")
    if cost is None:
        return []
    trainer = arm.trainer()
    before = cost["wall_seconds"] - trainer.ledger["wall_seconds"]  # prompts, synthesis, data
    points = []
    if initial and initial.results:
        points += [(0.0, headline(initial.results)), (before, headline(initial.results))]
    curve, stats = arm.output("curve"), trainer.output.stats
    if curve and curve.curve and stats:
        setup = trainer.ledger["wall_seconds"] - stats.get("train_seconds", 0)  # model load, tokenizing, saving
        # A checkpoint's wall seconds count training only: place it after what came before training.
        points += [(before + setup + c["wall_seconds"], headline(res)) for c, res in curve.points() if res]
    if arm.results:
        points.append((cost["wall_seconds"], headline(arm.results)))
    return points


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def cost_ratio_rows(run: RunData) -> tuple[list[str], list[list[str]], list[str]]:
    """Per trained arm: what it reached and what making it cost, as multiples of the thinksafe arm's cost."""
    trained = [(a, c) for a in run.arms if (c := training_cost(a))]
    ref = next(((a, c) for a, c in trained if a.name == "thinksafe"), trained[0] if trained else None)
    header = ["arm", "harmful rate % ↓", "over-refusal % ↓", "reasoning % ↑", "training wall s", "tokens generated",
              "tokens trained", "FLOPs", "wall ×", "FLOPs ×"]
    if ref is None:
        return header, [], []
    rows = []
    for a, c in trained:
        h = headline(a.results)
        flops_x = f"{c['flops'] / ref[1]['flops']:.2f}" if c["flops"] and ref[1]["flops"] else "—"
        rows.append([a.name, _pct(h["harmful"]), _pct(h["over_refusal"]), _pct(h["reasoning"]),
                     _secs(c["wall_seconds"]), f"{c['tokens_generated']:,.0f}", f"{c['tokens_trained']:,.0f}",
                     f"{c['flops']:.2e}" if c["flops"] else "—", f"{c['wall_seconds'] / ref[1]['wall_seconds']:.2f}",
                     flops_x])
    making = [name for name, stage in registry().items() if stage.makes_model]
    notes = [f"Cost of making each arm's model: the stages {', '.join(making)} (evaluation excluded), "
             f"× = multiple of the {ref[0].name} arm's cost. Rates: means over the benchmarks of each kind that ran."]
    return header, rows, notes + _reached_notes(run, trained, ref)


def _reached_notes(run: RunData, trained: list, ref: tuple) -> list[str]:
    """When each other trained arm first reached the reference arm's harmful rate, along its curve."""
    (ref_arm, ref_cost), notes = ref, []
    target = headline(ref_arm.results)["harmful"]
    for a, c in trained:
        pts = [(t, h["harmful"]) for t, h in curve_points(run, a) if h["harmful"] is not None]
        if a is ref_arm or target is None or len(pts) < 3:
            continue
        reached = next((t for t, h in pts[1:] if h <= target), None)  # pts[0] is the untrained model
        if reached is None:
            notes.append(f"{a.name} never reached {ref_arm.name}'s harmful rate ({_pct(target)} %) at any evaluated "
                         f"checkpoint within its {_secs(c['wall_seconds'])} s "
                         f"(≥ {c['wall_seconds'] / ref_cost['wall_seconds']:.2f}×).")
        else:
            notes.append(f"{a.name} first reached {ref_arm.name}'s harmful rate ({_pct(target)} %) after "
                         f"{_secs(reached)} s ({reached / ref_cost['wall_seconds']:.2f}× {ref_arm.name}'s cost).")
    return notes


# ---------------------------------------------------------------- examples


@dataclass
class Example:
    label: str  # harmful | benign
    benchmark: str
    prompt: str
    before: str | None  # None: no initial arm in the run
    before_verdict: str
    after: str
    after_verdict: str


def _verdict(rec: dict) -> tuple[str, str]:
    r = rec["responses"][0]
    if "verdict" in r:
        v = r["verdict"]["label"]
        if rec.get("label") == "benign":
            v = "refused" if r.get("refused") else "answered"
        return r["text"], v
    return r["text"], "correct" if r.get("correct") else "wrong"


def examples(run: RunData, arm: ArmData, k: int = N_EXAMPLES) -> list[Example]:
    """Two harmful prompts (those whose verdict changed from the initial model first) and one benign prompt
    (an over-refusal set's safe prompt, else a reasoning problem), the same prompts before and after."""
    initial = run.arm("initial")
    harmful, benign = [], []
    for name in (arm.results or {}).get("benchmarks", {}):
        entry = arm.bench(name)
        after = arm.records(name)
        before = initial.records(name) if initial else {}
        for pid in sorted(after):
            rec = after[pid]
            if not rec.get("responses"):
                continue
            text, verdict = _verdict(rec)
            b = before.get(pid)
            btext, bverdict = _verdict(b) if b and b.get("responses") else (None, "")
            ex = Example(rec.get("label", "benign"), name, rec["prompt"], btext, bverdict, text, verdict)
            if entry["kind"] == "safety":
                harmful.append(ex)
            elif rec.get("label") == "benign":
                benign.append((0 if entry["kind"] == "overrefusal" else 1, ex))
    harmful.sort(key=lambda e: e.before_verdict == e.after_verdict)  # changed first; stable otherwise
    benign_sorted = [e for _, e in sorted(benign, key=lambda t: (t[0], t[1].before_verdict == t[1].after_verdict))]
    return harmful[: k - 1] + benign_sorted[:1] if benign_sorted else harmful[:k]
