"""Outputs are written atomically (temp file + fsync + rename: results.json, stats.json, configs, dataset.jsonl)
or append-only with fsync (the JSONL streams). A full disk, a failing fsync or rename, or a writer killed at any
moment never leaves a truncated results.json: readers see the previous complete file or the new one."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thinksafe import records
from thinksafe.records import append_jsonl, done_ids, read_jsonl, write_json_atomic

OLD = {"benchmarks": {"gsm8k": {"value": 0.5, "n": 3}}, "note": "the previous complete results"}
NEW = {"benchmarks": {"gsm8k": {"value": 0.75, "n": 4}}, "padding": "x" * 200_000}


class DiskFull:
    """A file object that takes `budget` characters, then fails like a full disk."""

    def __init__(self, real, budget: int):
        self.real, self.budget = real, budget

    def write(self, text: str) -> int:
        if len(text) > self.budget:
            self.real.write(text[: self.budget])
            self.real.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(text)
        return self.real.write(text)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "results.json"
    write_json_atomic(path, OLD)
    return path


@pytest.mark.parametrize("budget", [0, 1, 4096, 100_000])
def test_full_disk_mid_write_keeps_previous_results(results, monkeypatch, budget):
    real_fdopen = os.fdopen
    monkeypatch.setattr(records.os, "fdopen", lambda fd, *a, **k: DiskFull(real_fdopen(fd, *a, **k), budget))
    with pytest.raises(OSError) as e:
        write_json_atomic(results, NEW)
    assert e.value.errno == errno.ENOSPC
    assert json.loads(results.read_text()) == OLD and leftovers(results.parent) == []


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_failing_fsync_or_rename_keeps_previous_results(results, monkeypatch, fails):
    def broken(*a, **k):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(records.os, fails, broken)
    with pytest.raises(OSError):
        write_json_atomic(results, NEW)
    assert json.loads(results.read_text()) == OLD and leftovers(results.parent) == []


WRITER = """
import sys
from thinksafe.records import write_json_atomic
path, size = sys.argv[1], int(sys.argv[2])
n = 0
while True:
    n += 1
    write_json_atomic(path, {"version": n, "payload": str(n % 10) * size, "size": size})
"""


def test_killed_writer_never_leaves_a_truncated_results_json(tmp_path):
    """SIGKILL a process rewriting a 2 MB results.json in a loop at eight seeded random moments: every time,
    results.json is one complete version. A killed writer may leave its temp file behind, never a torn target."""
    path, size = tmp_path / "results.json", 2_000_000
    rng = random.Random(7)
    versions = []
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(size)],
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            inode = path.stat().st_ino if path.exists() else None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until this writer has replaced the file once: it is mid-loop
                if path.exists() and path.stat().st_ino != inode:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.1))  # then anywhere in a write: temp file, fsync, rename
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        data = json.loads(path.read_text())  # never torn: parses, and is internally complete
        assert len(data["payload"]) == size == data["size"] and set(data["payload"]) == {str(data["version"] % 10)}
        versions.append(data["version"])
    assert versions[-1] >= 1


def test_append_only_streams_survive_a_full_disk(tmp_path, monkeypatch):
    """append_jsonl on a full disk: a torn tail is cut on the next read, every earlier record is kept."""
    out = tmp_path / "raw.jsonl"
    append_jsonl(out, [{"id": "a", "prompt_id": "a"}, {"id": "b", "prompt_id": "b"}])
    before = out.read_bytes()
    real_open = Path.open

    def full_disk_open(self, mode="r", *a, **k):
        fh = real_open(self, mode, *a, **k)
        return DiskFull(fh, 20) if "a" in mode else fh

    with monkeypatch.context() as m:
        m.setattr(Path, "open", full_disk_open)
        with pytest.raises(OSError):
            append_jsonl(out, [{"id": "c", "prompt_id": "c", "text": "y" * 100}])
    assert out.read_bytes().startswith(before) and out.read_bytes() != before  # a torn tail was left
    assert done_ids(out) == {"a", "b"} and out.read_bytes() == before  # …and cut when the stage resumes
    append_jsonl(out, [{"id": "c", "prompt_id": "c"}])
    assert [r["id"] for r in read_jsonl(out)] == ["a", "b", "c"]


def test_a_prompt_with_some_of_its_samples_is_generated_again(tmp_path):
    """A write cut at a line boundary can keep 1 of a prompt's 2 samples; a resumed stage must not count the
    prompt as done (it would stay one sample short forever), nor duplicate the sample it has."""
    from thinksafe.generate import SamplingParams
    from thinksafe.generate.to_file import generate_to_file
    from thinksafe.records import Completion, Prompt

    class Echo:
        format = None
        name = "echo"

        def __init__(self):
            self.asked = []

        def generate(self, requests, sampling, on_result=None):
            self.asked += [r[-1]["content"] for r in requests]
            out = [[Completion(f"{r[-1]['content']}#{k}", "stop", 1, 1) for k in range(sampling.n)] for r in requests]
            for i, cs in enumerate(out):
                on_result(i, cs)
            return out

    prompts = [Prompt("p1"), Prompt("p2")]
    out = tmp_path / "raw.jsonl"
    s = SamplingParams(n=2, temperature=0.6)
    generate_to_file(Echo(), prompts, s, out)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n")  # p2 lost its second sample
    gen = Echo()
    stats = generate_to_file(gen, prompts, s, out)
    assert gen.asked == ["p2"] and stats.skipped == 1
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(f"{p.id}-{k}" for p in prompts for k in range(2))


def test_evaluate_keeps_previous_results_when_the_final_write_fails(stopping_model, bench_data, tmp_path,
                                                                     monkeypatch):
    """A finished evaluation rerun (e.g. with a new bootstrap count) on a disk that fills up exactly while
    results.json is written: the stage fails, the previous results.json is untouched."""
    from thinksafe.generate import BackendConfig
    from thinksafe.judge import GuardConfig
    from thinksafe.models import ModelSpec
    from thinksafe.stages.evaluate import EvaluateArgs, evaluate

    def run(**kw):
        args = EvaluateArgs(benchmarks="xstest,gsm8k", data_dir=str(bench_data), out=str(tmp_path / "e"), limit=3,
                            max_new_tokens=4, **kw)
        return evaluate(args, ModelSpec(str(stopping_model)), BackendConfig(progress=False), GuardConfig())

    run(bootstrap=20)
    results = tmp_path / "e" / "results.json"
    before = results.read_bytes()
    real_fdopen = os.fdopen

    def fdopen(fd, *a, **k):
        fh = real_fdopen(fd, *a, **k)
        return DiskFull(fh, 1000) if ".results.json." in os.readlink(f"/proc/self/fd/{fd}") else fh

    monkeypatch.setattr(records.os, "fdopen", fdopen)
    with pytest.raises(OSError):
        run(bootstrap=30)
    assert results.read_bytes() == before and leftovers(results.parent) == []
