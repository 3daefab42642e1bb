"""Entry point of the operator process: ``flightdeck-operator run``.

``flightdeck-operator run`` goes through the supervisor (leader election, the fence, the webhook on
every replica); ``kopf run -m flightdeck_operator.controller.main`` imports this module for its
handlers and runs kopf alone (tests that need no election).
"""

from __future__ import annotations

from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller import (  # noqa: F401  (registers them with kopf)
    handlers,
    indexes,
    notification_handlers,
    startup,
)
from flightdeck_operator.controller.supervisor import supervise


def run(config: OperatorSettings, *, health_endpoint: str | None = None) -> int:
    """Run the operator until stopped or deposed; returns the exit code of a graceful stop."""
    return supervise(config, health_endpoint=health_endpoint)
