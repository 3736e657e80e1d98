"""Generation throughput and model load time on the embedded models (transformers backend).

    .venv/bin/python benchmarks/generation.py [--models smollm2-135m-instruct qwen2.5-coder-0.5b-instruct]
        [--prompts 32] [--max-new-tokens 128] [--repeats 2] [--conversion]

Runs batch 1, padded token-budget batches and continuous batching (the default) alternately (A B A B …) on the same mixed-length demo
prompts, prints a table of medians and the ratio, and writes benchmarks/results/generation.json.
`--conversion` also times the first use (GGUF → safetensors) into a temporary THINKSAFE_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table

from thinksafe.generate import BackendConfig, SamplingParams
from thinksafe.generate.hf import HFGenerator
from thinksafe.models import ModelSpec, load_model
from thinksafe.prompts import load_prompts

RESULTS = Path(__file__).parent / "results"


def time_conversion(alias: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        code = f"from thinksafe.models import materialize_embedded; materialize_embedded({alias!r})"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "THINKSAFE_HOME": home},
                       capture_output=True)
        return time.perf_counter() - t0


def run(gen: HFGenerator, msgs, sampling) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = gen.generate(msgs, sampling)
    return time.perf_counter() - t0, sum(c.completion_tokens for r in out for c in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--conversion", action="store_true")
    a = ap.parse_args()
    msgs = [[{"role": "user", "content": p.prompt}] for p in load_prompts("demo", limit=a.prompts, seed=0)]
    sampling = SamplingParams(max_new_tokens=a.max_new_tokens)
    rows = []
    for alias in a.models:
        row = {"model": alias, "prompts": len(msgs), "max_new_tokens": a.max_new_tokens}
        if a.conversion:
            row["first_load_s"] = round(time_conversion(alias), 1)
        load_model(ModelSpec(alias))  # make sure the cache exists before timing the cached load
        loads = [load_model(ModelSpec(alias)).load_seconds for _ in range(2)]
        row["cached_load_s"] = round(min(loads), 2)
        lm = load_model(ModelSpec(alias))
        gens = {"batch1": HFGenerator(lm, BackendConfig(progress=False, max_batch_size=1, hf_engine="padded")),
                "padded": HFGenerator(lm, BackendConfig(progress=False, hf_engine="padded")),
                "continuous": HFGenerator(lm, BackendConfig(progress=False, hf_engine="continuous"))}
        rates: dict[str, list[float]] = {k: [] for k in gens}
        for _ in range(a.repeats):  # alternate A B A B so drift hits both alike
            for name, gen in gens.items():
                secs, toks = run(gen, msgs, sampling)
                rates[name].append(toks / secs)
        for name in gens:
            row[f"{name}_tok_s"] = round(statistics.median(rates[name]), 1)
        row["padded/batch1"] = round(row["padded_tok_s"] / row["batch1_tok_s"], 2)
        row["continuous/padded"] = round(row["continuous_tok_s"] / row["padded_tok_s"], 2)
        rows.append(row)

    print_table(f"generation, {len(msgs)} demo prompts, {a.max_new_tokens} new tokens, greedy, median of {a.repeats}", rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generation.json").write_text(json.dumps({"rows": rows, "torch_threads": __import__("torch").get_num_threads()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
