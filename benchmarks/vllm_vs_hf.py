"""Throughput of the vLLM and transformers backends on the same prompts, greedy decoding.

    python benchmarks/vllm_vs_hf.py [--model qwen2.5-coder-0.5b-instruct] [--prompts 64] [--max-new-tokens 256]

Run it in a venv with vllm (scripts/install-vllm.sh). Each backend runs alone (vLLM's engine is shut
down before transformers loads) so they don't share the cores. tok/s counts generated tokens over the
generate() wall time; load time is reported apart. Peak RSS sums the process and its children, since
vLLM keeps the model in worker processes. Writes benchmarks/results/vllm_vs_hf.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import psutil

from thinksafe.generate import BackendConfig, SamplingParams
from thinksafe.models import ModelSpec

TOPICS = [
    "binary search",
    "photosynthesis",
    "the French revolution",
    "TCP handshakes",
    "compound interest",
    "garbage collection",
    "black holes",
    "sourdough bread",
    "the Pythagorean theorem",
    "SQL joins",
    "vaccines",
    "recursion",
    "plate tectonics",
    "hash tables",
    "the stock market",
    "unit testing",
]
CONTEXT = (
    "Here are my notes so far: it is a topic I keep coming back to, I have read two books about it, "
    "watched several lectures, and still feel I lack the intuition behind the main ideas. "
)


def make_prompts(n: int) -> list[list[dict]]:
    """Mixed lengths: a one-line question, a paragraph, and a long request with repeated context."""
    prompts = []
    for i in range(n):
        topic, kind = TOPICS[i % len(TOPICS)], i % 4
        if kind == 0:
            text = f"What is {topic}?"
        elif kind == 1:
            text = f"Explain {topic} to a beginner, with one example."
        elif kind == 2:
            text = CONTEXT * 2 + f"Write a detailed, structured explanation of {topic}."
        else:
            text = CONTEXT * 6 + f"Give me a step-by-step study plan for {topic}, with exercises."
        prompts.append([{"role": "user", "content": text}])
    return prompts


class PeakRSS:
    """Samples the RSS of this process plus its children (vLLM's engine and workers) in a thread."""

    def __init__(self, every: float = 0.5):
        self.peak, self.every, self.stop = 0, every, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        me = psutil.Process()
        while not self.stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass  # a child exited between listing and reading
            self.peak = max(self.peak, total)
            self.stop.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run(backend: str, spec: ModelSpec, prompts, sampling: SamplingParams, eager: bool) -> tuple[dict, list]:
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        if backend == "vllm":
            from thinksafe.generate.vllm import VLLMGenerator

            gen = VLLMGenerator.from_spec(
                spec, BackendConfig(backend="vllm", enforce_eager=eager, progress=False)
            )
        else:
            from thinksafe.generate.hf import HFGenerator

            gen = HFGenerator.from_spec(spec, BackendConfig(progress=False))
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = gen.generate(prompts, sampling)
        secs = time.perf_counter() - t0
        if hasattr(gen, "close"):
            gen.close()
    done = [r[0] for r in out]
    new = sum(c.completion_tokens for c in done)
    row = dict(
        backend=backend,
        load_s=round(load, 1),
        generate_s=round(secs, 1),
        prompt_tokens=sum(c.prompt_tokens for c in done),
        completion_tokens=new,
        tok_per_s=round(new / secs, 1),
        hit_length=sum(c.finish_reason == "length" for c in done),
        peak_rss_gib=round(rss.peak / 2**30, 2),
        load_avg_1m=round(os.getloadavg()[0], 1),  # > cores means other jobs shared the CPU
    )
    return row, [c.text for c in done]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--backends", default="vllm,transformers")
    ap.add_argument("--compile", action="store_true", help="vLLM without enforce_eager (torch.compile)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "vllm_vs_hf.json"))
    args = ap.parse_args()

    spec = ModelSpec(args.model, dtype="float32")
    prompts = make_prompts(args.prompts)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
    rows, texts = [], {}
    for b in args.backends.split(","):
        row, texts[b] = run(b, spec, prompts, sampling, eager=not args.compile)
        rows.append(row)
        print(json.dumps(row), flush=True)

    if len(texts) == 2:
        a, b = texts.values()
        same = sum(x == y for x, y in zip(a, b))
        print(f"\nidentical greedy outputs: {same}/{len(a)}")
    cols = list(rows[0])
    print("\n" + " | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = dict(
        model=args.model,
        prompts=args.prompts,
        max_new_tokens=args.max_new_tokens,
        vllm_enforce_eager=not args.compile,
        cpu=platform.processor() or platform.machine(),
        cores=psutil.cpu_count(),
        identical_outputs=same if len(texts) == 2 else None,
        rows=rows,
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":  # vLLM spawns worker processes that re-import this module
    main()
