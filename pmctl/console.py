"""The terminal pmctl prints to: a rich console that never cuts columns when piped."""

from __future__ import annotations

from typing import Any


def make_console() -> Any:
    """A rich console; piped output gets a wide page instead of rich's 80 columns, so tables
    in files and pipes keep every character."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=250)
