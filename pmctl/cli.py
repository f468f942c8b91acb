"""The ``pmctl`` entry point: registers the commands and maps user errors to exit 2.

Command modules stay thin (parse, call an importable API, print); nothing here imports torch.
"""

from __future__ import annotations

import sys
import traceback

from pmctl.app import app
from pmctl.commands import register_all
from pmctl.errors import UserError, user_error_types

register_all()


def _log_bug(exc: BaseException) -> str:
    """Writes the traceback to the state folder's log; returns where it went."""
    from pmctl.runs import state_dir

    text = "".join(traceback.format_exception(exc))
    try:
        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "pmctl.log"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        return str(path)
    except OSError:
        sys.stderr.write(text)
        return "stderr"


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
        if isinstance(exc, user_error_types()):
            msg = exc.line() if isinstance(exc, UserError) else str(exc)
            prefix = "\x1b[31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
            sys.stderr.write(f"{prefix} {msg}\n")
            sys.exit(2)
        path = _log_bug(exc)
        sys.stderr.write(f"error: internal error: {exc!r} (traceback in {path})\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
