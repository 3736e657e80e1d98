import json

import pytest

from thinksafe.dataset import SynthesizeArgs, select


def row(pid, sample, label="harmful", verdict="safe", complete=True, refused=None):
    return {
        "id": f"{pid}-{sample}", "prompt_id": pid, "sample": sample, "label": label, "complete": complete,
        "verdict": None if not complete else {"label": verdict, "refused": refused, "guard": "g"},
    }


def reasons(rows):
    return {r["id"]: (r["kept"], r["drop_reason"]) for r in rows}


def test_single_sample_keep_rules():
    rows = [
        row("a", 0),
        row("b", 0, verdict="unsafe"),
        row("c", 0, verdict="unknown"),
        row("d", 0, complete=False),
        row("e", 0, label="benign", refused=True),
        row("f", 0, label="benign", refused=False),
    ]
    out = reasons(select(rows, SynthesizeArgs(), drop_benign_refusals=True))
    assert out == {
        "a-0": (True, None),
        "b-0": (False, "unsafe"),
        "c-0": (False, "unknown"),  # fail closed
        "d-0": (False, "incomplete"),
        "e-0": (False, "over-refusal"),
        "f-0": (True, None),
    }
    # With a guard that keeps benign refusals (e.g. Llama-Guard: a refusal is safe), e is kept.
    rows = [row("e", 0, label="benign", refused=True)]
    assert reasons(select(rows, SynthesizeArgs(), drop_benign_refusals=False)) == {"e-0": (True, None)}


def test_rejection_sampling_keeps_first_safe_sample():
    rows = [row("a", 2), row("a", 0, verdict="unsafe"), row("a", 1), row("b", 0, "harmful", "unsafe"), row("b", 1, complete=False)]
    out = reasons(select(rows, SynthesizeArgs(samples_per_prompt=3), drop_benign_refusals=True))
    assert out["a-1"] == (True, None) and out["a-2"] == (False, "not-selected") and out["a-0"] == (False, "unsafe")
    assert not any(kept for (kept, _), k in zip(out.values(), out) if k.startswith("b"))


def test_require_all_safe_keeps_only_fully_safe_prompts_with_seeded_pick():
    def rows():
        return [row("a", i) for i in range(4)] + [row("b", 0), row("b", 1), row("b", 2), row("b", 3, verdict="unsafe")]

    args = SynthesizeArgs(samples_per_prompt=4, require_all_safe=True, steering="none", seed=1)
    out1 = reasons(select(rows(), args, True))
    out2 = reasons(select(rows(), args, True))
    assert out1 == out2  # the random pick is seeded
    assert sum(out1[f"a-{i}"][0] for i in range(4)) == 1
    assert not any(out1[f"b-{i}"][0] for i in range(4)) and out1["b-0"][1] == "not-all-safe"
    picks = {next(k for k, (kept, _) in reasons(select(rows(), SynthesizeArgs(samples_per_prompt=4, require_all_safe=True, seed=s), True)).items() if kept) for s in range(12)}
    assert len(picks) > 1  # different seeds pick different samples
