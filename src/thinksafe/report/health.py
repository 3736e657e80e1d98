"""The report's trace-health table: per arm (the initial model is the "before"), how a think model's traces ended
on the safety sets and on the reasoning sets — the share that closed, the share cut at the token limit, and the
mean reasoning and answer tokens. A trace that stops closing after training, or grows until the limit cuts it,
is the first sign of damage, and a cut trace scores wrong (reasoning) or unknown (safety) without saying so.

It reads each benchmark's `trace` entry in results.json (evaluate/traces.py); a run of a plain model has none
and the report leaves the section out.
"""

from __future__ import annotations

from thinksafe.evaluate.traces import pooled
from thinksafe.report.load import ArmData, RunData

GROUPS = (("safety", ("safety", "overrefusal")), ("reasoning", ("reasoning",)))
CELLS = ("closed %", "cut at limit %", "reasoning tok", "answer tok")


def arm_health(arm: ArmData) -> dict[str, dict | None]:
    """Group → the pooled trace health of the arm's benchmarks of that group (None: none ran or no traces)."""
    benches = (arm.results or {}).get("benchmarks", {}).values()
    return {group: pooled([e.get("trace") for e in benches if e.get("kind") in kinds]) for group, kinds in GROUPS}


def _cells(h: dict | None) -> list[str]:
    if h is None:
        return ["—"] * len(CELLS)

    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}"

    def tok(x):
        return "—" if x is None else f"{x:,.0f}"

    return [pct(h["closed"]), pct(h["truncated"]), tok(h["reasoning_tokens"]), tok(h["answer_tokens"])]


def health_rows(run: RunData) -> tuple[list[str], list[list[str]], frozenset[int]] | None:
    """(header, one row per arm, the column where the reasoning group starts); None when no arm has traces."""
    healths = {arm.name: arm_health(arm) for arm in run.arms}
    if not any(h for per in healths.values() for h in per.values()):
        return None
    header = ["arm", *(f"{group}: {c}" for group, _ in GROUPS for c in CELLS)]
    rows = [[name, *(c for group, _ in GROUPS for c in _cells(per[group]))] for name, per in healths.items()]
    return header, rows, frozenset({1 + len(CELLS)})


def health_notes() -> list[str]:
    return ["Trace health of the think model's responses, pooled over the safety sets (incl. over-refusal) and over "
            "the reasoning sets: closed = the reasoning block ended with </think>; cut = stopped by the token limit "
            "(its answer is missing or partial, scored wrong or unknown); tokens = means per response, counted with "
            "the model's tokenizer. Compare each arm with initial: fewer closed or more cut traces after training "
            "is damage the accuracy columns may not show yet."]
