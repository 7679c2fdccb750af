"""Front matter between ``---`` lines at the top of a template."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from clvflow.errors import TemplateError
from clvflow.project.yamlfile import parse_yaml, validate_document

FENCE = "---"


class FrontMatter(BaseModel):
    """What a template declares about itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1, description="Jinja; becomes the Subject header.")
    preheader: str | None = Field(default=None, description="Jinja; the inbox preview text.")
    kind: Literal["marketing", "transactional"] = "marketing"


def split_front_matter(source: str) -> tuple[str | None, str]:
    """Return (front matter text or None, body with the front matter lines blanked).

    The body keeps its line numbers, so Jinja errors point at the right line of the file.
    """
    lines = source.splitlines(keepends=True)
    if not lines or lines[0].strip() != FENCE:
        return None, source
    for end in range(1, len(lines)):
        if lines[end].strip() == FENCE:
            header = "".join(lines[1:end])
            body = "\n" * (end + 1) + "".join(lines[end + 1 :])
            return header, body
    return None, source


def read_front_matter(path: Path, source: str) -> FrontMatter | None:
    header, _ = split_front_matter(source)
    if header is None:
        return None
    doc = parse_yaml(header, path, TemplateError)
    # parse_yaml numbers lines from the header's first line; shift past the opening fence.
    doc.lines = {loc: line + 1 for loc, line in doc.lines.items()}
    if not isinstance(doc.data, dict):
        raise TemplateError(
            "front matter must be a mapping with at least 'subject'", path=path, line=2
        )
    return validate_document(doc, FrontMatter, TemplateError)
