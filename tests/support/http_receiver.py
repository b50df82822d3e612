"""A real HTTPS server on loopback standing in for Splunk HEC or a webhook receiver.

It records every request (path, headers, body, arrival time) and answers with what
``respond(request)`` returns: ``(status, headers)``; by default 200.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
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

    def hec_events(self) -> list[dict[str, Any]]:
        """The HEC envelopes of the body (newline-separated JSON objects)."""
        return [json.loads(line) for line in self.body.decode("utf-8").split("\n") if line]


Responder = Callable[[Request], tuple[int, dict[str, str]]]


class Receiver:
    """HTTPS receiver; ``url`` is ``https://127.0.0.1:<port>/services/collector/event``."""

    def __init__(self, tls: TlsFiles, respond: Responder | None = None) -> None:
        self.requests: list[Request] = []
        self.respond = respond or (lambda _req: (200, {}))
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = Request(self.path, dict(self.headers.items()), body, time.monotonic())
                with receiver.lock:
                    receiver.requests.append(req)
                status, headers = receiver.respond(req)
                payload = json.dumps({"text": "Success" if status < 300 else "Refused"}).encode()
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
