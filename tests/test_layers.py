"""The package's layers and its use of libraries, read from the source (every import,
lazy ones inside functions included):

- the lower layers (data, segments, ledger, rendering, delivery, planning, personalization,
  pipeline, project, compliance, measurement) never import the upper ones (campaigns,
  orchestration, web, cli, demo);
- only ``orchestration/``, ``cli/`` and ``flows/`` import Prefect;
- no private name of another package is used: no ``from lib import _name``, no
  ``lib._name`` or ``getattr(lib, "_name")``, no override or ``super()`` call of a library
  class's ``_method``.

Each rule is also run on a small source that breaks it, so a checker that stops seeing
violations fails here too.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "clvflow"
LOWER = (
    "data", "segments", "ledger", "rendering", "delivery", "planning", "personalization",
    "pipeline", "project", "compliance", "measurement",
)  # fmt: skip
UPPER = ("campaigns", "orchestration", "web", "cli", "demo")
PREFECT_ALLOWED = ("orchestration", "cli")


@dataclass(frozen=True)
class Import:
    module: str  # the absolute module imported from
    names: tuple[str, ...]  # the names taken from it ("" for ``import module``)
    line: int


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports(source: str, package: str = "clvflow") -> Iterator[Import]:
    """Every import of ``source`` (a module of ``package``), at any depth."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, ("",), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            yield Import(_absolute(node, package), names, node.lineno)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _external(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] not in ("clvflow", "__future__", "")


def private_uses(source: str, package: str = "clvflow") -> list[str]:
    """Uses of other packages' private names in ``source``, as ``line: what``."""
    tree = ast.parse(source)
    outside: set[str] = set()  # local names bound to another package's modules or objects
    origins: dict[str, tuple[str, str]] = {}  # local name → (module, name) it came from
    found: list[str] = []
    for item in imports(source, package):
        if not _external(item.module):
            continue
        if any(_private(part) for part in item.module.split(".")):
            found.append(f"{item.line}: import of {item.module}")
        for name in item.names:
            if name and _private(name):
                found.append(f"{item.line}: {name} from {item.module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            outside.update(
                (a.asname or a.name).split(".")[0] for a in node.names if _external(a.name)
            )
        elif isinstance(node, ast.ImportFrom) and _external(_absolute(node, package)):
            outside.update(a.asname or a.name for a in node.names)
            origins.update(
                (a.asname or a.name, (_absolute(node, package), a.name)) for a in node.names
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root: ast.expr = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in outside:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
            if (
                isinstance(root, ast.Call)
                and isinstance(root.func, ast.Name)
                and root.func.id == "super"
                and _has_outside_base(tree, node, outside)
            ):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in outside
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef):
            bases = [_library_class(base, origins) for base in node.bases]
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef)
                    and _private(item.name)
                    and any(hasattr(base, item.name) for base in bases if base is not None)
                ):
                    found.append(
                        f"{item.lineno}: {node.name}.{item.name} overrides a library class"
                    )
    return found


def _library_class(base: ast.expr, origins: dict[str, tuple[str, str]]) -> object | None:
    """The class a base named ``Name`` (imported from another package) refers to."""
    if not isinstance(base, ast.Name) or base.id not in origins:
        return None
    module, name = origins[base.id]
    return getattr(importlib.import_module(module), name, None)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _has_outside_base(tree: ast.Module, target: ast.AST, outside: set[str]) -> bool:
    """Whether ``target`` sits in a class with a base from another package."""
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and any(n is target for n in ast.walk(cls)):
            return any(_root_name(b) in outside for b in cls.bases)
    return False


def _modules(folder: Path) -> list[tuple[str, Path]]:
    """(dotted package of the module, path) for every module under ``folder``."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder.parent).with_suffix("").parts
        package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
        out.append((package.removesuffix(".__init__"), path))
    return out


def layer_violations(layer: str, source: str) -> list[str]:
    return [
        f"{item.line}: imports {item.module}"
        for item in imports(source, f"clvflow.{layer}")
        if item.module.split(".")[:2] in (["clvflow", upper] for upper in UPPER)
        or (item.module == "clvflow" and set(item.names) & set(UPPER))
    ]


def prefect_imports(source: str) -> list[str]:
    return [
        f"{item.line}: imports {item.module}"
        for item in imports(source)
        if item.module.split(".")[0] == "prefect"
    ]


@pytest.mark.parametrize("layer", LOWER)
def test_a_lower_layer_never_imports_an_upper_one(layer: str) -> None:
    found = {
        str(path.relative_to(ROOT)): problems
        for _, path in _modules(PACKAGE / layer)
        if (problems := layer_violations(layer, path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_only_orchestration_cli_and_flows_import_prefect() -> None:
    found = {
        str(path.relative_to(ROOT)): problems
        for package, path in _modules(PACKAGE)
        if package.split(".")[1:2] not in ([p] for p in PREFECT_ALLOWED)
        and (problems := prefect_imports(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_no_private_name_of_another_package_is_used() -> None:
    found = {
        str(path.relative_to(ROOT)): problems
        for package, path in [*_modules(PACKAGE), *_modules(ROOT / "flows")]
        if (problems := private_uses(path.read_text(encoding="utf-8"), package))
    }
    assert found == {}


BROKEN_LAYER = """\
def compose():
    from clvflow.campaigns.run import run_campaign
    from ..orchestration import flows
"""

BROKEN_PRIVATE = """\
import markupsafe
from jinja2 import _internal
from jinja2.compiler import CodeGenerator
from markupsafe import _escape_inner as fast
import jinja2._identifier

escape = getattr(markupsafe, "_escape_inner", None)
again = markupsafe._escape_inner


class Faster(CodeGenerator):
    def _output_child_pre(self, node, frame, finalize):
        super()._output_child_post(node, frame, finalize)


class Ours:
    def _helper(self):
        return self._state
"""


def test_the_checks_see_what_breaks_the_rules() -> None:
    assert layer_violations("rendering", BROKEN_LAYER) == [
        "2: imports clvflow.campaigns.run",
        "3: imports clvflow.orchestration",
    ]
    assert prefect_imports("def f():\n    from prefect import flow\n") == ["2: imports prefect"]
    found = sorted(private_uses(BROKEN_PRIVATE), key=lambda f: int(f.split(":")[0]))
    assert found == [
        "2: _internal from jinja2",
        "4: _escape_inner from markupsafe",
        "5: import of jinja2._identifier",
        "7: getattr(markupsafe, '_escape_inner', None)",
        "8: markupsafe._escape_inner",
        "12: Faster._output_child_pre overrides a library class",
        "13: super()._output_child_post",
    ]
