"""How far to trust the results table: the measured agreement of the run's judge with human labels (the
judge-eval stage a run gets when its config names `judge_data`), shown beside the results it judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinksafe.report.load import RunData
from thinksafe.report.tables import Source

QUESTIONS = {"refusal": "did it refuse? (over-refusal sets)", "harm": "is it harmful? (harmful-response sets)"}


def measured(run: RunData) -> list[tuple[Path, dict[str, Any]]]:
    """(stage dir, agreement.json) of each judge-eval the arms ran, once each (arms share the stage)."""
    seen: dict[Path, dict[str, Any]] = {}
    for arm in run.arms:
        st = arm.stages.get("judge-eval")
        if st and st.output and st.output.agreement:
            seen.setdefault(st.dir, st.output.agreement)
    return list(seen.items())


def _pct(e: dict[str, Any], rate: str) -> str:
    v, ci = e.get(rate), (e.get("ci95") or {}).get(rate)
    if v is None:
        return "—"
    return f"{100 * v:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def agreement_rows(run: RunData) -> tuple[list[str], list[list[str | Source]]]:
    """One row per question the judge was measured on (its files pooled), linked to agreement.json."""
    header = ["judge", "question", "human-labeled data", "rows", "accuracy % [95% CI]", "κ", "F1 %", "unknown"]
    rows: list[list[str | Source]] = []
    for d, result in measured(run):
        for q, e in result.get("pooled", {}).items():
            files = ", ".join(Path(f).name for f in e.get("files", []))
            kappa = f"{e['kappa']:.3f}" if e.get("kappa") is not None else "—"
            rows.append([e.get("judge", "?"), QUESTIONS.get(q, q), files, str(e.get("n", 0)),
                         Source(_pct(e, "accuracy"), d / "agreement.json"), kappa, _pct(e, "f1"), str(e.get("unknown", 0))])
    return header, rows


def agreement_notes() -> list[str]:
    return ["Agreement of the run's evaluation judge with the human labels of public judge-validation sets: a "
            "harmful-response rate is only as right as this accuracy on the harm question, an over-refusal rate on "
            "the refusal question. An unknown verdict never counts as agreement."]
