"""Prompt sources: JSON list / JSONL / CSV files with automatic field detection, and the built-in demo set."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError
from thinksafe.records import LABELS, Prompt, read_jsonl

PROMPT_FIELDS = ("prompt", "instruction", "question", "goal", "forbidden_prompt", "Behavior")
DEMO_SOURCES = ("demo", "demo:harmful", "demo:benign")
MAX_PROMPT_CHARS = 100_000  # ~25k tokens: longer is almost surely a broken file, not a prompt


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or record number, row) from a .jsonl, .json (list of objects) or .csv file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from enumerate(read_jsonl(path), 1)  # read_jsonl names file:line on errors
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not valid UTF-8 ({e.reason})") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if isinstance(data, dict):  # {"train": [...]} or {"data": [...]}: take the single list inside
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of objects")
        for n, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise InputError(f"{path}: record {n}: expected an object, got {type(row).__name__}")
            yield n, row
    elif suffix == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                for row in reader:
                    yield reader.line_num, row
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not valid UTF-8 ({e.reason})") from None
    else:
        raise InputError(f"{path}: unknown file type '{suffix}' (expected .jsonl, .json or .csv)")


def detect_field(row: dict[str, Any], path: Path, candidates: tuple[str, ...] = PROMPT_FIELDS) -> str:
    for name in candidates:
        if name in row:
            return name
    raise InputError(
        f"{path}: no prompt field among {', '.join(candidates)} (columns: {', '.join(map(str, row))}); "
        "name it with --prompt-field"
    )


def normalize_label(value: Any, where: str) -> str:
    """Map a label value to "harmful"/"benign"; anything containing "harmful"/"unsafe" counts as harmful."""
    v = str(value).strip().lower()
    if v in ("harmful", "unsafe", "1", "true") or ("harmful" in v and "harmless" not in v and "not" not in v):
        return "harmful"
    if v in ("benign", "safe", "harmless", "0", "false") or v.startswith(("benign", "harmless")):
        return "benign"
    raise InputError(f"{where}: label '{value}' is neither harmful nor benign")


def load_prompts(
    path: str | Path,
    *,
    label: str = "",
    prompt_field: str | None = None,
    label_field: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    source: str | None = None,
) -> list[Prompt]:
    """Read prompts from a file (or the built-in demo set); `label` applies to all rows unless `label_field` names a column.

    Duplicates (same text) collapse into one Prompt whose meta["count"] says how often it appeared.
    `limit` samples deterministically with `seed`, so two runs with the same limit see the same prompts.
    """
    if label and label not in LABELS:
        raise InputError(f"label '{label}': expected one of {', '.join(LABELS)}")
    if str(path) in DEMO_SOURCES:  # the built-in demo set: "demo", "demo:harmful", "demo:benign"
        return sample(demo_prompts(str(path).partition(":")[2] or label), limit, seed)
    path = Path(path)
    out: dict[str, Prompt] = {}
    field = prompt_field
    for n, row in read_rows(path):
        field = field or detect_field(row, path)
        where = f"{path}:{n}"
        if field not in row:
            raise InputError(f"{where}: missing field '{field}'")
        text = row[field]
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: field '{field}' is empty or not text")
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"{where}: prompt is {len(text):,} characters (limit {MAX_PROMPT_CHARS:,})")
        row_label = label
        if label_field:
            if label_field not in row:
                raise InputError(f"{where}: missing label field '{label_field}'")
            row_label = normalize_label(row[label_field], f"{where}: field '{label_field}'")
        p = Prompt(prompt=text, label=row_label, source=source or path.name)
        if p.id in out:
            out[p.id].meta["count"] = out[p.id].meta.get("count", 1) + 1
        else:
            out[p.id] = p
    prompts = list(out.values())
    if not prompts:
        raise InputError(f"{path}: no prompts")
    return sample(prompts, limit, seed)


def sample(prompts: list[Prompt], limit: int | None, seed: int) -> list[Prompt]:
    """Deterministic subset: the same (prompts, limit, seed) give the same subset, in file order."""
    if limit is None or limit >= len(prompts):
        return prompts
    keep = set(random.Random(seed).sample(range(len(prompts)), limit))
    return [p for i, p in enumerate(prompts) if i in keep]


def demo_prompts(label: str = "") -> list[Prompt]:
    """The small demo set shipped with the package (written for thinksafe, not taken from a benchmark)."""
    path = resources.files("thinksafe") / "resources" / "demo_prompts.jsonl"
    with resources.as_file(path) as p:
        rows = list(read_jsonl(p))
    return [
        Prompt(prompt=r["prompt"], label=r["label"], source="demo", meta={"category": r.get("category", "")})
        for r in rows
        if not label or r["label"] == label
    ]
