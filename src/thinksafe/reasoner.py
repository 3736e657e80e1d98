"""An offline reasoning model: qwen2.5-coder-0.5b-instruct taught the think format on GSM8K by thinksafe itself.

No small reasoning model ships anywhere reachable offline, so we make one, R1-Distill style:
1. the base's chat template gets a generation prompt that opens `<think>\\n` (as DeepSeek-R1-Distill's does), so
   `--reasoning auto` detects a think model and every response starts inside its reasoning;
2. `thinksafe train` (LoRA) on GSM8K train solutions rewritten as `<think>\\n{steps}\\n</think>\\n\\nThe final answer
   is N.` (calculator notes `<<…>>` dropped), half under the GSM8K evaluation instruction, half as the bare
   question, so the format is not tied to one prompt; and on general benign requests (Alpaca-derived, a split
   the demo never samples) answered STaR-style by the base model itself: its own short plan as the trace, its
   own concise answer after it. Without these the reasoner thinks only about arithmetic: v1, GSM8K alone, left
   its think block open on every non-math prompt tried. No safety data of any kind: the point is a reasoner
   whose safety nobody tuned, and STAR-1 stays the teacher baseline;
3. the adapter ships inside the package (`resources/reasoner/`, a few MB) with its recipe, data hash and loss
   curve; first use merges it into the base under $THINKSAFE_HOME (seconds), so the demo stays fast.

    thinksafe build-reasoner --config configs/reasoner.yaml     # rebuild it (tens of minutes on 2 cores)
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import InputError
from thinksafe.models import sha256_files
from thinksafe.records import atomic_dir, ensure_dir, read_json

ALIAS = "qwen2.5-0.5b-think"
BASE = "qwen2.5-coder-0.5b-instruct"
ASSISTANT_OPEN = "'<|im_start|>assistant\\n'"  # the Qwen2.5 template's generation prompt, as written in it
THINK_PROMPT = "'<|im_start|>assistant\\n<think>\\n'"
CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
RECORDS = ("recipe.json", "loss.jsonl")  # shipped beside the adapter: how it was made


@dataclass
class ReasonerArgs:
    gsm8k: str = opt("", "GSM8K train JSONL (question, answer with '#### N'), e.g. ../shared/data/reasoning/gsm8k_train.jsonl", role="input")
    out: str = opt("", "build directory: data, adapter, recipe, loss curve", role="output")
    examples: int = opt(512, "GSM8K solutions to train on (a seeded sample)")
    instruction_share: float = opt(0.5, "share of examples under the GSM8K evaluation instruction (the rest: bare question)")
    general: str = opt("", "benign requests (JSON list with `instruction`), e.g. ../shared/data/pools/harmless_val.json: "
                       "the base model writes its own plan and answer for each; empty = GSM8K only", role="input")
    general_prompts: int = opt(0, "general requests to sample (those whose plan and answer finish, and do not refuse, are kept)")
    general_max_new_tokens: int = opt(224, "new-token limit of the base model's answers (plans: 96); a cut answer is dropped")
    epochs: float = opt(1.0, "epochs")
    learning_rate: float = opt(2e-4, "LoRA learning rate (a format is learned fast; the paper's 1e-5 is for safety SFT)")
    lora_r: int = opt(32, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha")
    target_modules: str = opt("q_proj,k_proj,v_proj,o_proj", "LoRA target modules")
    max_length: int = opt(384, "max tokens per example")
    per_device_batch_size: int = opt(4, "examples per forward pass")
    seed: int = opt(0, "seed: the sample, the LoRA init, the data order")
    package: bool = opt(False, "copy the adapter, recipe and loss curve into the package (src/thinksafe/resources/reasoner)", role="runtime")


# ---------------------------------------------------------------- data


def think_response(solution: str) -> str:
    """A GSM8K solution ('steps … #### N') as a think trace and an answer the gsm8k grader reads."""
    steps, sep, final = solution.rpartition("####")
    if not sep or not final.strip():
        raise ValueError("no '#### answer' line")
    steps = CALCULATOR_NOTE.sub("", steps).strip()
    return f"<think>\n{steps}\n</think>\n\nThe final answer is {final.strip()}."


def think_examples(path: Path, n: int, instruction_share: float, seed: int) -> list[dict[str, Any]]:
    """n seeded GSM8K rows as ThinkSafe-schema training examples (label benign: plain CE, no safety role)."""
    from thinksafe.evaluate.benchmarks import GSM8K_TEMPLATE
    from thinksafe.records import read_jsonl

    rows = list(read_jsonl(path))
    if n > len(rows):
        raise InputError(f"{path}: {len(rows)} rows, fewer than --examples {n}")
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), n)
    out = []
    for j, i in enumerate(picked):
        row = rows[i]
        try:
            response = think_response(row["answer"])
            question = row["question"].strip()
        except (KeyError, AttributeError, ValueError) as e:
            raise InputError(f"{path}:{i + 1}: not a GSM8K row ({e})") from None
        templated = j < round(n * instruction_share)
        instruction = GSM8K_TEMPLATE.format(question=question) if templated else question
        out.append({"instruction": instruction, "response": response, "prompt_label": "benign", "source": f"gsm8k_train:{i + 1}"})
    return out


PLAN_REQUEST = ("Think before you answer. For the request below, write only your private reasoning: what is being "
                "asked and how you will answer it, in 2 to 4 short sentences. Do not write the answer itself."
                "\n\nRequest: {request}")
CONCISE = "Answer in at most 120 words."  # only while the base writes its answers: the reasoner learns to be brief


def self_traces(path: Path, n: int, seed: int, max_new_tokens: int, out: Path,
                model: str = BASE) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """STaR-style think data for general requests, written by the base model itself (no teacher): its plan for
    the request is the trace, its concise answer follows. Greedy, so the data are the same on every engine.
    Generations go to `out` (resumable); kept are the rows whose plan and answer both finished and whose answer
    is not a refusal (a refusal is safety behaviour, and the reasoner gets none)."""
    from thinksafe.generate import BackendConfig, SamplingParams, make_generator
    from thinksafe.generate.to_file import generate_to_file
    from thinksafe.models import ModelSpec
    from thinksafe.prompts import load_prompts
    from thinksafe.records import read_jsonl

    prompts = load_prompts(f"harmless-pool:{path}", limit=n, seed=seed)
    generator = make_generator(ModelSpec(model), BackendConfig())
    plans, answers = out / "plans.jsonl", out / "answers.jsonl"
    generate_to_file(generator, prompts, SamplingParams(max_new_tokens=96), plans,
                     render=lambda p: PLAN_REQUEST.format(request=p.prompt))
    generate_to_file(generator, prompts, SamplingParams(max_new_tokens=max_new_tokens), answers, system=CONCISE)
    rows, counts = pair_traces(list(read_jsonl(plans)), list(read_jsonl(answers)), path.name)
    return rows, {"prompts": len(prompts), **counts}


def pair_traces(plans: list[dict], answers: list[dict], source: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each request's plan (the trace) and answer as one think example, when both finished and the answer does
    not refuse; the counts say what was dropped and why."""
    from thinksafe.judge.refusal import is_refusal

    plan = {g["prompt_id"]: g for g in plans}
    counts, rows = {"cut": 0, "refused": 0, "kept": 0}, []
    for a in answers:
        p = plan[a["prompt_id"]]
        if p["finish_reason"] != "stop" or a["finish_reason"] != "stop" or not p["text"].strip() or not a["text"].strip():
            counts["cut"] += 1
        elif is_refusal(a["text"]):
            counts["refused"] += 1
        else:
            counts["kept"] += 1
            rows.append({"instruction": a["prompt"], "response": f"<think>\n{p['text'].strip()}\n</think>\n\n{a['text'].strip()}",
                         "prompt_label": "benign", "source": f"{source}:{a['prompt_id']}"})
    return rows, counts


# ---------------------------------------------------------------- the model directory


def think_template(template: str) -> str:
    """The base's chat template with an R1-Distill generation prompt (opens `<think>\\n`)."""
    if template.count(ASSISTANT_OPEN) < 1 or "add_generation_prompt" not in template:
        raise InputError("the base chat template has no Qwen-style generation prompt to open a think block in")
    head, _, tail = template.rpartition(ASSISTANT_OPEN)  # the last one is the generation prompt
    return head + THINK_PROMPT + tail


def write_think_base(base_dir: Path, out: Path) -> Path:
    """A model directory = the base's weights (linked, not copied) + the think chat template. Atomic."""
    if (out / "chat_template.jinja").exists():
        return out
    if not (base_dir / "chat_template.jinja").exists():
        raise InputError(f"{base_dir}: no chat_template.jinja to give a think generation prompt")
    with atomic_dir(out, marker="chat_template.jinja") as tmp:
        for f in base_dir.iterdir():
            if f.name == "chat_template.jinja":
                (tmp / f.name).write_text(think_template(f.read_text()))
            elif f.name != "thinksafe_source.json":
                os.symlink(f.resolve(), tmp / f.name)
    return out


def think_base_dir() -> Path:
    from thinksafe.models import cache_dir_for, resolve_model

    return write_think_base(Path(resolve_model(BASE)), cache_dir_for(f"{BASE}-think-template"))


def packaged_adapter() -> Path | None:
    """The shipped adapter directory, or None if this install has none."""
    d = Path(str(resources.files("thinksafe") / "resources" / "reasoner"))
    return d if (d / "adapter_model.safetensors").exists() else None


@functools.cache
def adapter_version() -> str | None:
    """sha256 of the packaged adapter's weights (None: none packaged): part of every stage key that uses the alias."""
    adapter = packaged_adapter()
    return sha256_files([adapter / "adapter_model.safetensors"]) if adapter else None


def materialize_reasoner(out: Path, base_dir: Path | None = None, adapter: Path | None = None) -> Path:
    """The merged reasoner at `out` ($THINKSAFE_HOME/models/<alias>), made on first use from the think-template
    base and the packaged adapter (tests pass their own), and made again when the adapter changed (a new
    thinksafe ships a rebuilt one: the cached merge names the adapter it came from)."""
    adapter = adapter or packaged_adapter()
    cached = read_json(out / "thinksafe_source.json", missing_ok=True)
    if adapter is None:
        if cached:
            return out
        raise InputError(f"model '{ALIAS}': this install has no packaged adapter; build it with "
                         "thinksafe build-reasoner --config configs/reasoner.yaml --package true")
    sha = sha256_files([adapter / "adapter_model.safetensors"])
    if cached and cached.get("adapter_sha256") == sha:
        return out
    from thinksafe.models import ModelSpec, load_model
    from thinksafe.progress import console

    if cached:  # out of date: set aside at once (a rename), so no reader sees a half-removed model
        console.print(f"[dim]{ALIAS}: the packaged adapter changed since {out} was merged: merging it again…[/]")
        stale = out.with_name(f".{out.name}.stale-{os.getpid()}")
        os.rename(out, stale)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        console.print(f"[dim]{ALIAS}: merging the packaged adapter into {BASE} (once, a few seconds)…[/]")
    base_dir = base_dir or think_base_dir()
    loaded = load_model(ModelSpec(str(base_dir), adapter=str(adapter), dtype="float32", device="cpu"))
    with atomic_dir(out, marker="thinksafe_source.json") as tmp:
        loaded.model.merge_and_unload().save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        source = {"alias": ALIAS, "base": BASE, "adapter_sha256": sha, "recipe": read_json(adapter / "recipe.json")}
        (tmp / "thinksafe_source.json").write_text(json.dumps(source, indent=2) + "\n")
    return out


# ---------------------------------------------------------------- the build


def train_args(args: ReasonerArgs, data: Path, out: Path):
    from thinksafe.stages.sft import TrainArgs

    return TrainArgs(data=str(data), out=str(out), epochs=args.epochs, learning_rate=args.learning_rate,
                     warmup_ratio=0.05, effective_batch_size=8, per_device_batch_size=args.per_device_batch_size,
                     max_length=args.max_length, overlong="drop", lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                     lora_dropout=0.0, target_modules=args.target_modules, seed=args.seed, save_steps=20)


def build(args: ReasonerArgs, base_dir: Path | None = None) -> Path:
    """Data → LoRA SFT on the think-template base → recipe + loss curve; resumable (rerun the same command)."""
    from thinksafe.models import ModelSpec
    from thinksafe.stages.sft import train

    if not args.gsm8k or not args.out:
        raise InputError("build-reasoner: --gsm8k and --out are required")
    out = ensure_dir(Path(args.out))
    data = out / "data.jsonl"
    rows = think_examples(Path(args.gsm8k), args.examples, args.instruction_share, args.seed)
    general = {}
    if args.general and args.general_prompts:
        extra, general = self_traces(Path(args.general), args.general_prompts, args.seed, args.general_max_new_tokens,
                                     ensure_dir(out / "general"))
        rows += extra
        random.Random(args.seed).shuffle(rows)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    adapter = out / "adapter"
    targs = train_args(args, data, adapter)
    targs.resume = (adapter / "checkpoints").exists()
    stats = train(targs, ModelSpec(str(base_dir or think_base_dir()), reasoning="think"))
    recipe = {"alias": ALIAS, "base": BASE, "args": {k: v for k, v in asdict(args).items() if k not in ("out", "package")},
              "train": asdict(targs) | {"data": "data.jsonl", "out": "adapter", "resume": False},
              "data_sha256": sha256_files([data]), "gsm8k_sha256": sha256_files([Path(args.gsm8k)]), "general": general,
              "train_stats": {k: stats.get(k) for k in ("examples", "steps", "final_loss", "train_seconds", "tokens_per_second")}}
    (adapter / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    shutil.copyfile(adapter / "metrics.jsonl", adapter / "loss.jsonl")
    if args.package:
        package(adapter)
    return adapter


def package(adapter: Path) -> Path:
    """Copy what materialize_reasoner needs into the source tree's resources (for the next commit): the weights
    in bf16 (half the size; the merge runs in fp32), the config pointing at the base alias, not this machine."""
    import torch
    from safetensors.torch import load_file, save_file

    dest = Path(__file__).parent / "resources" / "reasoner"
    dest.mkdir(parents=True, exist_ok=True)
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, dest / "adapter_model.safetensors")
    config = read_json(adapter / "adapter_config.json") | {"base_model_name_or_path": BASE}
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in RECORDS:
        shutil.copyfile(adapter / name, dest / name)
    return dest


def cmd_build_reasoner(argv: list[str]) -> int:
    from thinksafe.config import parse_config
    from thinksafe.progress import console

    (args,) = parse_config("thinksafe build-reasoner", (ReasonerArgs,), argv, __doc__.split("\n\n")[0])
    adapter = build(args)
    console.print(f"reasoner adapter → {adapter}" + ("  (packaged into thinksafe/resources/reasoner)" if args.package else ""))
    return 0
