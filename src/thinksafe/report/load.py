"""Reading a `thinksafe run` directory for the report, through the stages' own typed readers.

RUN_DIR/run.json names the arms and, per arm, each stage's directory, key and owner (the arm that ran it: a
stage shared by several arms lives in its owner's directory). Each directory is read by its stage's `read()`;
the report never opens a stage's files by name, so a stage can change its layout without touching the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError
from thinksafe.records import read_json
from thinksafe.stages import registry
from thinksafe.stages.base import StageDir


@dataclass
class StageInfo:
    kind: str  # the stage's name
    dir: Path
    owner: str
    done: bool
    ledger: dict[str, Any] | None  # ledger.json: None while the stage has not finished
    output: Any  # what the stage's read() returns for its directory
    makes_model: bool  # part of the cost of making the arm's model
    trains: bool  # the stage that trains the arm's model


@dataclass
class ArmData:
    name: str
    help: str
    stages: dict[str, StageInfo]  # in pipeline order

    def output(self, kind: str) -> Any | None:
        """The typed output of the arm's `kind` stage, or None when the arm has no such stage."""
        st = self.stages.get(kind)
        return st.output if st else None

    def trainer(self) -> StageInfo | None:
        """The stage that trained the arm's model (train or grpo), or None for an untrained arm."""
        return next((st for st in self.stages.values() if st.trains), None)

    @property
    def results(self) -> dict[str, Any] | None:
        """The arm's evaluate results (results.json), or None."""
        ev = self.output("evaluate")
        return ev.results if ev else None

    def bench(self, name: str) -> dict[str, Any] | None:
        return (self.results or {}).get("benchmarks", {}).get(name)

    def records(self, name: str) -> dict[str, dict]:
        """The scored per-prompt records of one benchmark, by prompt id."""
        ev = self.output("evaluate")
        return ev.records(name) if ev else {}


@dataclass
class RunData:
    dir: Path
    config: dict[str, Any]
    config_file: str
    arms: list[ArmData] = field(default_factory=list)

    def arm(self, name: str) -> ArmData | None:
        return next((a for a in self.arms if a.name == name), None)


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    info = read_json(run_dir / "run.json", missing_ok=True)
    if info is None:
        raise InputError(f"{run_dir}: not a thinksafe run directory (no run.json); make one with thinksafe run CONFIG.yaml")
    data = RunData(run_dir, info.get("config", {}), info.get("config_file", ""))
    stages = registry()
    for name in info["arms"]:
        entries = info["stages"].get(name, {})
        unknown = sorted(set(entries) - set(stages))
        if unknown:
            raise InputError(f"{run_dir}/run.json: unknown stage '{unknown[0]}' (stages: {', '.join(stages)})")
        # Registry order is pipeline order: the ledger's columns and the cost sums follow it.
        arm_stages = {kind: _stage_info(run_dir, kind, entries[kind], name, stage)
                      for kind, stage in stages.items() if kind in entries}
        data.arms.append(ArmData(name, info.get("arm_help", {}).get(name, ""), arm_stages))
    return data


def _stage_info(run_dir: Path, kind: str, entry: dict[str, Any], arm: str, stage) -> StageInfo:
    d = StageDir(run_dir / entry["dir"])
    return StageInfo(kind, d.path, entry.get("owner", arm), d.done(entry["key"]), d.ledger(), stage.read(d.path),
                     stage.makes_model, stage.trains)
