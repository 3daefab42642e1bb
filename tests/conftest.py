"""Test tiers: every test is marked by the folder it lives in (unit, store, cluster, package).

Run one tier with ``pytest -m unit`` (or ``store``, ``cluster``, ``package``); ``make test`` runs all.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

TIERS = ("unit", "store", "cluster", "package")
TESTS_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.path)).relative_to(TESTS_ROOT)
        tier = relative.parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def built_image() -> str:
    """The project's image, built here by hack/build-image.sh (cached by content: a few seconds
    when nothing changed, a few minutes from scratch); its reference in buildah's local storage."""
    script = TESTS_ROOT.parent / "hack" / "build-image.sh"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/build-image.sh exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]
