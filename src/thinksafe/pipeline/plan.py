"""The plan of a run: every arm's stages with their keys; equal keys are one stage, shared by the arms.

RUN_DIR/<arm>/<stage>/   a stage's directory (stages/base.py: stage.json, ledger.json, done.json + its outputs)

A stage's key hashes exactly what its output depends on (the stage's own `key`: its settings, the shared
sections it uses, the content of local input files) and the keys of the stages it reads, so a changed setting
changes that stage's key and everything downstream. A stage lives where its key already is (finished: cached;
started: resume), else in the first arm's dir. Building a plan reads no model and no data (it only hashes
local input files), so a dry run is fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinksafe.pipeline.arms import ARMS, recipe
from thinksafe.records import read_json
from thinksafe.stages.base import Job, Stage, StageDir, stage_key


@dataclass
class Node:
    """One unit of cached work in a plan. Arms that need the same key share one Node."""

    stage: Stage
    job: Job  # unbound: the inputs of a stage that reads other stages are filled when it runs
    key: str
    deps: list[Node]
    arms: list[str] = field(default_factory=list)  # arms using it; the first one owns its dir
    dir: Path = Path()
    status: str = "run"  # cached | resume | run, then done

    @property
    def kind(self) -> str:
        return self.stage.name

    def output(self) -> Any:
        return self.stage.read(self.dir)


@dataclass
class Plan:
    run_dir: Path
    arms: list[str]
    stages: list[Node]  # each once, in execution order
    per_arm: dict[str, list[Node]]

    def counts(self) -> dict[str, int]:
        return {s: sum(x.status == s for x in self.stages) for s in ("cached", "resume", "run")}


def build_plan(cfg, run_dir: Path) -> Plan:
    by_key: dict[str, Node] = {}
    per_arm: dict[str, list[Node]] = {a: [] for a in cfg.run.arms}
    for arm in cfg.run.arms:
        made: dict[str, Node] = {}  # this arm's nodes by stage name
        for step in recipe(ARMS[arm], cfg):
            deps = [made[name] for name in step.reads]
            job = Job(step.settings, Path(), cfg.model, cfg.backend, step.guard or cfg.guard)
            key, _, _ = stage_key(step.stage, job, [d.key for d in deps])
            node = by_key.setdefault(key, Node(step.stage, job, key, deps))
            if arm not in node.arms:
                node.arms.append(arm)
            per_arm[arm].append(node)
            made[step.stage.name] = node
    stages = list(by_key.values())
    assign_dirs(stages, run_dir)
    return Plan(run_dir, list(cfg.run.arms), stages, per_arm)


def assign_dirs(stages: list[Node], run_dir: Path) -> None:
    """A stage goes where its key already is (finished: cached; started: resume); else to
    RUN_DIR/<first arm>/<kind> (or <kind>-<key> when that dir holds another stage this plan still needs)."""
    found: dict[str, Path] = {}
    for f in sorted(run_dir.glob("*/*/stage.json")):
        info = read_json(f, missing_ok=True)
        if info and "key" in info:
            found.setdefault(info["key"], f.parent)
    claimed: set[Path] = set()
    for s in stages:
        if s.key in found and found[s.key] not in claimed:
            s.dir = found[s.key]
            s.status = "cached" if StageDir(s.dir).done(s.key) else "resume"
            claimed.add(s.dir)
    for s in stages:
        if s.status != "run":
            continue
        d = run_dir / s.arms[0] / s.kind
        s.dir = d if d not in claimed else run_dir / s.arms[0] / f"{s.kind}-{s.key[:8]}"
        claimed.add(s.dir)


def plan_summary(plan: Plan) -> str:
    c = plan.counts()
    return f"{c['run']} stages to run, {c['resume']} to resume, {c['cached']} cached"


def plan_table(plan: Plan):
    from rich.table import Table

    table = Table(title=f"plan → {plan.run_dir}", caption=plan_summary(plan))
    for col in ("arm", "stage", "status", "key", "dir"):
        table.add_column(col)
    label = {"cached": "[green]cached[/green]", "resume": "[yellow]resume[/yellow]", "run": "[bold]to run[/bold]",
             "done": "[green]done[/green]"}
    for arm in plan.arms:
        for s in plan.per_arm[arm]:
            status = label[s.status] if s.arms[0] == arm else f"shared ({s.arms[0]})"
            table.add_row(arm, s.kind, status, s.key[:12], os.path.relpath(s.dir, plan.run_dir))
    return table


def plan_settings(plan: Plan) -> list[str]:
    """Each stage's summary line (its sampling, samples, token limits), once per distinct line, with the arms it
    serves: what a dry run shows so a config's settings can be checked before anything runs."""
    from thinksafe.stages import registry

    order = {name: i for i, name in enumerate(registry())}  # pipeline order: synthesis before evaluation
    arms: dict[tuple[str, str], list[str]] = {}
    for node in sorted(plan.stages, key=lambda n: order.get(n.kind, len(order))):
        line = node.stage.summary(node.job)
        if line:
            seen = arms.setdefault((node.kind, line), [])
            seen += [a for a in node.arms if a not in seen]
    out = []
    for (kind, line), names in arms.items():
        who = "every arm" if set(names) == set(plan.arms) and len(names) > 1 else ", ".join(names)
        out.append(f"{kind} ({who}): {line}")
    return out
