"""LoRA SFT throughput and peak memory on the embedded models: prompt masking on/off, and ThinkSafe+KL.

    .venv/bin/python benchmarks/train_throughput.py [--models smollm2-135m-instruct qwen2.5-coder-0.5b-instruct]
        [--examples 32] [--max-length 512] [--data-dir ../shared/data]

Data: half STAR-1 (harmful, teacher traces) and half GSM8K train (benign, worked answers), from the
reference files. Each configuration runs `thinksafe train` in its own process (clean peak-RSS reading);
prints a table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import print_table

RESULTS = Path(__file__).parent / "results"
CONFIGS = {
    "masked": [],
    "unmasked": ["--prompt-masking", "false"],
    "masked+kl": ["--kl-benign"],
}


def make_data(data_dir: Path, n: int, path: Path) -> None:
    star1 = json.loads((data_dir / "pools/star1.json").read_text())[: n // 2]
    gsm = [json.loads(line) for line in (data_dir / "reasoning/gsm8k_train.jsonl").read_text().splitlines()[: n - n // 2]]
    rows = [{"instruction": r["question"], "response": r["response"], "prompt_label": "harmful"} for r in star1]
    rows += [{"instruction": r["question"], "response": r["answer"], "prompt_label": "benign"} for r in gsm]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(a.data_dir, a.examples, data)
        for model in a.models:
            for name, flags in CONFIGS.items():
                out = Path(tmp) / f"{model}-{name}"
                cmd = [sys.executable, "-m", "thinksafe", "train", "--model", model, "--data", str(data), "--out", str(out),
                       "--epochs", "1", "--max-length", str(a.max_length), "--overlong", "truncate",
                       "--per-device-batch-size", "4", "--effective-batch-size", "8", "--save-steps", "100000", *flags]
                subprocess.run(cmd, check=True, capture_output=True)
                s = json.loads((out / "train_stats.json").read_text())
                rows.append({"model": model, "config": name, "examples": s["examples"], "tokens": s["tokens_per_epoch"],
                             "response_tokens": s["response_tokens_per_epoch"], "train_s": s["train_seconds"],
                             "tok_s": s["tokens_per_second"], "peak_rss_mb": s["peak_rss_mb"], "loss": round(s["final_loss"], 4)})
    print_table(f"LoRA r=32 q,v; {a.examples} examples ≤ {a.max_length} tokens; batch 4 x 2 accum; 1 epoch", rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
