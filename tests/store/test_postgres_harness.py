"""The throwaway PostgreSQL harness removes its server and files, also when the body fails."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from flightdeck_operator.localdev.postgres import ensure_server_bindir, find_server_bindir, temporary_postgres


def test_server_binaries_are_found() -> None:
    bindir = ensure_server_bindir()
    assert bindir == find_server_bindir()
    assert (bindir / "initdb").is_file()
    assert (bindir / "pg_ctl").is_file()


def _use_then_fail(seen: dict[str, str]) -> None:
    with temporary_postgres() as url:
        with psycopg.connect(url) as connection:
            row = connection.execute("SHOW data_directory").fetchone()
        assert row is not None
        seen["datadir"], seen["url"] = str(row[0]), url
        raise RuntimeError("boom")


def test_server_is_gone_after_a_failing_body() -> None:
    seen: dict[str, str] = {}
    with pytest.raises(RuntimeError, match="boom"):
        _use_then_fail(seen)
    assert seen["url"].startswith("postgresql://flightdeck@127.0.0.1:")
    assert not Path(seen["datadir"]).exists()
    assert not Path(seen["datadir"]).parent.exists()  # the whole temporary directory
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(seen["url"], connect_timeout=2)
