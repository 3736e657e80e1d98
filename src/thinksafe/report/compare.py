"""`thinksafe report RUN_A RUN_B … --out DIR`: several runs (several models, seeds or configs) in one results
table, one cost ledger and the trade-off and per-benchmark plots.

The runs are read as they are and joined into one RunData whose arms are named RUN/ARM, so the comparison goes
through the same columns, cells, plots and renderers as a single run's report.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from thinksafe.errors import InputError
from thinksafe.records import ensure_dir, write_text_atomic
from thinksafe.report.document import Document, Heading, Image, Notes, Paragraph, Table, to_html, to_markdown
from thinksafe.report.load import RunData, load_run
from thinksafe.report.plots import CAPTIONS, save_plots
from thinksafe.report.tables import columns, cost_rows, judges, table_notes, table_rows

FIGURES = ("tradeoff", "benchmarks")  # the others (examples, curves) are per run: see each run's own report


def labels(run_dirs: list[Path]) -> list[str]:
    """Each run's name in the comparison: its directory name, or parent/name where two names clash."""
    names = [d.resolve().name for d in run_dirs]
    return [f"{d.resolve().parent.name}/{n}" if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


def combine(runs: list[RunData], names: list[str], out: Path) -> RunData:
    arms = [replace(arm, name=f"{name}/{arm.name}",
                    stages={k: replace(st, owner=f"{name}/{st.owner}") for k, st in arm.stages.items()})
            for run, name in zip(runs, names) for arm in run.arms]
    return RunData(out, {}, "", arms)


def build_comparison(run_dirs: list[Path], out: Path) -> Document:
    runs, names = [load_run(d) for d in run_dirs], labels(run_dirs)
    joined = combine(runs, names, out)
    cols = columns(joined)
    plots = {k: p for k, p in save_plots(joined, cols, out / "report_files").items() if k in FIGURES}
    what = [f"{name}: {run.config.get('model', {}).get('model', '?')}, config {run.config_file or '—'}, "
            f"arms {', '.join(a.name for a in run.arms)} ({run.dir})" for run, name in zip(runs, names)]
    blocks = [Paragraph(f"{len(runs)} runs compared; each row is RUN/ARM."), Notes(what),
              Heading("Results"),
              Table(["arm", *(c.title for c in cols)], table_rows(joined, cols), caption=f"results; {judges(joined)}",
                    summary=True),
              Notes(table_notes(joined, cols)),
              Heading("Cost ledger"), Table(*cost_rows(joined), caption="cost ledger", summary=True),
              Heading("Plots"), *(Image(p, CAPTIONS[k]) for k, p in plots.items())]
    return Document(f"thinksafe comparison: {', '.join(names)}", blocks)


def write_comparison(run_dirs: list[str | Path], out: str | Path) -> tuple[dict[str, Path], Document]:
    """OUT/report.md and OUT/report.html; returns their paths and the document (for the terminal summary)."""
    dirs, out = [Path(d) for d in run_dirs], ensure_dir(Path(out))
    if len(dirs) < 2:
        raise InputError("report: a comparison needs two or more run directories")
    doc = build_comparison(dirs, out)
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, to_markdown(doc, out))
    write_text_atomic(page, to_html(doc, out))
    return {"md": md, "html": page}, doc
