"""One shape for every stage, and one guard for its directory.

A stage is a class with

    name        its directory in a run (RUN_DIR/<arm>/<name>/) and, for most, its command (`thinksafe <name>`)
    Settings    its settings dataclass: the command's flags and a section of a `thinksafe run` config; each
                field's role (config.opt) says whether it is an input, the output, or left out of the key
    uses        the shared sections it depends on: model, backend, guard
    key(job)    exactly what its output depends on, in named parts (default: its settings + the shared sections)
    bind(job, upstream)  fill its input fields from the typed outputs of the stages it reads (in a run)
    prepare(job) check its settings and load its inputs before the directory is touched (→ job.prepared)
    run(job)    do the work in job.out, resuming from what is there; returns Counts for the ledger
    read(dir)   the typed reader of its outputs: what later stages and the report read
    summary(job)  one line of the settings a reader checks first (sampling), for a run's plan; "" for none

`execute(stage, job)` runs one stage in its directory, for a single command and for `thinksafe run` alike:

    DIR/stage.json    the key (and its parts) the directory was started with
    DIR/ledger.json   its cost: wall seconds, device, tokens, FLOPs estimate (stages/ledger.py)
    DIR/done.json     written atomically when it finished: a rerun with the same key is cached
    DIR/log.txt       everything it printed, with the libraries' warnings and info (the terminal shows less)

A rerun with the same key resumes (the stages skip what is on disk). A directory holding another key is an
error unless `overwrite` (a run always overwrites its own stage dirs), which clears it — or, where the stage
says so (`reuse`), only the files that the changed parts invalidate (evaluate: a new judge re-scores the saved
generations).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from thinksafe.config import config_hash, role
from thinksafe.errors import ConfigError, InputError
from thinksafe.generate import BackendConfig
from thinksafe.judge import GuardConfig
from thinksafe.models import ModelSpec
from thinksafe.progress import console, stage_log
from thinksafe.records import ensure_dir, read_json, write_json_atomic
from thinksafe.stages.ledger import Counts, ledger_entry

LOG = "log.txt"  # in every stage directory
# The sections every stage may use (`uses`), shared by the stages of a run: a command's flags, a run's sections.
SHARED_SECTIONS: dict[str, type] = {"model": ModelSpec, "backend": BackendConfig, "guard": GuardConfig}


@dataclass
class Job:
    """What one stage invocation works with: its settings, the shared sections it uses, and its directory."""

    settings: Any
    out: Path
    model: Any = None  # ModelSpec
    backend: Any = None  # BackendConfig
    guard: Any = None  # GuardConfig
    inputs: list[Any] = field(default_factory=list)  # the typed outputs of the stages it reads (in a run)
    prepared: Any = None  # what the stage's prepare() loaded (its checked inputs), for run()


class Stage:
    name: ClassVar[str]
    help: ClassVar[str] = ""
    Settings: ClassVar[type | None] = None
    section: ClassVar[str | None] = None  # its section in a run config (default: name when it has Settings)
    uses: ClassVar[tuple[str, ...]] = ()
    makes_model: ClassVar[bool] = False  # part of the cost of making an arm's model (report: cost vs safety)
    trains: ClassVar[bool] = False  # writes the adapter that an arm's evaluation loads
    has_command: ClassVar[bool] = True  # `thinksafe <name>` runs it on its own
    description: ClassVar[str] = ""  # the command's --help text (default: help)
    required: ClassVar[tuple[str, ...]] = ("out",)  # fields the command needs

    def run_command(self, settings: Any, **shared: Any) -> Any:
        """The single command: the stage in settings.out (cached there once done); returns its typed output."""
        job = self.command_job(settings, **shared)
        return execute(self, job, overwrite=getattr(settings, "overwrite", False)).output

    def command_job(self, settings: Any, **shared: Any) -> Job:
        if any(not getattr(settings, f) for f in self.required):
            flags = " and ".join(f"--{f}" for f in self.required)
            raise InputError(f"{self.name}: {flags} {'is' if len(self.required) == 1 else 'are'} required")
        return Job(settings, Path(settings.out), **shared)

    def config_section(self) -> str | None:
        return self.section or (self.name if self.Settings else None)

    def key(self, job: Job) -> dict[str, Any]:
        parts = {"settings": settings_key(job.settings)}
        for name in self.uses:
            parts[name] = getattr(job, name).key()
        return parts

    def summary(self, job: Job) -> str:
        """One line for a run's plan (--dry-run): the settings that decide what it measures or makes (sampling,
        samples, token limits), resolved as the stage will use them where that needs no model; "" for none."""
        return ""

    def reuse(self, changed: set[str]) -> list[str] | None:
        """Files (globs in DIR) to clear when only the key `changed` parts differ, to keep the rest; None: all."""
        return None

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        """Fill the job's input fields from `upstream` (already in job.inputs) where the stage has such fields."""
        return job

    def prepare(self, job: Job) -> Any:
        """Check the settings and load the inputs, before the directory is touched (bad input fails in one line
        and leaves it as it was); what it returns is job.prepared in run(), so nothing is loaded twice."""
        return None

    def run(self, job: Job) -> Counts:
        raise NotImplementedError

    def read(self, out: Path) -> Any:
        raise NotImplementedError

    def flops(self, counts: Counts, params: int) -> float:
        """2·N per token processed forward (prompt + generated + reference), 4·N (LoRA) or 6·N (full) trained."""
        trained = 6 if counts.full else 4
        return 2 * params * (counts.tokens_generated + counts.tokens_prompt + counts.tokens_forward) \
            + trained * params * counts.tokens_trained


# ---------------------------------------------------------------- keys


def fingerprint(source: str) -> str | None:
    """sha256 of the local file a source reads (PATH, NAME:PATH, or a stage dir's dataset.jsonl); None for hub
    sets and built-ins."""
    for candidate in (source, source.partition(":")[2], f"{source}/dataset.jsonl"):
        if candidate and Path(candidate).is_file():
            h = hashlib.sha256()
            with Path(candidate).open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()[:16]
    return None


def settings_key(settings: Any) -> dict[str, Any]:
    """A settings dataclass as its key: every setting, and each input with the content hash of its local file;
    outputs, control and runtime fields are left out."""
    if settings is None:
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if role(f) is None:
            out[f.name] = value
        elif role(f) == "input":
            if isinstance(value, list):
                out[f.name] = {v: fingerprint(v) for v in value}
            elif isinstance(value, str) and value:
                out[f.name] = {value: fingerprint(value)}
            else:
                out[f.name] = value
    return out


def fields_with_role(cls: type | None, *roles: str) -> set[str]:
    if cls is None or cls is type(None):
        return set()
    return {f.name for f in dataclasses.fields(cls) if role(f) in roles}


def stage_key(stage: Stage, job: Job, deps: list[str] = ()) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(key, hash of each part, the parts): the key of `stage` on `job` reading stages with keys `deps`."""
    parts = {**stage.key(job), "deps": list(deps)}
    hashes = {k: config_hash(v) for k, v in parts.items()}
    return config_hash({"stage": stage.name, "parts": hashes}), hashes, parts


# ---------------------------------------------------------------- the directory guard


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class StageDir:
    path: Path

    def started(self) -> dict | None:
        return read_json(self.path / "stage.json", missing_ok=True)

    def done(self, key: str) -> bool:
        done = read_json(self.path / "done.json", missing_ok=True)
        return bool(done and done.get("key") == key)

    def ledger(self) -> dict | None:
        return read_json(self.path / "ledger.json", missing_ok=True)

    def open(self, stage: Stage, key: str, parts: dict[str, str], config: dict, overwrite: bool,
             arms: list[str], adopt: bool = False) -> str:
        """'resume' | 'run', after making the directory hold `key` (or refusing to). `adopt` (a training
        stage's --resume): continue what the directory holds under the new settings (e.g. more steps)."""
        ensure_dir(self.path)  # an unusable --out fails here, in one line
        old = self.started()
        if old and old.get("key") == key:
            return "resume"  # execute has returned already when it is done
        if adopt and (old or any(self.path.iterdir())):
            (self.path / "done.json").unlink(missing_ok=True)
            self._write(stage, key, parts, config, arms)
            return "resume"
        if old:
            changed = {p for p in set(old.get("parts", {})) | set(parts) if old.get("parts", {}).get(p) != parts.get(p)}
            keep = stage.reuse(changed)
            if keep is not None:
                console.print(f"{self.path}: {', '.join(sorted(changed))} changed: redoing what depends on it only")
                self._clear(keep)
            elif overwrite:
                shutil.rmtree(self.path)
            else:
                raise ConfigError(f"{self.path}: made with a different config (changed: {_changed(old, config)}); "
                                  "use --overwrite or a new --out")
        elif self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                raise ConfigError(f"{self.path}: holds files but no stage.json; use --overwrite or a new --out")
            shutil.rmtree(self.path)
        self._write(stage, key, parts, config, arms)
        return "run"

    def _write(self, stage: Stage, key: str, parts: dict[str, str], config: dict, arms: list[str]) -> None:
        ensure_dir(self.path)
        write_json_atomic(self.path / "stage.json", {"key": key, "stage": stage.name, "arms": arms, "parts": parts,
                                                     "config": config, "started_at": _now()})

    def _clear(self, globs: list[str]) -> None:
        for pattern in globs:
            for p in self.path.glob(pattern):
                p.unlink()
        (self.path / "done.json").unlink(missing_ok=True)

    def finish(self, key: str, entry: dict[str, Any]) -> None:
        write_json_atomic(self.path / "ledger.json", entry)
        write_json_atomic(self.path / "done.json", {"key": key, "stage": entry["stage"], "arms": entry["arms"],
                                                    "wall_seconds": entry["wall_seconds"], "finished_at": _now()})


def _changed(old: dict, config: dict) -> str:
    """The settings that differ between two stage configs, as dotted names."""
    before, after = old.get("config", {}), config
    names = []
    for part in sorted(set(before) | set(after)):
        a, b = before.get(part), after.get(part)
        if isinstance(a, dict) and isinstance(b, dict):
            names += [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            names.append(part)
    return ", ".join(names) or "stage version"


@dataclass
class Result:
    """What `execute` returns: the stage's typed output and how the directory was found."""

    output: Any
    status: str  # cached | resume | run
    key: str
    ledger: dict[str, Any] | None = field(default=None)


def execute(stage: Stage, job: Job, *, upstream: list[tuple[str, Any]] = (), overwrite: bool = False,
            arms: list[str] = ()) -> Result:
    """Run `stage` on `job` in job.out unless it is done there with the same key. `upstream`: (key, output) of
    each stage it reads, in order. The key is taken before binding, so a run and its plan agree on it."""
    key, parts, config = stage_key(stage, job, [k for k, _ in upstream])
    d = StageDir(Path(job.out))
    if d.path.is_dir() and (d.started() or {}).get("key") == key and d.done(key):
        return Result(stage.read(d.path), "cached", key, d.ledger())
    outputs = [o for _, o in upstream]
    job = stage.bind(replace(job, out=d.path, inputs=outputs), outputs)
    if "out" in fields_with_role(type(job.settings), "output") and not job.settings.out:
        job = replace(job, settings=replace(job.settings, out=str(d.path)))  # a run's stage dir
    job = replace(job, prepared=stage.prepare(job))  # bad input fails before the directory is touched
    if os.environ.get("RANK", "0") != "0":  # a DDP worker (torchrun / accelerate): rank 0 keeps the markers
        same = (d.started() or {}).get("key") == key
        status = "resume" if same or getattr(job.settings, "resume", False) else "run"
        return Result(None, status, key, _run(stage, job, status, key, arms))
    adopt = bool(getattr(job.settings, "resume", False))  # --resume continues the directory as it is
    status = d.open(stage, key, parts, config, overwrite, list(arms), adopt)
    with stage_log(d.path / LOG, f"{stage.name} {status} (key {key})"):  # the full output, warnings and library info included; appended on resume
        entry = _run(stage, job, status, key, arms)
    d.finish(key, entry)
    return Result(stage.read(d.path), status, key, entry)


def _run(stage: Stage, job: Job, status: str, key: str, arms: list[str]) -> dict[str, Any]:
    """Run the stage (resuming when its directory was started with this key); returns its ledger entry."""
    if "resume" in fields_with_role(type(job.settings), "control"):
        job = replace(job, settings=replace(job.settings, resume=status == "resume"))
    t0 = time.perf_counter()
    counts = stage.run(job)
    return ledger_entry(stage, job, key, list(arms), counts, time.perf_counter() - t0, resumed=status == "resume")
