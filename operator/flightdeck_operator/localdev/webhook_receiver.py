"""A webhook receiver on loopback for the demo: what docs/notifications.md tells users to run. It
checks every signature (HMAC-SHA256 of the raw body, compared in constant time), answers 401 to a
bad one, deduplicates by delivery id and keeps what it accepted."""

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
class Delivery:
    delivery_id: str
    event: str
    data: dict[str, Any]


@dataclass
class WebhookReceiver:
    secret: str = ""
    port: int = field(default_factory=free_port)
    accepted: list[Delivery] = field(default_factory=list)
    refused: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/flightdeck"

    def __enter__(self) -> WebhookReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), raw, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, self.headers.get("X-FlightDeck-Signature") or ""):
                    with receiver._lock:
                        receiver.refused += 1
                    self.send_response(401)
                else:
                    body = json.loads(raw)
                    delivery = Delivery(
                        self.headers.get("X-FlightDeck-Delivery") or "", body["event"], body["data"]
                    )
                    with receiver._lock:
                        if all(d.delivery_id != delivery.delivery_id for d in receiver.accepted):
                            receiver.accepted.append(delivery)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.accepted)
