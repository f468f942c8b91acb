"""The Typer application object; command modules in ``pmctl.commands`` register on it."""

from __future__ import annotations

from typing import Annotated

import typer

from pmctl import __version__

# Documented in `pmctl --help`; pmctl.cli.main and pmctl.experiment return them.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_FAILED: "a cell failed (or an internal error, logged in .pmctl/pmctl.log)",
    EXIT_USAGE: "usage error, bad input or a host that cannot be used (one line on stderr)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM, or SIGHUP when the terminal drops)",
}

app = typer.Typer(
    name="pmctl",
    help=(
        "Run, measure and plot straggler-resilient pipeline training (PipeMorph, NSDI'26). "
        "The default inventory.toml is an embedded local cluster: every command works on "
        "one machine with no GPU.\n\n"
        "Exit codes:\n\n" + "\n".join(f"* **{code}** {what}" for code, what in EXIT_CODES.items())
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, powershell)
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # joins docstrings' wrapped lines into paragraphs
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pmctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print pmctl's version and exit.")
    ] = False,
) -> None:
    """The options before the command (``pmctl --version``)."""
