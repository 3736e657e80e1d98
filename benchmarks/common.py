"""What every benchmark script shares: printing its rows as a table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(title: str, rows: list[dict]) -> None:
    """Rows of equal keys as a rich table, the first row's keys as columns."""
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in rows[0]))
    Console().print(table)
