"""``runs list`` and ``runs export``: the reference's forensics commands, through the same code as
``GET /v1/runs`` and ``GET /v1/runs/export`` (``flightdeck_operator.actions.runs``).

The release is checked against the cluster (an AgentRelease in the namespace), the events are read
from the store (``--store``, default ``$FLIGHTDECK_STORE``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from flightdeck_operator.cli.commands import (
    cluster_gateway,
    fail,
    kubeconfig_option,
    namespace_option,
    store_option,
    target_namespace,
)

__all__ = ["runs"]


@click.group()
def runs() -> None:
    """Run forensics: list or export a release's run events (newest first)."""


F = TypeVar("F", bound=Callable[..., None])


def _filter_options(limit_default: int, limit_max: int) -> Callable[[F], F]:
    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.argument("release_id"),
                click.option("--window", required=True, help="Time window like 7d, 24h, 30m."),
                click.option("--env", "environment", default=None, help="Environment [default: local]."),
                click.option("--tenant", "tenant_id", default=None),
                click.option("--task", "task_id", default=None),
                click.option("--trace-id", "trace_id", default=None, help="request.trace_id (exact)."),
                click.option("--session-id", "session_id", default=None, help="request.session_id (exact)."),
                click.option("--span-id", "span_id", default=None, help="request.span_id (exact)."),
                click.option("--offset", default=0, show_default=True, type=click.IntRange(0, 500_000)),
                click.option(
                    "--limit", default=limit_default, show_default=True, type=click.IntRange(1, limit_max)
                ),
                store_option,
                namespace_option,
                kubeconfig_option,
            ]
        ):
            command = option(command)
        return command

    return decorate


def _resolve(params: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(query, filters, store) with the reference's checks; the caller closes the store."""
    from flightdeck_operator.actions.errors import ActionError
    from flightdeck_operator.actions.runs import RunsQuery, resolve_filters
    from flightdeck_operator.config import SidecarSettings
    from flightdeck_operator.store import StoreError, open_store

    keys = (
        "release_id",
        "window",
        "environment",
        "tenant_id",
        "task_id",
        "trace_id",
        "session_id",
        "span_id",
    )
    query = RunsQuery(**{key: params[key] for key in keys}, offset=params["offset"], limit=params["limit"])
    gateway = cluster_gateway(params["kubeconfig"])
    try:
        filters = resolve_filters(
            gateway,
            target_namespace(params["namespace"], params["kubeconfig"]),
            query,
            default_environment=SidecarSettings().default_environment,
            clock=lambda: dt.datetime.now(dt.UTC),
        )
        store = open_store(params["store"])
    except (ActionError, StoreError) as error:
        fail(str(error))
    finally:
        gateway.api_client.close()
    return query, filters, store


@runs.command("list")
@_filter_options(limit_default=100, limit_max=500)
@click.option(
    "--output", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def runs_list(output_format: str, **params: Any) -> None:
    """List a release's run events over a window (newest first; truncated to --limit)."""
    from flightdeck_operator.actions.runs import list_runs_json

    query, filters, store = _resolve(params)
    with store:
        payload = json.loads(list_runs_json(store, filters, query))
    if output_format == "json":
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
        return
    click.echo(
        f"release={payload['release_id']} matched_total={payload['matched_total']} "
        f"returned={payload['returned']} truncated={payload['truncated']}"
    )
    for event in payload["events"]:
        click.echo(json.dumps(event, sort_keys=True))


@runs.command("export")
@_filter_options(limit_default=500, limit_max=1_000_000)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JSONL to this file; default is stdout.",
)
def runs_export(output_path: Path | None, **params: Any) -> None:
    """Export a release's run events as JSONL (newest first; the reference stops at 500, this streams
    up to 1,000,000 from one snapshot)."""
    from flightdeck_operator.actions.runs import open_export

    query, filters, store = _resolve(params)
    with store, contextlib.ExitStack() as stack:
        export = open_export(store, filters, query)
        stack.callback(export.close)
        out: IO[bytes] = stack.enter_context(output_path.open("wb")) if output_path else sys.stdout.buffer
        for chunk in export.chunks():
            out.write(chunk)
        out.flush()
        counts = export.export
    if counts.truncated:
        click.echo(
            f"WARNING: exported {counts.returned} of {counts.matched_total} matching events "
            f"(offset={counts.offset}, --limit {query.limit}).",
            err=True,
        )
