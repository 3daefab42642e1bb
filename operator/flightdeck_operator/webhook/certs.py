"""The webhook's own CA and serving certificate (ECDSA P-256), generated into a directory.

Files: ``ca.crt`` (what goes into the webhook configuration's caBundle), ``tls.crt`` and
``tls.key`` (mode 0600). Existing files are reused while they are valid for the hosts and not
expiring soon, so a restart keeps the caBundle the API server already trusts; files provided by
someone else (e.g. cert-manager) are used as they are while they pass the same checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE: Final = "ca.crt"
CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"
RENEW_BEFORE: Final = dt.timedelta(days=30)
CA_VALIDITY: Final = dt.timedelta(days=3650)
CERT_VALIDITY: Final = dt.timedelta(days=365)
# Clocks of the API server and the operator may disagree a little.
BACKDATE: Final = dt.timedelta(minutes=5)


class CertificateError(RuntimeError):
    """The certificate directory cannot be used (unwritable, or files that cannot be read)."""


@dataclass(frozen=True, slots=True)
class WebhookCertificates:
    directory: Path
    ca_pem: bytes
    not_after: dt.datetime  # of the serving certificate

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def fingerprint(self) -> str:
        """Identifies this CA (changes when the files are regenerated)."""
        return hashlib.sha256(self.ca_pem).hexdigest()


def ensure_certificates(
    directory: Path, hosts: Sequence[str], *, now: dt.datetime | None = None
) -> WebhookCertificates:
    """Reuse the certificates in ``directory`` if :func:`usable`, else generate a new CA and
    serving certificate for ``hosts`` (DNS names; IP literals become IP SANs)."""
    if not hosts:
        raise CertificateError("the webhook certificate needs at least one host name or IP address")
    now = now or dt.datetime.now(dt.UTC)
    existing = load(directory)
    if existing is not None and usable(directory, hosts, now=now):
        return existing
    generate(directory, hosts, now=now)
    loaded = load(directory)
    if loaded is None:  # pragma: no cover - we just wrote them
        raise CertificateError(f"certificates written to {directory} cannot be read back")
    return loaded


def load(directory: Path) -> WebhookCertificates | None:
    try:
        ca_pem = (directory / CA_FILE).read_bytes()
        cert = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return WebhookCertificates(directory=directory, ca_pem=ca_pem, not_after=cert.not_valid_after_utc)


def usable(directory: Path, hosts: Sequence[str], *, now: dt.datetime) -> bool:
    """All three files parse, the key is the certificate's, the CA signed it, both are valid now
    and for longer than :data:`RENEW_BEFORE`, and the SANs cover every host."""
    try:
        ca = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        cert = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / KEY_FILE).read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    for certificate in (ca, cert):
        if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc - RENEW_BEFORE:
            return False
    covered = {str(name).lower() for name in sans.get_values_for_type(x509.DNSName)}
    covered |= {str(address) for address in sans.get_values_for_type(x509.IPAddress)}
    return all(_normal(host) in covered for host in hosts)


def generate(directory: Path, hosts: Sequence[str], *, now: dt.datetime) -> None:
    """A new CA and a serving certificate signed by it; each file replaced atomically."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flightdeck-webhook-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san(host) for host in hosts]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The key first: a crash between writes leaves files that fail `usable` and are redone.
        _write(
            directory / KEY_FILE,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            mode=0o600,
        )
        _write(directory / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        _write(directory / CA_FILE, ca.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as error:
        raise CertificateError(f"cannot write the webhook certificates to {directory}: {error}") from None


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host.lower())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
