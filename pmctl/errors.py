"""User errors are values: one exception type carrying what, where and how to fix.

The CLI entry (``pmctl.cli.main``) turns any of ``USER_ERRORS`` into one red line and exit 2;
everything else is a bug and keeps its traceback in ``.pmctl/pmctl.log``.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, a host that is down, a missing file."""

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The one line shown to the user."""
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.hint:
            parts.append(f"({self.hint})")
        return " ".join(parts)
