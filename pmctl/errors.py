"""User errors are values: one exception type carrying what, where and how to fix.

The CLI entry (``pmctl.cli.main``) turns any of ``user_error_types()`` into one red line and
exit 2; everything else is a bug and keeps its traceback in ``.pmctl/pmctl.log``.
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


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type raised below the CLI that means "bad input", not "bug".

    Imported on the error path only, so a healthy ``pmctl --help`` loads none of them.
    """
    from engine.methods import UnknownMethodError
    from engine.planner.errors import PlanningError
    from engine.planner.ir import ScheduleParseError
    from figures.registry import UnknownFigureError
    from figures.simulated import MissingDataError
    from injector.control import ControlPlaneError
    from injector.trace import TraceError

    return (
        UserError,
        UnknownMethodError,
        PlanningError,
        ScheduleParseError,
        UnknownFigureError,
        MissingDataError,
        ControlPlaneError,
        TraceError,
    )
