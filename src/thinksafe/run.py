"""`thinksafe run CONFIG.yaml`: one experiment end to end — arms × stages, each stage cached by a config hash.

A config (YAML, or the same keys as `--section.key value` flags) names the model, the training prompt
sources, the guard, each stage's settings (sections reuse the stage dataclasses: `synthesize`, `train`,
`evaluate`, `shift`, `grpo`, plus `model`, `backend`, `guard`) and a list of **arms** to compare. An arm is
a small recipe over the stages: `thinksafe` = prompts → synthesize (steered) → train → evaluate (+ shift:
its data's perplexity under the initial model); `star1` = train on the baseline → evaluate; `initial` =
evaluate; `grpo` = prompts → grpo → evaluate. With `curve: true`, a trained arm also gets `curve`: every
intermediate checkpoint evaluated, for the report's safety-vs-wall-time plot.

    arms: [initial, thinksafe, star1]       # top-level keys: RunArgs
    harmful: [demo:harmful]
    benign: [demo:benign]
    limit: 24
    model: {model: qwen2.5-coder-0.5b-instruct}
    train: {epochs: 2, learning_rate: 2.0e-4}
    evaluate: {benchmarks: "demo-harmful,demo-xstest", max_new_tokens: 64}

Paths in a config are relative to the working directory (run from the project root).

RUN_DIR/run.json                   the resolved config and the plan: each arm's stages with their dir and key
RUN_DIR/<arm>/<stage>/             a stage's outputs, exactly as the stage function writes them
RUN_DIR/<arm>/<stage>/stage.json   the key and config the stage was started with
RUN_DIR/<arm>/<stage>/ledger.json  its cost: wall seconds, device, tokens generated / trained on, FLOPs estimate
RUN_DIR/<arm>/<stage>/done.json    written atomically when the stage finished: the stage is cached
RUN_DIR/report.md, report.html     `thinksafe report RUN_DIR`, run at the end

A stage's key hashes exactly what its output depends on: its own settings, the model, the guard where it
judges, the generation backend where it generates, the content of local input files, and the keys of the
stages it reads. Equal keys are one stage, shared by the arms that need it (it lives in the first such arm's
dir, or wherever a finished copy already is). A finished stage with the same key is skipped; a changed setting
changes the keys of that stage and everything downstream; a stage started with the same key resumes inside
its dir (the stage functions resume from their own files); a dir holding another key is cleared first.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from thinksafe.config import config_hash, opt, read_yaml
from thinksafe.dataset import SynthesizeArgs
from thinksafe.errors import ConfigError
from thinksafe.evaluate.run import EvaluateArgs
from thinksafe.generate import BackendConfig
from thinksafe.grpo import GRPOArgs
from thinksafe.judge import GUARDS, GuardConfig
from thinksafe.models import ModelSpec
from thinksafe.progress import console
from thinksafe.records import read_jsonl, write_json_atomic, write_text_atomic
from thinksafe.shift import ShiftArgs
from thinksafe.train import TrainArgs

# ---------------------------------------------------------------- the config


@dataclass
class RunArgs:
    """Top-level keys of a run config."""

    out: str = opt("", "run directory (default: runs/<config file name>)")
    arms: list[str] = opt(["initial", "thinksafe"], "arms to compare, in report order (the arms are listed below)")
    harmful: list[str] = opt(["demo:harmful"], "harmful training prompt sources, pooled: files, demo:harmful, star1[:PATH], harmful-pool:PATH, …")
    benign: list[str] = opt(["demo:benign"], "benign training prompt sources, pooled (empty list: none)")
    limit: int | None = opt(None, "at most this many training prompts per label, a seeded sample of the pool")
    seed: int = opt(0, "seed of the prompt sample")
    rejection_samples: int = opt(4, "rejection-sampling arm: unsteered samples per prompt; a prompt is kept when all are safe")
    star1_data: str = opt("star1", "star1 arm's data: star1 (hub) or star1:PATH")
    safechain_data: str = opt("safechain", "safechain arm's data: safechain (hub) or safechain:PATH")
    direct_refusal_data: str = opt("direct-refusal", "direct-refusal arm's data: direct-refusal (hub) or direct-refusal:PATH")
    report: bool = opt(True, "write report.md and report.html when the run ends")
    curve: bool = opt(False, "also evaluate every checkpoint of the trained arms (SFT: each epoch; GRPO: every "
                             "grpo.save_steps): the report plots safety vs cumulative wall time")


# Config sections: the stage dataclasses themselves, so a key means the same here as in the stage's flags.
SECTIONS: dict[str, type] = {
    "model": ModelSpec,
    "backend": BackendConfig,
    "guard": GuardConfig,
    "synthesize": SynthesizeArgs,
    "train": TrainArgs,
    "evaluate": EvaluateArgs,
    "shift": ShiftArgs,
    "grpo": GRPOArgs,
}
# Keys the run sets itself (inputs and outputs are other stages' dirs; resuming is the run's job).
RUN_OWNED: dict[str, set[str]] = {
    "synthesize": {"harmful", "benign", "out", "limit", "overwrite", "prompt_field", "label_field"},
    "train": {"data", "out", "resume"},
    "evaluate": {"out", "overwrite"},
    "shift": {"data", "out"},
    "grpo": {"prompts", "harmful", "benign", "out", "limit", "resume", "prompt_field", "label_field"},
}
# Settings that change how a stage runs but not what it writes: left out of the keys.
NOT_IN_KEY: dict[str, set[str]] = {
    "synthesize": {"chunk_size"},
    "train": {"save_steps", "logging_steps", "report_to"},
    "evaluate": {"chunk_size"},
    "shift": {"batch_size"},
    "grpo": {"save_steps", "logging_steps", "report_to"},
}


@dataclass
class RunConfig:
    run: RunArgs = field(default_factory=RunArgs)
    model: ModelSpec = field(default_factory=ModelSpec)
    backend: BackendConfig = field(default_factory=BackendConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    synthesize: SynthesizeArgs = field(default_factory=SynthesizeArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    evaluate: EvaluateArgs = field(default_factory=EvaluateArgs)
    shift: ShiftArgs = field(default_factory=ShiftArgs)
    grpo: GRPOArgs = field(default_factory=GRPOArgs)
    file: str = ""  # the YAML it came from

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.run), **{name: asdict(getattr(self, name)) for name in SECTIONS}}


# ---------------------------------------------------------------- arms


@dataclass(frozen=True)
class Arm:
    """A recipe over the stages. `data`: None (no SFT), "self" (synthesized) or a baseline name."""

    name: str
    help: str
    data: str | None = None
    synth: dict[str, Any] = field(default_factory=dict)  # SynthesizeArgs overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainArgs overrides
    rejection: bool = False  # samples_per_prompt = run.rejection_samples, all must be safe
    strip_reasoning: bool = False  # harmful examples keep their answer only
    grpo: bool = False


ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm("initial", "the model as it is, no training: the 'before' of every comparison"),
        Arm("thinksafe", "ThinkSafe: steered self-generated refusals + plain benign answers, guard-filtered, SFT", "self"),
        Arm("thinksafe+kl", "ThinkSafe with a KL term to the initial model on benign examples", "self", train={"kl_benign": True}),
        Arm("rejection-sampling", "no steering: n samples per prompt, kept only when all are safe", "self",
            synth={"steering": "none", "require_all_safe": True}, rejection=True),
        Arm("star1", "teacher baseline: SFT on STAR-1 (DeepSeek-R1 safety traces)", "star1"),
        Arm("direct-refusal", "baseline: SFT on short refusals with a one-line think block", "direct-refusal"),
        Arm("safechain", "teacher baseline: SFT on SafeChain (R1 traces)", "safechain"),
        Arm("steer-suffix", "ablation: ThinkSafe with the suffix steering template", "self", synth={"steering": "suffix"}),
        Arm("steer-risk", "ablation: ThinkSafe with the risk-evaluation steering template", "self", synth={"steering": "risk"}),
        Arm("steer-intent", "ablation: ThinkSafe with the harmful-intent steering template", "self", synth={"steering": "intent"}),
        Arm("thinksafe-no-reasoning", "ablation: ThinkSafe data with the reasoning removed from harmful examples (think models)",
            "self", strip_reasoning=True),
        Arm("grpo", "online RL baseline: GRPO with the guard as reward", grpo=True),
    )
}
BASELINE_FIELDS = {"star1": "star1_data", "safechain": "safechain_data", "direct-refusal": "direct_refusal_data"}


# ---------------------------------------------------------------- loading and checking a config


def _parse_section(cls: type, values: dict[str, Any], loc: Callable[[str], str], section: str = "") -> Any:
    """A dataclass from a mapping, each key and value checked as `--config` checks a flat file
    (config.yaml_to_argv), then parsed by the stage's own flag parser, so a key means what its flag means."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((cls,), allow_abbrev=False)

    def error(message: str):  # not reached after the checks below; never print argparse's usage block
        raise ConfigError(f"{section or 'config'}: {message}")

    parser.error = error
    # One action per field: the `--name` one (a default-true bool also has a `--no_name` twin with the same dest).
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.option_strings[0] == f"--{a.dest}"}
    argv: list[str] = []
    empty: dict[str, list] = {}
    for key, value in values.items():
        where = loc(key)
        k = str(key).replace("-", "_")
        action = actions.get(k)
        if action is None or k == "help":
            raise ConfigError(f"{where}: unknown key '{key}'" + (f" in section '{section}'" if section else ""))
        if isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}' takes a value, got a mapping")
        if isinstance(value, list) and action.nargs not in ("+", "*"):
            raise ConfigError(f"{where}: key '{key}' takes one value, got a list")
        if value is None:
            continue  # explicit null: keep the default
        if value == []:
            empty[k] = []
            continue
        is_bool = getattr(action.type, "__name__", "") == "string_to_bool"
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) != is_bool:
                raise ConfigError(f"{where}: key '{key}': {'expected true/false' if is_bool else 'unexpected true/false'}, got {v!r}")
            try:
                if isinstance(v, (dict, list)):
                    raise ValueError
                converted = action.type(str(v)) if action.type else v
            except Exception:
                raise ConfigError(f"{where}: key '{key}': invalid value {v!r}") from None
            if action.choices and converted not in action.choices:
                raise ConfigError(f"{where}: key '{key}': {v!r} not one of {', '.join(map(str, action.choices))}")
        argv += [action.option_strings[0], *(str(v) for v in (value if isinstance(value, list) else [value]))]
    (obj,) = parser.parse_args_into_dataclasses(argv)
    return replace(obj, **empty) if empty else obj


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


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """A RunConfig from a YAML file (None: all defaults) and `--key value` / `--section.key value` overrides.
    Every error is one line naming the file and line (or the flag) of the offending key."""
    path = Path(path) if path else None
    data, lines = read_yaml(path) if path else ({}, {})
    origin = {keys: f"{path}:{line}" for keys, line in lines.items()}
    for keys, value in parse_overrides(overrides or []):
        if len(keys) == 2 and keys[0] in SECTIONS:
            if data.get(keys[0]) is None:
                data[keys[0]] = {}
            section = data[keys[0]]
            if not isinstance(section, dict):
                raise ConfigError(f"--{'.'.join(keys)}: '{keys[0]}' is not a section")
            section[keys[1]] = value
        elif len(keys) == 1 and keys[0] not in SECTIONS:
            data[keys[0]] = value
        else:
            raise ConfigError(f"--{'.'.join(keys)}: expected --KEY or --SECTION.KEY (sections: {', '.join(SECTIONS)})")
        origin[keys] = f"--{'.'.join(keys)}"

    def loc(*keys: str) -> str:
        return origin.get(tuple(keys)) or origin.get(tuple(keys[:1])) or str(path or "config")

    top = [f.name for f in dataclasses.fields(RunArgs)]
    run_values: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if k in SECTIONS:
            value = {} if value is None else value
            if not isinstance(value, dict):
                raise ConfigError(f"{loc(key)}: section '{key}' takes a mapping of key: value")
            for sk in value:
                if str(sk).replace("-", "_") in RUN_OWNED.get(k, ()):
                    raise ConfigError(f"{loc(key, sk)}: key '{sk}' in section '{key}' is set by thinksafe run")
            sections[k] = _parse_section(SECTIONS[k], value, lambda sk, key=key: loc(key, sk), key)
        elif k in top:
            run_values[key] = value
        else:
            raise ConfigError(f"{loc(key)}: unknown key '{key}' (top-level keys: {', '.join([*top, *SECTIONS])})")
    if isinstance(run_values.get("arms"), str):  # --arms a,b  or  arms: a, b
        run_values["arms"] = [a.strip() for a in run_values["arms"].split(",") if a.strip()]
    run = _parse_section(RunArgs, run_values, loc)
    cfg = RunConfig(run=run, **sections, file=str(path) if path else "")
    check(cfg, loc)
    return cfg


def check(cfg: RunConfig, loc: Callable[..., str]) -> None:
    """What the stage parsers don't check, checked before anything runs."""
    from thinksafe.evaluate.benchmarks import select
    from thinksafe.prompts import BUILTIN
    from thinksafe.steer import resolve_template

    run = cfg.run
    unknown = [a for a in run.arms if a not in ARMS]
    if unknown or not run.arms:
        what = f"unknown arm '{unknown[0]}'" if unknown else "no arms"
        raise ConfigError(f"{loc('arms')}: {what}; choose from {', '.join(ARMS)}")
    if len(set(run.arms)) != len(run.arms):
        raise ConfigError(f"{loc('arms')}: an arm is listed twice")
    arms = [ARMS[a] for a in run.arms]
    need_prompts = [a.name for a in arms if a.data == "self" or a.grpo]
    if need_prompts and not run.harmful:
        raise ConfigError(f"{loc('harmful')}: arms {', '.join(need_prompts)} need harmful prompts")
    for label in ("harmful", "benign") if need_prompts else ():
        for source in getattr(run, label):
            name, sep, rest = source.partition(":")
            path = Path(rest if sep and name in BUILTIN else source)
            if path.suffix.lower() in (".json", ".jsonl", ".csv") and not path.is_file():
                raise ConfigError(f"{loc(label)}: {path}: file not found")
    if run.limit is not None and run.limit < 1:
        raise ConfigError(f"{loc('limit')}: must be >= 1")
    if run.rejection_samples < 1:
        raise ConfigError(f"{loc('rejection_samples')}: must be >= 1")
    for arm in arms:
        if arm.data in BASELINE_FIELDS:
            key = BASELINE_FIELDS[arm.data]
            name, _, local = getattr(run, key).partition(":")
            if name != arm.data:
                raise ConfigError(f"{loc(key)}: expected {arm.data} or {arm.data}:PATH, got {getattr(run, key)!r}")
            if local and not Path(local).exists():
                raise ConfigError(f"{loc(key)}: {local}: file not found")
        try:
            resolve_template(arm.synth.get("steering", cfg.synthesize.steering))
        except ConfigError as e:
            raise ConfigError(f"{loc('synthesize', 'steering')}: {e}") from None
    try:
        select(cfg.evaluate.benchmarks)
    except ConfigError as e:
        raise ConfigError(f"{loc('evaluate', 'benchmarks')}: {e}") from None
    if cfg.evaluate.judge is not None and cfg.evaluate.judge not in GUARDS:
        raise ConfigError(f"{loc('evaluate', 'judge')}: '{cfg.evaluate.judge}' not one of {', '.join(GUARDS)}")
    if cfg.train.effective_batch_size % cfg.train.per_device_batch_size:
        raise ConfigError(f"{loc('train', 'effective_batch_size')}: not a multiple of per_device_batch_size")
    if cfg.train.full and (cfg.train.kl_benign or "thinksafe+kl" in run.arms):
        raise ConfigError(f"{loc('train', 'full')}: the KL term needs LoRA (its reference is the model with adapters off)")
    g = cfg.grpo
    if "grpo" in run.arms and (g.per_device_batch_size * g.gradient_accumulation_steps) % g.num_generations:
        raise ConfigError(f"{loc('grpo', 'num_generations')}: completions per step (batch x accumulation) "
                          f"is not a multiple of num_generations {g.num_generations}")


# ---------------------------------------------------------------- stages and the plan


@dataclass
class Stage:
    """One unit of cached work. Arms that need the same key share one Stage."""

    kind: str  # prompts | synthesize | data | train | grpo | shift | evaluate | curve
    key: str
    config: dict[str, Any]  # what the key hashes, besides the keys of `deps`
    deps: list[Stage]
    work: Callable[[Stage, RunConfig], dict[str, Any]]  # does the work in self.dir, returns ledger counts
    source: str | None = None  # train / shift on a baseline: its source string (hashed with the file's content)
    arms: list[str] = field(default_factory=list)  # arms using it; the first one owns its dir
    dir: Path = Path()
    status: str = "run"  # cached | resume | run, then done

    def dep(self, kind: str) -> Stage:
        return next(d for d in self.deps if d.kind == kind)

    @property
    def data(self) -> str:
        """What train / shift read: the baseline source, or the dir of the stage that made the data."""
        return self.source or str(self.deps[0].dir)


@dataclass
class Plan:
    run_dir: Path
    arms: list[str]
    stages: list[Stage]  # each once, in execution order
    per_arm: dict[str, list[Stage]]

    def counts(self) -> dict[str, int]:
        return {s: sum(x.status == s for x in self.stages) for s in ("cached", "resume", "run")}


def _local_file(source: str) -> Path | None:
    """The local file behind a source string (PATH, or NAME:PATH), if there is one."""
    for candidate in (source, source.partition(":")[2]):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def fingerprint(source: str) -> str | None:
    """sha256 of the local file a source reads (an edited file is a new input); None for hub sets and built-ins."""
    path = _local_file(source)
    if path is None:
        return None
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _settings(obj: Any, section: str) -> dict[str, Any]:
    drop = RUN_OWNED.get(section, set()) | NOT_IN_KEY.get(section, set())
    return {k: v for k, v in asdict(obj).items() if k not in drop}


def eval_guard(cfg: RunConfig) -> GuardConfig:
    """The evaluation judge: the guard section, with evaluate.judge naming another guard if set."""
    return cfg.guard if cfg.evaluate.judge is None else replace(cfg.guard, guard=cfg.evaluate.judge)


def build_plan(cfg: RunConfig, run_dir: Path) -> Plan:
    """Each arm's stages with their keys; equal keys are one shared stage. Reads no model and no data
    (only hashes local input files), so a dry run is fast."""
    run, model = cfg.run, asdict(cfg.model)
    by_key: dict[str, Stage] = {}
    per_arm: dict[str, list[Stage]] = {a: [] for a in run.arms}

    def stage(arm: str, kind: str, config: dict, deps: list[Stage], work, source: str | None = None) -> Stage:
        key = config_hash({"stage": kind, "config": config, "deps": {d.kind: d.key for d in deps}})
        s = by_key.setdefault(key, Stage(kind, key, config, deps, work, source))
        if arm not in s.arms:
            s.arms.append(arm)
        per_arm[arm].append(s)
        return s

    for name in run.arms:
        arm = ARMS[name]
        made: Stage | None = None  # the stage that made this arm's training data
        baseline = getattr(run, BASELINE_FIELDS[arm.data]) if arm.data in BASELINE_FIELDS else None
        if arm.data == "self" or arm.grpo:
            prompts = stage(name, "prompts", {"harmful": {s: fingerprint(s) for s in run.harmful},
                                              "benign": {s: fingerprint(s) for s in run.benign},
                                              "limit": run.limit, "seed": run.seed}, [], do_prompts)
        if arm.data == "self":
            synth = {**_settings(cfg.synthesize, "synthesize"), **arm.synth}
            if arm.rejection:
                synth["samples_per_prompt"] = run.rejection_samples
            made = stage(name, "synthesize", {"synthesize": synth, "model": model, "guard": cfg.guard.key(),
                                              "backend": cfg.backend.backend}, [prompts], do_synthesize)
            if arm.strip_reasoning:
                made = stage(name, "data", {"transform": "empty the think block of harmful examples"}, [made], do_strip)
        data = {"baseline": baseline, "file": fingerprint(baseline)} if baseline else None
        trained = None
        if made or baseline:
            train = {**_settings(cfg.train, "train"), **arm.train, **({"save_every_epoch": True} if run.curve else {})}
            trained = stage(name, "train", {"train": train, "model": model, "data": data}, [made] if made else [],
                            do_train, baseline)
        elif arm.grpo:
            trained = stage(name, "grpo", {"grpo": _settings(cfg.grpo, "grpo"), "model": model, "guard": cfg.guard.key()},
                            [prompts], do_grpo)
        evaluation = {"evaluate": {**_settings(cfg.evaluate, "evaluate"), "judge": None},
                      "model": {**model, "adapter": None} if trained else model,
                      "guard": eval_guard(cfg).key(), "backend": cfg.backend.backend}
        stage(name, "evaluate", evaluation, [trained] if trained else [], do_evaluate)
        if run.curve and trained:
            stage(name, "curve", evaluation, [trained], do_curve)
        if made or baseline:
            shift = _settings(cfg.shift, "shift")
            if cfg.shift.limit is None:  # measure the examples that train used
                shift.update(limit=cfg.train.limit, seed=cfg.train.seed)
            stage(name, "shift", {"shift": shift, "model": model, "data": data}, [made] if made else [], do_shift, baseline)
    stages = list(by_key.values())
    assign_dirs(stages, run_dir)
    return Plan(run_dir, list(run.arms), stages, per_arm)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def assign_dirs(stages: list[Stage], run_dir: Path) -> None:
    """A stage goes where its key already is (finished: cached; started: resume); else to
    RUN_DIR/<first arm>/<kind> (or <kind>-<key> when that dir holds another stage this plan still needs)."""
    found: dict[str, Path] = {}
    for marker in ("done.json", "stage.json"):
        for f in sorted(run_dir.glob(f"*/*/{marker}")):
            info = _read_json(f)
            if info and "key" in info:
                found.setdefault(info["key"], f.parent)
    claimed: set[Path] = set()
    for s in stages:
        if s.key in found and found[s.key] not in claimed:
            s.dir = found[s.key]
            done = _read_json(s.dir / "done.json")
            s.status = "cached" if done and done.get("key") == s.key else "resume"
            claimed.add(s.dir)
    for s in stages:
        if s.status != "run":
            continue
        d = run_dir / s.arms[0] / s.kind
        s.dir = d if d not in claimed else run_dir / s.arms[0] / f"{s.kind}-{s.key[:8]}"
        s.status = "run"
        claimed.add(s.dir)


# ---------------------------------------------------------------- the work of each stage


def do_prompts(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    """Pool each label's sources (a text in both sets stays harmful), then a seeded sample of --limit per label."""
    from thinksafe.prompts import load_prompts, sample

    run = cfg.run
    harmful_ids: set[str] = set()
    stats: dict[str, Any] = {}
    for label in ("harmful", "benign"):
        pool: dict[str, Any] = {}
        for source in getattr(run, label):
            for p in load_prompts(source, label=label):
                if p.id not in harmful_ids:
                    pool.setdefault(p.id, p)
        if label == "harmful":
            harmful_ids = set(pool)
        chosen = sample(list(pool.values()), run.limit, run.seed)
        if chosen:
            rows = [{"prompt": p.prompt, "label": label, "source": p.source} for p in chosen]
            write_text_atomic(s.dir / f"{label}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        stats[label] = {"sources": getattr(run, label), "pool": len(pool), "prompts": len(chosen)}
    write_json_atomic(s.dir / "stats.json", stats)
    console.print(f"prompts: {stats['harmful']['prompts']} harmful (pool {stats['harmful']['pool']}), "
                  f"{stats['benign']['prompts']} benign (pool {stats['benign']['pool']}) → {s.dir}")
    return {}


def do_synthesize(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    from thinksafe.dataset import synthesize

    prompts = s.dep("prompts").dir
    benign = prompts / "benign.jsonl"
    args = SynthesizeArgs(**{**asdict(cfg.synthesize), **s.config["synthesize"], "harmful": str(prompts / "harmful.jsonl"),
                             "benign": str(benign) if benign.exists() else None, "out": str(s.dir), "overwrite": True})
    stats = synthesize(args, cfg.model, cfg.backend, cfg.guard)
    prompt_tokens = sum(r["prompt_tokens"] for r in read_jsonl(s.dir / "generations.jsonl"))
    return {"tokens_generated": stats["generated_tokens"], "tokens_prompt": prompt_tokens}


def empty_reasoning(response: str) -> str:
    """The response with its reasoning removed and the think block kept, empty, so the format stays valid."""
    from thinksafe.formats import THINK_CLOSE
    from thinksafe.train.data import strip_think

    if THINK_CLOSE not in response:
        return response
    return f"<think>\n\n</think>\n\n{strip_think(response, 'answer')}"


def do_strip(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    rows = list(read_jsonl(s.dep("synthesize").dir / "dataset.jsonl"))
    stripped = 0
    for r in rows:
        if r["prompt_label"] == "harmful":
            new = empty_reasoning(r["response"])
            stripped += new != r["response"]
            r["response"], r["meta"] = new, {**r.get("meta", {}), "reasoning_removed": True}
    write_text_atomic(s.dir / "dataset.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_json_atomic(s.dir / "stats.json", {"examples": len(rows), "harmful_reasoning_removed": stripped})
    note = "" if stripped else " (none had a think block: a plain model, so this is thinksafe's data)"
    console.print(f"data: reasoning removed from {stripped} harmful examples{note} → {s.dir}")
    return {}


def do_train(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    from thinksafe.train import train

    args = TrainArgs(**{**asdict(cfg.train), **s.config["train"], "data": s.data, "out": str(s.dir), "resume": True})
    stats = train(args, cfg.model)
    tokens = round(stats["tokens_per_epoch"] * stats["epochs"])
    benign_share = stats["benign"] / max(stats["examples"], 1)  # the KL reference runs on benign examples
    return {"tokens_trained": tokens, "tokens_forward": round(tokens * benign_share) if args.kl_benign else 0,
            "mode": stats["mode"]}


def do_grpo(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    from thinksafe.grpo import grpo

    prompts = s.dep("prompts").dir
    benign = prompts / "benign.jsonl"
    args = GRPOArgs(**{**asdict(cfg.grpo), "prompts": [], "harmful": str(prompts / "harmful.jsonl"),
                       "benign": str(benign) if benign.exists() else None, "out": str(s.dir), "resume": True})
    stats = grpo(args, cfg.model, cfg.guard)
    gen = stats["completion_tokens"]
    # The policy's forward+backward on every completion, and the frozen reference's forward when beta > 0.
    return {"tokens_generated": gen, "tokens_trained": gen, "tokens_forward": gen if args.beta else 0, "mode": "lora"}


def _evaluate(out: Path, adapter: str | None, cfg: RunConfig) -> dict[str, int]:
    """Evaluate the model (+ adapter) into out; returns its ledger token counts."""
    from thinksafe.evaluate.run import evaluate

    args = EvaluateArgs(**{**asdict(cfg.evaluate), "out": str(out), "overwrite": True, "judge": None})
    results = evaluate(args, replace(cfg.model, adapter=adapter), cfg.backend, eval_guard(cfg))
    benches = results["benchmarks"].values()
    return {"tokens_generated": sum(b["tokens"]["completion"] for b in benches),
            "tokens_prompt": sum(b["tokens"]["prompt"] for b in benches)}


def do_evaluate(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    return _evaluate(s.dir, str(s.deps[0].dir) if s.deps else cfg.model.adapter, cfg)


def do_curve(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    """Evaluate each checkpoint the training stage listed in checkpoints.jsonl but its last (the final adapter is
    the arm's evaluate stage) into step-N/; curve.json lists them with the training seconds and tokens so far."""
    trained = s.deps[0]
    final = (_read_json(trained.dir / "train_stats.json") or {}).get("steps")
    points, counts = [], {"tokens_generated": 0, "tokens_prompt": 0}
    for c in read_jsonl(trained.dir / "checkpoints.jsonl"):
        if c["step"] == final:
            continue
        out = s.dir / f"step-{c['step']}"
        for k, v in _evaluate(out, str(trained.dir / c["path"]), cfg).items():
            counts[k] += v
        points.append({**c, "results": f"{out.name}/results.json"})
    write_json_atomic(s.dir / "curve.json", {"training_stage": trained.kind, "final_step": final, "points": points})
    return counts


def do_shift(s: Stage, cfg: RunConfig) -> dict[str, Any]:
    from thinksafe.shift import shift

    args = ShiftArgs(**{**asdict(cfg.shift), **s.config["shift"], "data": [s.data], "out": str(s.dir / "shift.jsonl")})
    (result,) = shift(args, cfg.model)
    write_json_atomic(s.dir / "shift.json", result)
    return {"tokens_forward": result["response_tokens"]}


# ---------------------------------------------------------------- cost ledger

FLOPS_NOTE = ("FLOPs ≈ 2·N per token processed forward (generation: prompt + generated tokens; shift; a KL "
              "reference), 6·N per token trained with full fine-tuning, 4·N per token trained with LoRA (forward "
              "2N + backward through the activations 2N; the frozen weights get no gradient, the adapters' own "
              "cost is negligible). N = the model's parameter count. Guard-model FLOPs are not counted.")


_PARAMS: dict[tuple[str, bool], int | None] = {}


def count_params(spec: ModelSpec) -> int | None:
    """Parameters of the base model, counted on the meta device (no weights are loaded)."""
    key = (spec.model, spec.trust_remote_code)
    if key not in _PARAMS:
        try:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            from thinksafe.models import resolve_model

            config = AutoConfig.from_pretrained(resolve_model(spec.model), trust_remote_code=spec.trust_remote_code)
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
            _PARAMS[key] = sum(p.numel() for p in model.parameters())
        except Exception:  # the ledger still records time and tokens
            _PARAMS[key] = None
    return _PARAMS[key]


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def ledger_entry(s: Stage, cfg: RunConfig, counts: dict[str, Any], wall: float, resumed: bool) -> dict[str, Any]:
    n = count_params(cfg.model)
    gen, prompt = counts.get("tokens_generated", 0), counts.get("tokens_prompt", 0)
    fwd, trained = counts.get("tokens_forward", 0), counts.get("tokens_trained", 0)
    per_trained = 6 if counts.get("mode") == "full" else 4
    if s.kind == "grpo":  # its generated tokens are also its trained tokens: count generation once
        flops = None if n is None else 2 * n * (gen + fwd) + per_trained * n * trained
    else:
        flops = None if n is None else 2 * n * (gen + prompt + fwd) + per_trained * n * trained
    return {
        "stage": s.kind, "arms": s.arms, "key": s.key, "wall_seconds": round(wall, 2), "device": device_name(),
        "tokens_generated": gen, "tokens_prompt": prompt, "tokens_forward": fwd, "tokens_trained": trained,
        "params": n, "flops": flops, "flops_formula": FLOPS_NOTE, "resumed": resumed,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------- running


def run_stage(s: Stage, cfg: RunConfig, index: int, total: int) -> None:
    others = f"  (shared with {', '.join(s.arms[1:])})" if len(s.arms) > 1 else ""
    console.rule(f"[bold]stage {index}/{total}: {s.arms[0]} · {s.kind}[/bold]{others}"
                 + ("  [yellow]resuming[/yellow]" if s.status == "resume" else ""))
    resumed = s.status == "resume"
    if not resumed and s.dir.exists():
        shutil.rmtree(s.dir)  # holds another key's outputs (a changed setting): start clean
    s.dir.mkdir(parents=True, exist_ok=True)
    if not resumed:
        write_json_atomic(s.dir / "stage.json", {"key": s.key, "stage": s.kind, "arms": s.arms,
                                                 "deps": {d.kind: d.key for d in s.deps},
                                                 "config": s.config, "source": s.source,
                                                 "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    t0 = time.perf_counter()
    counts = s.work(s, cfg)
    wall = time.perf_counter() - t0
    gc.collect()
    write_json_atomic(s.dir / "ledger.json", ledger_entry(s, cfg, counts, wall, resumed))
    write_json_atomic(s.dir / "done.json", {"key": s.key, "stage": s.kind, "arms": s.arms, "wall_seconds": round(wall, 2),
                                            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    s.status = "done"
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


def run(cfg: RunConfig, *, dry_run: bool = False) -> Plan:
    """Plan, then run every stage that is not cached, in arm order; then the report."""
    run_dir = default_out(cfg)
    plan = build_plan(cfg, run_dir)
    from rich.console import Console

    out = Console(width=max(console.width, 160))  # wide tables: don't squeeze them into 80 columns when piped
    if dry_run:
        out.print(plan_table(plan))
        return plan
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_run_json(plan, cfg)
    console.print(plan_table(plan))
    todo = [s for s in plan.stages if s.status != "cached"]
    t0 = time.perf_counter()
    for i, s in enumerate(todo, 1):
        run_stage(s, cfg, i, len(todo))
    write_run_json(plan, cfg)
    console.print(f"run finished in {time.perf_counter() - t0:.0f}s ({len(todo)} stages run, "
                  f"{len(plan.stages) - len(todo)} cached) → {run_dir}")
    if cfg.run.report:
        from thinksafe.report import print_summary, write_report

        paths = write_report(run_dir)
        print_summary(run_dir, out)
        out.print(f"report → {paths['html'].resolve()}")
    return plan


# ---------------------------------------------------------------- CLI


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
    ]
    for f in dataclasses.fields(RunArgs):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  {f.name:<22} {f.metadata.get('help', '')} (default: {default!r})")
    lines += ["", "arms:"] + [f"  {a.name:<22} {a.help}" for a in ARMS.values()]
    for name, cls in SECTIONS.items():
        owned = RUN_OWNED.get(name, set())
        lines += ["", f"{name}:  ({cls.__name__}; same keys as the flags of its command)"]
        for f in dataclasses.fields(cls):
            if f.name in owned:
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            lines.append(f"  {f.name:<26} {f.metadata.get('help', '')} (default: {default!r})")
    return "\n".join(lines)


def cmd_run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or "--help" in argv or "-h" in argv:
        print(usage())
        return 0 if argv else 2
    dry_run = "--dry-run" in argv or "--dry_run" in argv
    rest = [a for a in argv if a not in ("--dry-run", "--dry_run")]
    if rest[0].startswith("--"):
        raise ConfigError("run: the config file comes first: thinksafe run CONFIG.yaml [flags]")
    run(load_config(rest[0], rest[1:]), dry_run=dry_run)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cmd_run(sys.argv[1:]))
