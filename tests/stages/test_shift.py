import json
import math

from thinksafe.models import ModelSpec, load_model
from thinksafe.stages.shift import ShiftArgs, shift
from thinksafe.train.data import collate, load_examples, tokenize


def test_shift_matches_direct_nll_and_resumes(tiny_models, tmp_path):
    rows = [{"instruction": f"What is {i} + {i}?", "response": f"The answer is {2 * i}.", "prompt_label": "benign"} for i in range(5)]
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = tmp_path / "b.jsonl"
    b.write_text("".join(json.dumps({**r, "response": "zzz qqq " * 5}) + "\n" for r in rows))
    out = tmp_path / "shift.jsonl"
    spec = ModelSpec(str(tiny_models["plain"]))
    res = shift(ShiftArgs(data=[str(a), str(b)], out=str(out), batch_size=2), spec)
    assert [r["data"] for r in res] == [str(a), str(b)]
    # Recompute dataset a's mean NLL in one unbatched pass with the model's own loss.
    lm = load_model(spec)
    items, _ = tokenize(load_examples(str(a))[0], lm.tokenizer, lm.format, max_length=1024)
    nll = tokens = 0
    for it in items:
        batch = collate([it], lm.tokenizer.pad_token_id)
        n = int((batch["labels"][:, 1:] != -100).sum())
        nll += float(lm.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss) * n
        tokens += n
    assert res[0]["response_tokens"] == tokens
    assert abs(res[0]["mean_nll"] - nll / tokens) < 1e-3
    assert abs(res[0]["perplexity"] - math.exp(res[0]["mean_nll"])) < 1e-2 * res[0]["perplexity"]
    # Rerun: both datasets are already measured, nothing is appended.
    again = shift(ShiftArgs(data=[str(a), str(b)], out=str(out)), spec)
    assert len(out.read_text().splitlines()) == 2 and again == res
