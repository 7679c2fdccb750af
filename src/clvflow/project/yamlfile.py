"""Read user-written YAML keeping the line of every key, and turn pydantic errors into
messages that name the file, the line and the key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from clvflow.errors import ClvflowError

Loc = tuple[str | int, ...]
E = TypeVar("E", bound=ClvflowError)
M = TypeVar("M", bound=BaseModel)


@dataclass
class YamlDocument:
    """Parsed YAML plus the 1-based line of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest prefix of ``loc`` that the file spells out."""
        probe: Loc = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), None)


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node)  # scalars only
            if not isinstance(key, str | int | bool | float) and key is not None:
                raise yaml.MarkedYAMLError(
                    problem="a key must be a plain word", problem_mark=key_node.start_mark
                )
            skey = str(key) if not isinstance(key, str) else key
            lines[(*loc, skey)] = key_node.start_mark.line + 1
            out[skey] = _construct(value_node, (*loc, skey), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, path: Path, error: type[E]) -> YamlDocument:
    """Parse ``text`` (the content of ``path``); YAML syntax errors raise ``error``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        col = f", column {mark.column + 1}" if mark is not None else ""
        raise error(
            f"invalid YAML{col}: {exc.problem}",
            path=path,
            line=line,
            hint="check the indentation and quoting around this line",
        ) from None
    lines: dict[Loc, int] = {}
    data = None if node is None else _construct(node, (), lines)
    return YamlDocument(path=path, data=data, lines=lines)


def read_yaml(path: Path, error: type[E]) -> YamlDocument:
    """Read and parse a YAML file; unreadable files and bad syntax raise ``error``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read the file: {exc.strerror}", path=path) from None
    return parse_yaml(text, path, error)


def dotted(loc: Sequence[str | int]) -> str:
    """``("where", "all", 0, "orders_count")`` → ``where.all[0].orders_count``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def validate_document(
    doc: YamlDocument,
    model: type[M],
    error: type[E],
    *,
    loc_prefix: Loc = (),
    data: Any = None,
) -> M:
    """Validate ``doc.data`` (or ``data`` found at ``loc_prefix``) with ``model``.

    The first pydantic error becomes ``error`` naming the file, line and key.
    """
    payload = doc.data if data is None else data
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = tuple(p for p in first["loc"] if isinstance(p, str | int))
        full = (*loc_prefix, *loc)
        message = str(first["msg"])
        if first["type"] == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'" if loc else "unknown key"
            allowed = _field_names(model, loc[:-1])
            hint = f"allowed keys here: {', '.join(allowed)}" if allowed else None
        else:
            hint = None
        raise error(
            message, path=doc.path, line=doc.line_of(full), key=dotted(full) or None, hint=hint
        ) from None


def _field_names(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the (nested) model at ``loc``, when they can be found statically."""
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return []
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            return []
    return sorted(current.model_fields)
