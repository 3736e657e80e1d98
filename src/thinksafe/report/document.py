"""The report as one document, and its three renderings: report.md, report.html and the terminal summary.

`build_document(run, plots)` lays the report out once, as a list of typed blocks (headings, paragraphs, notes,
tables, images, examples); each renderer only decides how a block looks. Blocks marked `summary` are also
printed by `print_summary`: the results table, the cost ledger and cost vs safety reached.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from thinksafe.errors import InputError
from thinksafe.progress import wide_console
from thinksafe.records import write_text_atomic
from thinksafe.report.agreement import agreement_notes, agreement_rows
from thinksafe.report.health import health_notes, health_rows
from thinksafe.report.load import RunData, load_run
from thinksafe.report.plots import CAPTIONS, save_plots
from thinksafe.report.tables import (
    Brief,
    Example,
    Source,
    columns,
    cost_ratio_rows,
    cost_rows,
    examples,
    judges,
    ledger_notes,
    table_notes,
    table_rows,
)

MAX_CHARS = 600  # of a response shown in the examples


# ---------------------------------------------------------------- the document model


@dataclass
class Block:
    summary: bool = field(default=False, kw_only=True)  # also printed in the terminal summary


@dataclass
class Heading(Block):
    text: str
    level: int = 2


@dataclass
class Paragraph(Block):
    text: str
    note: bool = False  # a remark: small and grey in HTML


@dataclass
class Notes(Block):
    items: list[str]


@dataclass
class Table(Block):
    header: list[str | Brief]
    rows: list[list[str | Brief]]
    seps: frozenset[int] = frozenset()  # columns that start a group: a double rule in HTML, a ‖ column in the terminal
    caption: str = ""  # the terminal's line above it (the files have a heading and notes instead)


@dataclass
class Image(Block):
    path: Path
    caption: str


@dataclass
class Excerpt(Block):
    """An example: a prompt, then each response under its label line."""

    label: str
    benchmark: str
    prompt: str
    responses: list[tuple[str, str]]


@dataclass
class Document:
    title: str
    blocks: list[Block]


def build_document(run: RunData, plots: dict[str, Path]) -> Document:
    """The whole report; `plots`: figure name → saved PNG (none for the terminal)."""
    cols = columns(run)
    model = run.config.get("model", {}).get("model", "?")
    intro = (f"Model: {model}. Config: {run.config_file or '—'}. Arms: "
             + "; ".join(f"{a.name} — {a.help}" for a in run.arms) + ".")
    # The reasoning group starts after the safety group (+1: the arm column).
    seps = frozenset(i + 1 for i, c in enumerate(cols)
                     if c.group == "reasoning" and (i == 0 or cols[i - 1].group != "reasoning"))
    headline = (f"{model}: safety % ↓ (harmful-response / over-refusal rate) ‖ reasoning pass@1 % ↑; "
                f"value ± half-width of the 95% CI; {judges(run)}")
    blocks: list[Block] = [
        Paragraph(intro),
        Heading("Results"),
        Table(["arm", *(c.title for c in cols)], table_rows(run, cols), seps, headline, summary=True),
        Notes(table_notes(run, cols)),
        *judge_agreement_blocks(run),
        *trace_health_blocks(run),
        Heading("Cost ledger"),
        Table(*cost_rows(run), caption="cost ledger (* = shared stage)", summary=True),
        Notes(ledger_notes(run)),
    ]
    header, rows, notes = cost_ratio_rows(run)
    if len(rows) > 1:  # a single trained arm has nothing to be compared with
        blocks += [Heading("Cost vs safety reached"),
                   Table(header, rows, caption="cost vs safety reached (× = multiple of the reference arm's cost)",
                         summary=True),
                   Notes(notes, summary=True)]
    blocks += [Heading("Plots"), *(Image(p, CAPTIONS[k]) for k, p in plots.items()), Heading("Examples")]
    for arm in run.arms:
        if arm.name != "initial":  # the initial model is every example's "before"
            blocks.append(Heading(arm.name, 3))
            shown = [_excerpt(e, arm.name) for e in examples(run, arm)]
            blocks += shown or [Paragraph("(no evaluation outputs yet)", note=True)]
    return Document(f"thinksafe run: {run.dir.name}", blocks)


def judge_agreement_blocks(run: RunData) -> list[Block]:
    """The judge's measured agreement with people, right under the results it judged (none when not measured)."""
    header, rows = agreement_rows(run)
    if not rows:
        return []
    return [Heading("How far the judge agrees with people", 3),
            Table(header, rows, caption="judge agreement with human labels", summary=True), Notes(agreement_notes())]


def trace_health_blocks(run: RunData) -> list[Block]:
    """The trace-health section (think models only: none for a run of a plain model)."""
    table = health_rows(run)
    if table is None:
        return []
    header, rows, seps = table
    return [Heading("Trace health"),
            Table(header, rows, seps, "trace health: safety sets ‖ reasoning sets (closed / cut %, mean tokens)",
                  summary=True),
            Notes(health_notes())]


def _excerpt(e: Example, arm: str) -> Excerpt:
    return Excerpt(e.label, e.benchmark, e.prompt,
                   [(f"before (initial, {e.before_verdict or '—'}):", _clip(e.before)),
                    (f"after ({arm}, {e.after_verdict}):", _clip(e.after))])


def _clip(text: str | None) -> str:
    if text is None:
        return "(no initial arm in this run)"
    text = text.strip()
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " …"


# ---------------------------------------------------------------- Markdown


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def md_table(header: list[str], rows: list[list[str]], base: Path | None = None) -> str:
    def esc(s) -> str:
        text = str(s).replace("|", "\\|").replace("\n", " ")
        return f"[{text}]({_rel(s.path, base)})" if isinstance(s, Source) and base is not None else text

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _fence(text: str) -> str:
    return "```text\n" + text.replace("```", "` ` `") + "\n```"


def _markdown_block(b: Block, base: Path) -> str:
    match b:
        case Heading():
            return f"{'#' * b.level} {b.text}"
        case Paragraph():
            return b.text
        case Notes():
            return "\n".join(f"- {n}" for n in b.items)
        case Table():
            return md_table(b.header, b.rows, base)
        case Image():
            return f"![{b.caption}]({_rel(b.path, base)})"
        case Excerpt():
            return "\n\n".join([f"**{b.label}** ({b.benchmark}): {b.prompt}",
                                *(f"{label}\n\n{_fence(text)}" for label, text in b.responses)])
    raise TypeError(f"no Markdown for {type(b).__name__}")


def to_markdown(doc: Document, base: Path) -> str:
    """`base`: the directory the file is written to (images are linked relative to it)."""
    parts = [f"# {doc.title}", *(_markdown_block(b, base) for b in doc.blocks)]
    return "\n\n".join(p for p in parts if p) + "\n"


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.sep{border-left:3px double #888}
.note{color:#555;font-size:13px}img{max-width:100%;margin:.5em 0}pre{white-space:pre-wrap;background:#f7f7f7;
padding:.5em;border-radius:4px;font-size:13px;margin:.2em 0}.ex{border-left:3px solid #ddd;padding-left:1em;margin:1em 0}
td a{white-space:nowrap;color:inherit}
"""


def _html_table(b: Table, base: Path) -> str:
    def td(tag: str, i: int, s) -> str:
        cls = ' class="sep"' if i in b.seps else ""
        text = html.escape(str(s))
        if isinstance(s, Source):
            text = f"<a href='{html.escape(_rel(s.path, base))}'>{text}</a>"
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(td("th", i, h) for i, h in enumerate(b.header))
    body = "".join("<tr>" + "".join(td("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in b.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_block(b: Block, base: Path) -> str:
    esc = html.escape
    match b:
        case Heading():
            return f"<h{b.level}>{esc(b.text)}</h{b.level}>"
        case Paragraph():
            return f"<p class='note'>{esc(b.text)}</p>" if b.note else f"<p>{esc(b.text)}</p>"
        case Notes():
            return "\n".join(f"<p class='note'>{esc(n)}</p>" for n in b.items)
        case Table():
            return _html_table(b, base)
        case Image():  # embedded: the file stands alone
            b64 = base64.b64encode(b.path.read_bytes()).decode()
            return (f"<figure><img alt='{esc(b.caption)}' src='data:image/png;base64,{b64}'>"
                    f"<figcaption class='note'>{esc(b.caption)}</figcaption></figure>")
        case Excerpt():
            shown = "".join(f"<p>{esc(label)}</p><pre>{esc(text)}</pre>" for label, text in b.responses)
            return f"<div class='ex'><p><b>{esc(b.label)}</b> ({esc(b.benchmark)}): {esc(b.prompt)}</p>{shown}</div>"
    raise TypeError(f"no HTML for {type(b).__name__}")


def to_html(doc: Document, base: Path) -> str:
    """`base`: the directory the file is written to (source links are relative to it)."""
    title = html.escape(doc.title)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
             f"<body><h1>{title}</h1>", *(_html_block(b, base) for b in doc.blocks), "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"


# ---------------------------------------------------------------- the terminal


def _short(s) -> str:
    return s.short if isinstance(s, Brief) else str(s)  # a Source shows its text


def _rich_table(b: Table):
    from rich.table import Table as RichTable

    t = RichTable()
    for i, h in enumerate(b.header):
        if i in b.seps:
            t.add_column("‖", justify="center")
        t.add_column(_short(h), justify="left" if i == 0 else "right")
    for r in b.rows:
        t.add_row(*(x for i, c in enumerate(r) for x in (["‖"] if i in b.seps else []) + [_short(c)]))
    return t


def to_terminal(doc: Document, out) -> None:
    """Print the summary blocks to a rich console: tables (caption above; short headers and cells), and notes."""
    for b in doc.blocks:
        if b.summary and isinstance(b, Table):
            if b.caption:
                out.print(b.caption)
            out.print(_rich_table(b))
        elif b.summary and isinstance(b, Notes):
            for n in b.items:
                out.print(n)


# ---------------------------------------------------------------- the command


def _write(run: RunData) -> tuple[dict[str, Path], Document]:
    plots = save_plots(run, columns(run), run.dir / "report_files")
    doc = build_document(run, plots)
    md_path, html_path = run.dir / "report.md", run.dir / "report.html"
    write_text_atomic(md_path, to_markdown(doc, run.dir))
    write_text_atomic(html_path, to_html(doc, run.dir))
    return {"md": md_path, "html": html_path, **{f"png:{k}": p for k, p in plots.items()}}, doc


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and the plots; returns their paths."""
    return _write(load_run(run_dir))[0]


def print_summary(run_dir: str | Path, out=None) -> None:
    """The results table, the cost ledger and cost vs safety reached, as rich tables."""
    to_terminal(build_document(load_run(run_dir), {}), out or wide_console(160, stderr=False))


USAGE = """usage: thinksafe report RUN_DIR [RUN_DIR …] [--out DIR]

One run: write RUN_DIR/report.md and a self-contained RUN_DIR/report.html (results table with 95% CIs, cost
ledger, plots, examples; every number links to the file it came from) for a `thinksafe run` directory.
Several runs: compare them (rows RUN/ARM) in DIR/report.md and DIR/report.html; --out is required."""


def cmd_report(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    runs, out = _report_args(argv)
    if len(runs) == 1 and out is None:
        paths, doc = _write(load_run(runs[0]))
    else:
        from thinksafe.report.compare import write_comparison

        if out is None:
            raise InputError("report: comparing several runs needs --out DIR (where the comparison is written)")
        paths, doc = write_comparison(runs, out)
    to_terminal(doc, wide_console(160, stderr=False))
    print(f"report → {paths['html'].resolve()}")
    return 0


def _report_args(argv: list[str]) -> tuple[list[str], str | None]:
    import argparse

    from thinksafe.config import one_line_errors

    parser = argparse.ArgumentParser(prog="thinksafe report", add_help=False, allow_abbrev=False)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default=None)
    one_line_errors(parser, "thinksafe report")
    args = parser.parse_args(argv)
    return args.runs, args.out
