"""Run a plan: every stage that is not cached, in arm order, through the stages' one directory guard; then
the report. `thinksafe run CONFIG.yaml [--dry-run] [--KEY VALUE …] [--SECTION.KEY VALUE …]`.

RUN_DIR/run.json      the resolved config and the plan: each arm's stages with their dir and key
RUN_DIR/config.yaml   the resolved config
RUN_DIR/report.md, report.html   `thinksafe report RUN_DIR`, run at the end
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from thinksafe.errors import ConfigError
from thinksafe.pipeline.arms import ARMS
from thinksafe.pipeline.config import RunArgs, RunConfig, load_config, run_owned, sections
from thinksafe.pipeline.plan import Node, Plan, build_plan, plan_settings, plan_table
from thinksafe.progress import console, wide_console
from thinksafe.records import write_json_atomic, write_text_atomic
from thinksafe.stages.base import execute


def run(cfg: RunConfig, *, dry_run: bool = False) -> Plan:
    """Plan, then run every stage that is not cached, in arm order; then the report."""
    run_dir = default_out(cfg)
    plan = build_plan(cfg, run_dir)
    out = wide_console(160, stderr=False)
    if dry_run:
        out.print(plan_table(plan))
        for line in plan_settings(plan):
            out.print(line, highlight=False, soft_wrap=True)
        return plan
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_run_json(plan, cfg)
    console.print(plan_table(plan))
    for line in plan_settings(plan):
        console.print(line, highlight=False, soft_wrap=True)
    todo = [s for s in plan.stages if s.status != "cached"]
    t0 = time.perf_counter()
    for i, s in enumerate(todo, 1):
        run_node(s, i, len(todo))
    write_run_json(plan, cfg)
    console.print(f"run finished in {time.perf_counter() - t0:.0f}s ({len(todo)} stages run, "
                  f"{len(plan.stages) - len(todo)} cached) → {run_dir}")
    if cfg.run.report:
        from thinksafe.report import print_summary, write_report

        paths = write_report(run_dir)
        print_summary(run_dir, out)
        out.print(f"report → {paths['html'].resolve()}")
    return plan


def run_node(s: Node, index: int, total: int) -> None:
    others = f"  (shared with {', '.join(s.arms[1:])})" if len(s.arms) > 1 else ""
    console.rule(f"[bold]stage {index}/{total}: {s.arms[0]} · {s.kind}[/bold]{others}"
                 + ("  [yellow]resuming[/yellow]" if s.status == "resume" else ""))
    upstream = [(d.key, d.output()) for d in s.deps]
    result = execute(s.stage, dataclasses.replace(s.job, out=s.dir), upstream=upstream, overwrite=True, arms=s.arms)
    assert result.key == s.key, (s.kind, result.key, s.key)  # the plan and the stage agree on what it depends on
    gc.collect()
    s.status = "done"
    wall = (result.ledger or {}).get("wall_seconds", 0.0)
    console.print(f"[green]✓[/green] {s.kind} for {', '.join(s.arms)} in {wall:.1f}s → {s.dir}")


def write_run_json(plan: Plan, cfg: RunConfig) -> None:
    rel = {s.key: os.path.relpath(s.dir, plan.run_dir) for s in plan.stages}
    write_json_atomic(plan.run_dir / "run.json", {
        "config_file": cfg.file,
        "config": cfg.to_dict(),
        "arms": plan.arms,
        "arm_help": {a: ARMS[a].help for a in plan.arms},
        "stages": {arm: {s.kind: {"dir": rel[s.key], "key": s.key, "owner": s.arms[0]} for s in stages}
                   for arm, stages in plan.per_arm.items()},
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def default_out(cfg: RunConfig) -> Path:
    if cfg.run.out:
        return Path(cfg.run.out)
    return Path("runs") / (Path(cfg.file).stem if cfg.file else "run")


# ---------------------------------------------------------------- CLI


def _defaults(cls: type, skip: set[str] = frozenset()) -> list[str]:
    lines = []
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            lines.append(f"  {f.name:<26} {f.metadata.get('help', '')} (default: {default!r})")
    return lines


def usage() -> str:
    lines = [
        "usage: thinksafe run CONFIG.yaml [--dry-run] [--KEY VALUE …] [--SECTION.KEY VALUE …]",
        "",
        "Run an experiment: every arm's stages (prompts → synthesize → train → evaluate, + shift), each cached",
        "under RUN_DIR/<arm>/<stage>/ by a hash of the settings it depends on; a rerun skips finished stages and",
        "resumes a killed one. Flags override the file: --train.learning_rate 1e-4, --arms initial,thinksafe.",
        "",
        "  --dry-run   print the plan (each arm's stages: cached / to run) and exit",
        "",
        "top-level keys:",
        *_defaults(RunArgs),
        "", "arms:", *(f"  {a.name:<26} {a.help}" for a in ARMS.values()),
    ]
    for name, cls in sections().items():
        lines += ["", f"{name}:  ({cls.__name__}; same keys as the flags of its command)",
                  *_defaults(cls, run_owned(name))]
    return "\n".join(lines)


def cmd_run(argv: list[str]) -> int:
    if not argv or "-h" in argv or "--help" in argv:
        print(usage())
        return 0 if argv else 2
    parser = argparse.ArgumentParser(prog="thinksafe run", add_help=False, allow_abbrev=False)
    parser.add_argument("config")
    parser.add_argument("--dry-run", "--dry_run", action="store_true")
    parser.error = lambda message: (_ for _ in ()).throw(ConfigError(f"run: {message}"))
    if argv[0].startswith("--") and argv[0] not in ("--dry-run", "--dry_run"):
        raise ConfigError("run: the config file comes first: thinksafe run CONFIG.yaml [flags]")
    args, overrides = parser.parse_known_args(argv)
    run(load_config(args.config, overrides), dry_run=args.dry_run)
    return 0
