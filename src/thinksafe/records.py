"""Typed records that flow between stages, and the JSONL/JSON files that carry them.

Every stage appends records to a JSONL file as it goes (one `write` + fsync per batch), so a crash loses
at most the batch in flight and a rerun resumes by skipping ids already written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError

LABELS = ("harmful", "benign")


def prompt_id(text: str) -> str:
    """Stable content hash: the same prompt text gets the same id on every machine and run."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Prompt:
    """One input prompt. `label` is "harmful", "benign" or "" (unknown / not needed)."""

    prompt: str
    label: str = ""
    source: str = ""
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = prompt_id(self.prompt)


@dataclass
class Completion:
    """One sampled response from a generator backend."""

    text: str
    finish_reason: str  # "stop" (EOS / stop string) or "length" (hit max_new_tokens)
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Generation:
    """A completion tied to its prompt; what `thinksafe generate` writes, one per (prompt, sample)."""

    id: str  # "<prompt id>" or "<prompt id>-<sample>" when n > 1
    prompt_id: str
    prompt: str
    label: str
    sample: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    """A guard's judgement. `unknown` is never treated as safe."""

    label: str  # "safe" | "unsafe" | "unknown"
    score: float | None = None  # P(unsafe) in [0, 1] when the guard produces one
    refused: bool | None = None  # does the response refuse? (None: this guard can't tell)
    raw: str = ""
    guard: str = ""


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(record)


# ---------------------------------------------------------------- JSONL


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-empty line; a bad line raises InputError naming file and line."""
    path = Path(path)
    try:
        fh = path.open("rb")  # bytes, decoded line by line: a UTF-8 error names its own line
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield obj


def repair_jsonl(path: str | os.PathLike) -> int:
    """Cut a torn last line left by a crash mid-write. Returns the number of bytes removed.

    Only the tail after the last newline can be torn (we write whole lines in one call), so everything
    before it is kept untouched.
    """
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        # Scan back for the last newline in chunks.
        pos, chunk = size, 1 << 16
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        return size - keep


def append_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Append records as whole lines in one write, then fsync. Returns how many were written."""
    lines = [json.dumps(to_dict(r), ensure_ascii=False) + "\n" for r in records]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    return len(lines)


def done_ids(path: str | os.PathLike, key: str = "id") -> set[str]:
    """Ids already in an output file (after repairing a torn tail) — what a resumed stage skips."""
    path = Path(path)
    if not path.exists():
        return set()
    repair_jsonl(path)
    return {str(r[key]) for r in read_jsonl(path) if key in r}


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create an output directory (and parents); failure is one InputError line, not a traceback."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{path}: cannot create output directory ({e.strerror or e})") from None
    return path


def read_json(path: str | os.PathLike, *, missing_ok: bool = False) -> Any:
    """A JSON file's content; a missing file is None when `missing_ok`, else (and a bad file always) one
    InputError line naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        if missing_ok:
            return None
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: unreadable ({e})") from None


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Build a directory at `out` all at once: write into the yielded temp dir beside it, which is renamed to
    `out` when the block ends (and removed if it raises). Two processes building one `out` each get their own
    temp dir; the first rename wins and the loser's copy is discarded (when `out` holds `marker`, the file a
    finished build writes), so `out` is never half-written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / marker).exists():
                raise
            # another process finished first: theirs stays
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[Any]) -> None:
    """Replace a JSONL file as a whole (temp file + rename)."""
    write_text_atomic(path, "".join(json.dumps(to_dict(r), ensure_ascii=False) + "\n" for r in records))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON via temp file + fsync + rename: readers never see a truncated file."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
