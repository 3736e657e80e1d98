"""`thinksafe report RUN_DIR`: report.md and a self-contained report.html for a `thinksafe run` directory.

    load.py      the run: arms, and each stage's ledger and typed output, through the stages' own readers
    tables.py    the numbers: results table (paper layout, 95% CIs), cost ledger, cost vs safety, examples
    plots.py     one function per figure
    document.py  the report as one list of blocks, rendered to Markdown, HTML and the terminal

Writes RUN_DIR/report.md (tables, plots as files, examples), RUN_DIR/report.html (the same, self-contained:
plots embedded as base64 PNG) and RUN_DIR/report_files/*.png.
"""

from thinksafe.report.document import build_document, cmd_report, md_table, print_summary, write_report
from thinksafe.report.load import ArmData, RunData, StageInfo, load_run
from thinksafe.report.tables import columns, cost_ratio_rows, curve_points, training_cost

__all__ = ["ArmData", "RunData", "StageInfo", "build_document", "cmd_report", "columns", "cost_ratio_rows",
           "curve_points", "load_run", "md_table", "print_summary", "training_cost", "write_report"]
