"""The report's figures: one function per figure, each returning a matplotlib Figure or None (nothing to plot).

Figures are built with matplotlib's object API (no pyplot state to close), and matplotlib is imported only
when a figure is made: reading a run or printing its summary does not need it.
"""

from __future__ import annotations

from pathlib import Path

from thinksafe.evaluate.benchmarks import BENCHMARKS
from thinksafe.report.load import RunData
from thinksafe.report.tables import Column, cell, curve_points, interval
from thinksafe.stages import registry

CAPTIONS = {"tradeoff": "Trade-off per arm", "benchmarks": "Per benchmark",
            "perplexity": "Training-data perplexity under the initial model", "walltime": "Wall time per arm by stage",
            "curve": "Safety vs cumulative wall time"}


def _figure(figsize: tuple[float, float], ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def _color(i: int):
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def tradeoff(run: RunData, cols: list[Column]):
    """Safety vs reasoning (or harmful rate vs over-refusal), one point per arm, with CI bars."""
    sx, sy, xlabel, ylabel = _tradeoff_axes(cols)
    points = [(a, cell(a, sx), cell(a, sy)) for a in run.arms] if sx and sy else []
    points = [(a, x, y) for a, x, y in points if x and y]
    if not points:
        return None
    fig, ax = _figure((6, 4.5))
    for i, (a, x, y) in enumerate(points):
        ax.errorbar(100 * x[0], 100 * y[0], xerr=_bar(x[0], interval(a, sx)), yerr=_bar(y[0], interval(a, sy)),
                    fmt="o", capsize=4, color=_color(i), label=a.name)
        ax.annotate(a.name, (100 * x[0], 100 * y[0]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("trade-off per arm (95% CI)")
    ax.grid(alpha=0.3)
    return fig


def _bar(value: float, ci: tuple[float, float] | None) -> list[list[float]]:
    """matplotlib's [[below], [above]] error bar, in %, for the actual interval (percentile bootstrap intervals
    are not symmetric: value ± half-width would cross 0 % near the floor)."""
    lo, hi = ci or (value, value)
    return [[100 * (value - lo)], [100 * (hi - value)]]


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


def benchmarks(run: RunData, cols: list[Column]):
    """Per-benchmark bars with CIs, one bar per arm."""
    bench_cols = [c for c in cols if not c.of]
    if not bench_cols or not any(a.results for a in run.arms):
        return None
    fig, ax = _figure((max(6, 1.6 * len(bench_cols) + 2), 4.2))
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
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=a.name, color=_color(i))
    ax.set_xticks([j + width * (len(run.arms) - 1) / 2 for j in range(len(bench_cols))])
    ax.set_xticklabels([f"{c.title}\n{'↓' if c.group == 'safety' else '↑'}" for c in bench_cols], fontsize=9)
    ax.set_ylabel("%")
    ax.set_title("per benchmark (95% CI)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def perplexity(run: RunData, cols: list[Column]):
    """Each arm's training-data perplexity under the initial model (the shift stage)."""
    shifts = [(a.name, a.output("shift")) for a in run.arms]
    ppl = [(name, s.result["perplexity"]) for name, s in shifts if s and s.result]
    if not ppl:
        return None
    fig, ax = _figure((max(4.5, 1.2 * len(ppl) + 2), 3.6))
    ax.bar([n for n, _ in ppl], [p for _, p in ppl], color=[_color(i) for i in range(len(ppl))])
    ax.set_ylabel("perplexity under the initial model")
    ax.set_title("distribution shift of each arm's training data")
    ax.grid(axis="y", alpha=0.3)
    for label in ax.get_xticklabels():
        label.set(rotation=20, ha="right")
    return fig


def walltime(run: RunData, cols: list[Column]):
    """Wall time per arm, stacked by stage in pipeline order."""
    kinds = [k for k in registry() if any(k in a.stages and a.stages[k].ledger for a in run.arms)]
    if not kinds:
        return None
    fig, ax = _figure((7, 0.6 * len(run.arms) + 2.2))
    left = [0.0] * len(run.arms)
    for i, k in enumerate(kinds):
        secs = [a.stages[k].ledger.get("wall_seconds", 0) if k in a.stages and a.stages[k].ledger else 0
                for a in run.arms]
        ax.barh([a.name for a in run.arms], [s / 60 for s in secs], left=[x / 60 for x in left], label=k,
                color=_color(i))
        left = [x + s for x, s in zip(left, secs)]
    ax.set_xlabel("wall time (minutes; shared stages counted for each arm)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, ncol=len(kinds), loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def curve(run: RunData, cols: list[Column]):
    """Harmful rate and over-refusal vs cumulative wall time, per trained arm (checkpoints with `curve: true`)."""
    curves = [(i, a, curve_points(run, a)) for i, a in enumerate(run.arms)]
    curves = [(i, a, pts) for i, a, pts in curves if len(pts) >= 2]
    # Without evaluated checkpoints it is two points per arm, which the cost-vs-safety table already says.
    if not curves or not any((c := a.output("curve")) and c.curve for a in run.arms):
        return None
    fig, axes = _figure((11, 4.2), ncols=2)
    for ax, key, label in zip(axes, ("harmful", "over_refusal"), ("harmful-response rate (% ↓)", "over-refusal (% ↓)")):
        for i, a, pts in curves:
            xy = [(t / 60, 100 * h[key]) for t, h in pts if h[key] is not None]
            if xy:
                ax.plot(*zip(*xy), marker="o", color=_color(i), label=a.name)
        ax.set_xlabel("cumulative wall time of making the model (minutes)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("safety vs compute: the initial model at 0, then each evaluated checkpoint", fontsize=10)
    return fig


FIGURES = {"tradeoff": tradeoff, "benchmarks": benchmarks, "perplexity": perplexity, "walltime": walltime,
           "curve": curve}


def save_plots(run: RunData, cols: list[Column], out: Path) -> dict[str, Path]:
    """Draw every figure that has data and save it as OUT/<name>.png; returns name → path, in FIGURES order."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, draw in FIGURES.items():
        fig = draw(run, cols)
        if fig is not None:
            fig.tight_layout()
            paths[name] = out / f"{name}.png"
            fig.savefig(paths[name], dpi=110)
    return paths
