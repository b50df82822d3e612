"""The client tests' helpers: real sockets between the client and the service (or the
service and PostgreSQL), a counting transport, the stored rows.

:class:`Proxy` forwards byte for byte (TCP or a Unix socket) and can misbehave on purpose:
drop the answers of the first connections after the request went through (a lost
response), or go down (refuse and cut every connection) and come back. :class:`Blackhole`
accepts a request and never answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.api import Api

Address = tuple[str, int] | str  # (host, port) or a Unix socket path


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_UNIX if isinstance(address, str) else socket.AF_INET


def _listen(address: Address) -> socket.socket:
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    if isinstance(address, tuple):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(64)
    return sock


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()


@dataclass
class Proxy:
    """Forward connections from ``listen`` to ``upstream``; see the module docstring."""

    listen: Address
    upstream: Address
    drop_answers: int = 0  # connections whose answer is swallowed, then the connection cut
    down: bool = False
    connections: int = 0
    dropped: int = 0
    _pairs: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Proxy:
        self._server = _listen(self.listen)
        self.listen = self._server.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert isinstance(self.listen, tuple), "a Unix socket proxy has no URL"
        return f"http://{self.listen[0]}:{self.listen[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                _close(client)
                continue
            self._pair(client)

    def _pair(self, client: socket.socket) -> None:
        upstream = socket.socket(_family(self.upstream), socket.SOCK_STREAM)
        upstream.connect(self.upstream)
        with self._lock:
            self.connections += 1
            drop = self.dropped < self.drop_answers
            self.dropped += drop
            self._pairs.append((client, upstream))
        threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client, drop), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, drop: bool) -> None:
        try:
            while data := src.recv(65536):
                if drop:  # the request was handled; its answer never reaches the client
                    break
                dst.sendall(data)
        except OSError:
            pass
        _close(src, dst)

    def go_down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self.down = True
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _close(a, b)

    def come_back(self) -> None:
        self.down = False

    def stop(self) -> None:
        self.go_down()
        _close(self._server)


def unix_proxy_for(socket_dir: str, port: int = 5432) -> tuple[Proxy, str]:
    """A proxy in front of the PostgreSQL socket in ``socket_dir``; (proxy, its directory)."""
    here = tempfile.mkdtemp(prefix="pgproxy-")
    os.chmod(here, 0o777)
    name = f".s.PGSQL.{port}"
    proxy = Proxy(os.path.join(here, name), os.path.join(socket_dir, name)).start()
    os.chmod(os.path.join(here, name), 0o777)
    return proxy, here


@dataclass
class Blackhole:
    """A TCP server that reads requests and never answers; ``received`` is set on the first."""

    received: threading.Event = field(default_factory=threading.Event)
    _socks: list[socket.socket] = field(default_factory=list)

    def start(self) -> Blackhole:
        self._server = _listen(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.getsockname()
        return f"http://{host}:{port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._socks.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                self.received.set()

    def stop(self) -> None:
        _close(self._server, *self._socks)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Counting(httpx.HTTPTransport):
    """httpx's own transport, noting the status of each answer (None: no answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except httpx.TransportError:
            self.statuses.append(None)
            raise
        self.statuses.append(response.status_code)
        return response


def stored(api: Api, action: str = "policy.updated") -> list[Any]:
    """(event_id, seq) of the stored events of ``action``, in chain order."""
    return api.rows(
        "SELECT event_id::text, seq FROM events WHERE action = :a ORDER BY seq", a=action
    )


class Canned:
    """A loopback HTTP server answering every request with the same status and body: a
    replayed or misdirected answer, as an attacker in the middle (or a wrong base_url) gives."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
