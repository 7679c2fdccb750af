"""The project folder and what lives where in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clvflow.project.config import ProjectConfig, load_config

SEGMENTS_DIR = "segments"
TEMPLATES_DIR = "templates"
PREFECT_FILE = "prefect.yaml"
STATE_DIR = ".clvflow"


@dataclass(frozen=True)
class Project:
    """A loaded project: its root folder and its validated configuration."""

    root: Path
    config: ProjectConfig

    @classmethod
    def load(cls, root: Path | str = ".") -> Project:
        path = Path(root).resolve()
        return cls(root=path, config=load_config(path))

    @property
    def segments_dir(self) -> Path:
        return self.root / SEGMENTS_DIR

    @property
    def templates_dir(self) -> Path:
        return self.root / TEMPLATES_DIR

    @property
    def prefect_file(self) -> Path:
        return self.root / PREFECT_FILE

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def cache_dir(self) -> Path:
        """Compiled templates kept between runs (safe to delete: refilled on the next run)."""
        return self.state_dir / "cache"

    @property
    def outbox_dir(self) -> Path:
        return self.resolve(self.config.delivery.outbox.dir)

    def resolve(self, relative: str) -> Path:
        """A path from clvflow.yaml, relative to the project folder unless absolute."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    @property
    def ledger_url(self) -> str:
        """The ledger URL, with a relative SQLite path made relative to the project."""
        url = self.config.ledger
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:":
                path = self.resolve(rest)
                path.parent.mkdir(parents=True, exist_ok=True)
                return prefix + str(path)
        return url
