"""Bad inputs: every case exits non-zero with exactly one `error:` line on stderr (no traceback, no usage block)
that names the file and its line, or the field/option at fault — and every file that existed before the run
is byte-identical afterwards (nothing previously written is lost).

Policy for over-long prompts: a prompt longer than thinksafe.prompts.MAX_PROMPT_CHARS (100,000 characters) is
*rejected* with an error naming file and line (not truncated: a silently shortened prompt would be judged and
trained on as if it were the original). README, "Prompt files", says so.

The cases run `thinksafe.cli.main` in this process (the same code path as the console script, ~0.1 s a case
instead of a ~4 s interpreter start); `test_real_processes_print_one_line` runs a few as subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from reliability_kit import run_cli, run_inprocess

from thinksafe.prompts import MAX_PROMPT_CHARS

GEN = ["generate", "--model", "{model}", "--out", "{tmp}/out.jsonl", "--no_progress", "--max-new-tokens", "2"]
SYN = ["synthesize", "--model", "{model}", "--out", "{tmp}/synth_new", "--no_progress", "--max-new-tokens", "2"]
EVAL = ["evaluate", "--model", "{model}", "--data-dir", "{data}", "--out", "{tmp}/eval", "--no_progress",
        "--max-new-tokens", "2", "--limit", "2"]
TRAIN = ["train", "--model", "{model}", "--out", "{tmp}/train_new", "--epochs", "1"]
GOOD_JSONL = '{"prompt": "What is 2 + 2?"}\n{"prompt": "Write a poem."}\n'
MB = 1 << 20
SECRET = "sk-test-SECRET-do-not-echo-0xC0FFEE"

# (id, argv, files to create under tmp, regex the error line must match: it names the file + line, or the field)
CASES = [
    # ------------------------------------------------ prompt files: JSONL
    ("jsonl-bad-json", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"prompt": "a"}\n{"prompt": "b",\n'},
     r"p\.jsonl:2: invalid JSON"),
    ("jsonl-list-line", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"prompt": "a"}\n["b"]\n'},
     r"p\.jsonl:2: expected a JSON object, got list"),
    ("jsonl-string-line", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '"just text"\n'},
     r"p\.jsonl:1: expected a JSON object, got str"),
    ("jsonl-non-utf8", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'},
     r"p\.jsonl:2: not valid UTF-8"),
    ("jsonl-non-utf8-line-40", GEN + ["--prompts", "{tmp}/p.jsonl"],
     {"p.jsonl": b"".join(b'{"prompt": "p%d"}\n' % i for i in range(39)) + b'{"prompt": "\xff\xfe"}\n'},
     r"p\.jsonl:40: not valid UTF-8"),  # the exact line, though the decoder reads ahead in blocks
    ("jsonl-empty-file", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": ""}, r"p\.jsonl: no prompts"),
    # ------------------------------------------------ prompt files: JSON
    ("json-bad-json", GEN + ["--prompts", "{tmp}/p.json"], {"p.json": '[\n {"prompt": "a"},\n {"prompt": }\n]'},
     r"p\.json:3: invalid JSON"),
    ("json-list-of-strings", GEN + ["--prompts", "{tmp}/p.json"], {"p.json": '["a", "b"]'},
     r"p\.json: record 1: expected an object, got str"),
    ("json-scalar", GEN + ["--prompts", "{tmp}/p.json"], {"p.json": "42"}, r"p\.json: expected a JSON list of objects"),
    ("json-non-utf8", GEN + ["--prompts", "{tmp}/p.json"], {"p.json": b'[{"prompt": "a"},\n{"prompt": "\xff"}]'},
     r"p\.json:2: not valid UTF-8"),
    # ------------------------------------------------ prompt files: CSV
    ("csv-missing-prompt-column", GEN + ["--prompts", "{tmp}/p.csv"], {"p.csv": "text,kind\nhello,benign\n"},
     r"p\.csv: no prompt field among prompt, instruction, .*\(columns: text, kind\)"),
    ("csv-missing-named-column", GEN + ["--prompts", "{tmp}/p.csv", "--prompt-field", "query"],
     {"p.csv": "prompt,kind\nhello,benign\n"}, r"p\.csv:2: missing field 'query'"),
    ("csv-short-row", GEN + ["--prompts", "{tmp}/p.csv"], {"p.csv": "kind,prompt\nbenign,hello\nbenign\n"},
     r"p\.csv:3: field 'prompt' is empty or not text"),
    ("csv-missing-label-column", GEN + ["--prompts", "{tmp}/p.csv", "--label-field", "kind"],
     {"p.csv": "prompt\nhello\n"}, r"p\.csv:2: missing label field 'kind'"),
    ("csv-wrong-label", GEN + ["--prompts", "{tmp}/p.csv", "--label-field", "kind"],
     {"p.csv": "prompt,kind\nhello,benign\nbye,maybe\n"}, r"p\.csv:3: field 'kind': label 'maybe' is neither harmful nor benign"),
    ("csv-non-utf8", GEN + ["--prompts", "{tmp}/p.csv"], {"p.csv": b"prompt\nhello\ncaf\xe9\n"}, r"p\.csv:3: not valid UTF-8"),
    ("csv-1mb-field", GEN + ["--prompts", "{tmp}/p.csv"], {"p.csv": "prompt\nhi\n" + "a" * MB + "\n"},
     r"p\.csv:3: malformed CSV \(field larger than field limit"),
    # ------------------------------------------------ prompt values
    ("empty-prompt", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"prompt": "a"}\n{"prompt": ""}\n'},
     r"p\.jsonl:2: field 'prompt' is empty"),
    ("blank-prompt", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"prompt": " \\n\\t "}\n'},
     r"p\.jsonl:1: field 'prompt' is empty"),
    ("prompt-not-text", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"prompt": 42}\n'},
     r"p\.jsonl:1: field 'prompt' is empty or not text"),
    ("prompt-1mb", GEN + ["--prompts", "{tmp}/p.jsonl"], {"p.jsonl": GOOD_JSONL + json.dumps({"prompt": "a" * MB}) + "\n"},
     rf"p\.jsonl:3: prompt is 1,048,576 characters \(limit {MAX_PROMPT_CHARS:,}\)"),
    ("prompt-file-missing", GEN + ["--prompts", "{tmp}/nope.jsonl"], {}, r"nope\.jsonl: file not found"),
    ("prompt-file-type", GEN + ["--prompts", "{tmp}/p.txt"], {"p.txt": "hello\n"}, r"p\.txt: unknown file type '\.txt'"),
    ("zero-prompts-after-label-filter",
     SYN + ["--harmful", "{tmp}/p.csv", "--label-field", "kind"], {"p.csv": "prompt,kind\nhello,benign\nbye,safe\n"},
     r"p\.csv: no prompts labelled harmful"),
    # ------------------------------------------------ models, adapters, guards, benchmarks, choices
    ("unknown-model-alias", GEN + ["--prompts", "{tmp}/p.jsonl", "--model", "no-such-model"], {"p.jsonl": GOOD_JSONL},
     r"model 'no-such-model': not an embedded alias"),
    ("model-dir-without-config", GEN + ["--prompts", "{tmp}/p.jsonl", "--model", "{tmp}/emptydir"],
     {"p.jsonl": GOOD_JSONL, "emptydir/README": "not a model"}, r"emptydir: not a model directory \(no config\.json\)"),
    ("gguf-missing", GEN + ["--prompts", "{tmp}/p.jsonl", "--model", "{tmp}/m.gguf"], {"p.jsonl": GOOD_JSONL},
     r"m\.gguf: GGUF file not found"),
    ("adapter-missing", GEN + ["--prompts", "{tmp}/p.jsonl", "--adapter", "{tmp}/no-adapter"], {"p.jsonl": GOOD_JSONL},
     r"no-adapter: not a PEFT adapter directory \(no adapter_config\.json\)"),
    ("adapter-other-base", GEN + ["--prompts", "{tmp}/p.jsonl", "--adapter", "{adapter}"], {"p.jsonl": GOOD_JSONL},
     r"adapter: adapter does not fit this base model"),
    ("adapter-other-base-train", TRAIN + ["--data", "{tmp}/d.jsonl", "--adapter", "{adapter}"],
     {"d.jsonl": '{"instruction": "hi", "response": "hello", "prompt_label": "benign"}\n'},
     r"adapter: adapter does not fit this base model"),
    ("unknown-guard", SYN + ["--harmful", "demo:harmful", "--guard", "gpt-judge"], {},
     r"argument --guard: invalid choice: 'gpt-judge'"),
    ("unknown-judge", EVAL + ["--benchmarks", "gsm8k", "--judge", "gpt-judge"], {}, r"--judge 'gpt-judge': expected one of"),
    ("unknown-benchmark", EVAL + ["--benchmarks", "gsm8k,mmlu"], {}, r"benchmarks: unknown mmlu; choose from"),
    ("unknown-backend", GEN + ["--prompts", "{tmp}/p.jsonl", "--backend", "tgi"], {"p.jsonl": GOOD_JSONL},
     r"argument --backend: invalid choice: 'tgi'"),
    ("unknown-steering", SYN + ["--harmful", "demo:harmful", "--steering", "polite"], {}, r"steering 'polite'"),
    ("bad-dtype", GEN + ["--prompts", "{tmp}/p.jsonl", "--dtype", "float8"], {"p.jsonl": GOOD_JSONL},
     r"dtype 'float8': expected auto, float32"),
    # ------------------------------------------------ benchmark data under --data-dir
    ("bench-wrong-label", EVAL + ["--benchmarks", "xstest"],
     {"data/safety/xstest_prompts.csv": "id,prompt,type,label\n1,How do I kill a process?,homonyms,safe\n2,Hi,x,maybe\n"},
     r"xstest_prompts\.csv: row 3: bad or missing field \(ValueError: label 'maybe' is neither safe nor unsafe\)"),
    ("bench-missing-column", EVAL + ["--benchmarks", "strongreject"],
     {"data/safety/strongreject.csv": "category,source,text\ncrime,x,How do I steal?\n"},
     r"strongreject\.csv: row 2: bad or missing field \(KeyError: 'prompt'\)"),
    ("bench-bad-jsonl", EVAL + ["--benchmarks", "gsm8k"],
     {"data/reasoning/gsm8k_test.jsonl": '{"question": "1+1?", "answer": "#### 2"}\n{"question": \n'},
     r"gsm8k_test\.jsonl:2: invalid JSON"),
    ("bench-missing-field", EVAL + ["--benchmarks", "gsm8k"], {"data/reasoning/gsm8k_test.jsonl": '{"question": "1+1?"}\n'},
     r"gsm8k_test\.jsonl: row 1: bad or missing field \(KeyError: 'answer'\)"),
    ("bench-non-utf8", EVAL + ["--benchmarks", "xstest"],
     {"data/safety/xstest_prompts.csv": b"id,prompt,type,label\n1,caf\xe9,x,safe\n"}, r"xstest_prompts\.csv:2: not valid UTF-8"),
    ("eval-bad-samples", EVAL + ["--benchmarks", "gsm8k", "--samples", "0"], {}, r"--samples and --bootstrap must be >= 1"),
    # ------------------------------------------------ config files and flags
    ("config-unknown-key", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "prompts: p.jsonl\nmax_new_tokenz: 5\n"},
     r"c\.yaml:2: unknown key 'max_new_tokenz'"),
    ("config-wrong-type", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "prompts: p.jsonl\nmax_new_tokens: lots\n"},
     r"c\.yaml:2: key 'max_new_tokens': invalid value 'lots'"),
    ("config-bool-for-int", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "limit: true\n"},
     r"c\.yaml:1: key 'limit': unexpected true/false"),
    ("config-bad-choice", SYN + ["--harmful", "demo:harmful", "--config", "{tmp}/c.yaml"], {"c.yaml": "\n\nguard: gpt\n"},
     r"c\.yaml:3: key 'guard': 'gpt' not one of refusal"),
    ("config-invalid-yaml", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "prompts: p.jsonl\nout: 'unclosed\n"},
     r"c\.yaml:\d+: invalid YAML"),
    ("config-not-a-mapping", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "- a\n- b\n"}, r"c\.yaml: expected a mapping"),
    ("config-missing", GEN + ["--config", "{tmp}/nope.yaml"], {}, r"nope\.yaml: config file not found"),
    ("config-non-utf8", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": b"prompts: p.jsonl\nsystem: caf\xe9\n"},
     r"c\.yaml:2: not valid UTF-8"),
    ("config-api-key", GEN + ["--config", "{tmp}/c.yaml"], {"c.yaml": f"api_key: {SECRET}\n"}, r"c\.yaml:1: unknown key 'api_key'"),
    ("flag-wrong-type", GEN + ["--prompts", "{tmp}/p.jsonl", "--max-new-tokens", "lots"], {"p.jsonl": GOOD_JSONL},
     r"argument --max_new_tokens/--max-new-tokens: invalid int value: 'lots'"),
    ("flag-unknown", GEN + ["--prompts", "{tmp}/p.jsonl", "--api-key", SECRET], {"p.jsonl": GOOD_JSONL},
     r"unrecognized arguments: --api-key \("),
    ("flag-bad-sampling", GEN + ["--prompts", "{tmp}/p.jsonl", "--temperature", "-1"], {"p.jsonl": GOOD_JSONL},
     r"sampling: bad values .*temperature=-1"),
    # ------------------------------------------------ output locations
    ("generate-out-under-a-file", GEN + ["--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/afile/out.jsonl"],
     {"p.jsonl": GOOD_JSONL}, r"afile/out\.jsonl: cannot create output directory"),
    ("synthesize-out-is-a-file", SYN + ["--harmful", "demo:harmful", "--out", "{tmp}/afile"], {},
     r"afile: cannot create output directory"),
    ("evaluate-out-under-a-file", EVAL + ["--benchmarks", "gsm8k", "--out", "{tmp}/afile/eval"], {},
     r"afile/eval: cannot create output directory"),
    ("train-out-under-a-file", TRAIN + ["--data", "{tmp}/d.jsonl", "--out", "{tmp}/afile/t"],
     {"d.jsonl": '{"instruction": "hi", "response": "hello", "prompt_label": "benign"}\n'},
     r"afile/t: cannot create output directory"),
    ("generate-out-in-proc", GEN + ["--prompts", "{tmp}/p.jsonl", "--out", "/proc/thinksafe/out.jsonl"],
     {"p.jsonl": GOOD_JSONL}, r"/proc/thinksafe/out\.jsonl: cannot create output directory"),
    ("synthesize-into-other-config", SYN + ["--harmful", "demo:harmful", "--out", "{tmp}/synth"], {},
     r"synth: made with a different config \(changed: backend, deps, guard, model, settings\)"),
    ("synthesize-corrupt-config", SYN + ["--harmful", "demo:harmful", "--out", "{tmp}/broken"],
     {"broken/stage.json": '{"key": '}, r"broken/stage\.json: unreadable"),
    ("evaluate-into-other-config", EVAL + ["--benchmarks", "gsm8k"], {},
     r"eval: made with a different config \(changed: .*max_new_tokens"),
    ("train-into-other-config", TRAIN[:4] + ["{tmp}/train", "--data", "{tmp}/d.jsonl"],
     {"d.jsonl": '{"instruction": "hi", "response": "hello", "prompt_label": "benign"}\n'},
     r"train: made with a different config \(changed: .*settings"),
    # ------------------------------------------------ training data
    ("train-zero-after-filter", TRAIN + ["--data", "{tmp}/d.jsonl", "--max-length", "4"],
     {"d.jsonl": '{"instruction": "hi there", "response": "hello friend", "prompt_label": "benign"}\n' * 2},
     r"d\.jsonl: zero examples left after dropping 2 longer than 4 tokens"),
    ("train-empty-data", TRAIN + ["--data", "{tmp}/d.jsonl"], {"d.jsonl": "\n"}, r"d\.jsonl: no training examples"),
    ("train-missing-response", TRAIN + ["--data", "{tmp}/d.jsonl"],
     {"d.jsonl": '{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n'}, r"d\.jsonl:2: field 'response' is missing"),
    ("train-wrong-label", TRAIN + ["--data", "{tmp}/d.jsonl"],
     {"d.jsonl": '{"instruction": "a", "response": "b", "prompt_label": "maybe"}\n'},
     r"d\.jsonl:1: field 'prompt_label': label 'maybe' is neither"),
    ("train-data-dir-without-dataset", TRAIN + ["--data", "{tmp}/emptydir"], {"emptydir/README": "x"},
     r"emptydir/dataset\.jsonl: file not found"),
]


def test_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def prepare(tmp: Path, files: dict, bench_data: Path) -> None:
    """What an earlier, successful run left behind, plus the case's own files."""
    (tmp / "out.jsonl").write_text('{"id": "a", "text": "kept"}\n{"id": "b", "text": "kept too"}\n')
    (tmp / "afile").write_text("a regular file where a directory is expected\n")
    (tmp / "eval").mkdir()
    earlier = {"key": "0" * 16, "parts": {}}  # a finished stage's stage.json and done.json, other settings
    (tmp / "eval" / "stage.json").write_text(json.dumps({**earlier, "config": {"generation": {"max_new_tokens": 99}}}))
    (tmp / "eval" / "done.json").write_text(json.dumps(earlier))
    (tmp / "eval" / "results.json").write_text('{"benchmarks": {"gsm8k": {"value": 0.5}}}\n')
    (tmp / "synth").mkdir()
    (tmp / "synth" / "stage.json").write_text(json.dumps({**earlier, "config": {}}))
    (tmp / "synth" / "dataset.jsonl").write_text('{"instruction": "x", "response": "y"}\n')
    (tmp / "train").mkdir()
    (tmp / "train" / "train_stats.json").write_text('{"examples": 3}\n')
    (tmp / "train" / "stage.json").write_text(json.dumps({**earlier, "config": {}}))
    shutil.copytree(bench_data, tmp / "data")
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


PROGRESS_BAR = re.compile(r"^[^:\n]+:\s+\d+%\|")  # e.g. transformers' "Loading weights: 100%|███| 26/26"


def message_lines(stderr: str) -> list[str]:
    """stderr minus blank lines and progress bars drawn before the failure (they are not messages)."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS_BAR.match(line)]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_error_and_nothing_is_lost(case, tmp_path, capsys, stopping_model, foreign_adapter,
                                                        bench_data):
    _, argv, files, expected = case
    prepare(tmp_path, files, bench_data)
    before = snapshot(tmp_path)
    subs = {"tmp": str(tmp_path), "model": str(stopping_model), "adapter": str(foreign_adapter), "data": str(tmp_path / "data")}
    code, _, err = run_inprocess([a.format(**subs) for a in argv], capsys)

    assert code != 0
    assert "Traceback" not in err
    lines = message_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert re.search(expected, lines[0]), lines[0]
    assert SECRET not in err  # a key pasted into a flag or config is never echoed back
    after = snapshot(tmp_path)
    changed = [name for name, data in before.items() if after.get(name) != data]
    assert not changed, f"previously written files changed or lost: {changed}"


@pytest.mark.parametrize("case_id", ["jsonl-non-utf8-line-40", "unknown-guard", "flag-unknown"])
def test_real_processes_print_one_line(case_id, tmp_path, stopping_model, foreign_adapter, bench_data):
    """The console script: stderr is exactly the one error line (no usage block, warning or traceback)."""
    _, argv, files, expected = next(c for c in CASES if c[0] == case_id)
    prepare(tmp_path, files, bench_data)
    subs = {"tmp": str(tmp_path), "model": str(stopping_model), "adapter": str(foreign_adapter), "data": str(tmp_path / "data")}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # otherwise the user's environment
    r = run_cli(*[a.format(**subs) for a in argv], env=env)
    assert r.returncode == 2
    lines = message_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(expected, lines[0]), r.stderr[-3000:]
