"""LoRA SFT speed in bf16: `thinksafe train --dtype bfloat16` (bf16 base weights, fp32 LoRA adapters and AdamW
state) vs the same command in fp32 (thinksafe's CPU default before `auto` picked bf16 on bf16 CPUs).

    .venv/bin/python benchmarks/sft_bf16.py [--examples 32] [--max-length 512] [--repeats 2] [--arms fp32 bf16 bf16+grouped]

Arms: fp32 (the old default: fp32, random batches), bf16 (random batches), bf16+grouped (today's default: bf16 and
`group_by_length`, batches of similar length, so less padding); the first arm is the baseline of the ratios.

The same data, model and batch as sft_vs_trl.py (32 STAR-1 + GSM8K examples ≤ 512 tokens, LoRA r 32 on q,v,
batch 4 x 2, 1 epoch, lr 1e-5); each run its own process, fp32 and bf16 alternating (A B A B); tok/s = tokens /
`trainer.train()` seconds. Target: ≥ 1.8x fp32's tok/s at a final loss within 2 %. Writes
benchmarks/results/sft_bf16.json.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from common import alternate, print_table, training_medians
from sft_vs_trl import RESULTS, run_ours, sft_parser
from train_throughput import make_data

from thinksafe.models import BF16_CPU_FLAGS, cpu_flags

ARMS = {"fp32": ("float32", False), "bf16": ("bfloat16", False), "bf16+grouped": ("bfloat16", True)}  # dtype, grouping


def main() -> None:
    ap = sft_parser(__doc__)
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(a.data_dir, a.examples, data)
        arms = {name: (lambda out, name=name: run_ours(a.model, data, out, a.max_length, *ARMS[name])) for name in a.arms}
        runs = alternate("arm", arms, a.repeats, Path(tmp))
    rows = training_medians("arm", runs)
    for row in rows:
        row["ratio"] = round(row["tok_s"] / rows[0]["tok_s"], 2)
        row["loss_gap_pct"] = round(100 * abs(row["loss"] - rows[0]["loss"]) / rows[0]["loss"], 2)
    flags = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    print_table(f"{a.model}: LoRA SFT, {a.examples} examples ≤ {a.max_length} tokens, median of {a.repeats}; ratio and "
                f"final-loss gap vs {a.arms[0]}; CPU {flags}", rows)
    result = dict(model=a.model, examples=a.examples, max_length=a.max_length, repeats=a.repeats, arms=a.arms,
                  ratio=rows[-1]["ratio"], final_loss_relative_gap=rows[-1]["loss_gap_pct"] / 100,
                  cpu_bf16_flags=flags, torch=torch.__version__,
                  cpu_capability=torch.backends.cpu.get_cpu_capability(),
                  contended=max(v for x in runs for v in x["load_avg_1m"]) > 2.5, rows=rows, runs=runs)
    out = RESULTS / "sft_bf16.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
