"""`thinksafe report RUN_DIR`: report.md and a self-contained report.html for a `thinksafe run` directory.

Reads only files: RUN_DIR/run.json (arms and where each arm's stages live), each stage's ledger.json, and the
stages' own outputs (evaluate/results.json and its per-benchmark JSONL, synthesize/stats.json,
train/train_stats.json, shift/shift.json). Writes

RUN_DIR/report.md           the tables, plots as files, examples
RUN_DIR/report.html         the same, self-contained (plots embedded as base64 PNG)
RUN_DIR/report_files/*.png  the plots

The results table follows the paper: rows = arms; safety columns (harmful-response rate; XSTest: over-refusal
rate; lower is better) then reasoning columns (pass@1, higher is better), each group with its average; cells
are percent ± the half-width of the bootstrap 95% CI; "—" where an arm has no result. Only benchmarks that ran
get a column, paper benchmarks in the paper's order first.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError
from thinksafe.evaluate.benchmarks import BENCHMARKS, PAPER_REASONING, PAPER_SAFETY
from thinksafe.records import read_jsonl, write_text_atomic

STAGE_ORDER = ("prompts", "synthesize", "data", "train", "grpo", "evaluate", "curve", "shift")
TRAINING_STAGES = ("prompts", "synthesize", "data", "train", "grpo")  # what making an arm's model costs
N_EXAMPLES = 3  # per arm: two harmful, one benign
MAX_CHARS = 600  # of a response shown in the examples


# ---------------------------------------------------------------- reading a run


@dataclass
class StageInfo:
    kind: str
    dir: Path
    owner: str
    done: bool
    ledger: dict[str, Any] | None


@dataclass
class ArmData:
    name: str
    help: str
    stages: dict[str, StageInfo]
    results: dict[str, Any] | None = None  # evaluate/results.json
    synth: dict[str, Any] | None = None  # synthesize/stats.json
    train: dict[str, Any] | None = None  # train/ or grpo/ train_stats.json
    shift: dict[str, Any] | None = None  # shift/shift.json
    curve: dict[str, Any] | None = None  # curve/curve.json

    def bench(self, name: str) -> dict[str, Any] | None:
        return (self.results or {}).get("benchmarks", {}).get(name)

    def records(self, name: str) -> dict[str, dict]:
        """The scored per-prompt records of one benchmark, by prompt id."""
        ev = self.stages.get("evaluate")
        path = ev.dir / f"{name}.jsonl" if ev else None
        if path is None or not path.exists():
            return {}
        return {r["id"]: r for r in read_jsonl(path)}


@dataclass
class RunData:
    dir: Path
    config: dict[str, Any]
    config_file: str
    arms: list[ArmData] = field(default_factory=list)

    def arm(self, name: str) -> ArmData | None:
        return next((a for a in self.arms if a.name == name), None)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: unreadable ({e})") from None


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    info = _json(run_dir / "run.json")
    if info is None:
        raise InputError(f"{run_dir}: not a thinksafe run directory (no run.json); make one with thinksafe run CONFIG.yaml")
    data = RunData(run_dir, info.get("config", {}), info.get("config_file", ""))
    for name in info["arms"]:
        stages = {}
        for kind, st in info["stages"].get(name, {}).items():
            d = run_dir / st["dir"]
            done = _json(d / "done.json")
            stages[kind] = StageInfo(kind, d, st.get("owner", name), bool(done and done.get("key") == st["key"]),
                                     _json(d / "ledger.json"))
        arm = ArmData(name, info.get("arm_help", {}).get(name, ""), stages)

        def read(kind: str, file: str, arm=arm) -> dict | None:
            st = arm.stages.get(kind)
            return _json(st.dir / file) if st else None

        arm.results = read("evaluate", "results.json")
        arm.synth = read("synthesize", "stats.json")
        arm.train = read("train", "train_stats.json") or read("grpo", "train_stats.json")
        arm.shift = read("shift", "shift.json")
        arm.curve = read("curve", "curve.json")
        data.arms.append(arm)
    return data


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


def fmt_cell(c: tuple[float, float | None] | None) -> str:
    if c is None:
        return "—"
    return f"{100 * c[0]:.1f}" + (f" ± {100 * c[1]:.1f}" if c[1] is not None else "")


def table_rows(run: RunData, cols: list[Column]) -> list[list[str]]:
    return [[arm.name, *(fmt_cell(cell(arm, c)) for c in cols)] for arm in run.arms]


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
    limits = {a.results.get("limit") for a in run.arms if a.results}
    if limits - {None}:
        notes.append(f"Each benchmark subsampled to at most {', '.join(map(str, sorted(limits - {None})))} prompts "
                     "(the same prompts for every arm).")
    return notes


# ---------------------------------------------------------------- the cost ledger


def arm_stage_rows(arm: ArmData) -> list[StageInfo]:
    return [arm.stages[k] for k in STAGE_ORDER if k in arm.stages]


def cost_rows(run: RunData, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """One row per arm. `compact`: short headers and cells, for a terminal."""
    kinds = [k for k in STAGE_ORDER if any(k in a.stages for a in run.arms)]
    names = (["arm", "train data", "yield h / b", "data PPL", "tok gen", "tok trained", "FLOPs"] if compact else
             ["arm", "train examples", "synthesis yield (harmful / benign)", "data PPL", "tokens generated",
              "tokens trained", "FLOPs"])
    header = [*names, *(f"{k} s" for k in kinds), "total s"]
    rows = []
    for arm in run.arms:
        gen = trained = flops = wall = 0.0
        missing_flops = False
        secs = []
        for k in kinds:
            st = arm.stages.get(k)
            if st is None:
                secs.append("")
                continue
            led = st.ledger
            if led is None:
                secs.append("…" if not st.done else "?")
                continue
            shared = "*" if st.owner != arm.name else ""
            secs.append(f"{_secs(led['wall_seconds'])}{shared}")
            gen += led.get("tokens_generated", 0)
            trained += led.get("tokens_trained", 0)
            wall += led["wall_seconds"]
            if led.get("flops") is None:
                missing_flops = True
            else:
                flops += led["flops"]
        rows.append([arm.name, _train_size(arm, compact), _yield(arm, compact),
                     f"{arm.shift['perplexity']:.2f}" if arm.shift else "—",
                     f"{gen:,.0f}", f"{trained:,.0f}", "—" if missing_flops or not flops else f"{flops:.2e}",
                     *secs, _secs(wall)])
    return header, rows


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
    stages = [arm.stages[k] for k in TRAINING_STAGES if k in arm.stages]
    if not any(st.kind in ("train", "grpo") for st in stages) or any(st.ledger is None for st in stages):
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
    trainer = next(arm.stages[k] for k in ("train", "grpo") if k in arm.stages)
    before = cost["wall_seconds"] - trainer.ledger["wall_seconds"]  # prompts, synthesis, data
    points = []
    if initial and initial.results:
        points += [(0.0, headline(initial.results)), (before, headline(initial.results))]
    if arm.curve and arm.train:
        setup = trainer.ledger["wall_seconds"] - arm.train.get("train_seconds", 0)  # model load, tokenizing, saving
        for c in arm.curve["points"]:
            res = _json(arm.stages["curve"].dir / c["results"])
            if res:
                points.append((before + setup + c["wall_seconds"], headline(res)))
    if arm.results:
        points.append((cost["wall_seconds"], headline(arm.results)))
    return points


def cost_ratio_rows(run: RunData) -> tuple[list[str], list[list[str]], list[str]]:
    """Per trained arm: what it reached and what making it cost, as multiples of the thinksafe arm's cost."""
    trained = [(a, training_cost(a)) for a in run.arms]
    trained = [(a, c) for a, c in trained if c]
    ref = next(((a, c) for a, c in trained if a.name == "thinksafe"), trained[0] if trained else None)
    header = ["arm", "harmful rate % ↓", "over-refusal % ↓", "reasoning % ↑", "training wall s", "tokens generated",
              "tokens trained", "FLOPs", "wall ×", "FLOPs ×"]
    if ref is None:
        return header, [], []

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}"

    rows = []
    for a, c in trained:
        h = headline(a.results)
        flops_x = f"{c['flops'] / ref[1]['flops']:.2f}" if c["flops"] and ref[1]["flops"] else "—"
        rows.append([a.name, pct(h["harmful"]), pct(h["over_refusal"]), pct(h["reasoning"]), _secs(c["wall_seconds"]),
                     f"{c['tokens_generated']:,.0f}", f"{c['tokens_trained']:,.0f}",
                     f"{c['flops']:.2e}" if c["flops"] else "—", f"{c['wall_seconds'] / ref[1]['wall_seconds']:.2f}", flops_x])
    notes = [f"Cost of making each arm's model: the stages {', '.join(TRAINING_STAGES)} (evaluation excluded), "
             f"× = multiple of the {ref[0].name} arm's cost. Rates: means over the benchmarks of each kind that ran."]
    target = headline(ref[0].results)["harmful"]
    for a, c in trained:
        pts = [(t, h["harmful"]) for t, h in curve_points(run, a) if h["harmful"] is not None]
        if a is ref[0] or target is None or len(pts) < 3:
            continue
        reached = next((t for t, h in pts[1:] if h <= target), None)  # pts[0] is the untrained model
        if reached is None:
            notes.append(f"{a.name} never reached {ref[0].name}'s harmful rate ({pct(target)} %) at any evaluated "
                         f"checkpoint within its {_secs(c['wall_seconds'])} s (≥ {c['wall_seconds'] / ref[1]['wall_seconds']:.2f}×).")
        else:
            notes.append(f"{a.name} first reached {ref[0].name}'s harmful rate ({pct(target)} %) after {_secs(reached)} s "
                         f"({reached / ref[1]['wall_seconds']:.2f}× {ref[0].name}'s cost).")
    return header, rows, notes


def stage_seconds(run: RunData) -> float:
    """Wall seconds of every distinct stage of the run, as their ledgers recorded them."""
    seen = {st.dir: st.ledger["wall_seconds"] for a in run.arms for st in a.stages.values() if st.ledger}
    return sum(seen.values())


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def _train_size(arm: ArmData, compact: bool = False) -> str:
    t = arm.train
    if not t:
        return "—"
    if "examples" in t:
        if compact:
            return f"{t['examples']} ({t.get('harmful', '?')}h+{t.get('benign', '?')}b)"
        return f"{t['examples']} ({t.get('harmful', '?')} harmful, {t.get('benign', '?')} benign)"
    return f"{t.get('prompts', '?')} prompts (online)"


def _yield(arm: ArmData, compact: bool = False) -> str:
    s = arm.synth
    if not s:
        return "—"
    parts = []
    for label in ("harmful", "benign"):
        p = s["per_label"].get(label, {})
        if p.get("prompts"):
            parts.append(f"{p['yield_pct']:.0f}%" if compact else f"{p['kept']}/{p['prompts']} ({p['yield_pct']:.0f}%)")
        else:
            parts.append("—")
    return " / ".join(parts)


def ledger_notes(run: RunData) -> list[str]:
    devices = sorted({st.ledger["device"] for a in run.arms for st in a.stages.values() if st.ledger})
    formula = next((st.ledger.get("flops_formula") for a in run.arms for st in a.stages.values() if st.ledger), None)
    notes = ["Data PPL: perplexity of the arm's training responses under the initial model (thinksafe shift); "
             "self-generated data should sit near 1-3, teacher data higher.",
             "Synthesis yield: prompts whose generation was complete and judged safe (benign: and not a refusal) / prompts.",
             "* a stage shared with an earlier arm (same key): its cost is listed for every arm that uses it."]
    if devices:
        notes.append(f"Device: {', '.join(devices)}.")
    total = stage_seconds(run)
    if total:
        notes.append(f"All stages of the run together (each shared stage once): {total:.0f} s ({total / 60:.1f} min).")
    if formula:
        notes.append(formula)
    return notes


# ---------------------------------------------------------------- examples


@dataclass
class Example:
    label: str  # harmful | benign
    benchmark: str
    prompt: str
    before: str | None
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


def _clip(text: str | None) -> str:
    if text is None:
        return "(no initial arm in this run)"
    text = text.strip()
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " …"


def _fence(text: str) -> str:
    return "```text\n" + text.replace("```", "` ` `") + "\n```"


# ---------------------------------------------------------------- plots


def _plots(run: RunData, cols: list[Column], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    colors = plt.get_cmap("tab10")

    def save(fig, name: str) -> None:
        fig.tight_layout()
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
        plt.close(fig)

    # 1. safety vs reasoning (or harmful rate vs over-refusal), one point per arm, CI bars
    sx, sy, xlabel, ylabel = _tradeoff_axes(cols)
    points = [(a, cell(a, sx), cell(a, sy)) for a in run.arms] if sx and sy else []
    points = [(a, x, y) for a, x, y in points if x and y]
    if points:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, (a, x, y) in enumerate(points):
            ax.errorbar(100 * x[0], 100 * y[0], xerr=100 * (x[1] or 0), yerr=100 * (y[1] or 0), fmt="o", capsize=4,
                        color=colors(i % 10), label=a.name)
            ax.annotate(a.name, (100 * x[0], 100 * y[0]), textcoords="offset points", xytext=(6, 6), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title("trade-off per arm (95% CI)")
        ax.grid(alpha=0.3)
        save(fig, "tradeoff")

    # 2. per-benchmark bars with CIs
    bench_cols = [c for c in cols if not c.of]
    if bench_cols and any(a.results for a in run.arms):
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(bench_cols) + 2), 4.2))
        width = 0.8 / max(len(run.arms), 1)
        for i, a in enumerate(run.arms):
            xs, ys, lo, hi = [], [], [], []
            for j, c in enumerate(bench_cols):
                entry = a.bench(c.key)
                if entry and entry.get("value") is not None:
                    v, ci = entry["value"], entry.get("ci95") or [entry["value"]] * 2
                    xs.append(j + i * width)
                    ys.append(100 * v)
                    lo.append(100 * (v - ci[0]))
                    hi.append(100 * (ci[1] - v))
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=a.name, color=colors(i % 10))
        ax.set_xticks([j + width * (len(run.arms) - 1) / 2 for j in range(len(bench_cols))])
        ax.set_xticklabels([f"{c.title}\n{'↓' if c.group == 'safety' else '↑'}" for c in bench_cols], fontsize=9)
        ax.set_ylabel("%")
        ax.set_title("per benchmark (95% CI)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "benchmarks")

    # 3. data perplexity under the initial model
    ppl = [(a.name, a.shift["perplexity"]) for a in run.arms if a.shift]
    if ppl:
        fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(ppl) + 2), 3.6))
        ax.bar([n for n, _ in ppl], [p for _, p in ppl], color=[colors(i % 10) for i in range(len(ppl))])
        ax.set_ylabel("perplexity under the initial model")
        ax.set_title("distribution shift of each arm's training data")
        ax.grid(axis="y", alpha=0.3)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        save(fig, "perplexity")

    # 4. wall time per arm, stacked by stage
    kinds = [k for k in STAGE_ORDER if any(k in a.stages and a.stages[k].ledger for a in run.arms)]
    if kinds:
        fig, ax = plt.subplots(figsize=(7, 0.6 * len(run.arms) + 2.2))
        left = [0.0] * len(run.arms)
        for i, k in enumerate(kinds):
            secs = [(a.stages[k].ledger or {}).get("wall_seconds", 0) if k in a.stages and a.stages[k].ledger else 0
                    for a in run.arms]
            ax.barh([a.name for a in run.arms], [s / 60 for s in secs], left=[x / 60 for x in left], label=k,
                    color=colors(i % 10))
            left = [x + s for x, s in zip(left, secs)]
        ax.set_xlabel("wall time (minutes; shared stages counted for each arm)")
        ax.invert_yaxis()
        ax.legend(fontsize=8, ncol=len(kinds), loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
        ax.grid(axis="x", alpha=0.3)
        save(fig, "walltime")

    # 5. harmful rate and over-refusal vs cumulative wall time, per trained arm (checkpoints with `curve: true`)
    curves = [(i, a, curve_points(run, a)) for i, a in enumerate(run.arms)]
    curves = [(i, a, pts) for i, a, pts in curves if len(pts) >= 2]
    if curves and any(a.curve for a in run.arms):  # without checkpoints it is two points per arm: the table says it
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, key, label in zip(axes, ("harmful", "over_refusal"), ("harmful-response rate (% ↓)", "over-refusal (% ↓)")):
            for i, a, pts in curves:
                xy = [(t / 60, 100 * h[key]) for t, h in pts if h[key] is not None]
                if xy:
                    ax.plot(*zip(*xy), marker="o", color=colors(i % 10), label=a.name)
            ax.set_xlabel("cumulative wall time of making the model (minutes)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("safety vs compute: the initial model at 0, then each evaluated checkpoint", fontsize=10)
        save(fig, "curve")
    return paths


def _tradeoff_axes(cols: list[Column]) -> tuple[Column | None, Column | None, str, str]:
    """x, y of the trade-off plot: reasoning avg vs safety avg, or over-refusal vs harmful rate."""
    safety = [c for c in cols if c.group == "safety" and not c.of]
    reasoning = [c for c in cols if c.group == "reasoning" and not c.of]
    avg = {c.group: c for c in cols if c.of}
    if reasoning:
        x = avg.get("reasoning") or Column("avg:reasoning*", "Reasoning", "reasoning", tuple(c.key for c in reasoning))
        y = avg.get("safety") or (Column("avg:safety*", "Safety", "safety", tuple(c.key for c in safety)) if safety else None)
        return x, y, f"{x.title} (pass@1 %, ↑)", f"{y.title if y else ''} (% ↓)"
    over = [c for c in safety if BENCHMARKS.get(c.key) and BENCHMARKS[c.key].kind == "overrefusal"]
    harm = [c for c in safety if c not in over]
    if not over or not harm:
        return None, None, "", ""
    x = over[0] if len(over) == 1 else Column("over*", "over-refusal", "safety", tuple(c.key for c in over))
    y = harm[0] if len(harm) == 1 else Column("harm*", "harmful rate", "safety", tuple(c.key for c in harm))
    return x, y, f"over-refusal: {x.title} (% ↓)", f"harmful-response rate: {y.title} (% ↓)"


# ---------------------------------------------------------------- writing


def md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]], seps: set[int] = frozenset()) -> str:
    def td(tag: str, i: int, s: str) -> str:
        cls = ' class="sep"' if i in seps else ""
        return f"<{tag}{cls}>{html.escape(str(s))}</{tag}>"

    head = "".join(td("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(td("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.sep{border-left:3px double #888}
.note{color:#555;font-size:13px}img{max-width:100%;margin:.5em 0}pre{white-space:pre-wrap;background:#f7f7f7;
padding:.5em;border-radius:4px;font-size:13px;margin:.2em 0}.ex{border-left:3px solid #ddd;padding-left:1em;margin:1em 0}
"""


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and the plots; returns their paths."""
    run = load_run(run_dir)
    cols = columns(run)
    header = ["arm", *(c.title for c in cols)]
    rows = table_rows(run, cols)
    notes = table_notes(run, cols)
    cost_header, cost = cost_rows(run)
    plots = _plots(run, cols, run.dir / "report_files")
    model = run.config.get("model", {}).get("model", "?")
    title = f"thinksafe run: {run.dir.name}"
    intro = (f"Model: {model}. Config: {run.config_file or '—'}. Arms: "
             + "; ".join(f"{a.name} — {a.help}" for a in run.arms) + ".")
    captions = {"tradeoff": "Trade-off per arm", "benchmarks": "Per benchmark",
                "perplexity": "Training-data perplexity under the initial model", "walltime": "Wall time per arm by stage",
                "curve": "Safety vs cumulative wall time"}
    ratio_header, ratio_rows, ratio_notes = cost_ratio_rows(run)
    ratio_md = ["## Cost vs safety reached", "", md_table(ratio_header, ratio_rows), "", *(f"- {n}" for n in ratio_notes), ""]
    exs = {a.name: examples(run, a) for a in run.arms if a.name != "initial"}

    md = [f"# {title}", "", intro, "", "## Results", "", md_table(header, rows), ""]
    md += [f"- {n}" for n in notes] + ["", "## Cost ledger", "", md_table(cost_header, cost), ""]
    md += [f"- {n}" for n in ledger_notes(run)] + [""] + (ratio_md if len(ratio_rows) > 1 else []) + ["## Plots", ""]
    md += [f"![{captions[k]}](report_files/{p.name})" for k, p in plots.items()] + ["", "## Examples", ""]
    for arm, items in exs.items():
        md += [f"### {arm}", ""]
        for e in items or []:
            md += [f"**{e.label}** ({e.benchmark}): {e.prompt}", "",
                   f"before (initial, {e.before_verdict or '—'}):", "", _fence(_clip(e.before)), "",
                   f"after ({arm}, {e.after_verdict}):", "", _fence(_clip(e.after)), ""]
        if not items:
            md += ["(no evaluation outputs yet)", ""]
    md_path = run.dir / "report.md"
    write_text_atomic(md_path, "\n".join(md) + "\n")

    seps = {i + 1 for i, c in enumerate(cols) if c.group == "reasoning" and (i == 0 or cols[i - 1].group != "reasoning")}
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
         f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>",
         "<h2>Results</h2>", _html_table(header, rows, seps),
         *(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
         "<h2>Cost ledger</h2>", _html_table(cost_header, cost),
         *(f"<p class='note'>{html.escape(n)}</p>" for n in ledger_notes(run))]
    if len(ratio_rows) > 1:
        h += ["<h2>Cost vs safety reached</h2>", _html_table(ratio_header, ratio_rows),
              *(f"<p class='note'>{html.escape(n)}</p>" for n in ratio_notes)]
    h.append("<h2>Plots</h2>")
    for k, p in plots.items():
        b64 = base64.b64encode(p.read_bytes()).decode()
        h.append(f"<figure><img alt='{html.escape(captions[k])}' src='data:image/png;base64,{b64}'>"
                 f"<figcaption class='note'>{html.escape(captions[k])}</figcaption></figure>")
    h.append("<h2>Examples</h2>")
    for arm, items in exs.items():
        h.append(f"<h3>{html.escape(arm)}</h3>")
        for e in items or []:
            h.append(f"<div class='ex'><p><b>{e.label}</b> ({html.escape(e.benchmark)}): {html.escape(e.prompt)}</p>"
                     f"<p>before (initial, {html.escape(e.before_verdict or '—')}):</p><pre>{html.escape(_clip(e.before))}</pre>"
                     f"<p>after ({html.escape(arm)}, {html.escape(e.after_verdict)}):</p><pre>{html.escape(_clip(e.after))}</pre></div>")
        if not items:
            h.append("<p class='note'>(no evaluation outputs yet)</p>")
    h.append("</body></html>")
    html_path = run.dir / "report.html"
    write_text_atomic(html_path, "\n".join(h) + "\n")
    return {"md": md_path, "html": html_path, **{f"png:{k}": p for k, p in plots.items()}}


def print_summary(run_dir: str | Path, out=None) -> None:
    """The results table and the cost ledger, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    out = out or Console(width=max(Console().width, 160))
    run = load_run(run_dir)
    cols = columns(run)
    model = run.config.get("model", {}).get("model", "?")
    out.print(f"[bold]{model}[/bold]: safety % ↓ (harmful-response / over-refusal rate) ‖ reasoning pass@1 % ↑; "
              f"value ± half-width of the 95% CI; {judges(run)}")
    table = Table()
    table.add_column("arm")
    for i, c in enumerate(cols):
        if c.group == "reasoning" and (i == 0 or cols[i - 1].group != "reasoning"):
            table.add_column("‖", justify="center")
        table.add_column(c.title, justify="right")
    for row in table_rows(run, cols):
        cells = [row[0]]
        for i, c in enumerate(cols):
            if c.group == "reasoning" and (i == 0 or cols[i - 1].group != "reasoning"):
                cells.append("‖")
            cells.append(row[i + 1])
        table.add_row(*cells)
    out.print(table)

    def numbers(title: str, header: list[str], rows: list[list[str]]) -> Table:
        t = Table(title=title)
        for i, col in enumerate(header):
            t.add_column(col, justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*r)
        return t

    out.print(numbers("cost ledger (* = shared stage)", *cost_rows(run, compact=True)))
    header, rows, notes = cost_ratio_rows(run)
    if len(rows) > 1:
        out.print(numbers("cost vs safety reached (× = multiple of the reference arm's cost)", header, rows))
        for n in notes[1:]:
            out.print(n)


def cmd_report(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: thinksafe report RUN_DIR\n\nWrite RUN_DIR/report.md and a self-contained RUN_DIR/report.html "
              "(results table with 95% CIs, cost ledger, plots, examples) for a `thinksafe run` directory.")
        return 0 if argv else 2
    paths = write_report(argv[0])
    print_summary(argv[0])
    print(f"report → {paths['html'].resolve()}")
    return 0
