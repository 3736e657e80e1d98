"""The config of `thinksafe run`: top-level keys (RunArgs) and one section per settings dataclass.

    arms: [initial, thinksafe, star1]       # top-level keys: RunArgs
    harmful: [demo:harmful]
    benign: [demo:benign]
    limit: 24
    model: {model: qwen2.5-coder-0.5b-instruct}
    train: {epochs: 2, learning_rate: 2.0e-4}
    evaluate: {benchmarks: "demo-harmful,demo-xstest", max_new_tokens: 64}

The sections are the shared ones (model, backend, guard) and each stage's own (synthesize, train, grpo,
evaluate, shift), so a key means the same here as the flag of that stage's command; a stage's input, output
and control fields are set by the run. Every error is one line naming the file and line (or the flag).
Paths in a config are relative to the working directory (run from the project root).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thinksafe.config import opt, parse_section, read_yaml
from thinksafe.errors import ConfigError
from thinksafe.stages import registry
from thinksafe.stages.base import SHARED_SECTIONS, fields_with_role
from thinksafe.stages.prompts import PromptsArgs


@dataclass
class RunArgs(PromptsArgs):
    """Top-level keys of a run config (the prompts stage's settings among them)."""

    out: str = opt("", "run directory (default: runs/<config file name>)")
    arms: list[str] = opt(["initial", "thinksafe"], "arms to compare, in report order (the arms are listed below)")
    rejection_samples: int = opt(4, "rejection-sampling arm: unsteered samples per prompt; a prompt is kept when all are safe")
    star1_data: str = opt("star1", "star1 arm's data: star1 (hub) or star1:PATH")
    safechain_data: str = opt("safechain", "safechain arm's data: safechain (hub) or safechain:PATH")
    direct_refusal_data: str = opt("direct-refusal", "direct-refusal arm's data: direct-refusal (hub) or direct-refusal:PATH")
    report: bool = opt(True, "write report.md and report.html when the run ends")
    judge_data: list[str] = opt([], "human-labeled judge sets (XSTest-v2 completions CSV, HarmBench classifier-"
                                    "validation JSON): the run measures its evaluation judge on them (judge-eval) and "
                                    "the report shows that agreement beside the results it judged")
    curve: bool = opt(False, "also evaluate every checkpoint of the trained arms (SFT: each epoch; GRPO: every "
                             "grpo.save_steps): the report plots safety vs cumulative wall time")


def sections() -> dict[str, type]:
    """Config sections: the shared ones, then each stage's own settings dataclass, in pipeline order."""
    out = dict(SHARED_SECTIONS)
    for stage in registry().values():
        name = stage.config_section()
        if name and name != "run":
            out.setdefault(name, stage.Settings)
    return out


def run_owned(section: str) -> set[str]:
    """Keys of a stage section that the run sets itself: inputs and outputs are other stages' dirs (none in the
    shared sections)."""
    if section in SHARED_SECTIONS:
        return set()
    return fields_with_role(sections()[section], "input", "output", "control")


class RunConfig:
    """`run` (RunArgs) plus one attribute per section: cfg.model, cfg.train, …"""

    def __init__(self, run: RunArgs | None = None, file: str = "", **values: Any):
        self.run, self.file = run or RunArgs(), file
        for name, cls in sections().items():
            setattr(self, name, values.pop(name, None) or cls())
        if values:
            raise ConfigError(f"unknown sections: {', '.join(values)}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.run), **{n: dataclasses.asdict(getattr(self, n)) for n in sections()}}


def parse_overrides(argv: list[str]) -> list[tuple[tuple[str, ...], Any]]:
    """`--section.key value [value …]` / `--key value` flags → (key path, value typed as YAML would type it)."""
    out: list[tuple[tuple[str, ...], Any]] = []
    i = 0
    while i < len(argv):
        flag = argv[i]
        if not flag.startswith("--") or len(flag) == 2:  # don't echo it: a stray value may be a pasted secret
            raise ConfigError(f"run: unexpected value at argument {i + 2} (options look like --key value or "
                              "--section.key value)")
        name, eq, inline = flag[2:].partition("=")
        j, vals = i + 1, [inline] if eq else []
        while not eq and j < len(argv) and not argv[j].startswith("--"):
            vals.append(argv[j])
            j += 1
        if not vals:
            raise ConfigError(f"{flag}: needs a value")
        typed = [yaml.safe_load(v) if v.strip() else v for v in vals]
        out.append((tuple(name.replace("-", "_").split(".")), typed[0] if len(typed) == 1 else typed))
        i = j
    return out


def apply_overrides(data: dict, origin: dict, overrides: list[str]) -> None:
    secs = sections()
    for keys, value in parse_overrides(overrides):
        if len(keys) == 2 and keys[0] in secs:
            if data.get(keys[0]) is None:
                data[keys[0]] = {}
            if not isinstance(data[keys[0]], dict):
                raise ConfigError(f"--{'.'.join(keys)}: '{keys[0]}' is not a section")
            data[keys[0]][keys[1]] = value
        elif len(keys) == 1 and keys[0] not in secs:
            data[keys[0]] = value
        else:
            raise ConfigError(f"--{'.'.join(keys)}: expected --KEY or --SECTION.KEY (sections: {', '.join(secs)})")
        origin[keys] = f"--{'.'.join(keys)}"


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """A RunConfig from a YAML file (None: all defaults) and `--key value` / `--section.key value` overrides."""
    from thinksafe.pipeline.arms import check

    path = Path(path) if path else None
    data, lines = read_yaml(path) if path else ({}, {})
    origin = {keys: f"{path}:{line}" for keys, line in lines.items()}
    apply_overrides(data, origin, overrides or [])

    def loc(*keys: str) -> str:
        return origin.get(tuple(keys)) or origin.get(tuple(keys[:1])) or str(path or "config")

    secs, top = sections(), [f.name for f in dataclasses.fields(RunArgs)]
    run_values: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if k in secs:
            parsed[k] = _section(k, key, {} if value is None else value, loc)
        elif k in top:
            run_values[key] = value
        else:
            raise ConfigError(f"{loc(key)}: unknown key '{key}' (top-level keys: {', '.join([*top, *secs])})")
    if isinstance(run_values.get("arms"), str):  # --arms a,b  or  arms: a, b
        run_values["arms"] = [a.strip() for a in run_values["arms"].split(",") if a.strip()]
    cfg = RunConfig(parse_section(RunArgs, run_values, loc), str(path) if path else "", **parsed)
    check(cfg, loc)
    return cfg


def _section(name: str, key: str, value: Any, loc: Callable[..., str]) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{loc(key)}: section '{key}' takes a mapping of key: value")
    owned = run_owned(name)
    for sk in value:
        if str(sk).replace("-", "_") in owned:
            raise ConfigError(f"{loc(key, sk)}: key '{sk}' in section '{key}' is set by thinksafe run")
    return parse_section(sections()[name], value, lambda sk: loc(key, sk), key)
