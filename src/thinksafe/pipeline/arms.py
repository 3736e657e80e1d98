"""The arms of a run: each a recipe over the stages, read top to bottom in `recipe`.

An arm says where its training data comes from (`data`: synthesized by the model itself, or a teacher
baseline) and what it changes (synthesis / training overrides); `recipe` turns it into the stages it runs:

    thinksafe   prompts → synthesize (steered) → train → evaluate, + shift: its data's perplexity under the model
    star1       train on the baseline → evaluate, + shift
    grpo        prompts → grpo → evaluate
    initial     evaluate
    (any arm)   + judge-eval when the run names human-labeled judge sets (judge_data): its judge's agreement

With `curve: true` a trained arm also gets `curve`: every intermediate checkpoint evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from thinksafe.errors import ConfigError
from thinksafe.judge import GUARDS, GuardConfig
from thinksafe.stages import Stage, get
from thinksafe.stages.prompts import PromptsArgs


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
    extra: tuple[tuple[str, str], ...] = ()  # more stages: (stage name, the step it reads), after the recipe's


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


@dataclass
class Step:
    """One stage of an arm: its settings, the earlier steps it reads, and its guard when not the run's."""

    stage: Stage
    settings: Any
    reads: list[str] = field(default_factory=list)
    guard: GuardConfig | None = None


def eval_guard(cfg) -> GuardConfig:
    """The evaluation judge: the guard section, with evaluate.judge naming another guard if set."""
    return cfg.guard if cfg.evaluate.judge is None else replace(cfg.guard, guard=cfg.evaluate.judge)


def recipe(arm: Arm, cfg) -> list[Step]:
    run = cfg.run
    baseline = getattr(run, BASELINE_FIELDS[arm.data]) if arm.data in BASELINE_FIELDS else None
    steps: list[Step] = []
    made = None  # the step that made this arm's training data
    if arm.data == "self" or arm.grpo:
        steps.append(Step(get("prompts"), PromptsArgs(**{f.name: getattr(run, f.name) for f in fields(PromptsArgs)})))
    if arm.data == "self":
        rejection = {"samples_per_prompt": run.rejection_samples} if arm.rejection else {}
        steps.append(Step(get("synthesize"), replace(cfg.synthesize, **arm.synth, **rejection), ["prompts"]))
        made = "synthesize"
        if arm.strip_reasoning:
            steps.append(Step(get("data"), None, ["synthesize"]))
            made = "data"
    data = [made] if made else []
    trainer = None
    if made or baseline:
        curve = {"save_every_epoch": True} if run.curve else {}
        source = {"data": baseline} if baseline else {}
        steps.append(Step(get("train"), replace(cfg.train, **arm.train, **curve, **source), data))
        trainer = "train"
    elif arm.grpo:
        steps.append(Step(get("grpo"), cfg.grpo, ["prompts"]))
        trainer = "grpo"
    evaluation = replace(cfg.evaluate, judge=None)  # the judge is folded into the guard
    steps.append(Step(get("evaluate"), evaluation, [trainer] if trainer else [], eval_guard(cfg)))
    if run.curve and trainer:
        steps.append(Step(get("curve"), evaluation, [trainer], eval_guard(cfg)))
    if run.judge_data:  # every arm's judge, measured once (the same key: a shared stage)
        judge_eval = replace(getattr(cfg, "judge-eval"), data=list(run.judge_data))  # its section: bootstrap, seed
        steps.append(Step(get("judge-eval"), judge_eval, [], eval_guard(cfg)))
    if made or baseline:
        shift = cfg.shift
        if shift.limit is None:  # measure the examples that train used
            shift = replace(shift, limit=cfg.train.limit, seed=cfg.train.seed)
        steps.append(Step(get("shift"), replace(shift, data=[baseline]) if baseline else shift, data))
    for name, reads in arm.extra:
        stage = get(name)
        steps.append(Step(stage, getattr(cfg, stage.config_section() or "", None), [reads] if reads else []))
    return steps


# ---------------------------------------------------------------- checks before anything runs


def check(cfg, loc: Callable[..., str]) -> None:
    """What the section parsers don't check."""
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
        check_arm(arm, cfg, loc, resolve_template)
    try:
        select(cfg.evaluate.benchmarks)
    except ConfigError as e:
        raise ConfigError(f"{loc('evaluate', 'benchmarks')}: {e}") from None
    check_sections(cfg, loc)


def check_arm(arm: Arm, cfg, loc: Callable[..., str], resolve_template) -> None:
    if arm.data in BASELINE_FIELDS:
        key = BASELINE_FIELDS[arm.data]
        name, _, local = getattr(cfg.run, key).partition(":")
        if name != arm.data:
            raise ConfigError(f"{loc(key)}: expected {arm.data} or {arm.data}:PATH, got {getattr(cfg.run, key)!r}")
        if local and not Path(local).exists():
            raise ConfigError(f"{loc(key)}: {local}: file not found")
    try:
        resolve_template(arm.synth.get("steering", cfg.synthesize.steering))
    except ConfigError as e:
        raise ConfigError(f"{loc('synthesize', 'steering')}: {e}") from None


def check_sections(cfg, loc: Callable[..., str]) -> None:
    if cfg.evaluate.judge is not None and cfg.evaluate.judge not in GUARDS:
        raise ConfigError(f"{loc('evaluate', 'judge')}: '{cfg.evaluate.judge}' not one of {', '.join(GUARDS)}")
    if cfg.train.effective_batch_size % cfg.train.per_device_batch_size:
        raise ConfigError(f"{loc('train', 'effective_batch_size')}: not a multiple of per_device_batch_size")
    if cfg.train.full and (cfg.train.kl_benign or "thinksafe+kl" in cfg.run.arms):
        raise ConfigError(f"{loc('train', 'full')}: the KL term needs LoRA (its reference is the model with adapters off)")
    if "grpo" in cfg.run.arms:
        check_grpo_batch(cfg.grpo, loc)


def check_grpo_batch(g, loc: Callable[..., str]) -> None:
    """One process's view of a GRPO step: whole groups of G completions (more processes are checked at start)."""
    if g.effective_batch_size and g.effective_batch_size % g.per_device_batch_size:
        raise ConfigError(f"{loc('grpo', 'effective_batch_size')}: not a multiple of per_device_batch_size")
    if (g.effective_batch_size or g.per_device_batch_size * g.gradient_accumulation_steps) % g.num_generations:
        raise ConfigError(f"{loc('grpo', 'num_generations')}: completions per step (effective_batch_size, or batch x "
                          f"accumulation) is not a multiple of num_generations {g.num_generations}")
