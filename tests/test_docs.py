"""Docs that cannot drift: every command has help and appears in the README; the README's
segment example is a real, valid segment; ARCHITECTURE.md names every package."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from clvflow.cli.main import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(command, "commands"):
            out += _commands(command, f"{full} ")
        else:
            out.append((full, command))
    return out


def test_every_command_has_help_and_is_in_the_readme() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert {name for name, _ in commands} >= {"validate", "preview", "run", "demo", "segments list"}
    for name, command in commands:
        assert command.help, f"`clvflow {name}` has no help"
        assert f"clvflow {name}" in README, f"README does not show `clvflow {name}`"


def test_readme_segment_example_is_the_shipped_file() -> None:
    block = re.search(r"```yaml\n# segments/lapsed.yaml\n(.*?)```", README, re.S)
    assert block is not None
    assert block.group(1) == (ROOT / "segments" / "lapsed.yaml").read_text()


def test_architecture_names_every_package() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    packages = [
        p.name for p in (ROOT / "src" / "clvflow").iterdir() if (p / "__init__.py").exists()
    ]
    missing = [p for p in packages if f"{p}/" not in text]
    assert not missing, f"ARCHITECTURE.md does not describe: {missing}"


def test_readme_names_both_setup_commands() -> None:
    assert "make demo" in README and "make test" in README
    assert Path(ROOT / "Makefile").read_text().count("\ndemo:") == 1
