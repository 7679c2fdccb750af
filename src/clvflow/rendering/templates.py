"""Find a template's files for a locale and compile them once.

``templates/<name>.html.j2`` is the base; ``<name>.<locale>.html.j2`` overrides it for a
locale (``hu``, or ``en-GB`` falling back to ``en``); ``<name>[.<locale>].txt.j2`` is an
optional hand-written text part. ``layouts/`` and ``partials/`` hold shared pieces.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Template, TemplateNotFound, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clvflow.errors import TemplateError
from clvflow.rendering.compile_cache import CompileCache
from clvflow.rendering.environment import (
    FrontMatterLoader,
    html_environment,
    styled_environment,
    text_environment,
)
from clvflow.rendering.frontmatter import FrontMatter, read_front_matter
from clvflow.rendering.preinline import NotPrecomputableError, preinline

if TYPE_CHECKING:
    from clvflow.project.layout import Project

HTML_SUFFIX = ".html.j2"
TEXT_SUFFIX = ".txt.j2"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def locale_chain(locale: str | None, default: str) -> list[str]:
    """``en-GB`` → ``["en-GB", "en", default]`` without duplicates."""
    chain: list[str] = []
    if locale:
        chain.append(locale)
        base = re.split(r"[-_]", locale)[0]
        chain.append(base)
    chain.append(default)
    return list(dict.fromkeys(chain))


@dataclass(frozen=True)
class CompiledTemplate:
    """One locale's variant of a template: front matter and compiled parts."""

    name: str
    locale: str | None
    html_path: Path
    front: FrontMatter
    subject: Template
    preheader: Template | None
    html: Template
    text: Template | None
    # The HTML template as written; ``html`` is the same with the CSS already inlined,
    # unless ``inline_reason`` says why the CSS must be inlined per message.
    source_html: Template
    inline_reason: str | None = None
    head: Template | None = None  # subject and preheader in one render, split by NUL

    @property
    def css_inlined(self) -> bool:
        return self.inline_reason is None

    @property
    def head_source(self) -> str:
        """The subject's source, and NUL and the preheader's when there is one."""
        front = self.front
        return f"{front.subject}\x00{front.preheader}" if front.preheader else front.subject


def template_location(exc: BaseException, directory: Path) -> tuple[Path | None, int | None]:
    """The template file and line an exception was raised from, if any."""
    if isinstance(exc, TemplateSyntaxError):
        path = Path(exc.filename) if exc.filename else None
        return path, exc.lineno
    found: tuple[Path | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2"):
            found = (Path(frame.filename), frame.lineno)
    return found


class TemplateLibrary:
    """All templates of a project; compiles each (name, locale) once and caches it."""

    def __init__(self, directory: Path, default_locale: str, cache_dir: Path | None = None) -> None:
        """``cache_dir``: where compiled templates are kept between runs (``compile_cache``);
        ``None`` compiles everything afresh."""
        self.directory = directory
        self.default_locale = default_locale
        self.compile_cache = CompileCache(cache_dir) if cache_dir is not None else None
        self._cache: dict[tuple[str, str], CompiledTemplate] = {}
        self._styled: dict[str, ImmutableSandboxedEnvironment] = {}  # one per stylesheet

    @classmethod
    def for_project(cls, project: Project) -> TemplateLibrary:
        """The project's templates, with its compile cache."""
        return cls(project.templates_dir, project.config.shop.default_locale, project.cache_dir)

    @cached_property
    def html_env(self) -> ImmutableSandboxedEnvironment:
        return html_environment(self.directory, self.compile_cache)

    @cached_property
    def text_env(self) -> ImmutableSandboxedEnvironment:
        return text_environment(self.directory, self.compile_cache)

    def names(self) -> list[str]:
        """Base template names (files ``<name>.html.j2`` at the top of templates/)."""
        names = set()
        for path in self.directory.glob(f"*{HTML_SUFFIX}"):
            stem = path.name[: -len(HTML_SUFFIX)]
            if "." not in stem:
                names.add(stem)
        return sorted(names)

    def locales_of(self, name: str) -> list[str]:
        """Locales with a dedicated file for template ``name``."""
        out = []
        for path in self.directory.glob(f"{name}.*{HTML_SUFFIX}"):
            middle = path.name[len(name) + 1 : -len(HTML_SUFFIX)]
            if middle and "." not in middle:
                out.append(middle)
        return sorted(out)

    def _file(self, name: str, locale: str | None, suffix: str) -> str | None:
        for candidate in ([f"{name}.{locale}{suffix}"] if locale else []) + [f"{name}{suffix}"]:
            if (self.directory / candidate).is_file():
                return candidate
        return None

    def get(self, name: str, locale: str | None) -> CompiledTemplate:
        """The compiled template for ``name`` in the best available locale."""
        key = (name, locale or "")
        if key not in self._cache:
            chain = locale_chain(locale, self.default_locale)
            resolved = next(
                (loc for loc in chain if (self.directory / f"{name}.{loc}{HTML_SUFFIX}").is_file()),
                None,
            )
            self._cache[key] = self._compile(name, resolved)
        return self._cache[key]

    def _compile(self, name: str, locale: str | None) -> CompiledTemplate:
        if not _NAME.match(name):
            raise TemplateError(f"'{name}' is not a template name (lowercase, digits, _ and -)")
        html_file = self._file(name, locale, HTML_SUFFIX)
        if html_file is None:
            raise TemplateError(
                f"no template '{name}'",
                path=self.directory / f"{name}{HTML_SUFFIX}",
                hint="templates: " + (", ".join(self.names()) or "(none)"),
            )
        path = self.directory / html_file
        front = read_front_matter(path, path.read_text(encoding="utf-8"))
        if front is None:
            raise TemplateError(
                "the template has no front matter",
                path=path,
                line=1,
                hint="start the file with ---, a 'subject:' line and ---",
            )
        text_file = self._file(name, locale, TEXT_SUFFIX)
        try:
            text = self.text_env.get_template(text_file or html_file)
        except TemplateSyntaxError:
            text = None  # the derived text template does not parse: convert per message
        try:
            source_html = self.html_env.get_template(html_file)
            html, reason = self._styled_html(html_file, source_html)
            head = None
            if front.preheader:
                head = self.text_env.from_string(f"{front.subject}\x00{front.preheader}")
            return CompiledTemplate(
                name=name,
                locale=locale,
                html_path=path,
                front=front,
                subject=self.text_env.from_string(front.subject),
                preheader=self.text_env.from_string(front.preheader) if front.preheader else None,
                html=html,
                text=text,
                source_html=source_html,
                inline_reason=reason,
                head=head,
            )
        except TemplateSyntaxError as exc:
            where, line = template_location(exc, self.directory)
            raise TemplateError(
                f"syntax error: {exc.message}", path=where or path, line=line
            ) from None

    def closure(self, html_file: str) -> dict[str, str]:
        """The bodies of ``html_file`` and every file it extends, includes or imports."""
        loader = self.html_env.loader
        assert isinstance(loader, FrontMatterLoader)
        bodies: dict[str, str] = {}
        todo = [html_file]
        while todo:
            name = todo.pop()
            if name in bodies:
                continue
            try:
                body = loader.get_source(self.html_env, name)[0]
            except TemplateNotFound:  # an include that ignores a missing file
                raise NotPrecomputableError(f"{name}: no such file") from None
            bodies[name] = body
            for ref in self._references(body):
                if ref is None:
                    raise NotPrecomputableError(f"{name}: a template name chosen at run time")
                todo.append(ref)
        return bodies

    def _references(self, body: str) -> list[str | None]:
        """The templates ``body`` extends, includes or imports (None: chosen at run time)."""

        def build() -> list[str | None]:
            return list(meta.find_referenced_templates(self.html_env.parse(body)))

        if self.compile_cache is None:
            return build()
        return self.compile_cache.value("refs", (body,), build, _cached_names, list)

    def _preinlined(self, bodies: dict[str, str]) -> dict[str, str]:
        """``preinline(bodies)``, kept in the compile cache (a refusal too)."""

        def build() -> dict[str, str | dict[str, str]]:
            try:
                return {"styled": preinline(bodies)}
            except NotPrecomputableError as exc:
                return {"refused": str(exc)}

        parts = tuple(part for item in sorted(bodies.items()) for part in item)
        cache = self.compile_cache
        if cache is None:
            result = build()
        else:
            result = cache.value("css", parts, build, _cached_preinline, dict)
        styled = result.get("styled")
        if not isinstance(styled, dict):
            raise NotPrecomputableError(str(result["refused"]))
        return styled

    def _styled_html(self, html_file: str, plain: Template) -> tuple[Template, str | None]:
        """The HTML template with its CSS inlined once, or the plain one and the reason."""
        try:
            bodies = self.closure(html_file)
            styled = self._preinlined(bodies)
        except NotPrecomputableError as exc:
            return plain, str(exc)
        # A file's styled source depends only on the stylesheet, i.e. on the layout.
        layout = next((name for name, body in sorted(bodies.items()) if "<html" in body), "")
        env = self._styled.get(layout)
        if env is None:
            env = self._styled[layout] = styled_environment(self.directory, self.compile_cache)
        env.loader.sources.update(styled)  # type: ignore[union-attr]
        return env.get_template(html_file), None


def _cached_names(found: Any) -> list[str | None]:
    """A cached list of template names (JSON null: a name chosen at run time)."""
    if not isinstance(found, list) or not all(n is None or isinstance(n, str) for n in found):
        raise TypeError("not a list of names")
    return found


def _cached_preinline(found: Any) -> dict[str, str | dict[str, str]]:
    """A cached ``preinline`` result: ``{"styled": {name: source}}`` or ``{"refused": why}``."""
    if isinstance(found, dict) and set(found) == {"refused"} and isinstance(found["refused"], str):
        return found
    styled = found["styled"] if isinstance(found, dict) and set(found) == {"styled"} else None
    if not isinstance(styled, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in styled.items()
    ):
        raise TypeError("not a preinline result")
    return {"styled": styled}
