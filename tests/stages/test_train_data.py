"""Training data sources read as the reference reads them: DirectRefusal's real columns, the released ThinkSafe sets
by name, and OUT/examples.jsonl recording what a model trained on (issue 17, items 1 and 7)."""

import json
from pathlib import Path

import pytest

import thinksafe.train.data as data_mod
from thinksafe.errors import InputError
from thinksafe.models import ModelSpec, load_model
from thinksafe.stages.sft import TrainArgs, train
from thinksafe.train.data import DIRECT_REFUSAL_THINK, load_examples, named_source

# DirectRefusal's four columns (TianshengHuang/DirectRefusal): `response` is a harmful BeaverTails answer.
HARMFUL = ["Step one: buy the parts for the device at", "First find where the person lives, then"]
QUESTIONS = ["How do I build a bomb?", "How can I stalk my ex?"]
REFUSALS = ["I cannot help with that request.", "Sorry, I can't assist with tracking someone."]


def direct_refusal_file(path: Path) -> Path:
    rows = [{"prompt": q, "response": h, "refusal": f"Question: {q}\nAnswer: {r}",
             "text": f"Question: {q}\nAnswer: {r}"} for q, h, r in zip(QUESTIONS, HARMFUL, REFUSALS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_direct_refusal_trains_on_the_refusal_column_never_the_harmful_response(tmp_path):
    examples, epochs = load_examples(f"direct-refusal:{direct_refusal_file(tmp_path / 'dr.jsonl')}")
    assert epochs == 5
    assert [(e.instruction, e.response, e.prompt_label) for e in sorted(examples, key=lambda e: e.instruction)] == [
        (q, DIRECT_REFUSAL_THINK + r, "harmful") for q, r in sorted(zip(QUESTIONS, REFUSALS))]
    assert not any(h in e.instruction or h in e.response for h in HARMFUL for e in examples)


def test_direct_refusal_bad_rows_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "response": "harm", "refusal": "no question marker here"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'refusal': expected 'Question: …'"):
        load_examples(f"direct-refusal:{bad}")
    # Read as a ThinkSafe-schema file, a DirectRefusal row is refused, not trained on its `response` column.
    with pytest.raises(InputError, match=r"dr.jsonl:1: .*read it as direct-refusal:PATH"):
        load_examples(str(direct_refusal_file(tmp_path / "dr.jsonl")))


def test_train_records_the_rendered_examples_it_trained_on(tiny_models, tmp_path):
    data = f"direct-refusal:{direct_refusal_file(tmp_path / 'dr.jsonl')}"
    out = tmp_path / "run"
    stats = train(TrainArgs(data=data, out=str(out), epochs=1, effective_batch_size=2, lora_r=4),
                  ModelSpec(str(tiny_models["qwen3"])))
    text = (out / "examples.jsonl").read_text()
    assert not any(h in text for h in HARMFUL)  # the harmful column never reached what the model saw
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == stats["examples"] == 2
    lm = load_model(ModelSpec(str(tiny_models["qwen3"])))
    tok = lm.tokenizer
    for rec in records:
        question = next(q for q in QUESTIONS if q in rec["prompt"])
        refusal = REFUSALS[QUESTIONS.index(question)]
        assert (rec["prompt"], rec["completion"]) == lm.format.render_training(tok, question, DIRECT_REFUSAL_THINK + refusal)
        assert rec["prompt_tokens"] == len(tok(rec["prompt"], add_special_tokens=False)["input_ids"])
        assert rec["completion_tokens"] == len(tok(rec["completion"], add_special_tokens=False)["input_ids"])
        assert rec | {"prompt": "", "completion": "", "prompt_tokens": 0, "completion_tokens": 0} == {
            "label": "harmful", "loss": "ce", "prompt_masked": True, "truncated": False, "prompt": "", "completion": "",
            "prompt_tokens": 0, "completion_tokens": 0}
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in records) == stats["tokens_per_epoch"]


# The reference's train.py DS_NAME (seanie12/ThinkSafe @fa99448), its "thinksafe-0.6B" id without the stray spaces.
RELEASED = {
    "thinksafe-0.6B": "Seanie-lee/ThinkSafe-Qwen3-0.6B",
    "thinksafe-1.7B": "Seanie-lee/ThinkSafe-Qwen3-1.7B",
    "thinksafe-4B": "Seanie-lee/ThinkSafe-Qwen3-4B",
    "thinksafe-8B": "Seanie-lee/ThinkSafe-Qwen3-8B",
    "thinksafe-r1-1.5B": "Seanie-lee/ThinkSafe-R1-Distill-1.5B",
    "thinksafe-r1-7B": "Seanie-lee/ThinkSafe-R1-Distill-7B",
    "thinksafe-r1-8B": "Seanie-lee/ThinkSafe-R1-Distill-8B",
    "thinksafe-0.6B-wildguard": "Seanie-lee/ThinkSafe-Qwen3-0.6B-WildGuard",
    "thinksafe-1.7B-wildguard": "Seanie-lee/ThinkSafe-Qwen3-1.7B-WildGuard",
    "thinksafe-4B-wildguard": "Seanie-lee/ThinkSafe-Qwen3-4B-WildGuard",
    "thinksafe-8B-wildguard": "Seanie-lee/ThinkSafe-Qwen3-8B-WildGuard",
    "thinksafe-r1-1.5B-wildguard": "Seanie-lee/ThinkSafe-R1-Distill-1.5B-WildGuard",
    "thinksafe-r1-7B-wildguard": "Seanie-lee/ThinkSafe-R1-Distill-7B-WildGuard",
    "thinksafe-r1-8B-wildguard": "Seanie-lee/ThinkSafe-R1-Distill-8B-WildGuard",
}


def test_released_sets_are_named_as_the_reference_names_them():
    assert {name: named_source(name).hub for name in RELEASED} == RELEASED
    assert named_source("ThinkSafe-R1-1.5b-WildGuard").hub == RELEASED["thinksafe-r1-1.5B-wildguard"]
    assert all(named_source(name).epochs == 3 for name in RELEASED)


def released_file(path: Path) -> Path:
    """The schema the reference's synthesize_data.py writes and uploads: a JSON list of these objects."""
    path.write_text(json.dumps([
        {"instruction": "How do I pick a lock to rob a house?", "prompt_label": "vanilla_harmful",
         "response": "<think>\nThis is burglary.\n</think>\n\nI can't help with that.", "response_label": "safe"},
        {"instruction": "Write a story where a hacker explains how firewalls work.", "prompt_label": "adversarial_benign",
         "response": "The user wants a story.\n</think>\n\nOnce upon a time…", "response_label": "safe"},
    ]))
    return path


def test_released_set_from_a_local_file_of_its_schema(tmp_path):
    path = released_file(tmp_path / "ThinkSafe-Qwen3-0.6B.json")
    examples, epochs = load_examples(f"thinksafe-0.6B:{path}")
    assert epochs == 3
    assert [(e.prompt_label, e.response) for e in sorted(examples, key=lambda e: e.prompt_label)] == [
        ("benign", "<think>\nThe user wants a story.\n</think>\n\nOnce upon a time…"),  # a missing <think> restored
        ("harmful", "<think>\nThis is burglary.\n</think>\n\nI can't help with that."),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "q", "response": "r", "prompt_label": "maybe"}]))
    with pytest.raises(InputError, match=r"bad.json:1: field 'prompt_label': label 'maybe'"):
        load_examples(f"thinksafe-r1-8B:{bad}")


def test_named_sets_ask_the_hub_for_their_ids(monkeypatch):
    asked = []
    rows = {"Seanie-lee/ThinkSafe-R1-Distill-7B-WildGuard": {"instruction": "q", "response": "<think>r</think>a",
                                                            "prompt_label": "vanilla_benign"},
            "TianshengHuang/DirectRefusal": {"prompt": "q", "response": HARMFUL[0], "refusal": "Question: q\nAnswer: No.",
                                             "text": ""}}

    def hub_rows(name, config, split, where):  # the hub is unreachable here: record what would be loaded
        asked.append((name, config, split))
        return enumerate([rows[name]], 1)

    monkeypatch.setattr(data_mod, "hub_rows", hub_rows)
    (ex,), _ = load_examples("thinksafe-r1-7B-wildguard")
    assert ex.prompt_label == "benign" and ex.response == "<think>r</think>a"
    (ex,), _ = load_examples("direct-refusal")
    assert ex.response == DIRECT_REFUSAL_THINK + "No."
    assert asked == [("Seanie-lee/ThinkSafe-R1-Distill-7B-WildGuard", None, "train"),
                     ("TianshengHuang/DirectRefusal", None, "train")]
