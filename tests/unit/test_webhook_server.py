"""The server's certificate and caBundle round (no socket): patch when needed, renew before expiry,
retry soon when the configuration is missing or the API fails."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.webhook.certs import CA_FILE, generate
from flightdeck_operator.webhook.server import WebhookServer

HOSTS = ("127.0.0.1",)


class FakeGateway:
    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, bytes]] = []

    def ensure_webhook_ca_bundle(self, name: str, ca_pem: bytes) -> bool:
        self.calls.append((name, ca_pem))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def server(tmp_path: Path, gateway: FakeGateway | None, configuration: str | None = "fd") -> WebhookServer:
    return WebhookServer(
        {},
        bind_address="127.0.0.1",
        port=0,
        cert_dir=tmp_path,
        hosts=HOSTS,
        configuration=configuration,
        gateway=gateway,  # type: ignore[arg-type]
    )


async def test_the_ca_bundle_is_set_to_our_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    gateway = FakeGateway(True, False)
    webhook = server(tmp_path, gateway)
    assert await webhook.sync_once() is True
    assert await webhook.sync_once() is True
    ca = (tmp_path / CA_FILE).read_bytes()
    assert gateway.calls == [("fd", ca), ("fd", ca)]
    assert caplog.text.count("Set the caBundle of MutatingWebhookConfiguration fd") == 1


async def test_without_a_configuration_nothing_is_patched(tmp_path: Path) -> None:
    gateway = FakeGateway()
    assert await server(tmp_path, gateway, configuration=None).sync_once() is True
    assert gateway.calls == []
    assert (tmp_path / CA_FILE).exists()


async def test_a_missing_configuration_or_an_api_error_is_retried_soon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    webhook = server(tmp_path, FakeGateway(NotFound("gone", 404), GatewayError("boom", 500), True))
    assert await webhook.sync_once() is False
    assert "MutatingWebhookConfiguration fd not found" in caplog.text
    assert await webhook.sync_once() is False
    assert "Checking the webhook's certificates and caBundle failed" in caplog.text
    assert await webhook.sync_once() is True


async def test_a_certificate_about_to_expire_is_renewed_and_the_new_ca_patched(tmp_path: Path) -> None:
    gateway = FakeGateway(True, True)
    webhook = server(tmp_path, gateway)
    assert await webhook.sync_once() is True
    first = webhook.certificates
    assert first is not None
    # Files issued long ago: they expire within 30 days.
    generate(tmp_path, HOSTS, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=350))
    assert await webhook.sync_once() is True
    assert webhook.certificates is not None
    assert webhook.certificates.fingerprint != first.fingerprint
    assert gateway.calls[1][1] == (tmp_path / CA_FILE).read_bytes() != first.ca_pem
