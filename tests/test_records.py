import json

import pytest

from thinksafe.errors import InputError
from thinksafe.records import (
    Generation,
    Prompt,
    append_jsonl,
    done_ids,
    prompt_id,
    read_jsonl,
    repair_jsonl,
    write_json_atomic,
)


def test_prompt_id_is_stable_content_hash():
    assert prompt_id("hello") == prompt_id("hello") == Prompt("hello").id
    assert prompt_id("hello") != prompt_id("hello ")
    assert prompt_id("hello") == "2cf24dba5fb0a30e"  # sha256("hello")[:16], fixed across machines


def test_append_read_roundtrip(tmp_path):
    out = tmp_path / "a" / "x.jsonl"
    g = Generation("i1", "i1", "p", "harmful", 0, "t", "stop", 3, 4)
    assert append_jsonl(out, [g, {"id": "i2", "x": "é"}]) == 2
    rows = list(read_jsonl(out))
    assert rows[0]["text"] == "t" and rows[0]["finish_reason"] == "stop"
    assert rows[1]["x"] == "é"
    assert done_ids(out) == {"i1", "i2"}


def test_torn_tail_is_repaired_and_earlier_lines_kept(tmp_path):
    out = tmp_path / "x.jsonl"
    append_jsonl(out, [{"id": "a"}, {"id": "b"}])
    with out.open("a") as fh:
        fh.write('{"id": "c", "te')  # crash mid-write
    assert repair_jsonl(out) == len('{"id": "c", "te')
    assert [r["id"] for r in read_jsonl(out)] == ["a", "b"]
    assert done_ids(out) == {"a", "b"}


def test_bad_line_names_file_and_line(tmp_path):
    out = tmp_path / "bad.jsonl"
    out.write_text('{"id": 1}\n\n{oops\n')
    with pytest.raises(InputError, match=r"bad.jsonl:3: invalid JSON"):
        list(read_jsonl(out))
    out.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: expected a JSON object"):
        list(read_jsonl(out))
    out.write_bytes(b'{"id": 1}\n{"p": "\xff\xfe"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:\d+: not valid UTF-8"):
        list(read_jsonl(out))


def test_write_json_atomic_replaces_whole_file(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"a": 1})
    write_json_atomic(p, {"b": [1, 2]})
    assert json.loads(p.read_text()) == {"b": [1, 2]}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temp files left
