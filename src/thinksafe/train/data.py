"""Training data: ThinkSafe-schema files, the released ThinkSafe sets and the teacher baselines, rendered and
tokenized with prompt masking."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinksafe.errors import InputError
from thinksafe.formats import THINK_CLOSE, THINK_OPEN, ChatFormat
from thinksafe.prompts import hub_rows, normalize_label, read_rows, sample

IGNORE = -100
DIRECT_REFUSAL_THINK = "<think>\nI should not answer this question!\n</think>\n\n"
# DirectRefusal's `refusal` column, parsed as the reference's utils/custom_dataset.py does.
QUESTION_ANSWER = re.compile(r"Question:\s*(.+?)\s*Answer:\s*(.+)", re.IGNORECASE | re.DOTALL)
SELF_EPOCHS = 3.0  # ThinkSafe's own data (paper)


@dataclass(frozen=True)
class Baseline:
    """A named training set on the hub: how a row becomes (prompt, response), and the paper's epochs for it."""

    hub: str
    epochs: float
    prompt_field: str = "instruction"
    response_field: str = "response"
    label: str = "harmful"
    label_field: str | None = None
    think_prefix: str = ""  # prepended when the response lacks a <think> block
    # One "Question: …\nAnswer: …" string holds prompt and response; every other column is ignored.
    qa_field: str | None = None


BASELINES: dict[str, Baseline] = {
    "star1": Baseline("UCSC-VLAA/STAR-1", 5, prompt_field="question"),
    # SafeChain's responses omit the opening <think> (R1 style, per its dataset card): put it back.
    "safechain": Baseline("UWNSL/SafeChain", 3, label_field="label", think_prefix="<think>\n"),
    # Columns prompt, response, refusal, text: `response` is BeaverTails' *harmful* answer, never trained on;
    # the refusal is in `refusal`, with its question.
    "direct-refusal": Baseline("TianshengHuang/DirectRefusal", 5, think_prefix=DIRECT_REFUSAL_THINK, qa_field="refusal"),
}

# The ThinkSafe sets the authors released (reference train.py's DS_NAME; its "thinksafe-0.6B" id ends in stray
# spaces there). Their schema is ours: instruction, response, prompt_label (SafeChain's label), response_label.
RELEASED_IDS = {
    "thinksafe-0.6B": "Qwen3-0.6B", "thinksafe-1.7B": "Qwen3-1.7B", "thinksafe-4B": "Qwen3-4B",
    "thinksafe-8B": "Qwen3-8B", "thinksafe-r1-1.5B": "R1-Distill-1.5B", "thinksafe-r1-7B": "R1-Distill-7B",
    "thinksafe-r1-8B": "R1-Distill-8B",
}
RELEASED: dict[str, Baseline] = {
    f"{name}{tag}": Baseline(f"Seanie-lee/ThinkSafe-{model}{suffix}", SELF_EPOCHS, label_field="prompt_label",
                             think_prefix="<think>\n")  # the reference adds a missing <think> as here
    for tag, suffix in (("", ""), ("-wildguard", "-WildGuard"))
    for name, model in RELEASED_IDS.items()
}
NAMED = {name.lower(): source for name, source in {**BASELINES, **RELEASED}.items()}


def named_source(name: str) -> Baseline | None:
    """A baseline or released set by name (case-insensitive: thinksafe-0.6b works too)."""
    return NAMED.get(name.lower())


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
    """(examples, preset epochs) from a ThinkSafe-schema file/dir, or a named set NAME / NAME:PATH (a baseline or
    a released ThinkSafe set, from the hub or a local file / dataset dir of the same schema)."""
    name, _, local = data.partition(":")
    source = named_source(name)
    rows = source_rows(data, source, local) if source else own_rows(data)
    examples = [source_example(row, f"{data}:{n}", source) if source else own_example(row, f"{data}:{n}")
                for n, row in rows]
    if not examples:
        raise InputError(f"{data}: no training examples")
    return sample(examples, limit, seed), source.epochs if source else SELF_EPOCHS


def source_rows(data: str, source: Baseline, local: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if not local:
        return hub_rows(source.hub, None, "train", data)
    return hub_rows(local, None, "train", data) if Path(local).is_dir() else read_rows(local)


def own_rows(data: str) -> Iterator[tuple[int, dict[str, Any]]]:
    path = Path(data)
    return read_rows(path / "dataset.jsonl" if path.is_dir() else path)  # a dir: a `thinksafe synthesize` output


def text_field(row: dict[str, Any], field: str, where: str) -> str:
    if not isinstance(row.get(field), str) or not row[field].strip():
        raise InputError(f"{where}: field '{field}' is missing or empty")
    return row[field]


def own_example(row: dict[str, Any], where: str) -> Example:
    """A ThinkSafe-schema row: instruction, response (or output / completion), prompt_label (default harmful)."""
    if "refusal" in row and "instruction" not in row:
        raise InputError(f"{where}: this looks like DirectRefusal (a 'refusal' column); read it as direct-refusal:PATH")
    response_field = next((f for f in ("response", "output", "completion") if f in row), "response")
    label = normalize_label(row["prompt_label"], f"{where}: field 'prompt_label'") if "prompt_label" in row else "harmful"
    return Example(text_field(row, "instruction", where), text_field(row, response_field, where), label)


def source_example(row: dict[str, Any], where: str, source: Baseline) -> Example:
    """A named set's row, read from exactly its own columns (no fallbacks: DirectRefusal's `response` is harmful)."""
    if source.qa_field:
        prompt, response = question_answer(text_field(row, source.qa_field, where), f"{where}: field '{source.qa_field}'")
    else:
        prompt, response = text_field(row, source.prompt_field, where), text_field(row, source.response_field, where)
    lf = source.label_field
    label = normalize_label(row[lf], f"{where}: field '{lf}'") if lf and lf in row else source.label
    if source.think_prefix and THINK_OPEN not in response:
        response = source.think_prefix + response
    return Example(prompt, response, label)


def question_answer(text: str, where: str) -> tuple[str, str]:
    """ "Question: Q\\nAnswer: A" -> (Q, A), both stripped."""
    match = QUESTION_ANSWER.search(text)
    if not match:
        raise InputError(f"{where}: expected 'Question: …' followed by 'Answer: …'")
    return match.group(1).strip(), match.group(2).strip()


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    benign: bool
    label: str = "harmful"  # the example's prompt_label
    prompt_tokens: int = 0
    # The text the tokens came from: the rendered prompt (chat template included) and the completion as trained
    # (cut to the kept tokens when truncated), for OUT/examples.jsonl.
    prompt_text: str = ""
    completion_text: str = ""
    truncated: bool = False


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
        truncated = len(p) + len(c) > max_length
        if truncated:
            if overlong == "drop" or len(p) >= max_length - 1:
                counts["dropped_overlong"] += 1
                continue
            c = c[: max_length - len(p)]
            completion_text = tokenizer.decode(c, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            counts["truncated"] += 1
        labels = ([IGNORE] * len(p) if prompt_masking else list(p)) + list(c)
        out.append(TokenizedExample(p + c, labels, ex.prompt_label == "benign", ex.prompt_label, len(p),
                                    prompt_text, completion_text, truncated))
    return out, counts


def trained_records(tokenized: list[TokenizedExample], *, kl_benign: bool) -> Iterator[dict[str, Any]]:
    """OUT/examples.jsonl: per example what the trainer saw — the rendered prompt and completion, the label, which
    loss it got (ce, or kl for benign rows under --kl-benign), whether the prompt was masked, and token counts."""
    for x in tokenized:
        n = x.prompt_tokens
        yield {"label": x.label, "loss": "kl" if kl_benign and x.benign else "ce",
               "prompt_masked": all(t == IGNORE for t in x.labels[:n]), "prompt_tokens": n,
               "completion_tokens": len(x.input_ids) - n, "truncated": x.truncated,
               "prompt": x.prompt_text, "completion": x.completion_text}


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
