"""Test tiers: every test is marked by the folder it lives in (unit, store, cluster, package).

Run one tier with ``pytest -m unit`` (or ``store``, ``cluster``, ``package``); ``make test`` runs all.
"""

from __future__ import annotations

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
