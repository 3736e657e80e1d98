"""The terminal tables of an evaluation: the paper's layout when its benchmarks ran, then every benchmark in detail
(its metric, pass@k / Safe@K when asked for, and the trace health of a think model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinksafe.evaluate.benchmarks import BENCHMARKS, PAPER_REASONING, PAPER_SAFETY
from thinksafe.progress import wide_console


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
    for col in ("benchmark", "metric", "% ± CI", "n", "unknown", "samples", "tokens", "trace closed / cut %", "seconds"):
        detail.add_column(col, justify="left" if col in ("benchmark", "metric") else "right")
    for name, e in bench.items():
        first = True
        for metric, entry in metric_rows(e):
            secs = sum(e["seconds"].values())
            detail.add_row(name if first else "", metric, _pct(entry), str(entry["n"]), str(entry.get("unknown", "")),
                           *(_detail(e, secs) if first else ("",) * 4))
            first = False
    wide.print(detail)


def metric_rows(e: dict[str, Any]) -> list[tuple[str, dict]]:
    """A benchmark's metric, then what goes with it: the unsafe prompts' refusal rate, pass@k, Safe@K."""
    rows = [(e["metric"], e)]
    if "unsafe_refusal_rate" in e:
        rows.append(("refusal rate, unsafe prompts", e["unsafe_refusal_rate"]))
    rows += [(f"pass@{k}", entry) for k, entry in e.get("pass@k", {}).items()]
    if "safe@k" in e:
        rows.append((f"Safe@{e['safe@k']['k']} % ↑", e["safe@k"]))
    return rows


def _detail(e: dict[str, Any], secs: float) -> tuple[str, ...]:
    trace = e.get("trace")
    health = f"{100 * trace['closed']:.0f} / {100 * trace['truncated']:.0f}" if trace else "—"
    return str(e.get("samples", "")), str(e["tokens"]["completion"]), health, f"{secs:.1f}"
