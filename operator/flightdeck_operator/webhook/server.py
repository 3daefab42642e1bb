"""The HTTPS server the API server calls, running in kopf's event loop (aiohttp).

``POST <path>``: an AdmissionReview for the handler registered at ``path``; an invalid review is
answered 400. A handler that raises is answered with a denial (code 500): the webhook fails
closed, like ``failurePolicy: Fail`` when it cannot be reached. ``GET /healthz``: 200.

A background task keeps the caBundle of the MutatingWebhookConfiguration equal to our CA, once at
start and then every minute, so a configuration re-applied by Helm or GitOps (which has no
caBundle) is repaired; it also renews the certificate before it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.kube.errors import NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.webhook.admission import AdmissionReview, deny, review_of
from flightdeck_operator.webhook.certs import WebhookCertificates, ensure_certificates
from flightdeck_operator.webhook.handlers import Handler

log = logging.getLogger(__name__)

HEALTH_PATH: Final = "/healthz"
# Requests carry the object and, for updates, the old object: etcd allows 1.5 MiB each.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
SYNC_SECONDS: Final = 60.0
RETRY_SECONDS: Final = 5.0  # while the caBundle could not be checked (e.g. configuration not there yet)


async def answer_review(
    handlers: Mapping[str, Handler], path: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one POST: the transport-free part of the server."""
    handler = handlers.get(path)
    if handler is None:
        return 404, {"message": f"no admission handler at {path}"}
    try:
        review = AdmissionReview.model_validate(json.loads(body))
    except (ValueError, ValidationError) as error:
        return 400, {"message": f"not an admission.k8s.io/v1 AdmissionReview: {error}"}
    request = review.request
    if request is None:
        return 400, {"message": "the AdmissionReview carries no request"}
    try:
        response = await handler(request)
    except Exception as error:
        log.exception(
            "Admission of %s %s/%s failed (denied)", request.operation, request.namespace, request.name
        )
        response = deny(request, 500, f"FlightDeck admission failed: {type(error).__name__}: {error}")
    return 200, review_of(response)


class WebhookServer:
    """Serve ``handlers`` over HTTPS on ``bind_address:port``; ``start()`` then ``stop()``."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        bind_address: str,
        port: int,
        cert_dir: Path,
        hosts: Sequence[str],
        configuration: str | None,
        gateway: KubeGateway | None,
        sync_seconds: float = SYNC_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.handlers = dict(handlers)
        self.bind_address = bind_address
        self.port = port
        self.cert_dir = cert_dir
        self.hosts = tuple(hosts)
        self.configuration = configuration
        self.gateway = gateway
        self.sync_seconds = sync_seconds
        self.retry_seconds = retry_seconds
        self.certificates: WebhookCertificates | None = None
        self._ssl: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self._sync: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.certificates = await asyncio.to_thread(ensure_certificates, self.cert_dir, self.hosts)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(self.certificates.cert_path, self.certificates.key_path)
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get(HEALTH_PATH, self._health)
        for path in self.handlers:
            app.router.add_post(path, self._review)
        # No access log: one line per admission would drown the decisions in the operator's log.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_address, self.port, ssl_context=self._ssl)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): report the one we got
            self.port = int(self._runner.addresses[0][1])
        log.info(
            "Admission webhook serving on https://%s:%d (%s; certificates in %s)",
            self.bind_address,
            self.port,
            ", ".join(self.handlers),
            self.cert_dir,
        )
        if self.configuration is None or self.gateway is None:
            log.info("No webhook configuration named: its caBundle is not managed by the operator")
        self._sync = asyncio.create_task(self._keep_in_sync())

    async def stop(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
            self._sync = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- HTTP ------------------------------------------------------------------------------------

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _review(self, request: web.Request) -> web.Response:
        status, body = await answer_review(self.handlers, request.path, await request.read())
        return web.json_response(body, status=status)

    # -- certificates and caBundle ---------------------------------------------------------------

    async def _keep_in_sync(self) -> None:
        while True:
            in_sync = await self.sync_once()
            await asyncio.sleep(self.sync_seconds if in_sync else self.retry_seconds)

    async def sync_once(self) -> bool:
        """Renew the certificate if it expires soon; make the caBundle ours. False: retry soon."""
        try:
            certificates = await asyncio.to_thread(ensure_certificates, self.cert_dir, self.hosts)
            renewed = (
                self.certificates is not None and certificates.fingerprint != self.certificates.fingerprint
            )
            if renewed and self._ssl is not None:
                # New handshakes use the new pair; the caBundle follows right below.
                self._ssl.load_cert_chain(certificates.cert_path, certificates.key_path)
                log.warning("Webhook certificates renewed (new CA); updating the caBundle")
            self.certificates = certificates
            if self.configuration is None or self.gateway is None:
                return True
            patched = await asyncio.to_thread(
                self.gateway.ensure_webhook_ca_bundle, self.configuration, certificates.ca_pem
            )
        except NotFound:
            log.warning(
                "MutatingWebhookConfiguration %s not found; the API server cannot call the webhook "
                "until it exists (retrying in %.0fs)",
                self.configuration,
                self.retry_seconds,
            )
            return False
        except Exception:
            log.exception("Checking the webhook's certificates and caBundle failed; retrying")
            return False
        if patched:
            log.info("Set the caBundle of MutatingWebhookConfiguration %s to our CA", self.configuration)
        return True


def server_from_settings(
    config: OperatorSettings, handlers: Mapping[str, Handler], gateway: KubeGateway
) -> WebhookServer:
    """The server ``config`` describes (``config.webhook_port`` must be set)."""
    assert config.webhook_port is not None
    return WebhookServer(
        handlers,
        bind_address=config.webhook_bind_address,
        port=config.webhook_port,
        cert_dir=config.webhook_cert_dir,
        hosts=config.webhook_hosts,
        configuration=config.webhook_configuration,
        gateway=gateway,
    )
