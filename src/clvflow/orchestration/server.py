"""Find the Prefect server, or start one: ``clvflow serve`` uses this before it imports
Prefect, so that every Prefect setting (PREFECT_API_URL) is in place from the start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from clvflow.errors import ConfigError

API_ENV = "PREFECT_API_URL"


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        reply = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200


@dataclass
class PrefectServer:
    api_url: str
    process: subprocess.Popen[bytes] | None = None  # None: someone else's server
    log: Path | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url.rstrip("/").removesuffix("/api")

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def prefect_executable() -> str:
    beside = Path(sys.executable).parent / "prefect"
    return str(beside) if beside.exists() else "prefect"


def connect_or_start(
    host: str, port: int, log_dir: Path, *, timeout: float = 120.0
) -> PrefectServer:
    """The server at ``PREFECT_API_URL``, else one already on ``host:port``, else a new
    ``prefect server start`` there (its database: PREFECT_API_DATABASE_CONNECTION_URL, by
    default SQLite in PREFECT_HOME). Sets ``PREFECT_API_URL`` for this process."""
    configured = os.environ.get(API_ENV)
    if configured:
        if not api_healthy(configured, timeout=5):
            raise ConfigError(
                f"the Prefect API at {configured} does not answer",
                key=API_ENV,
                hint="start it (prefect server start), or unset PREFECT_API_URL to let "
                "clvflow serve start one",
            )
        return PrefectServer(configured)
    url = f"http://{host}:{port}/api"
    if api_healthy(url):
        os.environ[API_ENV] = url
        return PrefectServer(url)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "prefect-server.log"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [prefect_executable(), "server", "start", "--host", host, "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = PrefectServer(url, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if api_healthy(url):
            os.environ[API_ENV] = url
            return server
        time.sleep(0.5)
    server.stop()
    tail = log.read_text(errors="replace")[-1500:]
    raise ConfigError(
        f"the Prefect server did not come up on {host}:{port}",
        path=log,
        hint=f"is the port taken? last lines of the log:\n{tail}",
    )
