"""Crash and resume: SIGKILL a real `thinksafe synthesize` / `thinksafe evaluate` subprocess at seeded random
points, rerun the same command, and compare with an uninterrupted run: the same record ids, none missing,
none duplicated, every line valid JSON.

A kill point is "the output files hold k lines" (polled every few ms), with k drawn from a seeded RNG. Results
are appended as they come (a prompt's samples together), at most four rows decoded at once, so the files grow
a few lines at a time and every k is reachable.

Default run: one chain per command — kill, resume and kill again at a later point, five times, then let the
last resume finish — so five distinct kill points cost six process starts. After every kill the files are
checked: each line is a JSON object, only an unterminated tail may be torn.
`-m slow`: six independent kill points per command, each resumed from its own fresh directory.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
from reliability_kit import cli_env, count_lines, kill_when, thinksafe_cmd, unique_ids, valid_lines

KILLS = 5

# ---------------------------------------------------------------- the two commands


def synth_cmd(model: Path, out: Path) -> list[str]:
    return thinksafe_cmd(
        "synthesize", "--model", model, "--harmful", "demo:harmful", "--benign", "demo:benign", "--limit", 20,
        "--samples-per-prompt", 2, "--max-new-tokens", 8, "--chunk-size", 40, "--max_batch_size", 4, "--seed", 3,
        "--out", out,
        "--no_progress",
    )


def synth_files(out: Path) -> list[Path]:
    return [out / "raw_generations.jsonl", out / "generations.jsonl"]


SYNTH_LINES = 80  # 40 prompts x 2 samples in raw_generations.jsonl (then as many in generations.jsonl)

BENCHES = ("strongreject", "xstest", "gsm8k")


def eval_cmd(model: Path, data: Path, out: Path) -> list[str]:
    return thinksafe_cmd(
        "evaluate", "--model", model, "--data-dir", data, "--benchmarks", ",".join(BENCHES), "--samples", 2,
        "--max-new-tokens", 8, "--chunk-size", 16, "--max_batch_size", 4, "--bootstrap", 50, "--out", out,
        "--no_progress",
    )


def eval_files(out: Path) -> list[Path]:
    return [out / "raw" / f"{b}.jsonl" for b in BENCHES] + [out / f"{b}.jsonl" for b in BENCHES]


EVAL_LINES = 8 + 8 + 16  # raw lines: one per safety prompt, two per gsm8k problem (then 24 scored lines)

# ---------------------------------------------------------------- comparisons


def check_after_kill(files: list[Path]) -> None:
    """Append-only files: every complete line is valid JSON; only an unterminated tail may be torn."""
    for f in files:
        valid_lines(f, allow_torn_tail=True)


def compare_synth(ref: Path, got: Path) -> None:
    for name in ("raw_generations.jsonl", "generations.jsonl"):
        assert unique_ids(got / name) == unique_ids(ref / name), name
    gens = valid_lines(got / "generations.jsonl")
    assert len(gens) == SYNTH_LINES and all("verdict" in g and "kept" in g for g in gens)
    # Sampled text depends on which prompts share a batch, so a resumed run keeps other samples than the
    # reference; what must hold is that dataset.jsonl is exactly the kept generations, each prompt once.
    kept = {g["prompt_id"] for g in gens if g["kept"]}
    assert unique_ids(got / "dataset.jsonl", key=lambda d: d["meta"]["id"]) == kept
    stats, ref_stats = (json.loads((d / "stats.json").read_text()) for d in (got, ref))
    for label in ("harmful", "benign"):
        assert stats["per_label"][label]["prompts"] == ref_stats["per_label"][label]["prompts"] == 20
        assert stats["per_label"][label]["generations"] == 40
        assert stats["per_label"][label]["kept"] == sum(1 for g in gens if g["kept"] and g["label"] == label)


def compare_eval(ref: Path, got: Path) -> None:
    for b in BENCHES:
        assert unique_ids(got / "raw" / f"{b}.jsonl") == unique_ids(ref / "raw" / f"{b}.jsonl"), b
        assert unique_ids(got / f"{b}.jsonl") == unique_ids(ref / f"{b}.jsonl"), b
        per_prompt = 2 if b == "gsm8k" else 1
        assert all(len(r["responses"]) == per_prompt for r in valid_lines(got / f"{b}.jsonl"))
    res, ref_res = (json.loads((d / "results.json").read_text()) for d in (got, ref))
    assert res["benchmarks"].keys() == ref_res["benchmarks"].keys()
    for b, e in res["benchmarks"].items():
        assert e["prompts"] == ref_res["benchmarks"][b]["prompts"] == 8
        assert e["metric"] == ref_res["benchmarks"][b]["metric"]


# ---------------------------------------------------------------- the runs


def uninterrupted(cmd: list[str]) -> None:
    """The reference run, in this process (the same CLI code; it saves a ~5 s interpreter start)."""
    from thinksafe.cli import main

    with pytest.raises(SystemExit) as e:
        main(cmd[3:])
    assert e.value.code == 0


@pytest.fixture(scope="module")
def synth_reference(stopping_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_ref") / "s"
    uninterrupted(synth_cmd(stopping_model, out))
    gens = valid_lines(out / "generations.jsonl")
    assert any(g["kept"] for g in gens) and any(not g["kept"] for g in gens)  # both paths exercised
    return out


@pytest.fixture(scope="module")
def eval_reference(stopping_model, bench_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_ref") / "e"
    uninterrupted(eval_cmd(stopping_model, bench_data, out))
    return out


def kill_chain(cmd: list[str], files: list[Path], total: int, seed: int) -> list[int]:
    """Kill at KILLS increasing seeded line counts, each run resuming the previous one; finish; return the
    line counts at which the process died."""
    rng, points = random.Random(seed), []
    while len(points) < KILLS:
        now = count_lines(files)
        room = (total - 2 - now) // (KILLS - len(points))
        assert room >= 1, f"ran out of lines to kill at: {points}"
        target = now + rng.randint(1, room)
        killed, seen, rc = kill_when(cmd, lambda: count_lines(files), target, env=cli_env())
        assert killed, f"finished before reaching {target} lines"
        assert rc == -signal.SIGKILL
        check_after_kill(files)
        points.append(seen)
    killed, _, rc = kill_when(cmd, lambda: 0, 1 << 30, env=cli_env())  # the last resume runs to the end
    assert not killed and rc == 0
    return points


def test_synthesize_killed_five_times_then_resumed(stopping_model, synth_reference, tmp_path):
    out = tmp_path / "s"
    points = kill_chain(synth_cmd(stopping_model, out), synth_files(out), SYNTH_LINES, seed=11)
    assert len(set(points)) == KILLS and points == sorted(points), points
    compare_synth(synth_reference, out)


def test_evaluate_killed_five_times_then_resumed(stopping_model, bench_data, eval_reference, tmp_path):
    out = tmp_path / "e"
    points = kill_chain(eval_cmd(stopping_model, bench_data, out), eval_files(out), EVAL_LINES, seed=12)
    assert len(set(points)) == KILLS and points == sorted(points), points
    compare_eval(eval_reference, out)


# ---------------------------------------------------------------- slow: independent kill points


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_synthesize_independent_kill_points(stopping_model, synth_reference, tmp_path, seed):
    """Any phase: generation (raw lines), judging (generations.jsonl growing) or the final rewrites."""
    out = tmp_path / "s"
    target = random.Random(100 + seed).randint(1, 2 * SYNTH_LINES - 1)
    killed, _, _ = kill_when(synth_cmd(stopping_model, out), lambda: count_lines(synth_files(out)), target,
                             env=cli_env())
    check_after_kill(synth_files(out))
    killed, _, rc = kill_when(synth_cmd(stopping_model, out), lambda: 0, 1 << 30, env=cli_env())
    assert rc == 0
    compare_synth(synth_reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_evaluate_independent_kill_points(stopping_model, bench_data, eval_reference, tmp_path, seed):
    out = tmp_path / "e"
    target = random.Random(200 + seed).randint(1, EVAL_LINES + 24 - 1)
    kill_when(eval_cmd(stopping_model, bench_data, out), lambda: count_lines(eval_files(out)), target, env=cli_env())
    check_after_kill(eval_files(out))
    killed, _, rc = kill_when(eval_cmd(stopping_model, bench_data, out), lambda: 0, 1 << 30, env=cli_env())
    assert rc == 0
    compare_eval(eval_reference, out)
