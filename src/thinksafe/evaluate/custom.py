"""A user's own benchmark file: `--benchmarks harmbench,mine=path/to/mine.jsonl:safety` (NAME=PATH:KIND).

PATH is a .jsonl, .json (a list of objects) or .csv file; KIND one of the registry's kinds:

    safety       prompts that should be refused: one prompt field per row (prompt, instruction, question, goal,
                 forbidden_prompt or Behavior, as in prompt files); scored as the harmful-response rate
    overrefusal  XSTest-style prompts that should be answered: the prompt field and an optional `label` (safe /
                 unsafe, benign / harmful; unlabelled rows are benign); scored as the refusal rate of the benign
                 rows, with the harmful rows' refusal rate alongside
    reasoning    problems with a gold answer: a problem field (problem, question or prompt) and an answer field
                 (answer or gold); sent with SkyThought's math template (reason step by step, answer in
                 \\boxed{}) and graded as the math sets are

A bad row is one error line naming file:line (a .json file: its record number). The file's content is part of
the evaluation's key, so an edited file is evaluated again rather than read from the cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from thinksafe.errors import ConfigError, InputError
from thinksafe.evaluate.benchmarks import BENCHMARKS, MATH_TEMPLATE, Benchmark, Item, Kind, Source
from thinksafe.prompts import PROMPT_FIELDS, normalize_label, read_rows

KINDS = get_args(Kind)  # the registry's: safety, overrefusal, reasoning
PROBLEM_FIELDS = ("problem", "question", "prompt")
GOLD_FIELDS = ("answer", "gold")
LABEL_FIELD = "label"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_custom(entry: str) -> bool:
    return "=" in entry


class RowError(ValueError):
    """A row that can't be an item; CustomBenchmark.load puts the file:line in front."""


def row_reader(kind: str) -> Callable[[dict[str, Any]], Item]:
    """A row → Item for `kind`. Each field's column is the first candidate the first row has, then required in
    every row (a file mixing `prompt` and `question` columns is an error, not a guess per row)."""
    columns: dict[str, str] = {}

    def text(row: dict[str, Any], candidates: tuple[str, ...], what: str) -> str:
        if what not in columns:
            found = next((c for c in candidates if c in row), None)
            if found is None:
                raise RowError(f"no {what} field (expected one of {', '.join(candidates)}; "
                               f"columns: {', '.join(map(str, row)) or 'none'})")
            columns[what] = found
        name = columns[what]
        if name not in row:
            raise RowError(f"missing field '{name}' ({what})")
        value = row[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # a numeric gold answer: 42
        if not isinstance(value, str) or not value.strip():
            raise RowError(f"field '{name}' is empty or not text")
        return value

    def to_item(row: dict[str, Any]) -> Item:
        if kind == "reasoning":
            problem, gold = text(row, PROBLEM_FIELDS, "problem"), text(row, GOLD_FIELDS, "gold answer")
            return Item(MATH_TEMPLATE.format(problem=problem), "benign", gold.strip())
        prompt = text(row, PROMPT_FIELDS, "prompt")
        if kind == "safety":
            return Item(prompt, "harmful")
        label = row.get(LABEL_FIELD)
        return Item(prompt, normalize_label(label, f"field '{LABEL_FIELD}'") if label not in (None, "") else "benign")

    return to_item


@dataclass(frozen=True)
class CustomBenchmark(Benchmark):
    """A benchmark over the user's file (`source.local` is its path)."""

    def load(self, data_dir: str | Path | None = None, *, include_copyright: bool = False) -> list[Item]:
        path = Path(self.source.local)
        items: dict[str, Item] = {}
        for n, row in read_rows(path):
            try:
                item = self.to_item(row)
            except (RowError, InputError) as e:
                where = f"{path}: record {n}" if path.suffix.lower() == ".json" else f"{path}:{n}"
                raise InputError(f"{where}: {e} (benchmark '{self.name}', kind {self.kind})") from None
            items.setdefault(item.id, item)  # the same prompt twice is one item, as in the registry's sets
        if not items:
            raise InputError(f"{path}: no rows (benchmark '{self.name}')")
        return list(items.values())


def parse(entry: str, taken: Iterable[str] = ()) -> CustomBenchmark:
    """NAME=PATH:KIND → a benchmark over that file (checked to exist; its rows are read when it loads)."""
    name, _, rest = entry.partition("=")
    path, sep, kind = rest.rpartition(":")
    name, path, kind = name.strip(), path.strip(), kind.strip()
    if not sep or not path or kind not in KINDS:
        raise ConfigError(f"benchmark '{entry}': expected NAME=PATH:KIND with KIND one of {', '.join(KINDS)}")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"benchmark '{entry}': name '{name}' must be letters, digits, '_', '.' or '-'")
    if name in BENCHMARKS or name in taken:
        raise ConfigError(f"benchmark '{entry}': the name '{name}' is taken; choose another")
    if not Path(path).is_file():
        raise ConfigError(f"benchmark '{name}': {path}: file not found")
    return CustomBenchmark(name, kind, name, Source(path), row_reader(kind), "math" if kind == "reasoning" else "")

