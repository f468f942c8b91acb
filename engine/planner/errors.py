"""The planner's one error type: bad planning input or an impossible schedule."""

from __future__ import annotations


class PlanningError(ValueError):
    """A schedule, cost vector or link delay the planner cannot work with.

    The message is one line naming what is wrong and where (stage, op, link), so the CLI can
    show it as is (``pmctl.cli.main`` maps it to exit 2).
    """
