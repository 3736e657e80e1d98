"""Frozen evaluation subsets: which prompts an evaluation used, and reusing exactly those.

Every evaluation writes DIR/manifest.json:

    {"version": 1, "limit": 50, "seed": 0,
     "benchmarks": {"harmbench": {"kind": "safety", "ids": ["3f2a…", …]}, …}}

`--manifest FILE` evaluates exactly those ids per benchmark, in that order, so two runs (other models, other
machines, another paper's subset) compare on the same prompts. An id is the hash of the prompt text as sent
(template applied), so an id found in the data is the same prompt; an id that is not there means the data
changed, and is an error rather than a silently smaller subset. Benchmarks the manifest does not list are an
error too; benchmarks it lists that this evaluation doesn't run are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinksafe.errors import InputError
from thinksafe.evaluate.benchmarks import Benchmark, Item
from thinksafe.records import read_json

VERSION = 1


def manifest(selected: list[tuple[Benchmark, list[Item]]], limit: int | None, seed: int) -> dict[str, Any]:
    """The manifest of an evaluation: each benchmark with the items it evaluates."""
    return {"version": VERSION, "limit": limit, "seed": seed,
            "benchmarks": {b.name: {"kind": b.kind, "ids": [i.id for i in items]} for b, items in selected}}


def read_manifest(path: str | Path) -> dict[str, list[str]]:
    """Benchmark name → its prompt ids, from a manifest.json (a bad file is one line naming it)."""
    data = read_json(path)
    benches = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benches, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("ids"), list) and all(isinstance(i, str) for i in v["ids"])
            for v in benches.values()):
        raise InputError(f"{path}: not an evaluation manifest (expected "
                         '{"benchmarks": {NAME: {"ids": [...]}}}, as evaluate writes to DIR/manifest.json)')
    return {name: list(v["ids"]) for name, v in benches.items()}


def frozen_items(bench: Benchmark, items: list[Item], frozen: dict[str, list[str]], path: str | Path) -> list[Item]:
    """The items of `bench` that the manifest names, in its order."""
    if bench.name not in frozen:
        raise InputError(f"{path}: no prompt ids for benchmark '{bench.name}' (it lists: {', '.join(frozen) or 'none'})")
    ids = frozen[bench.name]
    by_id = {i.id: i for i in items}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(f"{path}: benchmark '{bench.name}': {len(missing)} of its {len(ids)} prompt ids are not in "
                         f"the data (first: {missing[0]}); the data changed since the manifest was written")
    return [by_id[i] for i in dict.fromkeys(ids)]
