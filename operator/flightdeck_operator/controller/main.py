"""Entry point of the operator process: ``flightdeck-operator run`` (or ``kopf run -m flightdeck_operator.controller.main``)."""

from __future__ import annotations

import threading

import kopf

from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller import (  # noqa: F401  (registers them with kopf)
    handlers,
    indexes,
    notification_handlers,
    startup,
)


def run(
    config: OperatorSettings,
    *,
    liveness_endpoint: str | None = None,
    ready_flag: threading.Event | None = None,
    stop_flag: threading.Event | None = None,
) -> None:
    """Run the operator until stopped. One active replica: ``standalone`` (no peering objects);
    the Deployment uses the Recreate strategy so two never overlap."""
    kopf.configure(verbose=False, log_format=kopf.LogFormat.FULL)
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=liveness_endpoint,
        memo=kopf.Memo(config=config),
        ready_flag=ready_flag,
        stop_flag=stop_flag,
    )
