"""Prompt sources: JSON list / JSONL / CSV files with automatic field detection, and the built-in demo set."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
            data = json.loads(read_utf8(path))
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
        reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as e:
            raise InputError(f"{path}:{reader.line_num + 1}: malformed CSV ({e})") from None  # the record being read
    else:
        raise InputError(f"{path}: unknown file type '{suffix}' (expected .jsonl, .json or .csv)")


def read_utf8(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 raise InputError naming the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None


def detect_field(row: dict[str, Any], path: Path, candidates: tuple[str, ...] = PROMPT_FIELDS) -> str:
    for name in candidates:
        if name in row:
            return name
    raise InputError(
        f"{path}: no prompt field among {', '.join(candidates)} (columns: {', '.join(map(str, row))}); "
        "name it with --prompt-field"
    )


def normalize_label(value: Any, where: str) -> str:
    """Map a label value to "harmful"/"benign" (also safe/unsafe, 1/0, and suffixed forms like
    SafeChain's or WildJailbreak's "vanilla_harmful" / "adversarial_benign")."""
    v = str(value).strip().lower()
    if v in ("harmful", "unsafe", "1", "true") or v.endswith("harmful"):
        return "harmful"
    if v in ("benign", "safe", "harmless", "0", "false") or v.endswith(("benign", "harmless")):
        return "benign"
    raise InputError(f"{where}: label '{value}' is neither harmful nor benign")


@dataclass(frozen=True)
class BuiltinSource:
    """A known prompt set: where it lives on the hub and which columns hold prompt and label."""

    hub: str
    prompt_field: str
    label: str = ""  # label of every row, when the set has no label column
    label_field: str | None = None
    config: str | None = None
    split: str = "train"


BUILTIN: dict[str, BuiltinSource] = {
    # SafeChain's label column names the WildJailbreak type ("vanilla_harmful", "adversarial_benign", …).
    "safechain": BuiltinSource("UWNSL/SafeChain", "instruction", label_field="label"),
    "star1": BuiltinSource("UCSC-VLAA/STAR-1", "question", label="harmful"),
    "advbench": BuiltinSource("walledai/AdvBench", "prompt", label="harmful"),
    "gsm8k": BuiltinSource("openai/gsm8k", "question", label="benign", config="main"),
    # The refusal-direction pools (andyrdt/refusal_direction) live on GitHub, not the hub: local files only.
    "harmful-pool": BuiltinSource("", "instruction", label="harmful"),
    "harmless-pool": BuiltinSource("", "instruction", label="benign"),
}


def hub_rows(name: str, config: str | None, split: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a hub dataset (or a local dataset directory) through `datasets.load_dataset`."""
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # offline, gated, missing: one line that says where we looked
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError(f"{where}: could not load dataset '{name}' split '{split}' ({first})") from None
    yield from enumerate(ds, 1)


def load_prompts(
    source: str | Path,
    *,
    label: str = "",
    prompt_field: str | None = None,
    label_field: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Prompt]:
    """Prompts from a source: a file (.jsonl/.json/.csv), `demo[:label]`, a built-in set `NAME` (hub) or
    `NAME:PATH` (the same schema from a local file or dataset dir), or a hub dataset id `owner/name`.

    `label` applies to all rows — or, for sources with a label column, selects the rows with that label.
    Duplicates (same text) collapse into one Prompt whose meta["count"] says how often it appeared.
    `limit` samples deterministically with `seed`, so two runs with the same limit see the same prompts.
    """
    if label and label not in LABELS:
        raise InputError(f"label '{label}': expected one of {', '.join(LABELS)}")
    spec = str(source)
    if spec in DEMO_SOURCES:  # the built-in demo set: "demo", "demo:harmful", "demo:benign"
        return sample(demo_prompts(spec.partition(":")[2] or label), limit, seed)
    name, _, local = spec.partition(":")
    builtin = BUILTIN.get(name)
    if builtin:
        prompt_field = prompt_field or builtin.prompt_field
        label_field = label_field or builtin.label_field
        fixed = builtin.label
        if local:
            rows = hub_rows(local, None, builtin.split, spec) if Path(local).is_dir() else read_rows(local)
        elif builtin.hub:
            rows = hub_rows(builtin.hub, builtin.config, builtin.split, spec)
        else:
            raise InputError(f"source '{name}' has no hub copy: give a local file as {name}:PATH")
    elif Path(spec).exists() or Path(spec).suffix.lower() in (".json", ".jsonl", ".csv"):
        rows, fixed = read_rows(spec), ""
    elif spec.count("/") == 1:
        rows, fixed = hub_rows(spec, None, "train", spec), ""
    else:
        raise InputError(f"{spec}: file not found (and not a built-in source: {', '.join(['demo', *BUILTIN])})")
    if fixed and label and fixed != label:
        raise InputError(f"source '{name}' holds {fixed} prompts, asked for {label}")
    prompts = _collect(rows, spec, label or fixed, prompt_field, label_field, select=bool(label_field and label))
    return sample(prompts, limit, seed)


def _collect(rows, where_prefix, label, prompt_field, label_field, select) -> list[Prompt]:
    out: dict[str, Prompt] = {}
    field = prompt_field
    for n, row in rows:
        where = f"{where_prefix}:{n}"
        field = field or detect_field(row, Path(where_prefix))
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
            if select and row_label != label:
                continue
        p = Prompt(prompt=text, label=row_label, source=Path(where_prefix).name)
        if p.id in out:
            out[p.id].meta["count"] = out[p.id].meta.get("count", 1) + 1
        else:
            out[p.id] = p
    if not out:
        raise InputError(f"{where_prefix}: no prompts" + (f" labelled {label}" if select else ""))
    return list(out.values())


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


def merge_labelled(*groups: Iterable[Prompt]) -> tuple[list[Prompt], int]:
    """One prompt per text across labelled groups, in order of first appearance; a text that is both harmful
    and benign stays harmful. Returns (prompts, texts collapsed)."""
    by_id: dict[str, Prompt] = {}
    collapsed = 0
    for group in groups:
        for p in group:
            if p.id not in by_id:
                by_id[p.id] = p
                continue
            collapsed += 1
            if p.label == "harmful" and by_id[p.id].label != "harmful":
                by_id[p.id] = p  # keeps the first one's place
    return list(by_id.values()), collapsed

