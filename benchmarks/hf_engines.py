"""transformers backend: padded batches vs continuous batching (BackendConfig.hf_engine), greedy.

    .venv/bin/python benchmarks/hf_engines.py [--model qwen2.5-coder-0.5b-instruct] [--prompts 128]
        [--max-new-tokens 128] [--repeats 2] [--max-batch-size 64] [--engines padded continuous]

Mimics synthesis: the demo prompts (harmful ones behind the steering prefix), cycled to --prompts with a
different steering template / a system line on each later round so no two prompts are the same. Both
engines share one loaded model and run alternately (A B A B …) so drift hits both alike; tok/s counts
generated tokens over the generate() wall time. Prints a table of medians and the ratio to the first
engine, how many greedy outputs are identical, and writes benchmarks/results/hf_engines.json. The load
average is recorded per run: above the core count, other jobs shared the CPU and only the ratio is
meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import psutil
import torch
from rich.console import Console
from rich.table import Table

from thinksafe.generate import BackendConfig, SamplingParams
from thinksafe.generate.hf import HFGenerator
from thinksafe.models import ModelSpec, load_model
from thinksafe.prompts import demo_prompts
from thinksafe.steer import steer

RESULTS = Path(__file__).parent / "results"
ROUNDS = [("prefix", None), ("suffix", "You are a helpful assistant."), ("risk", "You are an AI assistant."),
          ("intent", "You are a careful assistant.")]


def make_requests(n: int) -> list[list[dict]]:
    demo, out = demo_prompts(), []
    for i in range(n):
        template, system = ROUNDS[(i // len(demo)) % len(ROUNDS)]
        p = demo[i % len(demo)]
        msgs = [{"role": "system", "content": system}] if system else []
        out.append(msgs + [{"role": "user", "content": steer(p.prompt, p.label, template)}])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-batch-size", type=int, default=BackendConfig.max_batch_size)
    ap.add_argument("--token-budget", type=int, default=BackendConfig.token_budget)
    ap.add_argument("--engines", nargs="+", default=["padded", "continuous"])
    ap.add_argument("--out", default=str(RESULTS / "hf_engines.json"))
    a = ap.parse_args()

    requests = make_requests(a.prompts)
    sampling = SamplingParams(max_new_tokens=a.max_new_tokens)
    lm = load_model(ModelSpec(a.model))
    gens = {
        e: HFGenerator(lm, BackendConfig(progress=False, hf_engine=e, max_batch_size=a.max_batch_size,
                                         token_budget=a.token_budget))
        for e in a.engines
    }
    prompt_lens = [len(next(iter(gens.values())).encode(m)) for m in requests]
    runs, texts = [], {}
    for r in range(a.repeats):  # alternate A B A B so drift hits both alike
        for engine, gen in gens.items():
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            out = gen.generate(requests, sampling)
            secs = time.perf_counter() - t0
            done = [c[0] for c in out]
            toks = sum(c.completion_tokens for c in done)
            texts.setdefault(engine, [c.text for c in done])
            run = dict(engine=engine, repeat=r, seconds=round(secs, 1), completion_tokens=toks,
                       tok_s=round(toks / secs, 1), hit_length=sum(c.finish_reason == "length" for c in done),
                       load_avg_1m=[round(load0, 1), round(os.getloadavg()[0], 1)])
            runs.append(run)
            print(json.dumps(run), flush=True)

    first = a.engines[0]
    rows = []
    for engine in a.engines:
        mine = [x for x in runs if x["engine"] == engine]
        row = dict(engine=engine, tok_s_median=round(statistics.median(x["tok_s"] for x in mine), 1),
                   seconds_median=round(statistics.median(x["seconds"] for x in mine), 1),
                   completion_tokens=mine[0]["completion_tokens"],
                   identical_to_first=sum(x == y for x, y in zip(texts[engine], texts[first])))
        rows.append(row)
    for row in rows:
        row["ratio"] = round(row["tok_s_median"] / rows[0]["tok_s_median"], 2)

    table = Table(title=f"{a.model}: {len(requests)} prompts, {a.max_new_tokens} new tokens, greedy, "
                        f"max_batch_size {a.max_batch_size}, median of {a.repeats}")
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
    loads = [v for x in runs for v in x["load_avg_1m"]]
    cores = psutil.cpu_count()
    result = dict(
        model=a.model, prompts=len(requests), max_new_tokens=a.max_new_tokens, repeats=a.repeats,
        max_batch_size=a.max_batch_size, token_budget=a.token_budget,
        prompt_tokens=dict(min=min(prompt_lens), max=max(prompt_lens), total=sum(prompt_lens)),
        cpu=platform.processor() or platform.machine(), cores=cores, torch_threads=torch.get_num_threads(),
        contended=max(loads) > cores, rows=rows, runs=runs,
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}" + (" (load average above the core count: compare the ratio only)" if result["contended"] else ""))


if __name__ == "__main__":
    main()
