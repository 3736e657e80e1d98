"""The stage shape (stages/base.py): one directory guard for single commands and runs, and what adding a stage
takes — one module (here: the WordCount class below) plus one registry line (`register`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from thinksafe import cli
from thinksafe.config import opt
from thinksafe.errors import ConfigError
from thinksafe.records import read_json, read_jsonl, write_json_atomic
from thinksafe.stages import Job, Stage, StageDir, execute, registry
from thinksafe.stages.ledger import Counts

# ---------------------------------------------------------------- a new stage: one small module's worth


@dataclass
class WordCountArgs:
    data: str = opt("", "prompt file (.jsonl with a prompt field)", role="input")
    out: str = opt("", "output directory", role="output")
    min_len: int = opt(1, "count words of at least this many characters")
    overwrite: bool = opt(False, "replace a DIR made with other settings", role="control")


@dataclass
class WordCountOutput:
    counts: dict[str, Any] | None


class WordCount(Stage):
    name = "wordcount"
    help = "count the words of a prompt file"
    Settings = WordCountArgs
    required = ("data", "out")

    def bind(self, job: Job, upstream: list[Any]) -> Job:
        # In a run it reads an evaluate stage's output: the scored records of one benchmark (they have prompts).
        if not upstream:  # the single command: --data names the file
            return job
        return replace(job, settings=replace(job.settings, data=str(upstream[0].dir / "demo-harmful.jsonl")))

    def run(self, job: Job) -> Counts:
        s = job.settings
        words = [w for r in read_jsonl(s.data) for w in r["prompt"].split() if len(w) >= s.min_len]
        write_json_atomic(job.out / "counts.json", {"words": len(words), "min_len": s.min_len})
        return Counts()

    def read(self, out: Path) -> WordCountOutput:
        return WordCountOutput(read_json(out / "counts.json", missing_ok=True))


@pytest.fixture
def wordcount(monkeypatch):
    from thinksafe import stages

    monkeypatch.setattr(stages, "EXTRA", [])
    return stages.register(WordCount())  # the one registry line


def prompts_file(tmp_path: Path, text: str = "one two three four") -> Path:
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"prompt": text}) + "\n")
    return p


def main(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code


# ---------------------------------------------------------------- the new stage, as a command


def test_a_registered_stage_is_a_cached_resumable_command(wordcount, tmp_path, capsys):
    assert registry()["wordcount"] is wordcount and "wordcount" in cli.usage()
    data, out = prompts_file(tmp_path), tmp_path / "wc"
    assert main("wordcount", "--data", data, "--out", out, "--min_len", "4") == 0
    assert read_json(out / "counts.json") == {"words": 2, "min_len": 4}  # three, four
    for marker in ("stage.json", "ledger.json", "done.json"):
        assert (out / marker).exists()
    assert read_json(out / "done.json")["key"] == read_json(out / "stage.json")["key"]

    before = (out / "counts.json").stat().st_mtime_ns  # the same command again: cached, nothing rewritten
    assert main("wordcount", "--data", data, "--out", out, "--min_len", "4") == 0
    assert (out / "counts.json").stat().st_mtime_ns == before

    assert main("wordcount", "--data", data, "--out", out, "--min_len", "5") == 2  # other settings: refused
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "made with a different config (changed: min_len)" in err
    assert main("wordcount", "--data", data, "--out", out, "--min_len", "5", "--overwrite", "true") == 0
    assert read_json(out / "counts.json") == {"words": 1, "min_len": 5}
    assert main("wordcount", "--out", out) == 2
    assert "wordcount: --data and --out are required" in capsys.readouterr().err


def test_the_key_holds_the_input_files_content_and_not_the_output_dir(wordcount, tmp_path):
    data = prompts_file(tmp_path)
    run = lambda out: execute(wordcount, Job(WordCountArgs(str(data), str(out)), out))  # noqa: E731
    a = run(tmp_path / "a")
    assert run(tmp_path / "b").key == a.key  # where it writes is not what it depends on
    data.write_text(json.dumps({"prompt": "five"}) + "\n")
    with pytest.raises(ConfigError, match=r"changed: data"):
        run(tmp_path / "a")
    assert execute(wordcount, Job(WordCountArgs(str(data), str(tmp_path / "a"), overwrite=True), tmp_path / "a"),
                   overwrite=True).output.counts["words"] == 1


def test_a_started_stage_resumes_and_a_foreign_dir_is_refused(wordcount, tmp_path):
    data = prompts_file(tmp_path)
    out = tmp_path / "wc"
    first = execute(wordcount, Job(WordCountArgs(str(data), str(out)), out))
    (out / "done.json").unlink()  # killed before it finished
    again = execute(wordcount, Job(WordCountArgs(str(data), str(out)), out))
    assert again.status == "resume" and again.key == first.key and read_json(out / "ledger.json")["resumed"] is True
    assert execute(wordcount, Job(WordCountArgs(str(data), str(out)), out)).status == "cached"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="holds files but no stage.json"):
        execute(wordcount, Job(WordCountArgs(str(data), str(foreign)), foreign))
    assert (foreign / "notes.txt").read_text() == "mine\n"


def test_reuse_clears_only_what_the_changed_parts_invalidate(tmp_path):
    class Partial(Stage):  # like evaluate: a new judge re-scores, the raw generations stay
        name = "partial"

        def key(self, job):
            return {"generation": job.settings["gen"], "scoring": job.settings["judge"]}

        def reuse(self, changed):
            return ["scored.txt"] if changed <= {"scoring"} else None

    d = StageDir(tmp_path / "d")
    stage = Partial()
    from thinksafe.stages.base import stage_key

    def open_(gen, judge, overwrite=False):
        key, parts, config = stage_key(stage, Job({"gen": gen, "judge": judge}, d.path))
        return d.open(stage, key, parts, config, overwrite, [])

    assert open_("g", "j") == "run"
    for f in ("raw.txt", "scored.txt"):
        (d.path / f).write_text("x")
    assert open_("g", "j") == "resume"
    assert open_("g", "j2") == "run" and (d.path / "raw.txt").exists() and not (d.path / "scored.txt").exists()
    with pytest.raises(ConfigError, match="made with a different config"):
        open_("g2", "j2")
    assert open_("g2", "j2", overwrite=True) == "run" and not (d.path / "raw.txt").exists()


# ---------------------------------------------------------------- the new stage, in a run


def test_a_registered_stage_is_a_section_and_a_step_of_a_run(wordcount, tiny_models, tmp_path, monkeypatch):
    from thinksafe.pipeline import arms
    from thinksafe.pipeline.config import load_config, sections
    from thinksafe.pipeline.runner import run

    assert sections()["wordcount"] is WordCountArgs
    monkeypatch.setitem(arms.ARMS, "initial+count", arms.Arm("initial+count", "initial, and its prompts counted",
                                                             extra=(("wordcount", "evaluate"),)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'run'}\narms: [initial+count]\nmodel:\n  model: {tiny_models['plain']}\n"
                   "backend:\n  progress: false\n"
                   f"evaluate:\n  benchmarks: demo-harmful\n  limit: 1\n  max_new_tokens: 2\n  bootstrap: 10\n"
                   "wordcount:\n  min_len: 3\n")
    with pytest.raises(ConfigError, match=r"--wordcount\.data: key 'data' in section 'wordcount' is set by thinksafe run"):
        load_config(cfg, ["--wordcount.data", "x"])
    plan = run(load_config(cfg, ["--report", "false"]))
    assert [s.kind for s in plan.per_arm["initial+count"]] == ["evaluate", "wordcount"]
    evaluated = tmp_path / "run" / "initial+count" / "evaluate" / "demo-harmful.jsonl"
    words = [w for r in read_jsonl(evaluated) for w in r["prompt"].split() if len(w) >= 3]
    assert read_json(tmp_path / "run" / "initial+count" / "wordcount" / "counts.json") == {"words": len(words), "min_len": 3}
    assert {s.status for s in run(load_config(cfg, ["--report", "false"])).stages} == {"cached"}


# ---------------------------------------------------------------- what a person sees, and the stage log


class NoisyWordCount(WordCount):
    """A stage that speaks on every channel: our console, a library's info and warning, a python warning."""

    name = "noisy"

    def run(self, job: Job) -> Counts:
        import logging
        import warnings

        from thinksafe.progress import console

        console.print("noisy: counted the words")
        logging.getLogger("transformers").info("library detail nobody needs")
        logging.getLogger("peft").warning("a library warning that matters")
        warnings.warn("a python warning", UserWarning, stacklevel=1)
        return super().run(job)


@pytest.mark.parametrize("flag", ["", "--quiet", "--verbose"])
def test_every_stage_logs_everything_to_its_dir_and_the_terminal_follows_the_verbosity(monkeypatch, tmp_path, capfd,
                                                                                      flag):
    from thinksafe import stages

    monkeypatch.setattr(stages, "EXTRA", [])
    stages.register(NoisyWordCount())
    out = tmp_path / "wc"
    assert main("noisy", "--data", prompts_file(tmp_path), "--out", out, *([flag] if flag else [])) == 0
    log = (out / "log.txt").read_text()
    for line in ("noisy run (key ", "noisy: counted the words", "library detail nobody needs",
                 "a library warning that matters", "a python warning"):
        assert line in log  # whatever the terminal showed
    err = capfd.readouterr().err
    assert ("noisy: counted the words" in err) == (flag != "--quiet")
    assert ("a library warning that matters" in err) == (flag != "--quiet")
    assert ("library detail nobody needs" in err) == (flag == "--verbose")
