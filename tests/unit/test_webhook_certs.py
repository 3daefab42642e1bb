"""The webhook's generated CA and serving certificate: SANs, reuse, renewal, file modes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from flightdeck_operator.webhook.certs import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    CertificateError,
    ensure_certificates,
    usable,
)

HOSTS = ("fd-webhook.flightdeck.svc", "FD-Webhook.flightdeck.svc.cluster.local", "127.0.0.1", "::1")
NOW = dt.datetime(2026, 5, 5, 12, 0, tzinfo=dt.UTC)


def certificate(directory: Path, name: str = CERT_FILE) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / name).read_bytes())


def test_generates_a_ca_and_a_serving_certificate_for_the_hosts(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    certs = ensure_certificates(directory, HOSTS, now=NOW)
    assert sorted(p.name for p in directory.iterdir()) == [CA_FILE, CERT_FILE, KEY_FILE]
    assert stat.S_IMODE((directory / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    ca, cert = certificate(directory, CA_FILE), certificate(directory)
    assert certs.ca_pem == (directory / CA_FILE).read_bytes()
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "fd-webhook.flightdeck.svc",
        "fd-webhook.flightdeck.svc.cluster.local",
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert certs.not_after == cert.not_valid_after_utc
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc


def test_valid_files_are_reused(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, HOSTS, now=NOW)
    again = ensure_certificates(tmp_path, ["127.0.0.1"], now=NOW + dt.timedelta(days=300))
    assert again.ca_pem == first.ca_pem
    assert again.fingerprint == first.fingerprint


def test_a_certificate_expiring_within_30_days_is_replaced(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, HOSTS, now=NOW)
    assert usable(tmp_path, HOSTS, now=first.not_after - dt.timedelta(days=31))
    assert not usable(tmp_path, HOSTS, now=first.not_after - dt.timedelta(days=29))
    renewed = ensure_certificates(tmp_path, HOSTS, now=first.not_after - dt.timedelta(days=29))
    assert renewed.fingerprint != first.fingerprint
    assert renewed.not_after > first.not_after


def test_a_new_host_means_a_new_certificate(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, ["127.0.0.1"], now=NOW)
    second = ensure_certificates(tmp_path, ["127.0.0.1", "webhook.example"], now=NOW)
    assert second.fingerprint != first.fingerprint
    assert usable(tmp_path, ["webhook.example"], now=NOW)


def test_not_yet_valid_or_broken_files_are_replaced(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, HOSTS, now=NOW)
    assert not usable(tmp_path, HOSTS, now=NOW - dt.timedelta(days=1))
    (tmp_path / KEY_FILE).write_text("garbage")
    assert not usable(tmp_path, HOSTS, now=NOW)
    assert ensure_certificates(tmp_path, HOSTS, now=NOW).fingerprint != first.fingerprint


def test_a_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    ensure_certificates(one, HOSTS, now=NOW)
    ensure_certificates(two, HOSTS, now=NOW)
    (one / CA_FILE).write_bytes((two / CA_FILE).read_bytes())
    assert not usable(one, HOSTS, now=NOW)


def test_a_key_of_another_certificate_is_replaced(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    ensure_certificates(one, HOSTS, now=NOW)
    ensure_certificates(two, HOSTS, now=NOW)
    (one / KEY_FILE).write_bytes((two / KEY_FILE).read_bytes())
    assert not usable(one, HOSTS, now=NOW)


def test_no_hosts_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="at least one host"):
        ensure_certificates(tmp_path, [], now=NOW)


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CertificateError, match="cannot write the webhook certificates"):
        ensure_certificates(blocker / "certs", HOSTS, now=NOW)
