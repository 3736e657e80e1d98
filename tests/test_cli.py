import json
import subprocess
import sys

import pytest


def thinksafe(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "thinksafe", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_help_lists_commands():
    r = thinksafe("--help")
    assert r.returncode == 0
    for cmd in ("generate", "models", "synthesize", "train", "evaluate", "run", "report"):
        assert cmd in r.stdout
    r = thinksafe("generate", "--help")
    assert r.returncode == 0 and "--max_new_tokens" in r.stdout and "--backend" in r.stdout


def test_generate_writes_one_record_per_prompt_and_resumes(tiny_models, tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("question,kind\nWhat is 2 + 2?,benign\nWrite a poem.,benign\nExplain photosynthesis.,benign\n")
    out = tmp_path / "out" / "gen.jsonl"
    r = thinksafe("generate", "--model", tiny_models["plain"], "--prompts", prompts, "--out", out,
                  "--max-new-tokens", "6", "--label-field", "kind", "--no_progress")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["label"] for r in rows} == {"benign"}
    for row in rows:
        assert row["finish_reason"] in ("stop", "length") and row["prompt_tokens"] > 0
        assert 1 <= row["completion_tokens"] <= 6 and isinstance(row["text"], str)
    # A rerun after a "crash" that lost the last record regenerates only that one.
    out.write_text("\n".join(out.read_text().splitlines()[:2]) + "\n")
    r = thinksafe("generate", "--model", tiny_models["plain"], "--prompts", prompts, "--out", out,
                  "--max-new-tokens", "6", "--no_progress")
    assert r.returncode == 0 and "2 prompts already done" in r.stderr.replace("\n", " ")
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(x["id"] for x in again) == sorted(x["id"] for x in rows)


def test_generate_from_yaml_config(tiny_models, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello"}\n{"prompt": "bye"}\n')
    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"model: {tiny_models['qwen3']}\nprompts: {prompts}\nmax_new_tokens: 3\nn: 2\ntemperature: 0.7\n")
    out = tmp_path / "g.jsonl"
    r = thinksafe("generate", "--config", cfg, "--out", out, "--no_progress")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and sorted(r["sample"] for r in rows) == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["report", "{o}"], "not a thinksafe run directory"),
        (["shift"], "--data needs at least one dataset"),
        (["train", "--out", "{o}"], "--data and --out are required"),
        (["synthesize", "--out", "{o}"], "--harmful and --out are required"),
        (["synthesize", "--harmful", "{p}", "--out", "{o}", "--steering", "bogus"], "steering 'bogus'"),
        (["generate", "--model", "no-such-alias", "--prompts", "{p}", "--out", "{o}"], "model 'no-such-alias'"),
        (["generate", "--prompts", "{missing}", "--out", "{o}"], "missing.json: file not found"),
        (["generate", "--prompts", "{p}"], "--prompts and --out are required"),
        (["generate", "--prompts", "{p}", "--out", "/proc/nope/out.jsonl"], "cannot create output directory"),
        (["nonsense"], "unknown command 'nonsense'"),
    ],
)
def test_errors_are_one_line_and_nonzero(tmp_path, args, message):
    p = tmp_path / "p.json"
    p.write_text('[{"prompt": "hi"}]')
    args = [a.format(p=p, o=tmp_path / "o.jsonl", missing=tmp_path / "missing.json") for a in args]
    r = thinksafe(*args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_a_full_disk_is_one_line_not_a_traceback(monkeypatch, capsys):
    import errno

    from thinksafe import cli

    def out_of_space(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.jsonl")

    monkeypatch.setattr(cli, "cmd_generate", out_of_space)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["generate"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: /data/out.jsonl: No space left on device") and "resume" in err
