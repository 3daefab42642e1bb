"""Running the sidecar: checks that refuse unsafe configurations, then uvicorn.

Shutdown is graceful: on SIGTERM uvicorn stops accepting connections and lets in-flight requests
finish (by default for the decision timeout plus a margin, so a waiting promote still gets its
answer), then the store is closed.
"""

from __future__ import annotations

import gc
import logging
from typing import Final

import uvicorn

from flightdeck_operator.config import AuthMode, SidecarSettings
from flightdeck_operator.kube.gateway import KubeGateway, load_api_client
from flightdeck_operator.sidecar.app import build_authenticator, create_app
from flightdeck_operator.sidecar.auth import is_loopback
from flightdeck_operator.sidecar.routes.common import MAX_CONCURRENT_DECISION_WAITS
from flightdeck_operator.store import open_store

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_MARGIN_S: Final = 5.0
# Beyond this many open connections and in-flight requests uvicorn answers 503 at once
# instead of queueing without bound.
MAX_CONCURRENCY: Final = 1000
# Kubernetes API connections kept open: one per waiting promote plus reads and reviews.
API_POOL_SIZE: Final = MAX_CONCURRENT_DECISION_WAITS + 16
# Garbage collector tuning (see tune_gc): young-generation threshold, and how many younger
# collections trigger an older one.
GC_THRESHOLDS: Final = (50_000, 20, 20)


class SidecarConfigError(ValueError):
    """The configuration must not start (e.g. no authentication on a non-loopback address)."""


def check_settings(settings: SidecarSettings) -> None:
    if settings.auth is AuthMode.NONE and not is_loopback(settings.host):
        raise SidecarConfigError(
            f"Refusing to listen on {settings.host!r} with --auth none: without authentication the "
            "sidecar only listens on loopback (127.0.0.1, ::1). Inside a pod loopback is shared with "
            "every container, so use --auth kubernetes or --auth token there."
        )
    if settings.auth is AuthMode.TOKEN and not settings.token_file:
        raise SidecarConfigError("--auth token needs --token-file (a file holding the bearer token)")


def tune_gc() -> None:
    """Validating a batch of 1,000 run events allocates about 5,000 short-lived containers. With
    the default thresholds (700, 10, 10) the collector runs several times per batch and, every so
    often, traverses the ~100k objects the imports created (the Kubernetes client, FastAPI),
    which doubled the mean validation time. Freeze the start-up heap (it lives as long as the
    process anyway) and collect young objects less often. Measured: validation 15 ms -> 5.3 ms
    mean per 1,000 events."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(settings: SidecarSettings, *, access_log: bool = False) -> None:
    """Run until SIGINT/SIGTERM."""
    check_settings(settings)
    gateway = KubeGateway(load_api_client(settings.kubeconfig, pool_size=API_POOL_SIZE))
    try:
        authenticator = build_authenticator(settings, gateway)
    except (OSError, ValueError) as error:
        raise SidecarConfigError(f"Cannot set up --auth {settings.auth.value}: {error}") from None
    graceful = settings.graceful_shutdown_seconds or (
        settings.decision_timeout_seconds + GRACEFUL_SHUTDOWN_MARGIN_S
    )
    with open_store(settings.store) as store:
        app = create_app(settings, store, gateway, authenticator=authenticator)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=access_log,
            timeout_keep_alive=int(settings.keep_alive_seconds),
            timeout_graceful_shutdown=int(graceful),
            limit_concurrency=MAX_CONCURRENCY,
            server_header=False,
            # The sidecar is reached directly or through a Service; X-Forwarded-* is not trusted.
            proxy_headers=False,
        )
        log.info(
            "Sidecar for namespace %s on %s:%d (auth %s, store %s)",
            settings.namespace,
            settings.host,
            settings.port,
            settings.auth.value,
            store.describe(),
        )
        server = uvicorn.Server(config)
        tune_gc()
        server.run()
    gateway.api_client.close()
