"""A real HTTPS server on loopback standing in for Splunk HEC or a webhook receiver.

It records every request (path, headers, body, arrival time) and answers with what
``respond(request)`` returns: ``(status, headers)``; by default 200.

With ``acks=True`` it behaves as a HEC token with indexer acknowledgement: each accepted
request is answered with an ``ackId`` (numbered per channel, as Splunk does, and required
channel header), and ``POST /services/collector/ack?channel=...`` with ``{"acks": [...]}``
answers ``{"acks": {"<id>": bool}}`` from ``acked(channel, ack_id)``, which a test replaces to
delay or withhold acknowledgements. Ack polls are kept apart, in ``ack_polls``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.rsyslog import TlsFiles


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    ack_id: int | None = None

    def hec_events(self) -> list[dict[str, Any]]:
        """The HEC envelopes of the body (newline-separated JSON objects)."""
        return [json.loads(line) for line in self.body.decode("utf-8").split("\n") if line]


Responder = Callable[[Request], tuple[int, dict[str, str]]]


class Receiver:
    """HTTPS receiver; ``url`` is ``https://127.0.0.1:<port>/services/collector/event``."""

    def __init__(self, tls: TlsFiles, respond: Responder | None = None, acks: bool = False) -> None:
        self.requests: list[Request] = []
        self.ack_polls: list[Request] = []
        self.respond = respond or (lambda _req: (200, {}))
        self.acks = acks
        self.acked: Callable[[str, int], bool] = lambda _channel, _ack_id: True
        self.issued: dict[str, int] = {}  # channel -> ackIds issued so far
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = Request(self.path, dict(self.headers.items()), body, time.monotonic())
                if receiver.acks and self.path.startswith("/services/collector/ack"):
                    status, polled = receiver.ack_status(req)
                    return self.answer(status, {}, polled)
                status, headers = receiver.respond(req)
                doc: dict[str, Any] = {"text": "Success" if status < 300 else "Refused"}
                if receiver.acks and status < 300:
                    channel = req.headers.get("X-Splunk-Request-Channel")
                    if not channel:
                        status, doc = 400, {"text": "Data channel is missing", "code": 10}
                    else:
                        req.ack_id = doc["ackId"] = receiver.issue(channel)
                with receiver.lock:
                    receiver.requests.append(req)
                return self.answer(status, headers, doc)

            def answer(self, status: int, headers: dict[str, str], doc: dict[str, Any]) -> None:
                payload = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert_path, tls.key_path)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/services/collector/event"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def received(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def issue(self, channel: str) -> int:
        with self.lock:
            ack_id = self.issued.get(channel, 0)
            self.issued[channel] = ack_id + 1
            return ack_id

    def ack_status(self, req: Request) -> tuple[int, dict[str, Any]]:
        """The answer to an ack poll: which of the asked ackIds of the channel are indexed."""
        with self.lock:
            self.ack_polls.append(req)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
        channel = (query.get("channel") or [req.headers.get("X-Splunk-Request-Channel", "")])[0]
        if not channel:
            return 400, {"text": "Data channel is missing", "code": 10}
        asked = json.loads(req.body)["acks"]
        return 200, {"acks": {str(i): bool(self.acked(channel, int(i))) for i in asked}}
