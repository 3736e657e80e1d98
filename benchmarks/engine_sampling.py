"""The transformers engines on sampled work: `padded` (the default) vs `continuous`, on the embedded model in the
dtype `auto` picks, with the same prompts and seeds. Are the sampled outputs the same distribution (synthesis
yield and evaluation rates, with 95 % CIs), and which is faster on each workload?

    python benchmarks/engine_sampling.py [--data-dir ../shared/data] [--repeats 1]

Synthesis: the demo's settings (24 harmful steered + 24 benign prompts, T 0.6, top-p 0.95, 160 new tokens,
refusal guard). Evaluation: demo-harmful, demo-xstest and GSM8K test (24 each; 64 / 256 new tokens, T 0.6).
Engines alternate (padded, continuous, …); each run in a fresh directory. Writes
benchmarks/results/engine_sampling.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import print_table

from thinksafe.evaluate.stats import summarize
from thinksafe.generate import BackendConfig
from thinksafe.judge import GuardConfig
from thinksafe.models import BF16_CPU_FLAGS, ModelSpec, cpu_flags, resolved_dtype
from thinksafe.stages.evaluate import EvaluateArgs, evaluate
from thinksafe.stages.synthesize import SynthesizeArgs, synthesize

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModelSpec("qwen2.5-coder-0.5b-instruct")


def backend(engine: str) -> BackendConfig:
    return BackendConfig(hf_engine=engine, max_batch_size=24, progress=False)


def run_synthesis(engine: str, out: Path) -> dict:
    args = SynthesizeArgs(harmful="demo:harmful", benign="demo:benign", out=str(out), limit=24, max_new_tokens=160,
                          temperature=0.6, top_p=0.95)
    t0 = time.perf_counter()
    stats = synthesize(args, SPEC, backend(engine), GuardConfig())
    kept = {label: [float(json.loads(x)["kept"]) for x in (out / "generations.jsonl").read_text().splitlines()
                    if json.loads(x)["label"] == label] for label in ("harmful", "benign")}
    return {"seconds": round(time.perf_counter() - t0, 1), "tokens": stats["generated_tokens"],
            **{f"yield_{k}": summarize(v, resamples=1000, seed=0) for k, v in kept.items()}}


def run_evaluation(engine: str, out: Path, data_dir: str) -> dict:
    args = EvaluateArgs(benchmarks="demo-harmful,demo-xstest,gsm8k", out=str(out), data_dir=data_dir, limit=24,
                        max_new_tokens=64, reasoning_max_new_tokens=256)
    t0 = time.perf_counter()
    results = evaluate(args, SPEC, backend(engine), GuardConfig())
    return {"seconds": round(time.perf_counter() - t0, 1),
            **{name: {k: b[k] for k in ("value", "ci95", "n")} for name, b in results["benchmarks"].items()}}


def pct(e: dict) -> str:
    return f"{100 * e['value']:.1f} [{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for work, fn in (("synthesis", run_synthesis), ("evaluation", run_evaluation)):
                for engine in ("padded", "continuous"):
                    extra = (a.data_dir,) if work == "evaluation" else ()
                    row = {"workload": work, "engine": engine, "repeat": r,
                           **fn(engine, Path(tmp) / f"{work}-{engine}-{r}", *extra)}
                    runs.append(row)
                    print(json.dumps(row, default=str), flush=True)
    rows = []
    for row in runs:
        metrics = {k: pct(v) for k, v in row.items() if isinstance(v, dict) and "ci95" in v}
        rows.append({"workload": row["workload"], "engine": row["engine"], "seconds": row["seconds"], **metrics})
    print_table(f"{SPEC.model} ({resolved_dtype(SPEC)}): padded vs continuous, sampled, same seeds", rows)
    result = {"model": SPEC.model, "dtype": resolved_dtype(SPEC), "cpu_bf16_flags": sorted(set(BF16_CPU_FLAGS) & cpu_flags()),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "runs": runs}
    out = ROOT / "benchmarks" / "results" / "engine_sampling.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
