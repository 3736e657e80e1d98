"""The offline reasoner vs its base model, same prompts, same token limits, same seed: does it think, does it
reason better, and what did reasoning training do to safety (issue 15's premise)?

    python benchmarks/reasoner.py [--data-dir ../shared/data] [--limit 100]

Per model (qwen2.5-coder-0.5b-instruct, then qwen2.5-0.5b-think) one `thinksafe evaluate` of GSM8K test
(--limit problems, a seeded sample; 384 new tokens), demo-harmful and demo-xstest (all 24 each: held-out
prompts neither model trained on; 256 new tokens: a think model must close its trace before it answers), T 0.6 / top-p 0.95, refusal judge.
Reports pass@1, harmful-response rate and over-refusal with 95 % CIs, and the think-format rate: the share of
responses that open and close a think block and give a non-empty answer after it (for the base model, whose
template has no think block, 0 by construction). Writes benchmarks/results/reasoner.json; the evaluation dirs
stay in --work (rerun to resume).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import print_table

from thinksafe.evaluate.stats import summarize
from thinksafe.generate import BackendConfig
from thinksafe.judge import GuardConfig
from thinksafe.models import (
    BF16_CPU_FLAGS,
    DEFAULT_MODEL,
    REASONER,
    ModelSpec,
    cpu_flags,
    resolved_dtype,
)
from thinksafe.records import read_jsonl
from thinksafe.stages.evaluate import EvaluateArgs, evaluate

ROOT = Path(__file__).resolve().parents[1]
SETS = ("gsm8k", "demo-harmful", "demo-xstest")


def think_format(scored: Path) -> dict:
    """Share of responses whose think block closed with an answer after it (the `trace` record evaluation writes
    for think models; a plain model has none and scores 0), with a 95 % CI."""
    ok = [float(bool((t := x.get("trace")) and t["closed"] and t["answer_tokens"]))
          for rec in read_jsonl(scored) for x in rec["responses"]]
    return summarize(ok, resamples=1000, seed=0)


def run_model(model: str, a, out: Path) -> dict:
    spec = ModelSpec(model)
    args = EvaluateArgs(benchmarks=",".join(SETS), out=str(out), data_dir=a.data_dir, limit=a.limit, max_new_tokens=256,
                        reasoning_max_new_tokens=384, seed=0)
    backend = BackendConfig(progress=True)
    results = evaluate(args, spec, backend, GuardConfig())
    row = {"model": model, "dtype": resolved_dtype(spec), "engine": backend.hf_engine, "seconds": results.get("wall_seconds")}
    for name in SETS:
        b = results["benchmarks"][name]
        row[name] = {k: b[k] for k in ("metric", "value", "ci95", "n", "unknown") if k in b}
        row[name]["think_format"] = think_format(out / f"{name}.jsonl")
        if "traces" in b:
            row[name]["traces"] = b["traces"]
    return row


def pct(e: dict) -> str:
    return f"{100 * e['value']:.1f} [{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--limit", type=int, default=100, help="GSM8K problems (the demo sets have 24 prompts each)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "reasoner-bench")
    a = ap.parse_args()
    rows = [run_model(m, a, a.work / m) for m in (DEFAULT_MODEL, REASONER)]
    table = [{"model": r["model"], **{f"{n} {r[n]['metric']}": pct(r[n]) for n in SETS},
              **{f"{n} think format": pct(r[n]["think_format"]) for n in SETS}} for r in rows]
    print_table("base vs reasoner: same prompts, token limits and seed (95 % CIs)", table)
    result = {"sets": SETS, "limit": a.limit, "cpu_bf16_flags": sorted(set(BF16_CPU_FLAGS) & cpu_flags()),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}
    out = ROOT / "benchmarks" / "results" / "reasoner.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
