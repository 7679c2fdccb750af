"""The sandboxed Jinja environments templates run in.

HTML templates are autoescaped; subjects, preheaders and text parts are not (they are not
HTML) but run in the same immutable sandbox. Undefined names are errors, never blanks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from types import CodeType
from typing import Any, Literal, overload

from jinja2 import FileSystemLoader, StrictUndefined, nodes
from jinja2.environment import Environment, Template, TemplateModule
from jinja2.runtime import Context, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clvflow.rendering.compile_cache import CompileCache
from clvflow.rendering.filters import FILTERS
from clvflow.rendering.frontmatter import split_front_matter
from clvflow.rendering.memo import MacroMemo
from clvflow.rendering.textpart import text_template_from_html


class FrontMatterLoader(FileSystemLoader):
    """Loads templates with their front matter blanked out (line numbers kept)."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        _, body = split_front_matter(source)
        return body, filename, uptodate


class StyledLoader(FrontMatterLoader):
    """Serves the files of templates whose CSS was inlined once (see ``preinline``)."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.sources: dict[str, str] = {}

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        _, filename, uptodate = super().get_source(environment, template)
        return self.sources[template], filename, uptodate


class DerivedTextLoader(FrontMatterLoader):
    """Serves every ``.html.j2`` file as the text template derived from it; ``.txt.j2``
    files (hand-written text parts) as they are."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        body, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html.j2"):
            body = text_template_from_html(body)
        return body, filename, uptodate


def _html_autoescape(name: str | None) -> bool:
    return name is None or not name.endswith(".txt.j2")


_DICT_ATTRIBUTES = frozenset(dir(dict))


_FIELDS: dict[type, frozenset[str]] = {}


def _data_fields(kind: type) -> frozenset[str]:
    """The public fields of a (non-slotted) dataclass: plain data, safe to read directly
    (e.g. ``order.total`` of an OrderView); none for any other type."""
    found = _FIELDS.get(kind)
    if found is None:
        found = frozenset()
        if dataclasses.is_dataclass(kind) and not hasattr(kind, "__slots__"):
            found = frozenset(f.name for f in dataclasses.fields(kind) if f.name[0] != "_")
        _FIELDS[kind] = found
    return found


class SandboxTemplate(Template):
    """A template that tells its environment about modules built without context (the
    ones ``{% from "partial" import macro %}`` shares between renders; see ``memo``)."""

    def make_module(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> TemplateModule:
        module = super().make_module(vars, shared, locals)
        env = self.environment
        if vars is None and not shared and locals is None and isinstance(env, Sandbox):
            env.shared_module(self, module)
        return module


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with shortcuts for the values clvflow passes to templates.

    Jinja resolves ``customer.first_name`` by trying the attribute first, which on a dict
    raises AttributeError before the key is looked up. For a key that is not a dict
    attribute the result is the same either way, so look the key up directly. A public
    field of a dataclass (``order.total``) is data, so it skips the sandbox's checks for
    methods and internals too. Anything else takes the sandbox's own path.

    Calls of pure macros are memoized (``memo``), and a template loaded once is found again
    by name without Jinja's cache key (templates are never reloaded or evicted here)."""

    template_class = SandboxTemplate

    def __init__(
        self, *args: Any, compile_cache: CompileCache | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.memo = MacroMemo()
        self._by_name: dict[str, Template] = {}
        self.compile_cache = compile_cache
        self._settings: str | None = None  # what the generated code depends on

    def settings_key(self) -> str:
        """The settings that shape the code Jinja generates (filters and tests included:
        a template naming an unknown one fails to compile). Read at the first compile,
        once the filters are in."""
        if self._settings is None:
            escape = self.autoescape
            self._settings = repr(
                (
                    type(self).__qualname__,
                    self.code_generator_class.__qualname__,
                    escape.__qualname__ if callable(escape) else escape,
                    self.trim_blocks,
                    self.lstrip_blocks,
                    self.keep_trailing_newline,
                    self.newline_sequence,
                    self.block_start_string,
                    self.variable_start_string,
                    self.comment_start_string,
                    self.line_statement_prefix,
                    self.line_comment_prefix,
                    sorted(self.extensions),
                    sorted(self.filters),
                    sorted(self.tests),
                )
            )
        return self._settings

    @overload
    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: Literal[False] = False,
        defer_init: bool = False,
    ) -> CodeType: ...

    @overload
    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: Literal[True] = ...,
        defer_init: bool = False,
    ) -> str: ...

    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> str | CodeType:
        """Jinja's compile, through the compile cache for a template given as source."""
        cache = self.compile_cache
        if cache is None or raw or defer_init or not isinstance(source, str):
            compiled = super().compile(source, name, filename, raw, defer_init)  # type: ignore[call-overload]
            return compiled  # type: ignore[no-any-return]

        def build() -> CodeType:
            return super(Sandbox, self).compile(source, name, filename)

        return cache.code((self.settings_key(), name, filename, source), build)

    def get_template(
        self,
        name: str | Template,
        parent: str | None = None,
        globals: MutableMapping[str, Any] | None = None,
    ) -> Template:
        if globals is None and type(name) is str:
            found = self._by_name.get(name)
            if found is None:
                found = self._by_name[name] = super().get_template(name, parent)
            return found
        return super().get_template(name, parent, globals)

    def shared_module(self, template: Template, module: TemplateModule) -> None:
        if template.name is None or self.loader is None:
            return
        source = self.loader.get_source(self, template.name)[0]
        self.memo.register(self.parse(source), dict(vars(module)))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        memo = __self.memo
        if type(__obj) is Macro and __obj in memo.macros:
            key = memo.key(__obj, __context.eval_ctx.autoescape, args, kwargs)
            if key is not None:
                found = memo.results.get(key)
                if found is None:
                    found = super().call(__context, __obj, *args, **kwargs)
                    memo.remember(key, found)
                return found
        return super().call(__context, __obj, *args, **kwargs)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict (Jinja's ChainMap makes each ``{% import %}``
        compare key views in Python; the environment's globals are not changed later)."""
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        elif attribute in _data_fields(kind):
            return obj.__dict__[attribute]
        return super().getattr(obj, attribute)


def _environment(
    directory: Path,
    autoescape: bool,
    loader: FileSystemLoader | None = None,
    cache: CompileCache | None = None,
) -> ImmutableSandboxedEnvironment:
    env = Sandbox(
        compile_cache=cache,
        loader=loader or FrontMatterLoader(str(directory)),
        autoescape=_html_autoescape if autoescape else False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=-1,
    )
    env.filters.update(FILTERS)
    return env


def html_environment(
    directory: Path, cache: CompileCache | None = None
) -> ImmutableSandboxedEnvironment:
    return _environment(directory, autoescape=True, cache=cache)


def styled_environment(
    directory: Path, cache: CompileCache | None = None
) -> ImmutableSandboxedEnvironment:
    """Autoescaped HTML like ``html_environment``, serving sources with inlined CSS."""
    return _environment(
        directory, autoescape=True, loader=StyledLoader(str(directory)), cache=cache
    )


def text_environment(
    directory: Path, cache: CompileCache | None = None
) -> ImmutableSandboxedEnvironment:
    """Subjects, preheaders, ``.txt.j2`` files, and text parts derived from HTML templates."""
    return _environment(
        directory, autoescape=False, loader=DerivedTextLoader(str(directory)), cache=cache
    )
