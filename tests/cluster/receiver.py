"""A real webhook receiver on loopback, for the notification tests: it checks every signature as a
user's receiver does (HMAC-SHA256 over the raw body, constant-time compare), answers 401 to a bad
one, and records everything it was sent.

It can be stopped and started again on the same port (the receiver is down: connections are
refused), told to fail (503), or to hold the next deliveries until released (a slow receiver).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.localdev.processes import free_port


@dataclass(frozen=True)
class Received:
    delivery_id: str
    event: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    signature_ok: bool
    status: int  # what it was answered (2xx: accepted)


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=free_port)
    status: int = 200  # what a delivery with a good signature is answered with
    received: list[Received] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hold: threading.Event | None = None  # set: answer; clear: keep held deliveries waiting
    holding: threading.Event = field(default_factory=threading.Event)  # a delivery is being held

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/flightdeck"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), raw, hashlib.sha256).hexdigest()
                signature_ok = hmac.compare_digest(expected, self.headers.get("X-FlightDeck-Signature") or "")
                status = receiver.status if signature_ok else 401
                entry = Received(
                    delivery_id=self.headers.get("X-FlightDeck-Delivery") or "",
                    event=self.headers.get("X-FlightDeck-Event") or "",
                    body=json.loads(raw),
                    raw=raw,
                    headers=dict(self.headers.items()),
                    signature_ok=signature_ok,
                    status=status,
                )
                with receiver._lock:
                    receiver.received.append(entry)
                    hold = receiver._hold
                if hold is not None and signature_ok:
                    receiver.holding.set()
                    hold.wait(120)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        """Keep deliveries waiting (a slow receiver) until :meth:`release`."""
        with self._lock:
            self.holding.clear()
            self._hold = threading.Event()

    def release(self) -> None:
        with self._lock:
            hold, self._hold = self._hold, None
        if hold is not None:
            hold.set()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def verified(self) -> list[Received]:
        return [r for r in self.snapshot() if r.signature_ok]

    def accepted(self) -> list[Received]:
        """Deliveries with a good signature that were answered 2xx."""
        return [r for r in self.verified() if 200 <= r.status < 300]

    def unique(self) -> dict[str, Received]:
        """Accepted deliveries deduplicated by delivery_id, as a receiver does."""
        unique: dict[str, Received] = {}
        for entry in self.accepted():
            unique.setdefault(entry.delivery_id, entry)
        return unique
