"""LoRA SFT speed in bf16: `thinksafe train --dtype bfloat16` (bf16 base weights, fp32 LoRA adapters and AdamW
state) vs the same command in fp32 (thinksafe's CPU default before `auto` picked bf16 on bf16 CPUs).

    .venv/bin/python benchmarks/sft_bf16.py [--examples 32] [--max-length 512] [--repeats 2]

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


def main() -> None:
    a = sft_parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(a.data_dir, a.examples, data)
        arms = {d: (lambda out, d=d: run_ours(a.model, data, out, a.max_length, d)) for d in ("float32", "bfloat16")}
        runs = alternate("dtype", arms, a.repeats, Path(tmp))
    rows = training_medians("dtype", runs)
    ratio = round(rows[1]["tok_s"] / rows[0]["tok_s"], 2)
    loss_gap = round(abs(rows[1]["loss"] - rows[0]["loss"]) / rows[0]["loss"], 4)
    flags = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    print_table(f"{a.model}: LoRA SFT fp32 vs bf16, {a.examples} examples ≤ {a.max_length} tokens, median of "
                f"{a.repeats}; bf16 / fp32 = {ratio}x, final loss {100 * loss_gap:.2f} % apart; CPU {flags}", rows)
    result = dict(model=a.model, examples=a.examples, max_length=a.max_length, repeats=a.repeats, ratio=ratio,
                  final_loss_relative_gap=loss_gap, cpu_bf16_flags=flags, torch=torch.__version__,
                  cpu_capability=torch.backends.cpu.get_cpu_capability(),
                  contended=max(v for x in runs for v in x["load_avg_1m"]) > 2.5, rows=rows, runs=runs)
    out = RESULTS / "sft_bf16.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
