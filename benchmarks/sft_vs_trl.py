"""LoRA SFT speed: `thinksafe train` vs a plain TRL `SFTTrainer` on the same data, model, length and batch.

    .venv/bin/python benchmarks/sft_vs_trl.py [--model qwen2.5-coder-0.5b-instruct] [--examples 32]
        [--max-length 512] [--repeats 2] [--data-dir ../shared/data]

Both: LoRA r=32 / α=16 / dropout 0.05 on q_proj,v_proj, AdamW lr 1e-5 cosine, per-device batch 4 x 2
accumulation (effective 8), 1 epoch, fp32 (`--dtype float32`), loss on response tokens only (TRL: a conversational
prompt/completion dataset, so `completion_only_loss` applies), no packing, no padding-free, no gradient
checkpointing and no bf16 autocast (TRL turns both on by default; off here so both do the same work). Data: half STAR-1
(harmful, teacher traces) and half GSM8K train (benign), from the reference files (as train_throughput.py).
Each run is its own process, ours and TRL's alternating (A B A B …); the timed part is `trainer.train()`
only (no model load), tok/s = non-pad tokens / that time. Prints medians and the ratio, writes
benchmarks/results/sft_vs_trl.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import alternate, print_table, training_medians
from train_throughput import make_data

RESULTS = Path(__file__).parent / "results"
LORA = dict(r=32, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def trl_worker(model_name: str, data: Path, out: Path, max_length: int) -> None:
    """The baseline, as a user would write it with TRL: SFTTrainer + peft_config on prompt/completion pairs."""
    import resource

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from thinksafe.models import ModelSpec, load_model

    loaded = load_model(ModelSpec(model_name, dtype="float32"), with_adapter=False)  # the copy thinksafe trains, fp32
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["instruction"]}],
                             "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows])
    config = SFTConfig(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                       learning_rate=1e-5, lr_scheduler_type="cosine", warmup_steps=0.1, max_length=max_length,
                       logging_steps=1, save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                       bf16=False, gradient_checkpointing=False, seed=42, dataloader_num_workers=0)
    trainer = SFTTrainer(model=loaded.model, args=config, train_dataset=ds, processing_class=loaded.tokenizer,
                         peft_config=LoraConfig(**LORA))
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    t0 = time.perf_counter()
    result = trainer.train()
    secs = time.perf_counter() - t0
    stats = {"examples": len(ds), "tokens": tokens, "train_seconds": round(secs, 2), "tokens_per_second": round(tokens / secs, 1),
             "final_loss": result.training_loss, "steps": result.global_step,
             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    (out / "stats.json").write_text(json.dumps(stats))


def run_ours(model: str, data: Path, out: Path, max_length: int, dtype: str = "float32", group_by_length: bool = False) -> dict:
    """`thinksafe train`, by default as it ran before bf16 and length grouping (the baseline of both benchmarks)."""
    cmd = [sys.executable, "-m", "thinksafe", "train", "--model", model, "--data", str(data), "--out", str(out),
           "--epochs", "1", "--max-length", str(max_length), "--overlong", "truncate", "--per-device-batch-size", "4",
           "--effective-batch-size", "8", "--save-steps", "100000", "--dtype", dtype,
           "--group-by-length", str(group_by_length).lower()]
    subprocess.run(cmd, check=True, capture_output=True)
    s = json.loads((out / "train_stats.json").read_text())
    return {"examples": s["examples"], "tokens": s["tokens_per_epoch"], "train_seconds": s["train_seconds"],
            "tokens_per_second": s["tokens_per_second"], "final_loss": s["final_loss"], "steps": s["steps"],
            "peak_rss_mb": s["peak_rss_mb"]}


def run_trl(model: str, data: Path, out: Path, max_length: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--trl-worker", "--model", model, "--data", str(data), "--out", str(out),
           "--max-length", str(max_length)]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((out / "stats.json").read_text())


def sft_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the LoRA SFT comparisons (this one and sft_bf16.py): same model, data, length, repeats."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    return ap


def main() -> None:
    ap = sft_parser(__doc__)
    ap.add_argument("--out", default=str(RESULTS / "sft_vs_trl.json"))
    ap.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.trl_worker:
        trl_worker(a.model, a.data, Path(a.out), a.max_length)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(a.data_dir, a.examples, data)
        arms = {"thinksafe": lambda out: run_ours(a.model, data, out, a.max_length),
                "trl": lambda out: run_trl(a.model, data, out, a.max_length)}
        runs = alternate("trainer", arms, a.repeats, Path(tmp))
    rows = training_medians("trainer", runs)
    ratio = round(rows[0]["tok_s"] / rows[1]["tok_s"], 2)
    print_table(f"{a.model}: LoRA SFT, {a.examples} examples ≤ {a.max_length} tokens, batch 4 x 2, 1 epoch, "
                        f"median of {a.repeats}; thinksafe / TRL = {ratio}x", rows)
    result = dict(model=a.model, examples=a.examples, max_length=a.max_length, repeats=a.repeats, ratio=ratio,
                  contended=max(v for x in runs for v in x["load_avg_1m"]) > 2.5, rows=rows, runs=runs)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
