"""The ``pmctl`` entry point: registers the commands and maps user errors to exit 2.

Command modules stay thin (parse, call an importable API, print); nothing here imports torch.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from pmctl.app import app
from pmctl.commands import register_all
from pmctl.errors import UserError

register_all()


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Domain errors raised below the CLI that mean "bad input", not "bug"."""
    from engine.methods import UnknownMethodError
    from engine.planner.ir import ScheduleParseError

    types: list[type[BaseException]] = [UserError, UnknownMethodError, ScheduleParseError]
    for mod, name in (
        ("engine.planner.errors", "PlanningError"),
        ("injector.trace", "TraceError"),
        ("injector.control", "ControlPlaneError"),
        ("figures.registry", "UnknownFigureError"),
    ):
        try:
            module = __import__(mod, fromlist=[name])
            types.append(getattr(module, name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def _log_bug(exc: BaseException) -> Path:
    log_dir = Path(".pmctl")
    log_dir.mkdir(exist_ok=True)
    path = log_dir / "pmctl.log"
    logging.basicConfig(filename=path, level=logging.INFO)
    logging.getLogger("pmctl").error(
        "unhandled error\n%s", "".join(traceback.format_exception(exc))
    )
    return path


def main() -> None:
    """Console-script entry: runs the app; one red line + exit 2 for user errors.

    Typer's standalone mode already turns usage errors into exit 2; anything else that
    escapes is either one of ours (a user error) or a bug whose traceback goes to a log file.
    """
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("pmctl: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, _user_error_types()):
            msg = exc.line() if isinstance(exc, UserError) else str(exc)
            prefix = "\x1b[31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
            sys.stderr.write(f"{prefix} {msg}\n")
            sys.exit(2)
        path = _log_bug(exc)
        sys.stderr.write(f"error: internal error: {exc!r} (traceback in {path})\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
