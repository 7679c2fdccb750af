"""What the linker's steps share: the error they raise, the state of one linking (each
file parsed once, the values hidden as globals), and the names a tree reads or assigns."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment

HIDDEN = "_clvflow_k"  # prefix of the globals that carry a partial's values


class UnlinkableError(Exception):
    """The template uses something the linker does not reproduce exactly."""


@dataclass
class Linking:
    """Linking one template: its environment and escaping, each file's tree (parsed once,
    handed out as copies), the values hidden as globals (named ``prefix`` and a number),
    and how deep includes and macro calls are nested."""

    env: Environment
    autoescape: bool
    prefix: str
    hidden: dict[str, Any] = field(default_factory=dict)
    trees: dict[str, nodes.Template] = field(default_factory=dict)
    depth: int = 0

    def parsed(self, name: str) -> nodes.Template:
        """The tree of file ``name``, to read only."""
        found = self.trees.get(name)
        if found is None:
            loader = self.env.loader
            if loader is None:
                raise UnlinkableError("no loader")
            source = loader.get_source(self.env, name)[0]
            found = self.trees[name] = parsed(self.env, name, source)
        return found

    def tree(self, name: str) -> nodes.Template:
        """A copy of the tree of file ``name``, to link in."""
        copied: nodes.Template = copy_tree(self.parsed(name), self.env)
        return copied

    def same_escaping(self, name: str) -> None:
        autoescape = self.env.autoescape
        mine = autoescape(name) if callable(autoescape) else bool(autoescape)
        if mine != self.autoescape:
            raise UnlinkableError(f"{name} is escaped differently")

    def hide(self, value: Any) -> nodes.Name:
        for key, known in self.hidden.items():
            if known is value:
                return nodes.Name(key, "load")
        key = f"{self.prefix}{len(self.hidden)}"
        self.hidden[key] = value
        return nodes.Name(key, "load")


@lru_cache(maxsize=512)
def parsed(env: Environment, name: str, source: str) -> nodes.Template:
    """The tree of a file's source, parsed once for every template that links it (never
    changed: ``Linking.tree`` hands out copies)."""
    return env.parse(source, name)


def copy_tree(node: Any, env: Environment) -> Any:
    return copy.deepcopy(node, {id(env): env})


def template_name(name: str, node: Any) -> str:
    """The template ``node`` names (in ``name``'s extends, include or import)."""
    if not isinstance(node, nodes.Const) or not isinstance(node.value, str):
        raise UnlinkableError(f"{name}: a template name chosen at run time")
    return node.value


def names_in(node: nodes.Node) -> list[nodes.Name]:
    """The names in ``node``, itself included (``find_all`` only searches below)."""
    found = list(node.find_all(nodes.Name))
    return [node, *found] if isinstance(node, nodes.Name) else found


def loads(node: nodes.Node) -> set[str]:
    return {n.name for n in names_in(node) if n.ctx == "load"}


def assigned_names(node: nodes.Node) -> set[str]:
    return {n.name for n in names_in(node) if n.ctx in ("store", "param")}


def no_self(name: str, tree: nodes.Node) -> None:
    if {"self", "super"} & loads(tree):
        raise UnlinkableError(f"{name}: self or super()")


@dataclass(frozen=True)
class Imported:
    """A macro imported by name: the partial and the macro's name there."""

    template: str
    macro: str
