"""Transports: syslog over TCP (RFC 6587 octet counting) and TLS (RFC 5425), Splunk HEC over
HTTPS with a token, and a generic webhook signed with HMAC-SHA256.

What a successful ``send`` means differs, and the delivery loop (:mod:`.delivery`) uses it:

- HTTP (``acknowledged = True``): a 2xx response. The receiver has the batch. A HEC
  destination with option ``ack`` (a token with indexer acknowledgement) waits further: it
  reads the ``ackId`` of the response and polls ``/services/collector/ack`` on its channel
  until Splunk says the batch is indexed (``ack_timeout`` seconds at most; then the send
  fails, retryably, and the batch is sent again).
- syslog (``acknowledged = False``): the bytes reached our kernel's send buffer. Syslog has no
  acknowledgement, so the loop treats a batch as delivered only after the connection stayed
  open for ``settle_seconds`` after it (see docs/siem.md), and re-sends everything not yet
  settled when the connection breaks.

Errors: :class:`~auditlog.errors.DeliveryFailed`, retryable (connect/TLS/5xx/429/401...: back
off and try again) or not (400/413/422: the receiver rejected the content).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import select
import socket
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from auditlog.errors import DeliveryFailed, InvalidDestination
from auditlog.siem.formats import Formatter, Item, epoch_ms, octet_frame

PERMANENT = frozenset({400, 413, 422})
MAX_RETRY_AFTER = 3600.0
ACK_TIMEOUT = 120.0  # seconds a HEC batch may wait for its indexer acknowledgement
ACK_POLL = (0.05, 2.0)  # first and longest pause between ack polls


class Transport(Protocol):
    """Sends batches of items to one destination."""

    acknowledged: bool

    def send(self, items: Sequence[Item]) -> None: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


def tls_context(ca_pem: str | None) -> ssl.SSLContext:
    """A client context that verifies the server certificate and name (system CAs or ``ca_pem``)."""
    try:
        ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    except ssl.SSLError as exc:  # destinations checks only for a BEGIN CERTIFICATE block
        reason = f"not a usable PEM certificate ({exc}); paste the CA certificate again"
        raise InvalidDestination("options.ca_pem", reason) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class SyslogTransport:
    """RFC 5424 messages, octet-counted (RFC 6587), over TCP or TLS (RFC 5425)."""

    acknowledged = False

    def __init__(
        self,
        host: str,
        port: int,
        formatter: Formatter,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.formatter = host, port, formatter
        self.tls, self.server_name, self.timeout = tls, server_name or host, timeout
        self.sock: socket.socket | None = None
        self.where = f"syslog{'+tls' if tls else ''}://{host}:{port}"

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise DeliveryFailed(f"{self.where}: cannot connect: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.server_name)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise DeliveryFailed(f"{self.where}: TLS handshake failed: {exc}") from None

    def send(self, items: Sequence[Item]) -> None:
        """Write the items as octet-counted frames; DeliveryFailed if the connection fails."""
        data = b"".join([octet_frame(self.formatter.syslog(i)) for i in items])
        if self.sock is None:
            self.sock = self._connect()
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise DeliveryFailed(f"{self.where}: send failed: {exc}") from None

    def alive(self) -> bool:
        """False when the receiver closed or reset the connection (it never sends data)."""
        sock = self.sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return True
            sock.settimeout(0)
            try:
                return sock.recv(4096) != b""  # TLS 1.3 session tickets are read here
            finally:
                sock.settimeout(self.timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(1.0)
                sock = sock.unwrap()  # close_notify, so the receiver sees a clean end
        except (OSError, ValueError):
            pass
        finally:
            sock.close()


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def check_response(resp: httpx.Response, where: str, secret: str | None) -> None:
    """Raise DeliveryFailed unless 2xx: 400/413/422 are permanent, the rest retryable."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    text = resp.text[:300].replace("\n", " ")
    if secret:
        text = text.replace(secret, "[redacted]")
    hint = " (check the token/secret)" if code in (401, 403) else ""
    raise DeliveryFailed(
        f"{where}: HTTP {code}{hint}: {text}",
        retryable=code not in PERMANENT,
        retry_after=retry_after(resp.headers.get("Retry-After")),
        http_status=code,
    )


class _HttpTransport:
    acknowledged = True

    def __init__(
        self,
        url: str,
        formatter: Formatter,
        secret: str | None,
        ca_pem: str | None,
        timeout: float = 10.0,
    ) -> None:
        self.url, self.formatter, self.secret = url, formatter, secret
        self.where = url.split("?", 1)[0]
        self.ca_pem, self.timeout = ca_pem, timeout
        self.client: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        if self.client is None:
            verify: Any = tls_context(self.ca_pem) if self.url.startswith("https:") else True
            self.client = httpx.Client(verify=verify, timeout=self.timeout, follow_redirects=False)
        return self.client

    def _post(self, body: bytes, headers: dict[str, str], url: str | None = None) -> httpx.Response:
        try:
            resp = self._client().post(url or self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self.where}: {type(exc).__name__}: {exc}") from None
        check_response(resp, self.where, self.secret)
        return resp

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


class HecTransport(_HttpTransport):
    """Splunk HTTP Event Collector: a JSON envelope per item; ``Authorization: Splunk <token>``."""

    def __init__(
        self,
        url: str,
        formatter: Formatter,
        token: str,
        ca_pem: str | None = None,
        options: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(url, formatter, token, ca_pem, timeout)
        self.options = options or {}
        self.channel = str(uuid.uuid4())
        self.ack = bool(self.options.get("ack"))
        self.ack_timeout = float(self.options.get("ack_timeout") or ACK_TIMEOUT)
        self.ack_url = hec_ack_url(url, self.channel)

    def envelope(self, item: Item) -> dict[str, Any]:
        """``{time, host, source, sourcetype, [index], event, fields}`` for one item."""
        env: dict[str, Any] = {
            "time": epoch_ms(item.time) / 1000 if item.time else time.time(),
            "host": self.formatter.hostname,
            "source": self.options.get("source", "auditlog"),
            "sourcetype": self.options.get(
                "sourcetype", f"auditlog:{self.formatter.format}:{item.kind}"
            ),
            "event": self.formatter.payload(item),
            "fields": {
                "auditlog_key": item.key,
                "auditlog_stream": item.stream,
                "auditlog_position": item.position,
            },
        }
        if self.options.get("index"):
            env["index"] = self.options["index"]
        return env

    def send(self, items: Sequence[Item]) -> None:
        body = "\n".join(json.dumps(self.envelope(i), separators=(",", ":")) for i in items)
        headers = {
            "Authorization": f"Splunk {self.secret}",
            "Content-Type": "application/json",
            "X-Splunk-Request-Channel": self.channel,
        }
        resp = self._post(body.encode("utf-8"), headers)
        if self.ack:
            self.await_ack(_ack_id(resp, self.where), headers)

    def await_ack(self, ack_id: int, headers: dict[str, str]) -> None:
        """Poll the ack endpoint until ``ack_id`` is indexed; DeliveryFailed (retryable) when
        ``ack_timeout`` passes first: the batch is then sent again (a duplicate if it was
        indexed after all, which the event_id identifies)."""
        body = json.dumps({"acks": [ack_id]}).encode("ascii")
        deadline, pause = time.monotonic() + self.ack_timeout, ACK_POLL[0]
        while True:
            try:
                resp = self._post(body, headers, self.ack_url)
            except DeliveryFailed as exc:  # never a rejection of the batch: try it again
                raise DeliveryFailed(
                    f"{exc} (polling ackId {ack_id})",
                    retry_after=exc.retry_after,
                    http_status=exc.http_status,
                ) from None
            try:
                done = resp.json()["acks"].get(str(ack_id)) is True
            except (ValueError, KeyError, TypeError, AttributeError):
                raise DeliveryFailed(
                    f"{self.where}: the ack endpoint answered without an acks object"
                ) from None
            if done:
                return
            if time.monotonic() + pause > deadline:
                raise DeliveryFailed(
                    f"{self.where}: ackId {ack_id} was not acknowledged within "
                    f"{self.ack_timeout:g}s (option ack_timeout); the batch is sent again"
                )
            time.sleep(pause)
            pause = min(pause * 2, ACK_POLL[1])


def hec_ack_url(url: str, channel: str) -> str:
    """``…/services/collector/ack?channel=<guid>`` on the server of a HEC event URL."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    base = path[: path.index("/services/collector")] if "/services/collector" in path else ""
    query = urllib.parse.urlencode({"channel": channel})
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, f"{base}/services/collector/ack", query, "")
    )


def _ack_id(resp: httpx.Response, where: str) -> int:
    try:
        value = resp.json()["ackId"]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeliveryFailed(
            f"{where}: HEC answered without an ackId: the token does not have indexer "
            "acknowledgement enabled; enable it for the token or turn option ack off"
        )
    return value


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``<timestamp>.`` + body)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookTransport(_HttpTransport):
    """A JSON POST ``{"items": [...]}`` signed with HMAC-SHA256 (see docs/siem.md)."""

    def __init__(
        self,
        url: str,
        formatter: Formatter,
        secret: str,
        ca_pem: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(url, formatter, secret, ca_pem, timeout)

    def send(self, items: Sequence[Item]) -> None:
        doc = {
            "items": [
                {
                    "kind": i.kind,
                    "key": i.key,
                    "stream": i.stream,
                    "position": i.position,
                    "payload": self.formatter.payload(i),
                }
                for i in items
            ]
        }
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Auditlog-Timestamp": stamp,
            "X-Auditlog-Signature": webhook_signature(self.secret or "", stamp, body),
            "X-Auditlog-Delivery": str(uuid.uuid4()),
        }
        self._post(body, headers)


def now_text() -> str:
    """The current time as RFC 3339 UTC with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
