"""Without ``statisticalGates`` nothing changes, byte for byte: the outputs in tests/golden/ were
rendered by the code before statistical gates existed (see tests/golden_outputs.py)."""

from __future__ import annotations

import pytest

from tests.golden_outputs import GOLDEN_DIR, render_all

RENDERED = render_all()


def test_every_golden_file_is_rendered() -> None:
    on_disk = {p.name for p in GOLDEN_DIR.iterdir() if not p.name.startswith("store-diff.")}
    assert on_disk == set(RENDERED)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_output_is_unchanged(name: str) -> None:
    assert RENDERED[name] == (GOLDEN_DIR / name).read_text()
