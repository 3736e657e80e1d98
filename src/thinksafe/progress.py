"""What a person sees: rich progress bars with ETA and tokens/s, the verbosity of every command, and the log
file each stage keeps in its directory (everything printed, plus the libraries' warnings and info)."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _LoggedConsole(Console):
    """The terminal console; while a stage log is open, what it prints also goes there, as plain text."""

    log_file: Console | None = None

    def print(self, *objects, **kw) -> None:
        super().print(*objects, **kw)
        if self.log_file is not None:
            self.log_file.print(*objects, **{k: v for k, v in kw.items() if k in ("sep", "end", "style")})


console = _LoggedConsole(stderr=True)
VERBOSITY = ["normal"]  # quiet | normal | verbose, set once per command by set_verbosity (the CLI)
# The libraries whose log records we route (python warnings too): to the terminal at the verbosity's threshold,
# and to the open stage log from INFO up.
LOGGERS = ("transformers", "peft", "trl", "accelerate", "datasets", "huggingface_hub", "vllm", "py.warnings")
THRESHOLD = {"quiet": logging.ERROR, "normal": logging.WARNING, "verbose": logging.INFO}


class _Terminal(logging.Handler):
    """A library's record as one `warning: NAME: message` line on the stderr of the moment (tests capture it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{record.levelname.lower()}: {record.name}: {record.getMessage().rstrip()}\n")


TERMINAL = _Terminal()


def set_verbosity(level: str) -> None:
    """quiet: errors only, no bars. normal: our lines and bars, the libraries' warnings but neither their info nor
    their own bars (weight loading draws several per model). verbose: everything the libraries say."""
    VERBOSITY[0] = level
    console.quiet = level == "quiet"
    # Python warnings (PEFT, torch) become py.warnings records, which the stage log keeps. Off then on: installed
    # afresh over whatever replaced warnings.showwarning since (a test harness's catch_warnings).
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    TERMINAL.setLevel(THRESHOLD[level])
    for name in LOGGERS:
        lg = logging.getLogger(name)
        lg.setLevel(THRESHOLD[level])
        lg.propagate = False  # ours is their one terminal handler
        if TERMINAL not in lg.handlers:
            lg.addHandler(TERMINAL)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    (hf_logging.enable_progress_bar if level == "verbose" else hf_logging.disable_progress_bar)()


def progress_enabled() -> bool:
    return VERBOSITY[0] != "quiet"


def log_line(text: str) -> None:
    """A line for the stage log only (per-step training stats: the terminal shows them on the bar)."""
    if console.log_file is not None:
        console.log_file.print(text, markup=False, highlight=False)


def detail(text: str) -> None:
    """A line the stage log always keeps and the terminal shows under --verbose (model loads, for instance)."""
    if VERBOSITY[0] == "verbose":
        console.print(f"[dim]{text}[/]")
    else:
        log_line(text)


@contextmanager
def stage_log(path: Path, title: str):
    """Append everything printed, and the libraries' log records from INFO up, to `path` while open (the
    terminal handler keeps its own threshold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger(n) for n in (*LOGGERS, "thinksafe")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.addHandler(handler)
            if TERMINAL in lg.handlers:  # the CLI routed it: its terminal threshold is TERMINAL's, not the logger's
                lg.setLevel(logging.INFO)
        outer, console.log_file = console.log_file, Console(file=fh, width=120, color_system=None, soft_wrap=True)
        log_line(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} {title} (process: {' '.join(sys.argv)})")
        try:
            yield path
        finally:
            console.log_file = outer
            for lg, level in zip(loggers, levels):
                lg.removeHandler(handler)
                lg.setLevel(level)


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


def bar_columns(field: str) -> list:
    """description, bar, done/total, the task's `field` (rate, training stats), elapsed, ETA."""
    return [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(f"{{task.fields[{field}]}}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True, unit: str = "tok/s"):
    """Yield a bar with `.advance(n, tokens=…)`; silent when disabled or stderr is not a terminal-ish."""
    if not enabled or total == 0 or not progress_enabled():
        yield _Bar(None, None, unit)
        return
    with Progress(*bar_columns("rate"), console=console, disable=not sys.stderr) as progress:
        task = progress.add_task(description, total=total, rate="")
        yield _Bar(progress, task, unit)
