"""A real, local Kubernetes control plane: etcd + kube-apiserver on loopback.

Used by the cluster test tier and by ``flightdeck-operator dev``. The binaries are built from the
upstream Go modules by ``hack/build-control-plane.sh`` (cached by version); nothing is mocked.

What :class:`ControlPlane` does:

- generates a CA, a serving certificate for 127.0.0.1/localhost and a service-account signing key;
- starts etcd and kube-apiserver on free loopback ports (or the ports given, failing clearly when
  one is taken), with RBAC authorization and a static token file holding one admin identity
  (group ``system:masters``) and non-admin identities for RBAC tests;
- writes a kubeconfig per identity and waits for ``/readyz``;
- stops everything it started and removes its directory, also when the caller fails. Child
  processes are tied to the parent with ``PR_SET_PDEATHSIG``, so even a SIGKILLed test run leaves
  no apiserver behind; stale directories of dead runs are swept on the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kubectl")
BIN_DIR_ENV = "FLIGHTDECK_BIN_DIR"
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "flightdeck-operator" / "bin"
RUN_DIR_PREFIX = "flightdeck-controlplane-"
READY_TIMEOUT_S = 90.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says why and what to do."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl failed; unlike CalledProcessError, the message says what kubectl printed."""

    def __str__(self) -> str:
        return f"kubectl {' '.join(str(a) for a in self.cmd[3:])} exited {self.returncode}: {self.stderr.strip()}"


@dataclass(frozen=True)
class Identity:
    """A bearer-token user of the local API server."""

    name: str
    token: str
    groups: tuple[str, ...] = ()


def default_identities() -> tuple[Identity, ...]:
    """One admin and two non-admin users (tokens are random per run)."""
    return (
        Identity("admin", _random_token(), ("system:masters",)),
        Identity("alice", _random_token(), ("flightdeck:developers",)),
        Identity("bob", _random_token(), ("flightdeck:viewers",)),
    )


def find_binaries(bin_dir: str | Path | None = None) -> Path:
    """The directory holding etcd, kube-apiserver and kubectl.

    Looked up in order: the argument, ``$FLIGHTDECK_BIN_DIR``, the newest complete directory in
    the build cache. Raises :class:`ControlPlaneError` naming what is missing and how to build it.
    """
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir))
    elif os.environ.get(BIN_DIR_ENV):
        candidates.append(Path(os.environ[BIN_DIR_ENV]))
    else:
        cache_root = Path(os.environ.get("FLIGHTDECK_BIN_CACHE", DEFAULT_CACHE_ROOT))
        if cache_root.is_dir():
            built = [p for p in cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
            candidates.extend(sorted(built, key=lambda p: p.stat().st_mtime, reverse=True))
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in REQUIRED_BINARIES):
            return candidate
    where = ", ".join(str(c) for c in candidates) or "no build cache found"
    raise ControlPlaneError(
        f"control-plane binaries {', '.join(REQUIRED_BINARIES)} not found ({where}); "
        "build them with `make control-plane` (hack/build-control-plane.sh) "
        f"or point ${BIN_DIR_ENV} at a directory holding them"
    )


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on loopback. Use as a context manager, or call start()/stop()."""

    bin_dir: Path | None = None
    apiserver_port: int | None = None
    etcd_port: int | None = None
    identities: tuple[Identity, ...] = field(default_factory=default_identities)
    extra_apiserver_args: tuple[str, ...] = ()

    run_dir: Path = field(init=False)
    server: str = field(init=False, default="")
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(init=False, default_factory=list)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        bins = find_binaries(self.bin_dir)
        sweep_stale_run_dirs()
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
        (self.run_dir / "owner.pid").write_text(str(os.getpid()))
        try:
            apiserver_port = _claim_port(self.apiserver_port, "kube-apiserver")
            etcd_port = _claim_port(self.etcd_port, "etcd client")
            etcd_peer_port = _claim_port(None, "etcd peer")
            self.server = f"https://127.0.0.1:{apiserver_port}"
            pki = _write_pki(self.run_dir / "pki")
            self._write_token_file()
            self._spawn("etcd", [str(bins / "etcd"), *_etcd_args(self.run_dir, etcd_port, etcd_peer_port)])
            self._spawn(
                "kube-apiserver",
                [
                    str(bins / "kube-apiserver"),
                    *_apiserver_args(self.run_dir, pki, apiserver_port, etcd_port),
                    *self.extra_apiserver_args,
                ],
            )
            for identity in self.identities:
                self._write_kubeconfig(identity)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process started here (apiserver first) and remove the run directory."""
        for _name, process in reversed(self._processes):
            _terminate(process)
        self._processes.clear()
        if getattr(self, "run_dir", None) is not None and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- what callers use ------------------------------------------------------------------

    @property
    def bin_path(self) -> Path:
        return find_binaries(self.bin_dir)

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "pki" / "ca.crt"

    def identity(self, name: str) -> Identity:
        for identity in self.identities:
            if identity.name == name:
                return identity
        raise KeyError(f"no identity named {name!r}")

    def kubeconfig(self, user: str = "admin") -> Path:
        """Path of the kubeconfig that authenticates as ``user``."""
        path = self.run_dir / f"kubeconfig-{user}"
        if not path.exists():
            raise KeyError(f"no identity named {user!r}")
        return path

    def kubectl(
        self,
        *args: str,
        user: str = "admin",
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane, as a user would.

        With ``check`` a non-zero exit raises :class:`KubectlError`, whose message includes stderr.
        """
        argv = [str(self.bin_path / "kubectl"), "--kubeconfig", str(self.kubeconfig(user)), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def env(self, user: str = "admin") -> dict[str, str]:
        """Environment for child processes (kopf, helm, kubectl) talking to this control plane."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig(user))
        env["PATH"] = f"{self.bin_path}{os.pathsep}{env.get('PATH', '')}"
        return env

    def logs(self, name: str) -> str:
        log = self.run_dir / f"{name}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.run_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._processes.append((name, process))

    def _write_token_file(self) -> None:
        # Static tokens: token,user,uid,"group1,group2"
        lines = [
            f'{i.token},{i.name},{i.name},"{",".join(i.groups)}"'
            if i.groups
            else f"{i.token},{i.name},{i.name}"
            for i in self.identities
        ]
        path = self.run_dir / "tokens.csv"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def _write_kubeconfig(self, identity: Identity) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": identity.name, "user": {"token": identity.token}}],
            "contexts": [{"name": identity.name, "context": {"cluster": "local", "user": identity.name}}],
            "current-context": identity.name,
        }
        path = self.run_dir / f"kubeconfig-{identity.name}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.identity('admin').token}"}
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = "no answer"
        while time.monotonic() < deadline:
            for name, process in self._processes:
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {process.returncode} during startup; "
                        f"last log lines:\n{_tail(self.logs(name))}"
                    )
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {READY_TIMEOUT_S:.0f}s ({last_error}); "
            f"last log lines:\n{_tail(self.logs('kube-apiserver'))}"
        )


def sweep_stale_run_dirs() -> list[Path]:
    """Remove run directories whose owning process is gone (a run that was SIGKILLed)."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


# -- process helpers -----------------------------------------------------------------------


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG (1): the kernel kills the child when the process that forked it dies,
    # so an interrupted or SIGKILLed test session cannot leave an apiserver running.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_port(port: int | None, purpose: str) -> int:
    """A free loopback port, or the requested one if it is free (else a clear error)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port or 0))
        except OSError as error:
            raise ControlPlaneError(
                f"port {port} for {purpose} is already in use on 127.0.0.1: {error}"
            ) from None
        return int(probe.getsockname()[1])


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _random_token() -> str:
    return os.urandom(24).hex()


# -- command lines -------------------------------------------------------------------------


def _etcd_args(run_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        "--name=local",
        f"--data-dir={run_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=local={peer}",
        "--log-level=warn",
        # Throwaway data: skipping fsync makes every API write several times faster.
        "--unsafe-no-fsync",
    ]


def _apiserver_args(run_dir: Path, pki: Mapping[str, Path], port: int, etcd_port: int) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={run_dir / 'certs'}",
        f"--tls-cert-file={pki['serving_cert']}",
        f"--tls-private-key-file={pki['serving_key']}",
        f"--client-ca-file={pki['ca_cert']}",
        f"--token-auth-file={run_dir / 'tokens.csv'}",
        f"--service-account-key-file={pki['sa_public']}",
        f"--service-account-signing-key-file={pki['sa_private']}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--anonymous-auth=false",
        "--profiling=false",
        "--logging-format=text",
        "--v=1",
    ]


# -- PKI -----------------------------------------------------------------------------------


def _write_pki(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flightdeck-local-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    paths = {
        "ca_cert": directory / "ca.crt",
        "serving_cert": directory / "apiserver.crt",
        "serving_key": directory / "apiserver.key",
        "sa_private": directory / "sa.key",
        "sa_public": directory / "sa.pub",
    }
    paths["ca_cert"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["serving_cert"].write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    paths["serving_key"].write_bytes(_private_pem(serving_key))
    paths["sa_private"].write_bytes(_private_pem(sa_key))
    paths["sa_public"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for key in ("serving_key", "sa_private"):
        paths[key].chmod(0o600)
    return paths


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
