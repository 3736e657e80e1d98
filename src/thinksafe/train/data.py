"""Training data: ThinkSafe-schema files and the teacher baselines, rendered and tokenized with prompt masking."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError
from thinksafe.formats import THINK_CLOSE, THINK_OPEN, ChatFormat
from thinksafe.prompts import hub_rows, normalize_label, read_rows, sample

IGNORE = -100
DIRECT_REFUSAL_THINK = "<think>\nI should not answer this question!\n</think>\n\n"


@dataclass(frozen=True)
class Baseline:
    """A teacher dataset and the paper's epochs for it."""

    hub: str
    prompt_field: str
    response_field: str
    epochs: float
    label: str = "harmful"
    label_field: str | None = None
    think_prefix: str = ""  # prepended when the response lacks a <think> block


BASELINES: dict[str, Baseline] = {
    "star1": Baseline("UCSC-VLAA/STAR-1", "question", "response", epochs=5),
    # SafeChain's responses omit the opening <think> (R1 style, per its dataset card): put it back.
    "safechain": Baseline("UWNSL/SafeChain", "instruction", "response", epochs=3, label_field="label", think_prefix="<think>\n"),
    "direct-refusal": Baseline("TianshengHuang/DirectRefusal", "instruction", "output", epochs=5, think_prefix=DIRECT_REFUSAL_THINK),
}
SELF_EPOCHS = 3.0  # ThinkSafe's own data (paper)


@dataclass
class Example:
    instruction: str
    response: str
    prompt_label: str  # "harmful" | "benign"


def strip_think(response: str, mode: str) -> str:
    """For `plain` models: "plain" turns "<think>R</think>A" into "R\\n\\nA"; "answer" keeps only A."""
    if mode == "none" or THINK_CLOSE not in response:
        return response
    reasoning, answer = response.split(THINK_CLOSE, 1)
    reasoning, answer = reasoning.replace(THINK_OPEN, "", 1).strip(), answer.strip()
    return answer if mode == "answer" else f"{reasoning}\n\n{answer}"


def load_examples(data: str, *, limit: int | None = None, seed: int = 42) -> tuple[list[Example], float]:
    """(examples, preset epochs) from a ThinkSafe-schema file/dir, or a baseline NAME / NAME:PATH."""
    name, _, local = data.partition(":")
    base = BASELINES.get(name)
    if base:
        if local:
            rows = hub_rows(local, None, "train", data) if Path(local).is_dir() else read_rows(local)
        else:
            rows = hub_rows(base.hub, None, "train", data)
        fields, epochs = (base.prompt_field, base.response_field, base.label_field), base.epochs
    else:
        path = Path(data)
        if path.is_dir():
            path = path / "dataset.jsonl"  # a `thinksafe synthesize` output directory
        rows, fields, epochs = read_rows(path), ("instruction", "response", "prompt_label"), SELF_EPOCHS
    examples = []
    for n, row in rows:
        where = f"{data}:{n}"
        pf, rf, lf = fields
        rf = rf if rf in row else next((f for f in ("response", "output", "completion") if f in row), rf)
        for f in (pf, rf):
            if not isinstance(row.get(f), str) or not row[f].strip():
                raise InputError(f"{where}: field '{f}' is missing or empty")
        label = normalize_label(row[lf], f"{where}: field '{lf}'") if lf and lf in row else (base.label if base else "harmful")
        response = row[rf]
        if base and base.think_prefix and THINK_OPEN not in response:
            response = base.think_prefix + response
        examples.append(Example(row[pf], response, label))
    if not examples:
        raise InputError(f"{data}: no training examples")
    return sample(examples, limit, seed), epochs


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    benign: bool


def tokenize(
    examples: list[Example],
    tokenizer,
    fmt: ChatFormat,
    *,
    max_length: int,
    prompt_masking: bool = True,
    overlong: str = "drop",
    strip: str = "none",
) -> tuple[list[TokenizedExample], dict[str, int]]:
    """Render each pair through the chat template and build labels (-100 on prompt tokens when masking).

    Prompt and response are tokenized separately and concatenated, so the mask boundary is exact.
    Examples longer than max_length are dropped, or truncated (response side) — both counted.
    """
    out, counts = [], {"dropped_overlong": 0, "truncated": 0}
    for ex in examples:
        prompt_text, completion_text = fmt.render_training(tokenizer, ex.instruction, strip_think(ex.response, strip))
        p = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        if len(p) + len(c) > max_length:
            if overlong == "drop" or len(p) >= max_length - 1:
                counts["dropped_overlong"] += 1
                continue
            c = c[: max_length - len(p)]
            counts["truncated"] += 1
        labels = ([IGNORE] * len(p) if prompt_masking else list(p)) + list(c)
        out.append(TokenizedExample(p + c, labels, ex.prompt_label == "benign"))
    return out, counts


def collate(batch: list[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch (training needs no left padding); labels pad with -100."""
    import torch

    width = max(len(x.input_ids) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        n = len(x.input_ids)
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(x.input_ids), torch.tensor(x.labels), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "benign": torch.tensor([x.benign for x in batch])}
