"""The transformers engines on sampled work: `padded` (the default) vs `continuous`, on the embedded model in the
dtype `auto` picks, with the same prompts and seeds. Are the sampled outputs the same distribution (synthesis
yield and evaluation rates, with 95 % CIs), and which is faster on each workload?

    python benchmarks/engine_sampling.py [--data-dir ../shared/data] [--repeats 3] [--workloads synthesis,evaluation]

Synthesis: the demo's settings (24 harmful steered + 24 benign prompts, T 0.6, top-p 0.95, 160 new tokens,
refusal guard). Evaluation: demo-harmful, demo-xstest and GSM8K test (24 each; 64 / 256 new tokens, T 0.6).
Engines alternate (padded, continuous, …); each run in a fresh directory; repeat r uses seed r for both engines
(evaluation: the seed also draws the 24 prompts, so each repeat is a paired comparison on its own subset). The
summary pools every repeat per engine and gives the difference of the pooled rates with its 95 % CI (normal
approximation): the engines agree where that interval holds 0. Writes benchmarks/results/engine_sampling.json
(keeping the earlier runs of a workload left out of --workloads).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
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


def run_synthesis(engine: str, out: Path, seed: int) -> dict:
    args = SynthesizeArgs(harmful="demo:harmful", benign="demo:benign", out=str(out), limit=24, max_new_tokens=160,
                          temperature=0.6, top_p=0.95, seed=seed)
    t0 = time.perf_counter()
    stats = synthesize(args, SPEC, backend(engine), GuardConfig())
    kept = {label: [float(json.loads(x)["kept"]) for x in (out / "generations.jsonl").read_text().splitlines()
                    if json.loads(x)["label"] == label] for label in ("harmful", "benign")}
    return {"seconds": round(time.perf_counter() - t0, 1), "tokens": stats["generated_tokens"],
            **{f"yield_{k}": summarize(v, resamples=1000, seed=0) for k, v in kept.items()}}


def run_evaluation(engine: str, out: Path, seed: int, data_dir: str) -> dict:
    args = EvaluateArgs(benchmarks="demo-harmful,demo-xstest,gsm8k", out=str(out), data_dir=data_dir, limit=24,
                        max_new_tokens=64, reasoning_max_new_tokens=256, seed=seed)
    t0 = time.perf_counter()
    results = evaluate(args, SPEC, backend(engine), GuardConfig())
    return {"seconds": round(time.perf_counter() - t0, 1),
            **{name: {k: b[k] for k in ("value", "ci95", "n")} for name, b in results["benchmarks"].items()}}


def pct(e: dict) -> str:
    return f"{100 * e['value']:.1f} [{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}]"


def pooled(runs: list[dict]) -> list[dict]:
    """Per workload and metric: each engine's rate over all repeats, and continuous − padded with its 95 % CI."""
    rows = []
    for work in dict.fromkeys(x["workload"] for x in runs):
        mine = [x for x in runs if x["workload"] == work]
        metrics = [k for k, v in mine[0].items() if isinstance(v, dict) and "ci95" in v]
        for m in metrics:
            rate = {}
            for engine in ("padded", "continuous"):
                hits = sum(round(x[m]["value"] * x[m]["n"]) for x in mine if x["engine"] == engine)
                n = sum(x[m]["n"] for x in mine if x["engine"] == engine)
                rate[engine] = (hits / n, n)
            (p0, n0), (p1, n1) = rate["padded"], rate["continuous"]
            half = 1.96 * math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
            diff = p1 - p0
            rows.append({"workload": work, "metric": f"{m} %", "n": n0, "padded": round(100 * p0, 1),
                         "continuous": round(100 * p1, 1), "difference": round(100 * diff, 1),
                         "ci95": [round(100 * (diff - half), 1), round(100 * (diff + half), 1)],
                         "agree": diff - half <= 0 <= diff + half})
        secs = {e: statistics.median(x["seconds"] for x in mine if x["engine"] == e) for e in ("padded", "continuous")}
        rows.append({"workload": work, "metric": "seconds (median)", "n": len(mine) // 2, **secs,
                     "difference": round(secs["continuous"] - secs["padded"], 1), "ci95": "", "agree": ""})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workloads", default="synthesis,evaluation")
    a = ap.parse_args()
    work_fns = {"synthesis": run_synthesis, "evaluation": run_evaluation}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for work in a.workloads.split(","):
                for engine in ("padded", "continuous"):
                    extra = (a.data_dir,) if work == "evaluation" else ()
                    row = {"workload": work, "engine": engine, "repeat": r,
                           **work_fns[work](engine, Path(tmp) / f"{work}-{engine}-{r}", r, *extra)}
                    runs.append(row)
                    print(json.dumps(row, default=str), flush=True)
    rows = []
    for row in runs:
        metrics = {k: pct(v) for k, v in row.items() if isinstance(v, dict) and "ci95" in v}
        rows.append({"workload": row["workload"], "engine": row["engine"], "seconds": row["seconds"], **metrics})
    print_table(f"{SPEC.model} ({resolved_dtype(SPEC)}): padded vs continuous, sampled, same seeds", rows)
    out = ROOT / "benchmarks" / "results" / "engine_sampling.json"
    # Workloads not rerun keep their earlier runs, so one workload can be re-measured on its own.
    earlier = json.loads(out.read_text())["runs"] if out.exists() else []
    runs = [x for x in earlier if x["workload"] not in a.workloads.split(",")] + runs
    summary = pooled(runs)
    print_table(f"pooled over {a.repeats} repeats: continuous − padded", summary)
    result = {"model": SPEC.model, "dtype": resolved_dtype(SPEC), "cpu_bf16_flags": sorted(set(BF16_CPU_FLAGS) & cpu_flags()),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "repeats": a.repeats, "pooled": summary,
              "runs": runs}
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
