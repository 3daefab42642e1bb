"""One delivery attempt over real loopback sockets (no API server needed): 2xx is success, redirects
are not followed, a closed port and a timeout are failures that say why, and a name that resolves to
a link-local address is refused before any connection is made."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from flightdeck_operator.controller.delivery import LinkLocalRefused, RefusingResolver, new_session, post
from flightdeck_operator.localdev.processes import free_port


class Answers(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/slow":
            threading.Event().wait(3)
        status = {"/ok": 204, "/moved": 302, "/down": 503}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def test_answers_are_judged_as_the_reference_does(server: str) -> None:
    session = new_session(timeout_seconds=1, connections=2)
    try:
        ok = await post(session, f"{server}/ok", b"{}", {"Content-Type": "application/json"})
        assert (ok.ok, ok.status, ok.error) == (True, 204, None)
        moved = await post(session, f"{server}/moved", b"{}", {})
        assert (moved.ok, moved.error) == (False, "HTTP 302")  # not followed
        down = await post(session, f"{server}/down", b"{}", {})
        assert (down.ok, down.error) == (False, "HTTP 503")
        slow = await post(session, f"{server}/slow", b"{}", {})
        assert (slow.ok, slow.error) == (False, "no answer within 1s")
        closed = await post(session, f"http://127.0.0.1:{free_port()}/x", b"{}", {})
        assert closed.ok is False
        assert closed.error is not None
        assert closed.error.startswith("cannot connect: ")
    finally:
        await session.close()


async def test_names_resolving_to_link_local_addresses_are_refused() -> None:
    resolver = RefusingResolver()
    try:
        # inet_aton's decimal spelling of 169.254.169.254, resolved by the system resolver itself.
        with pytest.raises(
            LinkLocalRefused, match=r"resolves to a link-local address \(169\.254\.169\.254\)"
        ):
            await resolver.resolve("2852039166", 80)
        assert (await resolver.resolve("localhost", 80))[0]["host"] in ("127.0.0.1", "::1")
    finally:
        await resolver.close()
    # Through a whole attempt, aiohttp refuses that URL before resolving it: never sent either way.
    session = new_session(timeout_seconds=1, connections=1)
    try:
        refused = await post(session, "http://2852039166/latest/meta-data/", b"{}", {})
        assert (refused.ok, refused.status) == (False, None)
    finally:
        await session.close()
