"""A throwaway PostgreSQL server for tests and benchmarks.

``temporary_postgres()`` runs ``initdb`` and ``pg_ctl`` from the Debian server packages on a free
loopback port in a temporary directory, yields a ``postgresql://`` URL and removes the server and its
files afterwards, also when the body fails. When no server binaries exist and we are root, it installs
them with ``apt-get install -y postgresql`` first. ``initdb`` and ``postgres`` refuse to run as root,
so as root they run as the ``postgres`` system user (created if missing) via ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

SUPERUSER = "flightdeck"
_SERVICE_USER = "postgres"
_DEBIAN_BIN_ROOT = Path("/usr/lib/postgresql")

# Speed over durability: a test server's data is thrown away anyway.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries, or the server would not start."""


def find_server_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<N>/bin`` holding ``initdb``, else ``pg_config --bindir``."""
    versions: list[tuple[int, Path]] = []
    if _DEBIAN_BIN_ROOT.is_dir():
        for child in _DEBIAN_BIN_ROOT.iterdir():
            if child.name.isdigit() and (child / "bin" / "initdb").is_file():
                versions.append((int(child.name), child / "bin"))
    if versions:
        return max(versions)[1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(result.stdout.strip())
        if result.returncode == 0 and (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def install_server() -> None:
    """``apt-get update`` then ``apt-get install -y postgresql`` (needs root and apt)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailableError(
            "PostgreSQL server binaries not found and cannot install them (need root and apt-get). "
            "Install the Debian package 'postgresql' or set FLIGHTDECK_TEST_POSTGRES_URL."
        )
    # Without this, Debian's package creates (and may start) a system-wide "main" cluster on :5432.
    createcluster = Path("/etc/postgresql-common/createcluster.conf")
    if not createcluster.exists():
        createcluster.parent.mkdir(parents=True, exist_ok=True)
        createcluster.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends"]
    # Keep our createcluster.conf when the package ships its own copy.
    install += [
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "postgresql",
    ]
    for command in (["apt-get", "update"], install):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"{' '.join(command)} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )


def ensure_server_bindir(*, install: bool = True) -> Path:
    bindir = find_server_bindir()
    if bindir is None and install:
        install_server()
        bindir = find_server_bindir()
    if bindir is None:
        raise PostgresUnavailableError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
            "or via pg_config, even after 'apt-get install -y postgresql'."
        )
    return bindir


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(_SERVICE_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Runner:
    """Runs server commands as the current user, or as ``postgres`` when we are root."""

    def __init__(self) -> None:
        self.as_service_user = os.geteuid() == 0
        self.account = _ensure_service_user() if self.as_service_user else None

    def chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def run(self, argv: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", _SERVICE_USER, "--", *argv] if self.as_service_user else list(argv)
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)


def _postmaster_pid(datadir: Path) -> int | None:
    try:
        first_line = (datadir / "postmaster.pid").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first_line) if re.fullmatch(r"\d+", first_line.strip()) else None


@contextlib.contextmanager
def temporary_postgres(
    *,
    install: bool = True,
    settings: Mapping[str, str] = FAST_SETTINGS,
    start_attempts: int = 3,
) -> Iterator[str]:
    """Start a private PostgreSQL server and yield its URL (user ``flightdeck``, database ``postgres``)."""
    bindir = ensure_server_bindir(install=install)
    runner = _Runner()
    workdir = Path(tempfile.mkdtemp(prefix="flightdeck-pg-"))
    datadir, socketdir = workdir / "data", workdir / "sock"
    socketdir.mkdir()
    for path in (workdir, socketdir):
        runner.chown(path)
    started = False
    try:
        result = runner.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        options = " ".join(f"-c {key}={value}" for key, value in settings.items())
        last_error = ""
        for _ in range(start_attempts):  # another process may grab the free port before we bind it
            port = _free_port()
            server_options = (
                f"-p {port} -k {socketdir} -c listen_addresses=127.0.0.1 -c max_connections=100 {options}"
            )
            result = runner.run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(workdir / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    server_options,
                    "start",
                ]
            )
            if result.returncode == 0:
                started = True
                yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
                break
            last_error = _read_tail(workdir / "server.log") or result.stderr.strip()
        if not started:
            raise PostgresUnavailableError(f"PostgreSQL did not start: {last_error}")
    finally:
        _stop(runner, bindir, datadir)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(runner: _Runner, bindir: Path, datadir: Path) -> None:
    if not (datadir / "postmaster.pid").exists():
        return
    runner.run([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "-t", "30", "stop"])
    pid = _postmaster_pid(datadir)
    if pid is None:
        return
    # pg_ctl failed to stop it: signal the postmaster we started, by its own PID file.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _read_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""
