"""The ``pmctl`` entry point: registers the commands and maps user errors to exit 2.

Command modules stay thin (parse, call an importable API, print); nothing here imports torch.
"""

from __future__ import annotations

import sys
import traceback

from pmctl.app import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, app
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


def _usage_error_line(exc: Exception) -> str | None:
    """One line for a command-line usage error (bad flag value, unknown option or command),
    which Typer would draw as a multi-line panel; None for anything else."""
    if "click" not in type(exc).__module__ or not hasattr(exc, "format_message"):
        return None
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "pmctl"
    return f"{message} (see '{where} --help')"


def main() -> None:
    """Console-script entry: runs the app; one red line + exit 2 for user errors.

    Usage errors (bad flag values, unknown options) and our own user errors are one line and
    exit 2; anything else that escapes is a bug whose traceback goes to a log file (exit 1);
    Ctrl-C exits 130. The codes are listed in ``pmctl.app.EXIT_CODES`` and ``pmctl --help``.
    """
    prefix = "\x1b[31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
    # One program name whichever way pmctl was started (``python -m pmctl`` too): the usage
    # lines and the shell-completion variable (_PMCTL_COMPLETE) depend on it.
    if len(sys.argv) < 2:
        app(prog_name="pmctl")  # no arguments: Typer prints the help (exit 2); completion requests end here
        return
    try:
        code = app(standalone_mode=False, prog_name="pmctl")
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - sorted below: user error, usage error, or a bug logged with its traceback
        if isinstance(exc, user_error_types()):
            msg = exc.line() if isinstance(exc, UserError) else str(exc)
            sys.stderr.write(f"{prefix} {msg}\n")
            sys.exit(EXIT_USAGE)
        usage = _usage_error_line(exc)
        if usage is not None:
            sys.stderr.write(f"{prefix} {usage}\n")
            sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
        if type(exc).__name__ == "Abort":  # a prompt got EOF or was declined
            sys.stderr.write("pmctl: aborted\n")
            sys.exit(EXIT_FAILED)
        path = _log_bug(exc)
        sys.stderr.write(f"error: internal error: {exc!r} (traceback in {path})\n")
        sys.exit(EXIT_FAILED)
    # Typer returns the status of `raise typer.Exit(n)` (and 130 after Ctrl-C, which it takes
    # itself); a command's own return value is not a status.
    if code == EXIT_INTERRUPTED:
        sys.stderr.write("pmctl: interrupted\n")
    sys.exit(code if type(code) is int else EXIT_OK)


if __name__ == "__main__":
    main()
