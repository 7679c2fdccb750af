"""The errors clvflow raises, and the exit code the CLI gives each.

    ClvflowError                 1  anything else that went wrong on purpose
    ├── ConfigError              2  clvflow.yaml or prefect.yaml is invalid
    ├── SegmentError             3  a segment file is invalid (syntax, attribute, reference)
    ├── TemplateError            4  a template fails to parse, render or comply
    ├── DataError                5  the shop's data cannot be read or lacks a column
    ├── LedgerError              6  the ledger database cannot be reached or is inconsistent
    └── DeliveryError            7  the delivery backend refused the run (e.g. bad API key)

Every error carries a message a person can act on: the file, the line or key, what was
wrong, and how to fix it. The CLI prints the message and exits with the code; it never
shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


class ClvflowError(Exception):
    """Base class of every error clvflow raises on purpose."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(self.render())

    def location(self) -> str:
        parts: list[str] = []
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            parts.append(where)
        if self.key:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts)

    def render(self) -> str:
        text = self.message
        where = self.location()
        if where:
            text = f"{where}: {text}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(ClvflowError):
    """clvflow.yaml or prefect.yaml is missing, malformed or inconsistent."""

    exit_code = 2


class SegmentError(ClvflowError):
    """A segment file has bad YAML, an unknown attribute, a bad test or a bad reference."""

    exit_code = 3


class TemplateError(ClvflowError):
    """A template has a syntax error, an undefined name or lacks required content."""

    exit_code = 4


class DataError(ClvflowError):
    """The shop's data cannot be read or lacks a required column."""

    exit_code = 5


class LedgerError(ClvflowError):
    """The ledger database cannot be reached or holds inconsistent state."""

    exit_code = 6


class DeliveryError(ClvflowError):
    """The delivery backend refused the run as a whole (bad credentials, forbidden sender)."""

    exit_code = 7
