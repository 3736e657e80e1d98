"""What every benchmark script shares: alternating runs (A B A B), their medians, printing rows as a table."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table


def print_table(title: str, rows: list[dict]) -> None:
    """Rows of equal keys as a rich table, the first row's keys as columns."""
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in rows[0]))
    Console().print(table)


def alternate(label: str, arms: dict[str, Callable[[Path], dict]], repeats: int, tmp: Path) -> list[dict]:
    """Each arm once per repeat, in turn (A B A B: drift hits both alike), each in its own dir; every row records
    the 1-minute load average before and after, so a contended run shows."""
    runs = []
    for r in range(repeats):
        for name, fn in arms.items():
            load0 = os.getloadavg()[0]
            row = {label: name, "repeat": r, **fn(tmp / f"{name}-{r}"),
                   "load_avg_1m": [round(load0, 1), round(os.getloadavg()[0], 1)]}
            runs.append(row)
            print(json.dumps(row), flush=True)
    return runs


def training_medians(label: str, runs: list[dict]) -> list[dict]:
    """One row per arm of training runs: median tok/s, seconds and final loss, peak RSS."""
    rows = []
    for name in dict.fromkeys(x[label] for x in runs):
        mine = [x for x in runs if x[label] == name]
        rows.append({label: name, "tok_s": round(statistics.median(x["tokens_per_second"] for x in mine), 1),
                     "train_s": round(statistics.median(x["train_seconds"] for x in mine), 1), "tokens": mine[0]["tokens"],
                     "steps": mine[0]["steps"], "loss": round(statistics.median(x["final_loss"] for x in mine), 4),
                     "peak_rss_mb": max(x["peak_rss_mb"] for x in mine)})
    return rows

