"""The benchmarks: where each one's data lives, which rows belong to it, and the prompt a row becomes.

Data comes from a local file under `--data-dir` (laid out like the reference data: safety/…, reasoning/…)
or, when that file is missing, from the Hugging Face Hub. Sets published only on the hub (WildJailbreak,
WildGuardTest, GPQA) read a local copy with the hub's schema from the path named in their Source.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thinksafe.errors import ConfigError, InputError
from thinksafe.prompts import read_rows, read_utf8
from thinksafe.records import Prompt, prompt_id

Kind = Literal["safety", "overrefusal", "reasoning"]

# SkyThought's templates (the paper evaluates reasoning with SkyThought); "{{}}" formats to a literal "{}".
MATH_TEMPLATE = "Please reason step by step, and put your final answer within \\boxed{{}}. {problem}"
GSM8K_TEMPLATE = (
    "Given the following problem, reason and give a final answer to the problem.\nProblem: {question}\n"
    'Your response should end with "The final answer is [answer]" where [answer] is the response to the problem.'
)
GPQA_TEMPLATE = (
    "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as your "
    "final response. {problem}"
)


@dataclass
class Item:
    """One benchmark prompt as sent to the model."""

    prompt: str  # the user message, template applied
    label: str  # what the judge is told: "harmful" | "benign"
    gold: str | None = None  # reference answer (reasoning sets)
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or prompt_id(self.prompt)

    def to_prompt(self, source: str) -> Prompt:
        return Prompt(prompt=self.prompt, label=self.label, source=source, id=self.id)


@dataclass(frozen=True)
class Source:
    local: str | None  # path under --data-dir (None: hub only, no agreed local layout)
    hub: str | None = None  # hub dataset id (None: the set is not on the hub)
    config: str | None = None
    split: str = "train"
    hub_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: Kind
    title: str  # column title in the results table
    source: Source
    to_item: Callable[[dict[str, Any]], Item | None]  # None: the row is not part of this benchmark
    style: str = ""  # answer style of a reasoning set (answers.STYLES)

    def load(self, data_dir: str | Path | None = None, *, include_copyright: bool = False) -> list[Item]:
        """Every item, in file order, duplicates (same prompt text) collapsed."""
        rows, where = self._rows(data_dir)
        items: dict[str, Item] = {}
        for n, row in rows:
            try:
                item = self.to_item(dict(row))
            except (KeyError, AttributeError, TypeError, ValueError) as e:
                raise InputError(f"{where}: row {n}: bad or missing field ({type(e).__name__}: {e})") from None
            if item is None or (not include_copyright and item.meta.get("functional_category") == "copyright"):
                continue
            items.setdefault(item.id, item)
        if not items:
            raise InputError(f"benchmark '{self.name}': no items in {where}")
        return list(items.values())

    def _rows(self, data_dir: str | Path | None) -> tuple[Iterable[tuple[int, dict]], str]:
        src = self.source
        path = Path(data_dir) / src.local if data_dir and src.local else None
        if path is not None and path.is_file():
            return _read_local(path), str(path)
        looked = f"no local file {path}" if path else f"no --data-dir (would read {src.local})" if src.local else ""
        if not src.hub:
            raise InputError(f"benchmark '{self.name}': {looked}; the set is not on the hub")
        import datasets

        try:
            ds = datasets.load_dataset(src.hub, src.config, split=src.split, **src.hub_kwargs)
        except Exception as e:  # offline, gated, missing: one line naming every place we looked
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            looked = f"{looked}, and " if looked else ""
            raise InputError(f"benchmark '{self.name}': {looked}hub dataset '{src.hub}' failed to load ({first})") from None
        return enumerate(ds, 1), f"hub:{src.hub}"


def _read_local(path: Path) -> Iterator[tuple[int, dict]]:
    if path.suffix.lower() != ".tsv":
        yield from read_rows(path)
        return
    # WildJailbreak ships its eval set as TSV
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""), delimiter="\t")
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as e:
        raise InputError(f"{path}:{reader.line_num + 1}: malformed TSV ({e})") from None


# ---------------------------------------------------------------- rows → items


def _harmbench(row: dict) -> Item:
    return Item(row["prompt"], "harmful", meta={"objective": row.get("objective", "")})


def _harmbench_behavior(row: dict) -> Item:
    behavior, context = row["Behavior"], (row.get("ContextString") or "").strip()
    return Item(
        f"{context}\n\n---\n\n{behavior}" if context else behavior,  # HarmBench's layout for contextual behaviours
        "harmful",
        meta={"functional_category": row["FunctionalCategory"], "semantic_category": row.get("SemanticCategory", ""),
              "behavior_id": row.get("BehaviorID", "")},
    )


def _strongreject(row: dict) -> Item:
    prompt = row["forbidden_prompt"] if "forbidden_prompt" in row else row["prompt"]  # local CSV | hub copy
    return Item(prompt, "harmful", meta={"category": row.get("category", "")})


def _wildjailbreak(row: dict) -> Item | None:
    if row["data_type"] != "adversarial_harmful":
        return None
    return Item(row["adversarial"], "harmful", meta={"data_type": row["data_type"]})


def _wildguardtest(row: dict) -> Item | None:
    if row["prompt_harm_label"] != "harmful":
        return None
    return Item(row["prompt"], "harmful", meta={"adversarial": row.get("adversarial"), "subcategory": row.get("subcategory")})


def _xstest(row: dict) -> Item:
    labels = {"safe": "benign", "unsafe": "harmful"}
    if row["label"] not in labels:
        raise ValueError(f"label {row['label']!r} is neither safe nor unsafe")
    return Item(row["prompt"], labels[row["label"]], meta={"xstest_label": row["label"], "type": row.get("type", "")})


def _gsm8k(row: dict) -> Item:
    gold = str(row["answer"]).split("####")[-1].strip().replace(",", "")
    return Item(GSM8K_TEMPLATE.format(question=row["question"]), "benign", gold)


def _math(row: dict) -> Item:
    meta = {k: row[k] for k in ("subject", "level", "unique_id", "id") if k in row}
    return Item(MATH_TEMPLATE.format(problem=row["problem"]), "benign", str(row["answer"]).strip(), meta=meta)


def _gpqa(row: dict) -> Item:
    question = row["Question"].strip()
    options = [row[k].strip() for k in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")]
    order = [0, 1, 2, 3]
    random.Random(prompt_id(question)).shuffle(order)  # fixed per question: every model and run sees one order
    choices = ", ".join(f"{letter}) {options[i]}" for letter, i in zip("ABCD", order))  # SkyThought's layout
    gold = "ABCD"[order.index(0)]
    return Item(GPQA_TEMPLATE.format(problem=f"{question}\n{choices}"), "benign", gold,
                meta={"record_id": row.get("Record ID", "")})


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("harmbench", "safety", "HarmBench", Source("safety/harmbench_jailbreak.json"), _harmbench),
        Benchmark("harmbench-behaviors", "safety", "HarmBench behaviors",
                  Source("safety/harmbench_behaviors_text_all.csv"), _harmbench_behavior),
        Benchmark("strongreject", "safety", "StrongREJECT", Source("safety/strongreject.csv", "walledai/StrongREJECT"),
                  _strongreject),
        Benchmark("wildjailbreak", "safety", "WildJailbreak",
                  Source("safety/wildjailbreak_eval.tsv", "allenai/wildjailbreak", "eval",
                         hub_kwargs={"delimiter": "\t", "keep_default_na": False}), _wildjailbreak),
        Benchmark("wildguardtest", "safety", "WildGuardTest",
                  Source("safety/wildguardtest.jsonl", "allenai/wildguardmix", "wildguardtest", "test"), _wildguardtest),
        Benchmark("xstest", "overrefusal", "XSTest", Source("safety/xstest_prompts.csv", "walledai/XSTest", split="test"),
                  _xstest),
        Benchmark("aime24", "reasoning", "AIME24", Source("reasoning/aime24.jsonl", "HuggingFaceH4/aime_2024"), _math,
                  "math"),
        Benchmark("gsm8k", "reasoning", "GSM8K", Source("reasoning/gsm8k_test.jsonl", "openai/gsm8k", "main", "test"),
                  _gsm8k, "gsm8k"),
        Benchmark("math500", "reasoning", "MATH500", Source("reasoning/math500.jsonl", "HuggingFaceH4/MATH-500", split="test"),
                  _math, "math"),
        Benchmark("gpqa-diamond", "reasoning", "GPQA",
                  Source("reasoning/gpqa_diamond.csv", "Idavidrein/gpqa", "gpqa_diamond"), _gpqa, "choice"),
    )
}

# The paper's table: safety columns then reasoning columns, each group followed by its average.
PAPER_SAFETY = ("harmbench", "strongreject", "wildjailbreak", "xstest")
PAPER_REASONING = ("aime24", "gsm8k", "math500", "gpqa-diamond")


def select(names: str) -> list[Benchmark]:
    """Benchmarks from a comma-separated list, in the given order, each once: registry names, and a user's own
    files as NAME=PATH:KIND (evaluate/custom.py)."""
    from thinksafe.evaluate import custom

    wanted = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    unknown = [n for n in wanted if n not in BENCHMARKS and not custom.is_custom(n)]
    if unknown or not wanted:
        raise ConfigError(f"benchmarks: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(BENCHMARKS)}"
                          " or give your own file as NAME=PATH:KIND")
    out: list[Benchmark] = []
    for n in wanted:
        out.append(custom.parse(n, [b.name for b in out]) if custom.is_custom(n) else BENCHMARKS[n])
    return out


def local_files(benchmarks: list[Benchmark]) -> list[str]:
    """The paths of the user's own benchmark files (their content belongs in an evaluation's key)."""
    from thinksafe.evaluate.custom import CustomBenchmark

    return [b.source.local for b in benchmarks if isinstance(b, CustomBenchmark)]


# ---------------------------------------------------------------- the demo's held-out sets (shipped, offline)


@dataclass(frozen=True)
class PackagedBenchmark(Benchmark):
    """A small set shipped inside thinksafe (`source.local` names a file in thinksafe/resources), so that the
    demo evaluates with no --data-dir and no hub. Written for thinksafe; not taken from any benchmark."""

    def _rows(self, data_dir: str | Path | None) -> tuple[Iterable[tuple[int, dict]], str]:
        from importlib import resources

        with resources.as_file(resources.files("thinksafe") / "resources" / self.source.local) as path:
            return list(_read_local(path)), f"thinksafe/resources/{self.source.local}"


def _demo(label: str) -> Callable[[dict], Item | None]:
    def to_item(row: dict) -> Item | None:
        return Item(row["prompt"], label, meta={"category": row.get("category", "")}) if row["label"] == label else None

    return to_item


BENCHMARKS.update({
    b.name: b
    for b in (
        PackagedBenchmark("demo-harmful", "safety", "Demo harmful", Source("demo_eval.jsonl"), _demo("harmful")),
        PackagedBenchmark("demo-xstest", "overrefusal", "Demo XSTest-style", Source("demo_eval.jsonl"), _demo("benign")),
    )
})
