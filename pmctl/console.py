"""The terminal pmctl prints to: a rich console that never cuts columns when piped, and
tables that fold a long cell instead of cutting it with an ellipsis."""

from __future__ import annotations

from typing import Any

# Piped output (a file, grep, a CI log) is read by programs and people who search it: no
# terminal width applies, so lines and tables keep every character up to this width.
PIPED_WIDTH = 1000


def make_console(stderr: bool = False) -> Any:
    """A rich console on stdout (``stderr``: on stderr, for progress while stdout carries
    ``--json``); a piped one gets a wide page instead of rich's 80 columns, so tables in
    files and pipes keep every character."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


def make_table(*headers: str, **kwargs: Any) -> Any:
    """A rich table whose columns fold a cell that does not fit (a terminal narrower than
    the table) rather than cutting it with "…"; piped, nothing needs to fold."""
    from rich.table import Table

    table = Table(**kwargs)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table
