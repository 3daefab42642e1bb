"""`make sandbox` (`flightdeck-operator dev --keep`): the demo runs, then everything stays up and
reachable as printed, and Ctrl-C stops it all cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import REPO_ROOT, built_bin_dir


def test_the_sandbox_stays_up_until_ctrl_c(tmp_path: Path) -> None:
    log_path = tmp_path / "sandbox.log"
    with log_path.open("w") as log:
        sandbox = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flightdeck_operator.cli.main",
                "dev",
                "--keep",
                "--bin-dir",
                str(built_bin_dir()),
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 240
        text = ""
        while "Ctrl-C stops everything" not in text:
            assert sandbox.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, text
            time.sleep(1)
            text = log_path.read_text()
        dashboard = re.search(r"Dashboard \(as alice, no token\):\s+(\S+)", text)
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", text)
        assert dashboard is not None, text
        assert kubeconfig is not None, text
        assert re.search(r"alice token \(promote, approve in demo\):\s+\S+", text)

        # The dashboard answers as alice (her kubeconfig), with the demo's data.
        fragment = httpx.get(dashboard.group(1).replace("/ui/", "/ui/fragments/overview"), timeout=30)
        assert fragment.status_code == 200
        assert "support-bot-production" in fragment.text
        assert "chain verified" in fragment.text

        sandbox.send_signal(signal.SIGINT)
        assert sandbox.wait(timeout=90) == 0, log_path.read_text()
        assert (
            "Stopping the dashboard, the sidecar, the operator and the control plane" in log_path.read_text()
        )
        assert not Path(kubeconfig.group(1)).exists()  # the control plane's run directory is gone
        try:
            httpx.get(dashboard.group(1), timeout=2)
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("the dashboard still answers after Ctrl-C")
    finally:
        if sandbox.poll() is None:
            sandbox.kill()
