"""One HTTP delivery attempt to a notification receiver (aiohttp, the operator's event loop).

- Success is any 2xx; redirects are not followed (as the reference); the answer's body is read
  (at most 64 KiB) only so that the connection can be reused.
- Names are resolved through :class:`RefusingResolver`, which refuses any name that resolves to a
  link-local address (cloud metadata services), however the URL spells it: the URL checks at
  admission see only the text, this sees where the connection would really go.
- The outcome's ``error`` says what failed (HTTP status, timeout, connection refused) and never
  carries a header, a body or the URL's credentials, so it can go to status, Events and logs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from flightdeck_operator.engine.notifications import is_link_local

_MAX_ANSWER_BYTES: Final = 64 * 1024


class LinkLocalRefused(OSError):
    """The receiver's name resolves to a link-local address."""


class RefusingResolver(AbstractResolver):
    """The default (threaded) resolver, refusing link-local results."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refused = [result["host"] for result in results if is_link_local(result["host"])]
        if refused:
            raise LinkLocalRefused(f"{host} resolves to a link-local address ({refused[0]}); refused")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int | None = None
    error: str | None = None

    @property
    def rejected_signature(self) -> bool:
        """401/403: the receiver may have refused the signature (the key may have changed)."""
        return self.status in (401, 403)


def new_session(*, timeout_seconds: float, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=RefusingResolver(), limit=connections),
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        # A receiver's cookies must not travel to another receiver.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def post(session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]) -> Attempt:
    try:
        async with session.post(url, data=payload, headers=headers, allow_redirects=False) as answer:
            await answer.content.read(_MAX_ANSWER_BYTES)
            if 200 <= answer.status < 300:
                return Attempt(ok=True, status=answer.status)
            return Attempt(ok=False, status=answer.status, error=f"HTTP {answer.status}")
    except LinkLocalRefused as error:
        return Attempt(ok=False, error=str(error))
    except TimeoutError:
        timeout = session.timeout.total
        return Attempt(ok=False, error=f"no answer within {timeout:g}s")
    except aiohttp.ClientConnectorError as error:
        return Attempt(
            ok=False, error=f"cannot connect: {error.os_error.strerror or type(error.os_error).__name__}"
        )
    except (aiohttp.ClientError, OSError) as error:
        return Attempt(ok=False, error=type(error).__name__)
