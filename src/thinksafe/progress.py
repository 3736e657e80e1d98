"""Rich progress bars with ETA and tokens/s, shared by every stage."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def wide_console(width: int = 150, stderr: bool = True) -> Console:
    """A console at least `width` columns wide, even when piped (rich would squeeze wide tables into 80)."""
    return Console(stderr=stderr, width=max(console.width, width))


def print_table(table) -> None:
    wide_console().print(table)


def plural(count: int, noun: str) -> str:
    """'1 sample', '8 samples'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class _Bar:
    def __init__(self, progress: Progress | None, task, unit: str):
        self.progress, self.task, self.unit = progress, task, unit
        self.tokens, self.t0 = 0, time.perf_counter()

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        self.tokens += tokens
        if self.progress is not None:
            rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
            self.progress.update(self.task, advance=n, rate=f"{rate:,.1f} {self.unit}")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.t0, 1e-9)


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True, unit: str = "tok/s"):
    """Yield a bar with `.advance(n, tokens=…)`; silent when disabled or stderr is not a terminal-ish."""
    if not enabled or total == 0:
        yield _Bar(None, None, unit)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=not sys.stderr) as progress:
        task = progress.add_task(description, total=total, rate="")
        yield _Bar(progress, task, unit)
