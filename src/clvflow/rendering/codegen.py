"""Jinja's code generator with cheaper output and attribute lookups; the same results.

Jinja compiles ``<p>Dear {{ customer.first_name }},</p>`` to three ``yield`` statements,
``escape(...)`` (a Python function that allocates a ``Markup``) and
``environment.getattr(customer, 'first_name')`` (a method call). Per message and value
that costs more than the value itself. This generator writes, for the same node:

    yield '<p>Dear %s,</p>' % (
        (_jx_esc(_jx) if (_jx := (customer['first_name']
            if (_jo := customer).__class__ is dict and 'first_name' in _jo
            else environment.getattr(_jo, 'first_name'))).__class__ is str
         else escape(_jx)),)

- one string per output node, built by ``%`` in C;
- a plain ``str`` is escaped by markupsafe's own escaping (the C function behind
  ``markupsafe.escape``), anything else by ``escape`` as before; the text is the same;
- ``x.name`` on a plain dict whose key exists, for a name that is not an attribute of
  dicts, is the item, which is what the sandbox's ``getattr`` returns there; every other
  lookup (other types, missing keys, ``items``, ``__class__``, ...) still goes through
  the sandbox's ``getattr`` and its checks.
"""

from __future__ import annotations

from typing import Any

import markupsafe
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

_DICT_ATTRIBUTES = frozenset(dir(dict))
TEXT_BUFFER = "_jx_text"  # the text part's list in a merged template (``merge``)
TEXT_PART = "clvflow_text_part"  # marks of output nodes (``merge``)
TEXT_START = "clvflow_text_start"


def _escape_str(value: str) -> str:
    return str(markupsafe.escape(value))


# markupsafe.escape is ``Markup(_escape_inner(value))`` for a plain str; the C function
# alone gives the same text without the Markup.
escape_str = getattr(markupsafe, "_escape_inner", _escape_str)


class FastCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:  # noqa: N802
        self.writeline("from clvflow.rendering.codegen import escape_str as _jx_esc")
        super().visit_Template(node, frame)

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame, **kwargs: Any) -> None:  # noqa: N802
        if self.environment.is_async or node.attr in _DICT_ATTRIBUTES:
            super().visit_Getattr(node, frame, **kwargs)
            return
        if self.optimizer is not None and not frame.eval_ctx.volatile:
            optimized = self.optimizer.visit(node, frame.eval_ctx)
            if optimized != node:
                self.visit(optimized, frame)
                return
        attr = repr(node.attr)
        self.write(f"(_jo[{attr}] if (_jo := ")
        self.visit(node.node, frame)
        self.write(f").__class__ is dict and {attr} in _jo else environment.getattr(_jo, {attr}))")

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or finalize.src is not None or not frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)
            return
        self.write("(_jx_esc(_jx) if (_jx := ")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or finalize.src is not None or not frame.eval_ctx.autoescape:
            super()._output_child_post(node, frame, finalize)
            return
        self.write(").__class__ is str else escape(_jx))")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:  # noqa: N802
        buffer = getattr(node, TEXT_START, None)
        if buffer is not None:  # ``merge``: the list the text part is written to
            self.writeline(f"{TEXT_BUFFER} = context.vars[{buffer!r}] = []")
        elif getattr(node, TEXT_PART, False):  # ``merge``: text, unescaped, to that list
            eval_ctx = frame.eval_ctx
            saved = eval_ctx.autoescape
            eval_ctx.autoescape = False
            try:
                self._output(node, frame, f"{TEXT_BUFFER}.append(", ")")
            finally:
                eval_ctx.autoescape = saved
        else:
            start = "yield " if frame.buffer is None else f"{frame.buffer}.append("
            self._output(node, frame, start, "" if frame.buffer is None else ")")

    def _output(self, node: nodes.Output, frame: Frame, start: str, end: str) -> None:
        if frame.require_output_check:
            # A top-level extends is known to exist at compile time.
            if self.has_known_extends:
                return
            self.writeline("if parent_template is None:")
            self.indent()

        finalize = self._make_finalize()
        body: list[list[Any] | nodes.Expr] = []
        # As Jinja does: constants are evaluated now, the rest at run time.
        for child in node.nodes:
            try:
                if not (finalize.const or isinstance(child, nodes.TemplateData)):
                    raise nodes.Impossible()
                const = self._output_child_to_const(child, frame, finalize)
            except (nodes.Impossible, Exception):
                body.append(child)
                continue
            if body and isinstance(body[-1], list):
                body[-1].append(const)
            else:
                body.append([const])

        dynamic = [item for item in body if not isinstance(item, list)]
        if not body:
            pass
        elif not dynamic:
            self.writeline(start + repr(self._joined(body)) + end)
        elif len(body) == 1:
            self.writeline(start)
            self._write_child(dynamic[0], frame, finalize)
            self.write(end)
        else:
            self.writeline(f"{start}{self._joined(body, '%s')!r} % (")
            self.indent()
            for item in dynamic:
                self.newline(item)
                self._write_child(item, frame, finalize)
                self.write(",")
            self.outdent()
            self.writeline(")" + end)

        if frame.require_output_check:
            self.outdent()

    @staticmethod
    def _joined(body: list[list[Any] | nodes.Expr], slot: str | None = None) -> str:
        """An output node's constants joined; with ``slot``, a ``%`` format with ``slot``
        for each value computed at run time."""
        if slot is None:
            return "".join(str(c) for item in body if isinstance(item, list) for c in item)
        return "".join(
            "".join(str(c) for c in item).replace("%", "%%") if isinstance(item, list) else slot
            for item in body
        )

    def _write_child(self, item: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self._output_child_pre(item, frame, finalize)
        self.visit(item, frame)
        self._output_child_post(item, frame, finalize)
