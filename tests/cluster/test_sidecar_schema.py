"""Property-based run of schemathesis over the sidecar's own ``/openapi.json``: for generated
valid and invalid requests to every route, no 5xx, every status code documented, and every
response body valid against its documented schema.

Run through schemathesis' own command line (its examples, coverage and fuzzing phases), bounded to
a few examples per route so it fits in the cluster tier's time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

from flightdeck_operator.localdev.controlplane import ControlPlane

from .conftest import StartSidecar
from .kube import quickstart

TOKEN: Final = "schemathesis-static-token"
MAX_EXAMPLES: Final = 20
SEED: Final = 20260505
CHECKS: Final = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
PHASES: Final = ("examples", "coverage", "fuzzing")


def test_openapi_contract_holds(
    control_plane: ControlPlane, namespace: str, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    """A token-mode sidecar on loopback, in a namespace with the quickstart objects and no
    operator: generated requests name no real release, so none waits for a decision."""
    quickstart(control_plane, namespace)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    sidecar = start_sidecar("--auth", "token", "--token-file", str(token_file), "--decision-timeout", "5")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{sidecar.url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            ",".join(PHASES),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts is not None, summary
    assert int(counts.group(1)) == int(counts.group(2)) > len(CHECKS) * 12, summary
    assert "failure" not in result.stdout.lower(), summary
