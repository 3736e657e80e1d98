"""`thinksafe shift`: how far a dataset's responses are from a model's own distribution (paper, Figure 8).

Mean per-token negative log-likelihood (and perplexity) of each dataset's responses given its instruction,
rendered through the model's chat template, prompt tokens excluded. Self-generated data should sit close to
the model (low perplexity); teacher data far from it. Batched; each dataset's result is appended to
OUT.jsonl as it finishes, so a rerun skips datasets already measured.

As a stage of a run it measures one arm's training data under the initial model: DIR/shift.jsonl, DIR/shift.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thinksafe.config import opt
from thinksafe.errors import InputError
from thinksafe.models import ModelSpec, load_model
from thinksafe.progress import console, progress_bar
from thinksafe.records import append_jsonl, read_json, read_jsonl, repair_jsonl, write_json_atomic
from thinksafe.stages.base import Job, Stage
from thinksafe.stages.ledger import Counts


@dataclass
class ShiftArgs:
    data: list[str] = opt([], "datasets (ThinkSafe schema files, synthesize DIRs, or baselines star1[:PATH] …)", role="input")
    out: str | None = opt(None, "append one JSON line per dataset here (rerun skips measured datasets)", role="output")
    limit: int | None = opt(None, "at most this many examples per dataset (seeded sample)")
    max_length: int = opt(1024, "drop examples longer than this many tokens")
    batch_size: int = opt(4, "examples per forward pass", role="runtime")
    strip_think: str = opt("auto", "as in train: auto | none | plain | answer")
    seed: int = opt(42, "seed for --limit")


def measure(lm, data: str, args: ShiftArgs) -> dict[str, Any]:
    import torch

    from thinksafe.train.data import collate, load_examples, tokenize
    from thinksafe.train.loss import response_loss

    examples, _ = load_examples(data, limit=args.limit, seed=args.seed)
    strip = args.strip_think if args.strip_think != "auto" else ("plain" if lm.format.reasoning == "plain" else "none")
    items, counts = tokenize(examples, lm.tokenizer, lm.format, max_length=args.max_length, strip=strip)
    if not items:
        raise InputError(f"{data}: no examples fit in {args.max_length} tokens")
    items.sort(key=lambda x: len(x.input_ids))  # similar lengths per batch: less padding
    nll, tokens = 0.0, 0
    with torch.inference_mode(), progress_bar(f"shift {Path(data).name}", len(items), unit="ex/s") as bar:
        for s in range(0, len(items), args.batch_size):
            chunk = items[s : s + args.batch_size]
            batch = {k: v.to(lm.model.device) for k, v in collate(chunk, lm.tokenizer.pad_token_id).items()}
            total, n, _ = response_loss(lm.model, batch)
            nll, tokens = nll + float(total), tokens + n
            bar.advance(len(chunk), tokens=len(chunk))
    mean = nll / tokens
    return {"data": data, "examples": len(items), "dropped_overlong": counts["dropped_overlong"],
            "response_tokens": tokens, "mean_nll": round(mean, 4), "perplexity": round(math.exp(mean), 3)}


def shift(args: ShiftArgs, spec: ModelSpec) -> list[dict[str, Any]]:
    if not args.data:
        raise InputError("shift: --data needs at least one dataset")
    done: dict[str, dict] = {}
    if args.out and Path(args.out).exists():
        repair_jsonl(args.out)
        done = {r["data"]: r for r in read_jsonl(args.out) if r.get("model") == spec.model and r.get("adapter") == spec.adapter}
    lm = load_model(spec)
    results = []
    for data in args.data:
        if data in done:
            results.append(done[data])
            continue
        row = {"model": spec.model, "adapter": spec.adapter, **measure(lm, data, args)}
        if args.out:
            append_jsonl(args.out, [row])
        results.append(row)
    for r in results:
        console.print(f"{r['data']}: perplexity {r['perplexity']} (mean NLL {r['mean_nll']}, {r['response_tokens']} tokens, {r['examples']} examples)")
    return results


@dataclass
class ShiftOutput:
    result: dict[str, Any] | None  # data, examples, response_tokens, mean_nll, perplexity


class Shift(Stage):
    name = "shift"
    help = "perplexity of datasets under a model (distribution shift)"
    description = "Mean per-token NLL / perplexity of each dataset's responses under the model (distribution shift)."

    def run_command(self, settings: ShiftArgs, **shared: Any) -> list[dict[str, Any]]:
        # Several datasets, one optional JSONL of results: a measurement, not a stage directory.
        return shift(settings, shared["model"])
    Settings = ShiftArgs
    uses = ("model",)

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        return replace(job, settings=replace(job.settings, data=[str(upstream[0].dir)])) if upstream else job

    def run(self, job: Job) -> Counts:
        (result,) = shift(replace(job.settings, out=str(job.out / "shift.jsonl")), job.model)
        write_json_atomic(job.out / "shift.json", result)
        return Counts(tokens_forward=result["response_tokens"])

    def read(self, out: Path) -> ShiftOutput:
        return ShiftOutput(read_json(out / "shift.json", missing_ok=True))


SHIFT = Shift()

