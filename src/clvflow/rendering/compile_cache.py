"""What compiling a template produces, kept on disk between runs (``.clvflow/cache/``).

Compiling a template means Jinja parsing it and generating Python code, and inlining each
layout's CSS once. The results depend only on the template sources and on the code that
produces them, so ``clvflow validate``, ``preview`` and each campaign run reuse them when
nothing changed.

Every entry is keyed by a SHA-256 of everything it is made from: the sources (and file
names), the environment's settings, and a fingerprint of the code that makes it (the
versions of Python, Jinja, MarkupSafe and css-inline, and the source of
``clvflow.rendering``). An edited template, partial or stylesheet gives new keys; an entry
is never reused for other input. Entries are written atomically (a temporary file, then a
rename), so two processes filling the cache at once each read a whole entry. A cache that
cannot be read is rebuilt; one that cannot be written (a read-only project) is skipped.

The cache holds Python code objects (``marshal``), as Jinja's own ``FileSystemBytecodeCache``
does: whoever can write to ``.clvflow/`` can change what runs, as whoever can write to
``flows/`` can. Delete the folder at any time; it refills on the next run.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from types import CodeType
from typing import Any, TypeVar

T = TypeVar("T")

_PACKAGES = ("jinja2", "markupsafe", "css-inline")


@cache
def code_fingerprint() -> str:
    """A digest of the code that turns sources into compiled templates."""
    digest = hashlib.sha256(sys.version.encode())
    for package in _PACKAGES:
        digest.update(f"\0{package}={metadata.version(package)}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class CompileCache:
    """Code objects and JSON values under ``directory``, keyed by content."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0

    def _key(self, kind: str, parts: tuple[str | None, ...]) -> Path:
        digest = hashlib.sha256(code_fingerprint().encode())
        digest.update(kind.encode())
        for part in parts:
            # each part length-prefixed: ("ab", "c") and ("a", "bc") are different keys
            data = b"\xff" if part is None else part.encode("utf-8", "surrogatepass")
            digest.update(b"%d:" % len(data) + data)
        name = digest.hexdigest()
        return self.directory / name[:2] / f"{name[2:]}.{kind}"

    def code(self, parts: tuple[str | None, ...], build: Callable[[], CodeType]) -> CodeType:
        """The code object for ``parts`` (sources, names, settings), built once."""
        path = self._key("code", parts)
        try:
            found = marshal.loads(path.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            found = None
        if isinstance(found, CodeType):
            self.hits += 1
            return found
        self.misses += 1
        built = build()
        self._write(path, marshal.dumps(built))
        return built

    def value(
        self,
        kind: str,
        parts: tuple[str | None, ...],
        build: Callable[[], T],
        load: Callable[[Any], T],
        dump: Callable[[T], Any],
    ) -> T:
        """A JSON-able result for ``parts``, built once (``dump``/``load`` convert it)."""
        path = self._key(kind, parts)
        try:
            found = load(json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
        else:
            self.hits += 1
            return found
        self.misses += 1
        built = build()
        self._write(path, json.dumps(dump(built), ensure_ascii=False).encode("utf-8"))
        return built

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            return  # a read-only project: compile every time, as without a cache
