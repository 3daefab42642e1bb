"""The operator and the sidecar run from the project's image instead of this virtualenv.

No Docker engine here: ``hack/build-image.sh`` builds the image with buildah, and each process runs
in a buildah working container with chroot isolation and the host's network (the local control
plane listens on loopback), as the image's non-root user. Only the ``FLIGHTDECK_*`` settings,
``KUBECONFIG`` and ``PYTHONUNBUFFERED`` reach the container; ``mounts`` are bind-mounted at the
same path, so files named in them (kubeconfig, SQLite store, webhook certificates) resolve alike.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PASSED_ENV_PREFIXES = ("FLIGHTDECK_",)
PASSED_ENV = ("KUBECONFIG", "PYTHONUNBUFFERED")


class ImageError(RuntimeError):
    """buildah failed (the message carries its output)."""


def buildah(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise ImageError(f"buildah {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class ImageLauncher:
    """``command(env)``: the argv that runs ``flightdeck-operator`` in a fresh working container."""

    image: str
    mounts: Sequence[Path] = ()
    containers: list[str] = field(default_factory=list)

    def command(self, env: Mapping[str, str]) -> list[str]:
        container = buildah("from", "--pull=never", self.image)
        self.containers.append(container)
        passed = {
            key: value
            for key, value in env.items()
            if key.startswith(PASSED_ENV_PREFIXES) or key in PASSED_ENV
        }
        return [
            "buildah",
            "run",
            "--isolation",
            "chroot",
            "--network",
            "host",
            *[f"--env={key}={value}" for key, value in sorted(passed.items())],
            *[f"--volume={path}:{path}" for path in self.mounts],
            container,
            "--",
            "flightdeck-operator",
        ]

    def cleanup(self) -> None:
        """Remove the working containers (after their processes have ended)."""
        while self.containers:
            buildah("rm", self.containers.pop())
