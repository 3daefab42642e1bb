"""A TCP balancer on loopback: what a Service does for several operator replicas in a cluster.

A bare control plane routes no Services, so the admission webhook of several local replicas is
registered at this balancer's address. Each connection goes to the next backend that accepts it
(round robin); a backend that refuses (killed) or does not answer in time (stopped) is skipped,
as kube-proxy stops sending to a pod once its readiness fails. TLS passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

CONNECT_TIMEOUT_S = 0.5


class TcpBalancer:
    """``backends()``: the ports to send to now (asked for each connection, as endpoints change)."""

    def __init__(self, backends: Callable[[], Sequence[int]], host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._backends = backends
        self._next = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-balancer", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._close(self._server), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @staticmethod
    async def _close(server: asyncio.Server) -> None:
        server.close()
        for task in asyncio.all_tasks():  # connections still being piped
            if task is not asyncio.current_task():
                task.cancel()
        await server.wait_closed()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.host, 0)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backend = await self._connect()
        if backend is None:
            client_writer.close()
            return
        backend_reader, backend_writer = backend
        await asyncio.gather(
            _pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer), return_exceptions=True
        )

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = list(self._backends())
        start = next(self._next)
        for offset in range(len(backends)):
            port = backends[(start + offset) % len(backends)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(self.host, port), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                continue
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
