"""The wheel the Dockerfile builds and installs: its contents, and the image's entrypoint commands
run from it (not from the source tree).

No Docker engine exists here, so this is the part of the image that can be run: the builder
stage's ``pip wheel --no-deps .`` and the runtime's ``flightdeck-operator`` console script. The
wheel goes into a fresh virtualenv; its dependencies are borrowed from the project's virtualenv
(a path entry, not an install), so the test needs no network, and ``pip check`` proves the
wheel's declared requirements are what those dependencies satisfy.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from flightdeck_operator import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 300
ENTRYPOINTS = ("flightdeck-operator", "kubectl-flightdeck")


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(map(str, argv))} exited {result.returncode}:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps .`` as the Dockerfile's builder stage runs it (offline: hatchling is
    a dev dependency, so no isolated build environment is downloaded)."""
    out = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        out,
        REPO_ROOT,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the wheel installed; its ``bin`` directory."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False)
    target = root / "bin" / "python"
    purelib = run(target, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # The dependencies, from the project's virtualenv; its own editable flightdeck_operator is not
    # on this path (.pth files of a plain path entry are not processed).
    (Path(purelib) / "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(sys.executable, "-m", "pip", "--python", target, "install", "--no-deps", "--no-index", wheel)
    return root / "bin"


def clean_env(bin_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_wheel_contents(wheel: Path) -> None:
    assert wheel.name == f"flightdeck_operator-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"flightdeck_operator-{__version__}.dist-info/entry_points.txt").decode()
    assert {
        "flightdeck_operator/__init__.py",
        "flightdeck_operator/py.typed",
        "flightdeck_operator/cli/main.py",
        "flightdeck_operator/cli/resource_tools.py",
        "flightdeck_operator/sidecar/app.py",
        "flightdeck_operator/sidecar/routes/reads.py",
        "flightdeck_operator/api/v1alpha1/__init__.py",
        "flightdeck_operator/engine/decide.py",
        "flightdeck_operator/store/sqlite.py",
        # The dashboard's assets ride in the wheel: no build step, no CDN at run time.
        "flightdeck_operator/sidecar/dashboard/templates/base.html",
        "flightdeck_operator/sidecar/dashboard/static/app.js",
        "flightdeck_operator/sidecar/dashboard/static/vendor/htmx.min.js",
        "flightdeck_operator/sidecar/dashboard/static/vendor/uPlot.iife.min.js",
        "flightdeck_operator/sidecar/dashboard/static/vendor/LICENSE.uplot.txt",
    } <= names
    assert not [name for name in names if name.startswith(("tests/", "charts/", "operator/"))]
    assert "flightdeck-operator = flightdeck_operator.cli.main:main" in entry_points
    assert "kubectl-flightdeck = flightdeck_operator.cli.main:main" in entry_points


def test_the_package_runs_from_the_wheel(installed: Path) -> None:
    located = run(
        installed / "python", "-c", "import flightdeck_operator; print(flightdeck_operator.__file__)"
    ).stdout.strip()
    assert Path(located).is_relative_to(installed.parent), located


def test_the_wheels_requirements_are_satisfied(installed: Path) -> None:
    result = run(sys.executable, "-m", "pip", "--python", installed / "python", "check")
    assert "No broken requirements found." in result.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("flightdeck-operator", "--help"), "Commands:"),
        (("flightdeck-operator", "--version"), f"flightdeck-operator, version {__version__}"),
        (("flightdeck-operator", "run", "--help"), "Usage: flightdeck-operator run [OPTIONS]"),
        (("flightdeck-operator", "sidecar", "--help"), "Usage: flightdeck-operator sidecar [OPTIONS]"),
        (("flightdeck-operator", "doctor", "--help"), "Usage: flightdeck-operator doctor [OPTIONS]"),
        (
            ("flightdeck-operator", "release", "register", "--help"),
            "Hash BUNDLE and create its AgentRelease.",
        ),
        (("kubectl-flightdeck", "--help"), "Usage: kubectl-flightdeck [OPTIONS] COMMAND [ARGS]..."),
    ],
)
def test_entrypoint_commands(installed: Path, argv: tuple[str, ...], expected: str) -> None:
    script, *args = argv
    result = run(installed / script, *args, env=clean_env(installed))
    assert expected in result.stdout


def test_every_command_is_listed(installed: Path) -> None:
    listed = run(installed / "flightdeck-operator", "--help", env=clean_env(installed)).stdout
    commands = [line.split()[0] for line in listed.split("Commands:", 1)[1].splitlines() if line.strip()]
    for command in ("run", "sidecar", "doctor", "dev", "dashboard", "release", "pricing", "policy"):
        assert command in commands, listed
