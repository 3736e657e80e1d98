"""Generation throughput of thinksafe's backends vs plain transformers batching, greedy, same prompts.

    python benchmarks/generation_engines.py [--model qwen2.5-coder-0.5b-instruct] [--prompts 128]
        [--max-new-tokens 128] [--repeats 2] [--engines plain padded continuous vllm] [--compile]

Engines (the first is the baseline the ratios refer to), each ENGINE or ENGINE:bf16 (default fp32):
  plain       transformers `model.generate` on batches of --plain-batch prompts in input order, left-padded,
              each batch runs until its longest row ends: what a script without thinksafe does.
  padded      thinksafe's transformers backend, hf_engine=padded (length-sorted batches under a token budget).
  continuous  thinksafe's transformers backend, hf_engine=continuous (paged KV cache, per-request attention).
  vllm        thinksafe's vLLM backend (needs a venv from scripts/install-vllm.sh); compiled unless --eager;
              automatic prefix caching on (the default).
  vllm-nocache  the same with prefix caching off: their ratio is what caching the shared steering prefix gains.

Workloads: `synthesis` (default) mimics ThinkSafe's synthesis: the demo prompts (harmful ones behind the
steering prefix), cycled to --prompts with a different steering template / a system line on each later round so
no two prompts are the same; most answers are short refusals, so prefill is most of the work. `long`: requests
for explanations of mixed length (a line, a paragraph, a long context) whose answers run to the token limit,
so decoding is most of the work. All engines
are loaded once and run alternately (A B A B …) so drift hits all alike; tok/s counts generated tokens (up
to and including the stop token) over the generate() wall time. Prints a table of medians and the ratio to
the first engine, how many greedy outputs equal the first engine's, and writes
benchmarks/results/generation_engines_<workload>.json. The 1-minute load average is recorded before and after each run:
well above the torch thread count (`contended`) means other jobs shared the CPU; compare ratios only then.
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
from common import print_table

from thinksafe.generate import BackendConfig, SamplingParams
from thinksafe.generate.hf import HFGenerator
from thinksafe.models import BF16_CPU_FLAGS, ModelSpec, cpu_flags, load_model
from thinksafe.prompts import demo_prompts
from thinksafe.steer import steer

RESULTS = Path(__file__).parent / "results"
ROUNDS = [("prefix", None), ("suffix", "You are a helpful assistant."), ("risk", "You are an AI assistant."),
          ("intent", "You are a careful assistant.")]


TOPICS = ["binary search", "photosynthesis", "the French revolution", "TCP handshakes", "compound interest",
          "garbage collection", "black holes", "sourdough bread", "the Pythagorean theorem", "SQL joins", "vaccines",
          "recursion", "plate tectonics", "hash tables", "the stock market", "unit testing"]
CONTEXT = ("Here are my notes so far: it is a topic I keep coming back to, I have read two books about it, watched "
           "several lectures, and still feel I lack the intuition behind the main ideas. ")


def long_requests(n: int) -> list[list[dict]]:
    out = []
    for i in range(n):
        topic, kind = TOPICS[i % len(TOPICS)], i % 4
        text = [f"What is {topic}? Explain it in detail.", f"Explain {topic} to a beginner, with one example.",
                CONTEXT * 2 + f"Write a detailed, structured explanation of {topic}.",
                CONTEXT * 6 + f"Give me a step-by-step study plan for {topic}, with exercises."][kind]
        out.append([{"role": "user", "content": text}])
    return out


def synthesis_requests(n: int) -> list[list[dict]]:
    demo, out = demo_prompts(), []
    for i in range(n):
        template, system = ROUNDS[(i // len(demo)) % len(ROUNDS)]
        p = demo[i % len(demo)]
        msgs = [{"role": "system", "content": system}] if system else []
        out.append(msgs + [{"role": "user", "content": steer(p.prompt, p.label, template)}])
    return out


class PlainHF:
    """The baseline: `model.generate` over fixed-size batches in input order, nothing else."""

    def __init__(self, hf: HFGenerator, batch: int):
        self.hf, self.batch = hf, batch

    def generate(self, requests, sampling):
        tok, model, out = self.hf.tokenizer, self.hf.model, []
        tok.padding_side = "left"
        for i in range(0, len(requests), self.batch):
            texts = [self.hf.format.render_prompt(tok, m) for m in requests[i : i + self.batch]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                ids = model.generate(**enc, generation_config=self.hf.generation_config(sampling))
            for row, mask in zip(ids[:, enc.input_ids.shape[1]:].tolist(), enc.attention_mask):
                out.append([self.hf.completion(int(mask.sum()), row)])
        return out


DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
ENGINES = ("plain", "padded", "continuous", "vllm", "vllm-nocache")


def engine_arg(value: str) -> str:
    """ENGINE[:fp32|bf16] (default fp32), e.g. padded (thinksafe's fp32 default before bf16) or padded:bf16."""
    name, _, dtype = value.partition(":")
    if name not in ENGINES or (dtype and dtype not in DTYPES):
        raise argparse.ArgumentTypeError(f"{value}: expected {'|'.join(ENGINES)}[:fp32|bf16]")
    return value


def make_engines(names: list[str], a) -> dict:
    models: dict[str, object] = {}  # one load per dtype, shared by the transformers engines
    engines = {}
    for label in names:
        name, _, dtype = label.partition(":")
        spec = ModelSpec(a.model, dtype=DTYPES[dtype or "fp32"])
        if name.startswith("vllm"):
            from thinksafe.generate.vllm import VLLMGenerator

            backend = BackendConfig(backend="vllm", enforce_eager=a.eager, prefix_caching=name == "vllm", progress=False)
            engines[label] = VLLMGenerator.from_spec(spec, backend)
            continue
        if spec.dtype not in models:
            models[spec.dtype] = load_model(spec)
        lm = models[spec.dtype]
        if name == "plain":
            engines[label] = PlainHF(HFGenerator(lm, BackendConfig(progress=False)), a.plain_batch)
        else:
            engines[label] = HFGenerator(lm, BackendConfig(progress=False, hf_engine=name, max_batch_size=a.max_batch_size,
                                                           token_budget=a.token_budget))
    return engines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--workload", choices=["synthesis", "long"], default="synthesis")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engines", nargs="+", default=["plain", "vllm"], type=engine_arg,
                    help="ENGINE[:fp32|bf16] each (default dtype fp32); the first is the baseline")
    ap.add_argument("--plain-batch", type=int, default=16, help="rows per model.generate call of the baseline")
    ap.add_argument("--max-batch-size", type=int, default=BackendConfig.max_batch_size)
    ap.add_argument("--token-budget", type=int, default=BackendConfig.token_budget)
    ap.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (faster start, slower decode)")
    ap.add_argument("--out", help="default: benchmarks/results/generation_engines_<workload>.json")
    a = ap.parse_args()
    a.out = a.out or str(RESULTS / f"generation_engines_{a.workload}.json")

    requests = (synthesis_requests if a.workload == "synthesis" else long_requests)(a.prompts)
    sampling = SamplingParams(max_new_tokens=a.max_new_tokens)
    t0 = time.perf_counter()
    engines = make_engines(a.engines, a)
    load_s = round(time.perf_counter() - t0, 1)
    runs, texts = [], {}
    for r in range(a.repeats):  # alternate A B A B so drift hits all alike
        for engine, gen in engines.items():
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            out = gen.generate(requests, sampling)
            secs = time.perf_counter() - t0
            done = [c[0] for c in out]
            toks = sum(c.completion_tokens for c in done)
            texts.setdefault(engine, [c.text for c in done])
            prompt_toks = sum(c.prompt_tokens for c in done)
            run = dict(engine=engine, repeat=r, seconds=round(secs, 1), completion_tokens=toks,
                       tok_s=round(toks / secs, 1), processed_tok_s=round((toks + prompt_toks) / secs, 1), hit_length=sum(c.finish_reason == "length" for c in done),
                       load_avg_1m=[round(load0, 1), round(os.getloadavg()[0], 1)])
            runs.append(run)
            print(json.dumps(run), flush=True)
    prompt_lens = [c[0].prompt_tokens for c in out]
    for gen in engines.values():
        getattr(gen, "close", lambda: None)()

    first = a.engines[0]
    rows = []
    for engine in a.engines:
        mine = [x for x in runs if x["engine"] == engine]
        rows.append(dict(engine=engine, tok_s=round(statistics.median(x["tok_s"] for x in mine), 1),
                         processed_tok_s=round(statistics.median(x["processed_tok_s"] for x in mine), 1),
                         seconds=round(statistics.median(x["seconds"] for x in mine), 1),
                         tokens=mine[0]["completion_tokens"],
                         same_text=sum(x == y for x, y in zip(texts[engine], texts[first]))))
    for row in rows:
        row["ratio"] = round(row["tok_s"] / rows[0]["tok_s"], 2)

    print_table(f"{a.model}, {a.workload}: {len(requests)} prompts, {a.max_new_tokens} new tokens, greedy, "
                        f"median of {a.repeats} (tok_s: generated; processed: prompt + generated; ratio, same_text: vs {first})", rows)
    loads = [v for x in runs for v in x["load_avg_1m"]]
    cores, threads = psutil.cpu_count(), torch.get_num_threads()
    result = dict(
        model=a.model, workload=a.workload, prompts=len(requests), max_new_tokens=a.max_new_tokens, repeats=a.repeats,
        plain_batch=a.plain_batch, max_batch_size=a.max_batch_size, token_budget=a.token_budget,
        vllm_enforce_eager=a.eager, load_seconds=load_s,
        prompt_tokens=dict(min=min(prompt_lens), max=max(prompt_lens), total=sum(prompt_lens)),
        cpu=platform.processor() or platform.machine(), cores=cores, torch_threads=threads,
        cpu_bf16_flags=sorted(set(BF16_CPU_FLAGS) & cpu_flags()), cpu_capability=torch.backends.cpu.get_cpu_capability(),
        contended=max(loads) > min(cores, threads) + 1, rows=rows, runs=runs,  # + 1: vLLM's scheduler process
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}" + (" (other jobs shared the CPU: compare the ratio only)" if result["contended"] else ""))


if __name__ == "__main__":  # vLLM spawns worker processes that re-import this module
    main()
