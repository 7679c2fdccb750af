"""``clvflow segments list|show|members|sql``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.project.layout import Project

app = typer.Typer(help="Inspect segments: who is in them and the SQL they compile to.")
out = Console(soft_wrap=True)

NameArg = Annotated[str, typer.Argument(help="Segment name (file stem in segments/).")]


@app.command("list")
def list_segments(project: ProjectOption = Path("."), as_of: AsOfOption = None) -> None:
    """Every segment with its description and member count."""
    from clvflow.data.sources import open_shop_data
    from clvflow.segments.catalog import SegmentCatalog
    from clvflow.segments.evaluation import evaluate_segments

    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    catalog = SegmentCatalog.load(loaded.segments_dir)
    data = open_shop_data(loaded)
    table = Table(
        "segment", "members", "description", title=f"Segments as of {when:%Y-%m-%d %H:%M}"
    )
    try:
        members = evaluate_segments(catalog, catalog.names(), data, when)
    finally:
        data.close()
    for name in catalog.names():
        table.add_row(name, str(len(members[name])), catalog.get(name).description)
    out.print(table)


@app.command("show")
def show(name: NameArg, project: ProjectOption = Path("."), as_of: AsOfOption = None) -> None:
    """Count, as-of time and a sample of members."""
    from clvflow.data.sources import open_shop_data
    from clvflow.segments.catalog import SegmentCatalog, compile_segment
    from clvflow.segments.members import member_ids

    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    catalog = SegmentCatalog.load(loaded.segments_dir)
    data = open_shop_data(loaded)
    segment = catalog.get(name)
    ids = member_ids(data, compile_segment(catalog, name, data, when))
    out.print(f"[bold]{name}[/]: {segment.description}", highlight=False)
    out.print(f"file: {segment.path}")
    out.print(f"as of: {when:%Y-%m-%d %H:%M}")
    out.print(f"members: {len(ids)}")
    if ids:
        out.print("sample: " + ", ".join(ids[:10]) + (" …" if len(ids) > 10 else ""))


@app.command("members")
def members(
    name: NameArg,
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
    fmt: Annotated[str, typer.Option("--format", help="csv (one id per line) or json.")] = "csv",
) -> None:
    """Member customer ids in a stable order."""
    from clvflow.data.sources import open_shop_data
    from clvflow.segments.catalog import SegmentCatalog, compile_segment
    from clvflow.segments.members import member_ids

    if fmt not in ("csv", "json"):
        raise typer.BadParameter("use csv or json", param_hint="--format")
    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    catalog = SegmentCatalog.load(loaded.segments_dir)
    data = open_shop_data(loaded)
    ids = member_ids(data, compile_segment(catalog, name, data, when))
    if fmt == "json":
        typer.echo(json.dumps(ids))
    else:
        typer.echo("customer_id")
        for cid in ids:
            typer.echo(cid)


@app.command("sql")
def sql(name: NameArg, project: ProjectOption = Path("."), as_of: AsOfOption = None) -> None:
    """The compiled SQL query (DuckDB dialect), with times resolved for --as-of."""
    from clvflow.data.sources import open_shop_data
    from clvflow.segments.attributes import PREDICTED
    from clvflow.segments.catalog import SegmentCatalog, compile_segment

    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    catalog = SegmentCatalog.load(loaded.segments_dir)
    data = open_shop_data(loaded)
    try:
        compiled = compile_segment(catalog, name, data, when)
        if compiled.needs.derived & set(PREDICTED):
            typer.echo(
                "-- the predicted attributes are read from a temporary table of the run that\n"
                "-- holds every customer's predictions (`clvflow predict fit` shows the models)"
            )
        typer.echo(compiled.members_sql())
    finally:
        data.close()


@app.command("schema")
def schema() -> None:
    """The JSON Schema of segment files (for editors; kept in schemas/segment.schema.json)."""
    from clvflow.segments.schema import segment_json_schema_text

    typer.echo(segment_json_schema_text(), nl=False)
