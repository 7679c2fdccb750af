"""``clvflow validate`` and ``clvflow preview``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.errors import ClvflowError
from clvflow.project.layout import Project

out = Console(soft_wrap=True)


def validate(project: ProjectOption = Path("."), as_of: AsOfOption = None) -> int:
    """Check clvflow.yaml, prefect.yaml, every segment and every template (rendered for
    sample customers of each locale) before anything is sent."""
    from clvflow.validation import validate_project

    loaded = Project.load(project)
    report = validate_project(loaded, resolve_as_of(loaded, as_of))
    for line in report.notes:
        out.print(f"[green]ok[/] {escape(line)}", highlight=False)
    for error in report.errors:
        out.print(f"[bold red]error:[/] {escape(error.render())}", highlight=False)
    if report.errors:
        out.print(f"{len(report.errors)} problem(s) found; nothing was sent.")
        return report.errors[0].exit_code
    out.print("[bold green]valid[/]")
    return 0


def preview(
    template: Annotated[str, typer.Argument(help="Template name (templates/<name>.html.j2).")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id.")],
    locale: Annotated[
        str | None, typer.Option("--locale", "-l", help="Override the customer's locale.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path(
        "previews"
    ),
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
) -> int:
    """Render TEMPLATE for one customer as a campaign run sends it; write the HTML and text
    parts and print the subject."""
    from clvflow.compliance.secret import signing_key
    from clvflow.data.sources import open_shop_data
    from clvflow.rendering.composer import Composer
    from clvflow.rendering.templates import TemplateLibrary
    from clvflow.segments.members import customer_rows

    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    data = open_shop_data(loaded)
    rows = customer_rows(data, [customer], when)
    if not rows:
        raise ClvflowError(
            f"no customer with id '{customer}'", hint="see `clvflow segments members NAME`"
        )
    row = rows[0]
    library = TemplateLibrary.for_project(loaded)
    key = signing_key(loaded.state_dir, allow_local=True)
    # linked at once: what a campaign run sends (it links from a template's LINK_AFTER-th
    # message on, and renders the same as the template as written before that)
    composer = Composer(loaded.config.shop, data, library, key, when, link_at_once=True)
    (item,) = composer.compose(template, "preview", [("preview", row)], locale=locale)
    if item.error is not None:
        raise item.error
    assert item.email is not None
    target = out_dir if out_dir.is_absolute() else loaded.root / out_dir
    target.mkdir(parents=True, exist_ok=True)
    stem = f"{template}.{customer}.{item.locale}"
    html_path = target / f"{stem}.html"
    text_path = target / f"{stem}.txt"
    html_path.write_text(item.email.html, encoding="utf-8")
    text_path.write_text(item.email.text, encoding="utf-8")
    out.print(f"subject: {escape(item.email.subject)}", highlight=False)
    if item.email.preheader:
        out.print(f"preheader: {escape(item.email.preheader)}", highlight=False)
    out.print(f"locale: {item.locale}")
    out.print(f"html: {html_path}")
    out.print(f"text: {text_path}")
    return 0
