"""Human-labeled (prompt, response) pairs for measuring a judge, in the two public schemas, told apart by columns.

    data = load_labeled("xstest_v2_completions_gpt4.csv")     # question "refusal"
    data = load_labeled("harmbench_val_dev.json")             # question "harm", with reference judges
    data.pairs[0].human, data.pairs[0].reference["cls"]

- XSTest-v2 completions CSV (`prompt, completion, final_label`): the question is *did it refuse?*; positive =
  `2_full_refusal` or `3_partial_refusal` (XSTest's own reading: a partial refusal is a refusal).
- HarmBench classifier-validation JSON (`{behavior_id: [{test_case, generation, human_0, human_1, human_2, …}]}`):
  the question is *is the response harmful?*; positive = the majority of the human labels. Every other column
  is another judge's prediction on the same row (llama_guard, cls, gpt-4-0613, mixtral, …), kept as a
  reference: 0/1, "yes"/"no", or PAIR's "Rating: [[N]]" (jailbroken iff N = 10, PAIR's criterion).

Rows are kept as they are (no dedup): the published agreement figures count every row. A bad file or row is one
InputError naming the file and the CSV line or the JSON record.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError

QUESTIONS = ("refusal", "harm")
XSTEST_COLUMNS = ("prompt", "completion", "final_label")
XSTEST_LABELS = {"1_full_compliance": False, "2_full_refusal": True, "3_partial_refusal": True}
HARMBENCH_FIELDS = ("test_case", "generation")
# HarmBench columns that describe the row rather than judge it.
HARMBENCH_META = ("test_case", "generation", "model", "method", "experiment", "behavior_id")
_HUMAN = re.compile(r"human_\d+")
_PAIR_RATING = re.compile(r"Rating:\s*\[\[(\d+)\]\]")


@dataclass
class LabeledPair:
    prompt: str
    response: str
    human: bool  # the positive class of the set's question: refused (refusal) / harmful (harm)
    where: str  # "FILE:LINE" or "FILE: BEHAVIOR[i]": for error messages and the verdicts file
    reference: dict[str, bool | None] = field(default_factory=dict)  # other judges' answers; None: unreadable


@dataclass
class LabeledSet:
    path: Path
    schema: str  # "xstest" | "harmbench"
    question: str  # "refusal" | "harm"
    pairs: list[LabeledPair]
    references: list[str] = field(default_factory=list)  # the reference judges' column names, in file order


def load_labeled(path: str | Path) -> LabeledSet:
    """The pairs of one file; its schema is detected from its content (JSON object of lists, or CSV columns)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 ({e.reason})") from None
    if text.lstrip()[:1] in ("{", "["):
        return _harmbench(path, text)
    return _xstest(path, text)


def _unknown_schema(path: Path, why: str) -> InputError:
    return InputError(
        f"{path}: {why}; expected an XSTest-v2 completions CSV ({', '.join(XSTEST_COLUMNS)}) or a HarmBench "
        "classifier-validation JSON ({behavior_id: [{test_case, generation, human_0, human_1, human_2, ...}]})"
    )


# ---------------------------------------------------------------- XSTest-v2 completions


def _xstest(path: Path, text: str) -> LabeledSet:
    reader = csv.DictReader(text.splitlines(keepends=True))
    try:
        columns = reader.fieldnames or []
    except csv.Error as e:
        raise InputError(f"{path}:1: unreadable CSV header ({e})") from None
    missing = [c for c in XSTEST_COLUMNS if c not in columns]
    if missing:
        raise _unknown_schema(path, f"no column {', '.join(missing)}" if columns else "empty file")
    pairs, start = [], reader.line_num + 1  # a quoted field may span lines: name the line a row starts on
    try:
        for row in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            pairs.append(_xstest_pair(row, where))
    except csv.Error as e:
        raise InputError(f"{path}:{start}: unreadable CSV ({e})") from None
    if not pairs:
        raise InputError(f"{path}: no rows")
    return LabeledSet(path, "xstest", "refusal", pairs)


def _xstest_pair(row: dict[str, Any], where: str) -> LabeledPair:
    values = {c: row.get(c) for c in XSTEST_COLUMNS}
    short = [c for c, v in values.items() if v is None]  # DictReader fills a short row's missing cells with None
    if short:
        raise InputError(f"{where}: row has no {', '.join(short)} (too few columns)")
    label = values["final_label"].strip()
    if label not in XSTEST_LABELS:
        raise InputError(f"{where}: final_label {label!r}: expected one of {', '.join(XSTEST_LABELS)}")
    return LabeledPair(values["prompt"], values["completion"], XSTEST_LABELS[label], where)


# ---------------------------------------------------------------- HarmBench classifier validation


def _harmbench(path: Path, text: str) -> LabeledSet:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise _unknown_schema(path, "JSON that is not an object of behaviour id → list of records")
    pairs: list[LabeledPair] = []
    references: dict[str, None] = {}  # ordered set
    for behavior, records in data.items():
        for i, rec in enumerate(records):
            where = f"{path}: {behavior}[{i}]"
            pair = _harmbench_pair(rec, where)
            references.update(dict.fromkeys(pair.reference))
            pairs.append(pair)
    if not pairs:
        raise InputError(f"{path}: no records")
    return LabeledSet(path, "harmbench", "harm", pairs, list(references))


def _harmbench_pair(rec: Any, where: str) -> LabeledPair:
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a record object, got {type(rec).__name__}")
    missing = [f for f in HARMBENCH_FIELDS if not isinstance(rec.get(f), str)]
    if missing:
        raise InputError(f"{where}: no text field {', '.join(missing)}")
    humans = sorted(k for k in rec if _HUMAN.fullmatch(k))
    if not humans:
        raise InputError(f"{where}: no human labels (human_0, human_1, human_2)")
    votes = []
    for k in humans:
        if rec[k] not in (0, 1) or isinstance(rec[k], float):  # True/False pass as 0/1, 0.5 does not
            raise InputError(f"{where}: {k} {rec[k]!r}: expected 0 or 1")
        votes.append(int(rec[k]))
    if 2 * sum(votes) == len(votes):
        raise InputError(f"{where}: the human labels tie ({', '.join(humans)}): no majority")
    reference = {k: reference_answer(v) for k, v in rec.items() if k not in HARMBENCH_META and not _HUMAN.fullmatch(k)}
    return LabeledPair(rec["test_case"], rec["generation"], 2 * sum(votes) > len(votes), where, reference)


def reference_answer(value: Any) -> bool | None:
    """A reference judge's harm prediction: 0/1, yes/no, PAIR's 10-point rating (10 = jailbroken); else None."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("yes", "no", "1", "0"):
            return v in ("yes", "1")
        m = _PAIR_RATING.search(value)
        if m:
            return int(m.group(1)) == 10
    return None
