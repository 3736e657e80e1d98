"""bf16 vs fp32 quality on the same prompts and seeds: does `dtype: auto` → bf16 (on CPUs with native bf16)
change what thinksafe measures?

For each dtype, one after the other, with everything else equal (qwen2.5-coder-0.5b-instruct, the demo's
evaluation settings): `thinksafe evaluate` on demo-harmful (harmful-response rate, refusal judge), demo-xstest
(over-refusal) and GSM8K test (pass@1, 256 new tokens), sampled at temperature 0.6 / top-p 0.95 with seed 0,
and `thinksafe shift` (response perplexity) on STAR-1's teacher data and, when there, the demo's synthesized
data. The verdict per metric: is the bf16 value inside fp32's 95 % bootstrap CI (and the other way round)?

    python benchmarks/bf16_quality.py [--data-dir ../shared/data] [--gsm8k 24] [--shift-limit 32]

Writes benchmarks/results/bf16_quality.{json,md}; evaluation dirs under runs/bench-bf16/<dtype>/ (resumable).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from thinksafe.generate import BackendConfig
from thinksafe.judge import GuardConfig
from thinksafe.models import BF16_CPU_FLAGS, ModelSpec, cpu_flags
from thinksafe.stages.evaluate import EvaluateArgs, evaluate
from thinksafe.stages.shift import ShiftArgs, shift

ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen2.5-coder-0.5b-instruct"
DTYPES = ("float32", "bfloat16")


def evaluate_in(dtype: str, out: Path, data_dir: str, gsm8k: int) -> tuple[dict, float]:
    args = EvaluateArgs(benchmarks="demo-harmful,demo-xstest,gsm8k", out=str(out), data_dir=data_dir, limit=gsm8k,
                        max_new_tokens=64, reasoning_max_new_tokens=256, seed=0)
    t0 = time.perf_counter()
    results = evaluate(args, ModelSpec(MODEL, dtype=dtype), BackendConfig(progress=False), GuardConfig())
    return results, time.perf_counter() - t0


def perplexities(dtype: str, sources: list[str], limit: int) -> list[dict]:
    return shift(ShiftArgs(data=sources, limit=limit, max_length=1024, seed=42), ModelSpec(MODEL, dtype=dtype))


def within(a: dict, b: dict) -> bool:
    """Each value inside the other's 95 % CI."""
    (alo, ahi), (blo, bhi) = a["ci95"], b["ci95"]
    return alo <= b["value"] <= ahi and blo <= a["value"] <= bhi


def table(rows: list[list[str]]) -> str:
    header = ["metric", "fp32", "bf16", "bf16 within fp32's CI (and back)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def pct(e: dict) -> str:
    lo, hi = e["ci95"]
    return f"{100 * e['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (n {e['n']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--gsm8k", type=int, default=24, help="prompts per benchmark (demo sets have 24)")
    ap.add_argument("--shift-limit", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-bf16"))
    a = ap.parse_args()
    sources = [f"star1:{a.data_dir}/pools/star1.json"]
    demo_data = ROOT / "runs" / "demo" / "thinksafe" / "synthesize"
    if (demo_data / "dataset.jsonl").exists():
        sources.append(str(demo_data))
    runs = {}
    for dtype in DTYPES:
        results, wall = evaluate_in(dtype, Path(a.out) / dtype, a.data_dir, a.gsm8k)
        t0 = time.perf_counter()
        ppl = perplexities(dtype, sources, a.shift_limit)
        runs[dtype] = {"results": results, "evaluate_seconds": round(wall, 1), "shift": ppl,
                       "shift_seconds": round(time.perf_counter() - t0, 1)}
    rows, verdicts = [], {}
    fp, bf = (runs[d]["results"]["benchmarks"] for d in DTYPES)
    for name in fp:
        ok = within(fp[name], bf[name])
        verdicts[name] = ok
        rows.append([f"{name} {fp[name]['metric']} %", pct(fp[name]), pct(bf[name]), "yes" if ok else "NO"])
    for p32, p16 in zip(runs["float32"]["shift"], runs["bfloat16"]["shift"]):
        rel = abs(p16["perplexity"] - p32["perplexity"]) / p32["perplexity"]
        verdicts[f"ppl:{p32['data']}"] = rel <= 0.02
        rows.append([f"perplexity of {Path(p32['data']).name}", f"{p32['perplexity']:.3f}", f"{p16['perplexity']:.3f}",
                     f"{'yes' if rel <= 0.02 else 'NO'} ({100 * rel:.2f} % apart; ≤ 2 % asked)"])
    rows.append(["evaluate wall s (3 sets)", str(runs["float32"]["evaluate_seconds"]),
                 str(runs["bfloat16"]["evaluate_seconds"]), "—"])
    machine = {"cpu_flags_bf16": sorted(set(BF16_CPU_FLAGS) & cpu_flags()), "torch": torch.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
               "machine": platform.machine()}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bf16_quality.json").write_text(json.dumps({"machine": machine, "model": MODEL, "verdicts": verdicts,
                                                        "runs": runs}, indent=2, default=str) + "\n")
    md = (f"bf16 vs fp32, {MODEL}, same prompts and seeds; CPU bf16 flags {machine['cpu_flags_bf16']}, "
          f"torch {machine['torch']} ({machine['cpu_capability']}), {machine['threads']} threads\n\n{table(rows)}\n")
    (out / "bf16_quality.md").write_text(md)
    print(md)
    print("all within:", all(verdicts.values()))


if __name__ == "__main__":
    main()
