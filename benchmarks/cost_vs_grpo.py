"""ThinkSafe vs GRPO on this machine: the safety each reached, the reasoning each kept, and what each cost.

    python benchmarks/cost_vs_grpo.py [--config configs/cost-vs-grpo.yaml] [--data-dir ../shared/data]
        [--section.key value …]

Runs `thinksafe run` on the config (arms initial, thinksafe, grpo with `curve: true`; see the config for the
CPU preset). It resumes: rerun the same command after a crash or a stop and finished stages are skipped, a
half-done stage continues from its own files. Then writes the run's report (with the safety-vs-wall-time plot)
and benchmarks/results/cost_vs_grpo.json + .md: per trained arm the harmful rate, over-refusal, pass@1,
training wall time, tokens, FLOPs and the cost ratio to ThinkSafe, each checkpoint's point on the curve, when
(if ever) GRPO reached ThinkSafe's harmful rate, and the batch GRPO trained with (prompts x G per step, caps). --data-dir: a local copy of the evaluation data
(GSM8K), otherwise the hub.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from thinksafe.pipeline.config import load_config
from thinksafe.pipeline.runner import run
from thinksafe.report import cost_ratio_rows, curve_points, load_run, md_table, training_cost
from thinksafe.stages.grpo import batch_note

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "cost-vs-grpo.yaml"))
    ap.add_argument("--data-dir", help="local evaluation data (laid out like the reference data)")
    ap.add_argument("--results", default=str(RESULTS / "cost_vs_grpo"), help="writes RESULTS.json and RESULTS.md")
    a, overrides = ap.parse_known_args()
    if a.data_dir:
        overrides += ["--evaluate.data_dir", a.data_dir]
    plan = run(load_config(a.config, overrides))

    data = load_run(plan.run_dir)
    header, rows, notes = cost_ratio_rows(data)
    notes += grpo_batch_notes(data)
    arms = {}
    for arm in data.arms:
        arms[arm.name] = {"training_cost": training_cost(arm),
                          "curve": [{"wall_seconds": round(t, 1), **h} for t, h in curve_points(data, arm)],
                          "ledger": {k: st.ledger for k, st in arm.stages.items()}}
    out = Path(a.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"config": a.config, "run_dir": str(plan.run_dir), "table": [header, *rows],
                                               "notes": notes, "arms": arms}, indent=2) + "\n")
    md = [f"# ThinkSafe vs GRPO: {data.config.get('model', {}).get('model')} ({a.config})", "", md_table(header, rows), ""]
    md += [f"- {n}" for n in notes] + ["", f"Full report: {plan.run_dir / 'report.md'}", ""]
    Path(f"{out}.md").write_text("\n".join(md))
    print("\n".join(md))


def grpo_batch_notes(data) -> list[str]:
    """The batch each GRPO arm trained with (prompts x G per step, length caps): its cost depends on it."""
    notes = []
    for arm in data.arms:
        trainer = arm.trainer()
        if trainer and trainer.output.stage == "grpo" and trainer.output.stats:
            note = batch_note(trainer.output.stats)
            notes.append(f"{arm.name}: {note}" if note else f"{arm.name}: batch not recorded (a run before issue 17)")
    return notes


if __name__ == "__main__":
    main()
