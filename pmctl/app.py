"""The Typer application object; command modules in ``pmctl.commands`` register on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="pmctl",
    help=(
        "Run, measure and plot straggler-resilient pipeline training (PipeMorph, NSDI'26). "
        "The default inventory.toml is an embedded local cluster: every command works on "
        "one machine with no GPU."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # joins docstrings' wrapped lines into paragraphs
)
