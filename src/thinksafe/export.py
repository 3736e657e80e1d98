"""`thinksafe export RUN_DIR/ARM --out DIR`: an arm's model and training data as Hugging Face hub folders, the way
the paper, STAR-1 and RealSafe-R1 released theirs.

    DIR/model/     the LoRA adapter (--merged true: the merged model) + README.md, its model card: base model,
                   recipe, training data, judge and its measured agreement, results with 95 % CIs, cost ledger
    DIR/dataset/   data/train.jsonl in the released ThinkSafe schema + README.md, its dataset card: prompt sources
                   and their licenses, steering, guard, yield per label (arms that synthesized their own data only)

--push_to_hub REPO uploads model/ to the model repo REPO and dataset/ to the dataset repo REPO-data (or
--dataset_repo), with the token huggingface_hub finds (HF_TOKEN, or the one `hf auth login` stored).
Every number is read from the run: the stages' readers (report/load.py) and each stage directory's stage.json.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thinksafe.config import opt, parse_config
from thinksafe.errors import InputError, ThinksafeError
from thinksafe.records import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic, write_text_atomic
from thinksafe.report.load import ArmData, RunData, StageInfo, load_run
from thinksafe.stages.base import LOG, StageDir

SCHEMA = ("instruction", "response", "prompt_label", "response_label")  # the released Seanie-lee/ThinkSafe-* columns
# The run's bookkeeping, not the model; train_config.yaml names this machine's paths (the card has the recipe).
RUN_FILES = {"stage.json", "done.json", "ledger.json", "train_stats.json", "train_config.yaml", "README.md", LOG}
RECIPE = ("full", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "lr_scheduler",
          "warmup_ratio", "epochs", "effective_batch_size", "per_device_batch_size", "max_length", "kl_benign",
          "num_generations", "max_steps", "limit", "seed")
# The named prompt sets' licenses, as shared/data/README.md records them for their upstream repositories (a local
# copy is looked up in the README beside it first).
NAMED_LICENSES = {"star1": "Apache-2.0", "advbench": "MIT", "gsm8k": "MIT"}
DEMO_LICENSE = "Apache-2.0 (thinksafe's own demo prompts)"


@dataclass
class ExportArgs:
    arm: str = opt("", "the arm's directory in a run, RUN_DIR/ARM (also the first argument)")
    out: str = opt("", "output directory: DIR/model and DIR/dataset")
    merged: bool = opt(False, "export the adapter merged into its base model (a plain transformers model)")
    base_model: str | None = opt(None, "the base's hub id for the model card, when the run used a local copy")
    judge_eval: str | None = opt(None, "a `thinksafe judge-eval` DIR whose agreement the model card reports "
                                       "(unset: the run's own judge-eval stage, if it has one)")
    push_to_hub: str | None = opt(None, "upload DIR/model to this model repo and DIR/dataset to REPO-data")
    dataset_repo: str | None = opt(None, "the dataset repo (unset: REPO-data with --push_to_hub)")
    private: bool = opt(True, "create the hub repos private (publish them on the hub once checked)")
    overwrite: bool = opt(False, "replace DIR/model and DIR/dataset when they hold files")


def cmd_export(argv: list[str]) -> int:
    from thinksafe.progress import console

    if argv and not argv[0].startswith("-"):  # `thinksafe export RUN_DIR/ARM …`
        argv = ["--arm", *argv]
    (args,) = parse_config("thinksafe export", (ExportArgs,), argv, "Write a run arm's model and training data "
                           "as Hugging Face hub folders with model and dataset cards; optionally upload them.")
    if not args.arm or not args.out:
        raise InputError("export: RUN_DIR/ARM and --out are required")
    for folder in export(args):
        console.print(f"export → {folder}")
    return 0


def export(args: ExportArgs) -> list[Path]:
    """Write DIR/model (and DIR/dataset), upload them with --push_to_hub; returns the folders written."""
    run, arm, trainer = load_arm(Path(args.arm))
    token = hub_token() if args.push_to_hub else None  # no token: fail before anything is written
    data_repo = args.dataset_repo or (f"{args.push_to_hub}-data" if args.push_to_hub else None)
    out = Path(args.out)
    made = arm.output("data") or arm.output("synthesize")  # the dataset train read, when the arm made its own
    folders = [write_model(run, arm, trainer, args, out / "model", data_repo if made else None)]
    if made:
        folders.append(write_dataset(arm, made, args, out / "dataset", args.push_to_hub))
    if token:
        push(folders, args.push_to_hub, data_repo, args.private, token, arm.name)
    return folders


def load_arm(path: Path) -> tuple[RunData, ArmData, StageInfo]:
    if not (path.parent / "run.json").is_file():
        raise InputError(f"{path}: not an arm of a thinksafe run (no {path.parent / 'run.json'})")
    run = load_run(path.parent)
    arm = run.arm(path.name)
    if arm is None:
        raise InputError(f"{path}: no arm '{path.name}' in this run (arms: {', '.join(a.name for a in run.arms)})")
    trainer = arm.trainer()
    if trainer is None:
        raise InputError(f"{path}: arm '{arm.name}' trains no model, so it has no adapter to export")
    if not trainer.done or not any((trainer.dir / f).is_file() for f in ("adapter_config.json", "config.json")):
        raise InputError(f"{trainer.dir}: no trained adapter (its {trainer.kind} stage has not finished)")
    return run, arm, trainer


def started(st: StageInfo | None) -> dict[str, Any]:
    """The settings a stage directory was made with (its key's parts: settings, model, guard …)."""
    return ((StageDir(st.dir).started() or {}).get("config") or {}) if st else {}


def fresh(folder: Path, overwrite: bool) -> Path:
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise InputError(f"{folder}: holds files; use --overwrite true or a new --out")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- the model folder


def write_model(run: RunData, arm: ArmData, trainer: StageInfo, args: ExportArgs, folder: Path,
                data_repo: str | None) -> Path:
    fresh(folder, args.overwrite)
    base = started(trainer)["model"]["model"]
    hub_base = args.base_model or hub_id(base)
    adapter = (trainer.dir / "adapter_config.json").is_file()
    if adapter and args.merged:
        from thinksafe.train.merge import merge

        merge(str(trainer.dir), str(folder))
    else:
        for f in trainer.dir.iterdir():
            if f.is_file() and f.name not in RUN_FILES and f.suffix != ".jsonl":
                shutil.copy2(f, folder / f.name)
    if adapter and not args.merged and hub_base:  # others load the adapter onto the base from the hub
        config = read_json(folder / "adapter_config.json")
        write_json_atomic(folder / "adapter_config.json", {**config, "base_model_name_or_path": hub_base})
    peft = adapter and not args.merged
    meta = {"base_model": hub_base, "base_model_relation": "adapter" if peft else "finetune",
            "library_name": "peft" if peft else "transformers",
            "license": base_license(base) or (base_license(hub_base) if hub_base else None),
            "datasets": [data_repo] if data_repo else None, "pipeline_tag": "text-generation",
            "tags": ["thinksafe", "safety", "reasoning", "refusal", *(["lora"] if adapter else [])]}
    body = [f"# {args.push_to_hub or arm.name}", f"The `{arm.name}` arm of a thinksafe run ({arm.help}); thinksafe "
            "implements ThinkSafe (Lee et al. 2026, [arXiv 2601.23143](https://arxiv.org/abs/2601.23143)).",
            "## Base model", base_text(base, hub_base), "## Recipe", recipe(trainer), "## Training data", "\n".join(provenance(arm, trainer)),
            "## Judge", judge_section(run, arm, args), "## Results", results_section(run, arm),
            "## Cost", ledger_section(arm)]
    write_text_atomic(folder / "README.md", card(meta, body))
    return folder


def hub_id(model: str) -> str | None:
    """The hub id of the model a run named: an embedded alias's original, a hub id; None for a local path."""
    from thinksafe.models import EMBEDDED

    if model in EMBEDDED:
        return EMBEDDED[model].hf_name.split(" (")[0]
    return model if model.count("/") == 1 and not Path(model).exists() else None


def base_text(base: str, hub_base: str | None) -> str:
    """The base as the card names it: a local path by its last part only (it names this machine's folders)."""
    from thinksafe.models import EMBEDDED

    if base in EMBEDDED:
        return f"`{hub_base}`, run as thinksafe's embedded `{base}`: {EMBEDDED[base].hf_name}"
    if hub_base:
        return f"`{hub_base}`" + ("" if hub_base == base else f" (run from a local copy, `{Path(base).name}`)")
    return f"`{Path(base).name}`, a local model (not on the hub)"


def base_license(model: str) -> str | None:
    """The license in the base model's own card, where this machine has it (a local dir, the hub cache)."""
    from huggingface_hub import try_to_load_from_cache

    readme = Path(model) / "README.md"
    if not readme.is_file() and model.count("/") == 1:
        cached = try_to_load_from_cache(model, "README.md")
        readme = Path(cached) if isinstance(cached, str) else readme
    if not readme.is_file():
        return None
    parts = readme.read_text(encoding="utf-8").split("---", 2)
    meta = yaml.safe_load(parts[1]) if len(parts) == 3 and not parts[0].strip() else None
    return meta.get("license") if isinstance(meta, dict) else None


def recipe(trainer: StageInfo) -> str:
    settings, stats = started(trainer).get("settings", {}), trainer.output.stats or {}
    # epochs as training resolved them (unset: the data's preset), the rest as set; unset ones left out
    values = {**{k: settings.get(k) for k in RECIPE}, **({"epochs": stats["epochs"]} if "epochs" in stats else {})}
    rows = [[k, v] for k, v in values.items() if v is not None]
    rows += [[k, round(stats[k], 4) if k == "final_loss" else stats[k]]
             for k in ("examples", "steps", "final_loss", "loss_weighting") if stats.get(k) is not None]
    return f"`thinksafe {trainer.kind}`:\n\n" + table(["setting", "value"], rows)


def judge_section(run: RunData, arm: ArmData, args: ExportArgs) -> str:
    judges = {b["judge"] for b in (arm.results or {}).get("benchmarks", {}).values() if b["kind"] != "reasoning"}
    text = f"Safety and over-refusal judged by {', '.join(f'`{j}`' for j in sorted(judges)) or '—'}"
    found = agreement(run, arm, args)
    if not found:
        return text + ". Its agreement with human labels was not measured in this run (`thinksafe judge-eval`)."
    rows = [[q, p["judge"], ", ".join(Path(f).name for f in p["files"]), p["n"],
             with_ci(p["accuracy"], (p.get("ci95") or {}).get("accuracy")),
             with_ci(p["kappa"], (p.get("ci95") or {}).get("kappa"), kappa=True)] for q, p in found["pooled"].items()]
    return (text + ". Agreement with human labels (`thinksafe judge-eval`; accuracy in %, 95 % bootstrap CI):\n\n"
            + table(["question", "judge", "data", "n", "accuracy", "Cohen's κ"], rows))


def agreement(run: RunData, arm: ArmData, args: ExportArgs) -> dict[str, Any] | None:
    """--judge_eval's agreement.json, else the arm's judge-eval stage, else another arm's (a run's is shared)."""
    from thinksafe.stages.judge_eval import JUDGE_EVAL

    if args.judge_eval:
        found = JUDGE_EVAL.read(Path(args.judge_eval)).agreement
        if found is None:
            raise InputError(f"{args.judge_eval}: no agreement.json (make it with thinksafe judge-eval --out DIR)")
        return found
    return next((out.agreement for a in (arm, *run.arms) if (out := a.output("judge-eval")) and out.agreement), None)


def with_ci(value: float | None, ci: list[float] | None, kappa: bool = False) -> str:
    """A rate in percent (κ as is) with its 95 % CI where there is one."""
    if value is None:
        return "—"
    f = (lambda x: f"{x:.3f}") if kappa else (lambda x: f"{100 * x:.1f}")
    return f(value) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")


def results_section(run: RunData, arm: ArmData) -> str:
    initial = run.arm("initial") if arm.name != "initial" else None
    arms = [a for a in (arm, initial) if a and a.results]
    if arm not in arms:
        return "Not evaluated yet: the arm's evaluate stage has not finished."
    rows = []
    for name, entry in arm.results["benchmarks"].items():
        rows.append([name, entry["metric"], entry.get("judge", "—"),
                     *(with_ci(b["value"], b.get("ci95")) + f" (n={b['n']})" if (b := a.bench(name)) else "—"
                       for a in arms)])
    sampling = {"temperature {temperature}, top-p {top_p}, {max_new_tokens} new tokens, {n} sample(s)"
                .format(**b["sampling"]) for b in arm.results["benchmarks"].values()}
    return ("Rates in %, each with its 95 % bootstrap CI; harmful_response_rate and over_refusal_rate: lower is "
            f"better, pass@1: higher. Sampling: {'; '.join(sorted(sampling))}.\n\n"
            + table(["benchmark", "metric", "judge", *(a.name for a in arms)], rows))


def ledger_section(arm: ArmData) -> str:
    rows, wall, flops = [], 0.0, 0.0
    for st in arm.stages.values():
        e = st.ledger or {}
        shared = f" (run by {st.owner})" if st.owner != arm.name else ""
        rows.append([st.kind + shared, e.get("wall_seconds", "—"), e.get("device", "—"), e.get("tokens_generated", "—"),
                     e.get("tokens_trained", "—"), f"{e['flops']:.3g}" if e.get("flops") else "—"])
        if st.makes_model:
            wall, flops = wall + e.get("wall_seconds", 0.0), flops + (e.get("flops") or 0.0)
    return (f"Making the model took {wall:.1f} s and ≈ {flops:.3g} FLOPs (the stages that make it; evaluation "
            "extra). Per stage, from each stage's ledger.json:\n\n"
            + table(["stage", "wall s", "device", "tokens generated", "tokens trained", "FLOPs"], rows))


def provenance(arm: ArmData, trainer: StageInfo) -> list[str]:
    """Where the training data came from, as bullets: prompt sources, steering and sampling, the guard."""
    prompts, synth = arm.output("prompts"), started(arm.stages.get("synthesize"))
    lines = [f"- {label} prompts: {info['prompts']} sampled from a pool of {info['pool']} "
             f"({', '.join(f'`{shown(s)}`' for s in info['sources']) or 'none'})"
             for label, info in ((prompts.stats if prompts else None) or {}).items()]
    if synth:
        s, g = synth["settings"], synth["guard"]
        lines.append(f"- steering: `{s['steering']}` on harmful prompts (benign ones unsteered); temperature "
                     f"{s['temperature']}, top-p {s['top_p']}, {s['samples_per_prompt']} sample(s) per prompt, at "
                     f"most {s['max_new_tokens']} new tokens; written by the base model itself")
        lines.append(f"- guard: `{g['guard']}`" + (f" (`{g['guard_model']}`)" if g.get("guard_model") else "")
                     + f" on the {g['guard_sees']} response; complete generations judged safe kept")
    if "data" in arm.stages:
        lines.append("- the harmful examples' reasoning removed (their think block kept, empty)")
    if trainer.kind == "grpo":
        lines.append(f"- online RL (GRPO) on these prompts, the `{started(trainer)['guard']['guard']}` guard as reward: "
                     "no fixed dataset")
    elif not synth:
        data = started(trainer)["settings"]["data"]  # an input: {source: its file's hash}
        lines.append(f"- a teacher baseline: `{shown(next(iter(data)) if isinstance(data, dict) else data)}`")
    return lines


def shown(source: str) -> str:
    """A source as a card shows it: a local file by its name only (a path names this machine's folders)."""
    name, sep, local = source.partition(":")
    if sep and local:
        return f"{name}:{Path(local).name}"
    return Path(source).name if Path(source).is_file() else source


# ---------------------------------------------------------------- the dataset folder


def write_dataset(arm: ArmData, made, args: ExportArgs, folder: Path, model_repo: str | None) -> Path:
    fresh(folder, args.overwrite)
    rows = [{k: r[k] for k in SCHEMA} for r in read_jsonl(made.dataset)]
    write_jsonl_atomic(folder / "data" / "train.jsonl", rows)
    prompts = arm.output("prompts")
    sources = [s for info in ((prompts.stats if prompts else None) or {}).values() for s in info["sources"]]
    licenses = {s: source_license(s) for s in sources}
    ids = {hub_license(v) for v in licenses.values()}
    meta = {"license": ids.pop() if len(ids) == 1 and None not in ids else "other",
            "task_categories": ["text-generation"], "tags": ["thinksafe", "safety", "refusal", "reasoning"],
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}]}
    stats = (arm.output("synthesize").stats or {}).get("per_label", {})
    yields = [[label, s["prompts"], s["generations"], s["unsafe"], s["incomplete"], s["over_refusal"], s["kept"],
               s["yield_pct"], s["refusal_pct"]] for label, s in stats.items()]
    body = [f"# {arm.name} training data", f"{len(rows)} examples in the ThinkSafe schema ({', '.join(SCHEMA)}), "
            "the columns of the released `Seanie-lee/ThinkSafe-*` sets; self-generated refusals to harmful prompts "
            "(kept for safety training: the prompts are harmful) and plain answers to benign ones"
            + (f", made for the model [{model_repo}](https://huggingface.co/{model_repo})." if model_repo else "."),
            "## Where it came from", "\n".join(provenance(arm, arm.trainer())),
            "## Yield per label", "From synthesize's stats.json; yield = kept / prompts, refusal = kept examples that "
            "refuse, both in %.\n\n" + table(["label", "prompts", "generations", "unsafe", "incomplete",
                                             "over-refusal", "kept", "yield %", "refusal %"], yields),
            "## Licenses", "The responses were written by the base model (its license applies to them). The prompt "
            "sources:\n\n" + table(["source", "license"], [[f"`{shown(s)}`", v] for s, v in licenses.items()])]
    write_text_atomic(folder / "README.md", card(meta, body))
    return folder


def source_license(source: str) -> str:
    """A prompt source's license: the demo set's, a local file's from the table of the README beside it, a named
    set's from its card; otherwise unknown."""
    from thinksafe.prompts import BUILTIN, DEMO_SOURCES

    if source in DEMO_SOURCES:
        return DEMO_LICENSE
    name, _, local = source.partition(":")
    path = Path(local if name in BUILTIN and local else source)
    for parent in list(path.resolve().parents)[:3] if path.is_file() else ():
        found = readme_license(parent / "README.md", path.resolve().relative_to(parent).as_posix())
        if found:
            return found
    return NAMED_LICENSES.get(name, "unknown (not recorded; check the source before publishing)")


def readme_license(readme: Path, rel: str) -> str | None:
    """The `license` cell of the row naming `rel` in a markdown table of `readme` (shared/data/README.md's form:
    `pools/harmful_{train,val,test}.json | … | Apache-2.0`)."""
    column = None  # the license column of the table being read
    for line in readme.read_text(encoding="utf-8").splitlines() if readme.is_file() else ():
        if not line.lstrip().startswith("|"):
            column = None  # a table ends at its first other line
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        lower = [c.lower() for c in cells]
        if "license" in lower:
            column = lower.index("license")
            continue
        # `a_{x,y}.json` names a_x.json and a_y.json
        pattern = re.sub(r"\\\{(.*?)\\\}", lambda m: f"({m.group(1).replace(',', '|')})", re.escape(cells[0].strip("` ")))
        if column is not None and len(cells) > column and re.fullmatch(pattern, rel):
            return cells[column]
    return None


def hub_license(text: str) -> str | None:
    """A license as the hub's front matter names it ("Apache-2.0 (repo)" → apache-2.0); None when not one id."""
    match = re.fullmatch(r"([A-Za-z0-9.\-]+)( \([^;]*\))?", text)
    return match.group(1).lower() if match else None


# ---------------------------------------------------------------- cards and upload


def card(meta: dict[str, Any], sections: list[str]) -> str:
    front = yaml.safe_dump({k: v for k, v in meta.items() if v is not None}, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n\n".join(sections) + "\n"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731  (a value must not split its row)
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(map(cell, r)) + " |" for r in lines)


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise InputError("--push_to_hub: no Hugging Face token (set HF_TOKEN or run `hf auth login`)")
    return token


def push(folders: list[Path], model_repo: str, data_repo: str | None, private: bool, token: str, arm: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    for folder in folders:
        repo, kind = (model_repo, "model") if folder.name == "model" else (data_repo, "dataset")
        try:
            api.create_repo(repo, repo_type=kind, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=folder, repo_type=kind, commit_message=f"thinksafe export: {arm}")
        except Exception as e:  # offline, auth, quota, a taken name: one line naming the repo
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise ThinksafeError(f"{folder}: upload to the {kind} repo {repo} failed ({first})") from None
