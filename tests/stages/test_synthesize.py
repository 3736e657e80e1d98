import json

import pytest

from thinksafe.stages.synthesize import SynthesizeArgs, select


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


def test_stats_audit_the_refusal_rate_of_the_kept_data_per_label():
    """The reference's eval_refusal on the kept data: harmful examples should refuse, benign ones should not. A
    guard without a refusal flag (Llama-Guard) leaves it to the refusal detector on the answer, not the trace."""
    from thinksafe.formats import ChatFormat
    from thinksafe.records import Prompt
    from thinksafe.stages.synthesize import compute_stats

    def kept(pid, label, text, refused=None):
        return {**row(pid, 0, label, refused=refused), "text": text, "kept": True, "drop_reason": None,
                "completion_tokens": 10}

    rows = [kept("a", "harmful", "<think>I'm sorry is what I'd say</think>I can't help with that."),
            kept("b", "harmful", "<think>fine</think>Here is how you do it: step 1 …"),
            kept("c", "harmful", "<think>no</think>Whatever.", refused=True),  # the guard's own flag wins
            kept("d", "benign", "<think>easy</think>Sure! Photosynthesis turns light into sugar."),
            {**row("e", 0, "benign", verdict="unsafe"), "text": "I'm sorry, I can't.", "kept": False,
             "drop_reason": "unsafe", "completion_tokens": 4}]  # not kept: not audited
    prompts = [Prompt(p, label, id=p) for p, label in zip("abcde", ["harmful"] * 3 + ["benign"] * 2)]
    stats = compute_stats(prompts, rows, 0, 1.0, {}, False, ChatFormat("think"))
    harmful, benign = stats["per_label"]["harmful"], stats["per_label"]["benign"]
    assert (harmful["kept_refusals"], harmful["refusal_pct"]) == (2, 66.7)
    assert (benign["kept_refusals"], benign["refusal_pct"]) == (0, 0.0)
    assert "refusal detector" in stats["refusals_judged_by"]


def run_synth(model_dir, out, **kw):
    from thinksafe.generate import BackendConfig
    from thinksafe.judge import GuardConfig
    from thinksafe.models import ModelSpec
    from thinksafe.stages.synthesize import synthesize

    args = SynthesizeArgs(harmful="demo:harmful", benign="demo:benign", out=str(out), limit=5, max_new_tokens=6,
                          chunk_size=2, **kw)
    return synthesize(args, ModelSpec(str(model_dir)), BackendConfig(progress=False), GuardConfig())


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_synthesize_tiny_end_to_end_files_and_schema(tiny_models, tmp_path):
    out = tmp_path / "s"
    stats = run_synth(tiny_models["plain"], out, samples_per_prompt=2)
    gens = lines(out / "generations.jsonl")
    assert len(gens) == 20 and all("verdict" in g and "kept" in g for g in gens)
    assert {g["label"] for g in gens} == {"harmful", "benign"}
    # generation used the steered prompt for harmful rows, but the stored prompt is the original
    assert all(not g["prompt"].startswith("The following prompt is harmful") for g in gens)
    for label in ("harmful", "benign"):
        s = stats["per_label"][label]
        assert s["prompts"] == 5 and s["generations"] == 10
        assert s["incomplete"] + s["unsafe"] + s["unknown"] + s["over_refusal"] <= 10
    # a random tiny model rarely stops within 6 tokens, so most generations are incomplete and dropped
    dataset = lines(out / "dataset.jsonl")
    kept = [g for g in gens if g["kept"]]
    assert len(dataset) == len(kept)
    for d in dataset:
        assert set(d) == {"instruction", "response", "prompt_label", "response_label", "meta"}
        assert d["response_label"] == "safe" and d["meta"]["steering"] == "prefix"
    saved = json.loads((out / "stats.json").read_text())
    assert saved["per_label"]["harmful"]["prompts"] == 5
    assert all({"kept_refusals", "refusal_pct"} <= set(saved["per_label"][label]) for label in ("harmful", "benign"))


def test_synthesize_resume_after_crash_gives_same_records(tiny_models, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_synth(tiny_models["plain"], a)
    run_synth(tiny_models["plain"], b)
    raw = (b / "raw_generations.jsonl").read_text().splitlines()
    (b / "raw_generations.jsonl").write_text("\n".join(raw[:3]) + "\n" + raw[3][:25])  # torn mid-line
    (b / "generations.jsonl").write_text("\n".join((b / "generations.jsonl").read_text().splitlines()[:1]) + "\n")
    (b / "dataset.jsonl").unlink()
    (b / "done.json").unlink()  # a crash leaves no done marker
    run_synth(tiny_models["plain"], b)

    def ids(d, f):
        return sorted(r["id"] for r in lines(d / f))

    for f in ("raw_generations.jsonl", "generations.jsonl"):
        assert ids(a, f) == ids(b, f) and len(set(ids(b, f))) == len(ids(b, f))  # none missing, none twice
    assert [r["id"] for r in lines(a / "generations.jsonl")] == [r["id"] for r in lines(b / "generations.jsonl")]
    # greedy decoding: the regenerated records are identical too
    assert lines(a / "dataset.jsonl") == lines(b / "dataset.jsonl")


def test_changed_config_refuses_to_mix(tiny_models, tmp_path):
    from thinksafe.errors import ConfigError

    out = tmp_path / "s"
    run_synth(tiny_models["plain"], out)
    with pytest.raises(ConfigError, match="different config \\(changed: steering\\)"):
        run_synth(tiny_models["plain"], out, steering="suffix")
    stats = run_synth(tiny_models["plain"], out, steering="suffix", overwrite=True)
    assert stats["per_label"]["harmful"]["prompts"] == 5
    assert all(g["meta"]["steering"] == "suffix" for g in lines(out / "generations.jsonl"))


@pytest.mark.slow
def test_qwen_steering_raises_refusal_yield(shared_data, tmp_path):
    """The ThinkSafe effect on a real model: the prefix makes the model refuse more harmful prompts."""
    from thinksafe.generate import BackendConfig
    from thinksafe.judge import GuardConfig
    from thinksafe.models import EMBEDDED, ModelSpec, embedded_sources
    from thinksafe.stages.synthesize import synthesize

    if embedded_sources(EMBEDDED["qwen2.5-coder-0.5b-instruct"]) is None:
        pytest.skip("qwen2.5-coder-0.5b-instruct not installed")
    yields = {}
    for steering in ("prefix", "none"):
        args = SynthesizeArgs(harmful=str(shared_data / "pools/harmful_val.json"), out=str(tmp_path / steering),
                              steering=steering, limit=8, max_new_tokens=64, temperature=0.0)
        stats = synthesize(args, ModelSpec("qwen2.5-coder-0.5b-instruct"), BackendConfig(progress=False), GuardConfig())
        yields[steering] = stats["per_label"]["harmful"]["kept"]
    assert yields["prefix"] > yields["none"], yields
