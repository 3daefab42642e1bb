"""The image, built here from a Debian base made of Debian's packages (hack/build-image.sh, buildah,
no registry, no Docker engine): it runs as the non-root user, holds no compiler and no pip, and its
entry point is the CLI. tests/cluster/test_image.py decides a request with it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from flightdeck_operator import __version__
from flightdeck_operator.localdev.image import buildah

UID = 65532


@pytest.fixture
def container(built_image: str) -> Iterator[str]:
    name = buildah("from", "--pull=never", built_image)
    yield name
    buildah("rm", name)


def run(container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", "run", "--isolation", "chroot", container, "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_image_runs_the_cli_as_the_non_root_user(built_image: str, container: str) -> None:
    assert run(container, "id", "-u").stdout.strip() == str(UID)
    assert run(container, "flightdeck-operator", "--version").stdout.strip() == (
        f"flightdeck-operator, version {__version__}"
    )
    assert run(container, "flightdeck-operator", "sidecar", "--help").returncode == 0
    config = json.loads(buildah("inspect", "--type", "image", built_image))["OCIv1"]["config"]
    assert config["User"] == f"{UID}:{UID}"
    assert (config["Entrypoint"], config["Cmd"]) == (["flightdeck-operator"], ["run"])


def test_the_image_has_no_compiler_and_no_pip(container: str) -> None:
    for tool in ("gcc", "cc", "g++", "make", "pip", "pip3"):
        assert run(container, "sh", "-c", f"command -v {tool}").returncode != 0, tool
    no_pip = run(container, "python3", "-m", "pip", "--version")
    assert no_pip.returncode != 0
    assert "No module named pip" in no_pip.stderr
