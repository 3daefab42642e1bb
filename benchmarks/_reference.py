"""The reference tool for the benchmarks: ``flightdeck-ai`` from PyPI in a throwaway virtualenv
under /tmp, ``flightdeck init`` and ``flightdeck serve`` on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from flightdeck_operator.localdev.processes import free_port

REFERENCE_PACKAGE: Final = "flightdeck-ai"
START_TIMEOUT_S: Final = 60.0


class ReferenceUnavailable(RuntimeError):
    """The reference could not be installed or started (the message says why)."""


@dataclass(frozen=True)
class Reference:
    url: str
    version: str


@contextlib.contextmanager
def reference_server() -> Iterator[Reference]:
    """A running ``flightdeck serve``; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="flightdeck-reference-", dir="/tmp"))
    server: subprocess.Popen[bytes] | None = None
    try:
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        install = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", REFERENCE_PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
        if install.returncode != 0:
            raise ReferenceUnavailable(
                f"pip install {REFERENCE_PACKAGE} failed: {install.stderr.strip()[-500:]}"
            )
        version = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('flightdeck-ai'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        workspace = root / "workspace"
        workspace.mkdir()
        subprocess.run(
            [str(venv / "bin" / "flightdeck"), "init"], cwd=workspace, check=True, capture_output=True
        )
        port = free_port()
        env = {key: value for key, value in os.environ.items() if key != "FLIGHTDECK_LOCAL_API_TOKEN"}
        log = (root / "serve.log").open("wb")
        server = subprocess.Popen(
            [str(venv / "bin" / "flightdeck"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workspace,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or server.poll() is not None:
                    tail = (root / "serve.log").read_text()[-500:]
                    raise ReferenceUnavailable(f"flightdeck serve did not start: {tail}") from None
                time.sleep(0.2)
        yield Reference(url, version)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
