"""``clvflow``: validate, inspect segments, preview templates, run campaigns, run the demo.

Commands that need no flow run (validate, segments, preview) never import Prefect, so
they answer in about a second.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from clvflow.cli import (
    campaigns,
    emit,
    journeys,
    predict,
    promos,
    report,
    segments,
    serve,
    suppressions,
    templates,
)
from clvflow.errors import ClvflowError

app = typer.Typer(
    name="clvflow",
    help="Marketing automation that grows customer lifetime value.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(segments.app, name="segments")
app.add_typer(journeys.app, name="journeys")
app.add_typer(predict.app, name="predict")
app.add_typer(promos.app, name="promos")
app.add_typer(suppressions.app, name="suppressions")
app.add_typer(emit.app, name="emit")
app.command("validate")(templates.validate)
app.command("preview")(templates.preview)
app.command("run")(campaigns.run)
app.command("demo")(campaigns.demo)
app.command("web")(campaigns.web)
app.command("serve")(serve.serve)
app.command("report")(report.report)

err = Console(stderr=True, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become a message and an exit code, never a traceback."""
    try:
        result = app(args=argv, standalone_mode=False)
    except ClvflowError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.render())}", highlight=False)
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except (click.ClickException, typer.TyperException) as exc:  # typer vendors click
        show = getattr(exc, "show", None)  # typer's usage errors show themselves, as click's
        if callable(show):
            show()
        else:
            err.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False)
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
