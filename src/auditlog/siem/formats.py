"""What a SIEM receives: RFC 5424 syslog, CEF, OCSF JSON or the plain record, one per item.

Every item carries the full stored record (every hashed field plus ``prev_hash`` and
``entry_hash``), so the SIEM copy can be chain-verified off-platform with the rule of
docs/integrity.md. Each format encodes every field for itself (docs/siem.md, "Encoding"):

- RFC 5424: HOSTNAME and APP-NAME are checked when the formatter is made (printable US-ASCII,
  RFC 5424 lengths: refused otherwise); PROCID and MSGID are constants; a TIMESTAMP that is not
  RFC 5424's form is sent as the nil value ``-``. SD-PARAM values escape ``\\``, ``"`` and
  ``]`` with a backslash (section 6.3.3) and write every character of :data:`ENCODED` as
  ``\\uXXXX``. The MSG is JSON with every non-ASCII character and every control character
  escaped, so it is plain ASCII (no BOM needed) and holds no CR/LF. MSG-LEN (octet counting)
  is UTF-8 bytes.
- CEF: header fields escape ``\\`` and ``|``; extension values escape ``\\`` and ``=``; both
  write CR/LF as ``\\r``/``\\n`` and the other characters of :data:`ENCODED` as
  ``\\uXXXX`` (so no value ends a field, starts a key or a record).
- OCSF and the plain record are JSON.

A value parsed back (see :mod:`auditlog.siem.parse`) equals the value stored.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from auditlog.siem import ocsf

FORMATS = ("rfc5424", "cef", "ocsf", "json")
Format = Literal["rfc5424", "cef", "ocsf", "json"]
Kind = Literal["event", "checkpoint", "test"]
EXAMPLE_PEN = 32473  # IANA's enterprise number for documentation (RFC 5612); see docs/siem.md
FACILITY = 13  # "log audit"
SYSLOG_SEVERITY = {"success": 5, "failure": 4, "denied": 4}  # notice, warning, warning
CEF_SEVERITY = {"success": 3, "failure": 6, "denied": 7}
MSGID = {"event": "EVENT", "checkpoint": "CHECKPOINT", "test": "TEST"}
PRODUCT_VERSION = "0.1.0"
_HOSTNAME = re.compile(r"^[!-~]{1,255}$")
_APP_NAME = re.compile(r"^[!-~]{1,48}$")
# RFC 5424's TIMESTAMP: FULL-DATE "T" FULL-TIME, at most 6 fraction digits, Z or +-hh:mm.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")
# What no SD-PARAM value or CEF field carries raw: C0, DEL and C1 (NEL among them) controls,
# the Unicode line and paragraph separators, and the bidi controls (they reorder what a SIEM
# console shows: "Trojan Source"). Each is written as \uXXXX; a literal backslash is always
# written as \\, so the encoding is reversible (auditlog.siem.parse undoes it).
BIDI = "\u061c\u200e\u200f" + "".join(map(chr, range(0x202A, 0x202F))) + "\u2066\u2067\u2068\u2069"
ENCODED = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)])) + "\u2028\u2029" + BIDI
_U_ESCAPES = {c: f"\\u{ord(c):04x}" for c in ENCODED}
_SD_ESCAPE = str.maketrans({**_U_ESCAPES, "\\": "\\\\", '"': '\\"', "]": "\\]"})
_CEF_LINES = {"\r": "\\r", "\n": "\\n"}
_CEF_HEAD_ESCAPE = str.maketrans({**_U_ESCAPES, **_CEF_LINES, "\\": "\\\\", "|": "\\|"})
_CEF_EXT_ESCAPE = str.maketrans({**_U_ESCAPES, **_CEF_LINES, "\\": "\\\\", "=": "\\="})
# Most values need no escaping: finding that by one regex search is far cheaper than a
# translate with a table this size (the syslog worker formats ~30,000 events/s).
_ENCODED_CLASS = "".join(f"\\u{ord(c):04x}" for c in ENCODED)
_SD_SPECIAL = re.compile(f'[\\\\"\\]{_ENCODED_CLASS}]')
_CEF_HEAD_SPECIAL = re.compile(f"[\\\\|{_ENCODED_CLASS}]")
_CEF_EXT_SPECIAL = re.compile(f"[\\\\={_ENCODED_CLASS}]")
_ascii_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to deliver: an event (record form), a signed checkpoint, or a test message.

    ``stream`` is the event's category (or ``checkpoints``); ``position`` its seq (or the
    checkpoint's row id): what the destination's cursor for that stream advances to.
    """

    kind: Kind
    stream: str
    position: int
    data: dict[str, Any]
    # ``ascii_json(data)`` when already known (the stored record text, if ASCII): saves a dump
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """A dedupe key: the event_id, or ``checkpoint:<category>:<seq>``."""
        if self.kind == "event":
            return str(self.data["event_id"])
        if self.kind == "checkpoint":
            return f"checkpoint:{self.data['category']}:{self.data['seq']}"
        return f"test:{self.data.get('sent_at', '')}"

    @property
    def time(self) -> str:
        """RFC 3339 UTC time of the item: when the event occurred, or the checkpoint signed."""
        return str(self.data.get("occurred_at") or self.data.get("signed_at") or "")


def default_hostname() -> str:
    """This host's name when it is a valid RFC 5424 HOSTNAME, else the nil value ``-``."""
    name = socket.gethostname()
    return name if _HOSTNAME.match(name) else "-"


def check_hostname(value: str) -> str:
    """``value`` if it is a valid RFC 5424 HOSTNAME (1-255 printable US-ASCII), else ValueError."""
    if not _HOSTNAME.match(value):
        raise ValueError(f"{value[:60]!r} is not 1-255 printable US-ASCII characters")
    return value


def check_app_name(value: str) -> str:
    """``value`` if it is a valid RFC 5424 APP-NAME (1-48 printable US-ASCII), else ValueError."""
    if not _APP_NAME.match(value):
        raise ValueError(f"{value[:60]!r} is not 1-48 printable US-ASCII characters")
    return value


def syslog_timestamp(value: str) -> str:
    """``value`` when it is an RFC 5424 TIMESTAMP, else the nil value ``-`` (the MSG has it)."""
    return value if _TIMESTAMP.match(value) else "-"


def epoch_ms(rfc3339: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 timestamp (CEF and OCSF time fields)."""
    ts = datetime.fromisoformat(rfc3339)
    return int(ts.timestamp() * 1000)


def ascii_json(value: Any) -> str:
    """Compact JSON with every non-ASCII and control character (DEL included) escaped."""
    return _ascii_json(value)


def del_escaped(json_text: str) -> str:
    """ASCII JSON text (e.g. a stored JCS record) with DEL written as ``\\u007f``.

    RFC 8785 leaves DEL raw; outside strings JSON has no DEL, so the replacement is exact.
    """
    return json_text.replace("\x7f", "\\u007f") if "\x7f" in json_text else json_text


# --- RFC 5424 ------------------------------------------------------------------------------


def sd_escape(value: str) -> str:
    """An SD-PARAM value: ``\\ " ]`` escaped (RFC 5424 6.3.3), :data:`ENCODED` as ``\\uXXXX``."""
    return value.translate(_SD_ESCAPE) if _SD_SPECIAL.search(value) else value


def sd_element(sd_id: str, params: dict[str, Any]) -> str:
    """``[sd_id name="value" ...]``; None values are left out."""
    body = "".join(f' {k}="{sd_escape(str(v))}"' for k, v in params.items() if v is not None)
    return f"[{sd_id}{body}]"


def _event_sd(record: dict[str, Any], pen: int) -> str:
    # Only the correlation_id is free text, but the text columns are escaped all the same: a
    # row the writer credential inserted itself passed no ingest validation. event_id and seq
    # come from uuid and bigint columns: nothing in them to escape.
    cid = record.get("correlation_id")
    tail = "" if cid is None else f' correlation_id="{sd_escape(cid)}"'
    src = record.get("source")
    if isinstance(src, dict):  # the API key that submitted it: its id and its name
        tail += f' source_id="{sd_escape(str(src.get("id")))}"'
        tail += f' source_name="{sd_escape(str(src.get("name")))}"'
    e = sd_escape
    return (
        f'[auditlog@{pen} event_id="{record["event_id"]}" category="{e(record["category"])}" '
        f'seq="{record["seq"]}" action="{e(record["action"])}" '
        f'outcome="{e(record["outcome"])}"{tail}]'
    )


def _checkpoint_sd(cp: dict[str, Any], pen: int) -> str:
    params = {k: cp[k] for k in ("category", "seq", "entry_hash", "key_id")}
    return sd_element(f"auditlog-checkpoint@{pen}", params)


# --- CEF -----------------------------------------------------------------------------------


def cef_header_escape(value: str) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, CR/LF as ``\\r``/``\\n``, the rest of
    :data:`ENCODED` as ``\\uXXXX``."""
    return value.translate(_CEF_HEAD_ESCAPE) if _CEF_HEAD_SPECIAL.search(value) else value


def cef_value_escape(value: str) -> str:
    """A CEF extension value: ``\\`` and ``=`` escaped, CR/LF as ``\\r``/``\\n``, the rest
    of :data:`ENCODED` as ``\\uXXXX``."""
    return value.translate(_CEF_EXT_ESCAPE) if _CEF_EXT_SPECIAL.search(value) else value


def cef_line(signature: str, name: str, severity: int, ext: dict[str, Any]) -> str:
    """``CEF:0|auditlog|auditlog|<version>|<signature>|<name>|<severity>|<extension>``."""
    head = "|".join(
        cef_header_escape(v)
        for v in ("auditlog", "auditlog", PRODUCT_VERSION, signature, name, str(severity))
    )
    body = " ".join(f"{k}={cef_value_escape(str(v))}" for k, v in ext.items() if v is not None)
    return f"CEF:0|{head}|{body}"


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _cef_actor(actor: dict[str, Any]) -> dict[str, Any]:
    return {
        "suser": _first(actor.get("upn"), actor.get("id"), actor.get("display_name")),
        "suid": _first(actor.get("id"), actor.get("entra_object_id")),
    }


def _cef_source(ip: str | None) -> dict[str, Any]:
    if ip is None:
        return {}
    if ":" in ip:  # ArcSight's src is IPv4 only; IPv6 goes in c6a2 "Source IPv6 Address"
        return {"c6a2Label": "Source IPv6 Address", "c6a2": ip}
    return {"src": ip}


def _cef_submitter(source: Any) -> dict[str, Any]:
    """The API key that submitted the event: its name as ``sourceServiceName`` ("the service
    responsible for generating this event"), its id in ``flexString1``."""
    if not isinstance(source, dict):
        return {}
    return {
        "sourceServiceName": source.get("name"),
        "flexString1Label": "sourceKeyId",
        "flexString1": source.get("id"),
    }


def cef_event(record: dict[str, Any]) -> str:
    """The CEF line of one event; ``cs6`` holds the full record as JSON."""
    target = record["target"]
    ext: dict[str, Any] = {
        "rt": epoch_ms(record["recorded_at"]),
        "start": epoch_ms(record["occurred_at"]),
        "externalId": record["event_id"],
        "cat": record["category"],
        "act": record["action"],
        "outcome": record["outcome"],
        **_cef_actor(record["actor"]),
        **_cef_source(record.get("source_ip")),
        "requestClientApplication": record.get("user_agent"),
        **_cef_submitter(record.get("source")),
        "cs1Label": "targetType",
        "cs1": target.get("type"),
        "cs2Label": "targetId",
        "cs2": target.get("id"),
        "cs3Label": "targetName",
        "cs3": target.get("name"),
        "cs4Label": "correlationId",
        "cs4": record.get("correlation_id"),
        "cs5Label": "entryHash",
        "cs5": record.get("entry_hash"),
        "cn1Label": "seq",
        "cn1": record["seq"],
        "cs6Label": "record",
        "cs6": ascii_json(record),
    }
    sev = CEF_SEVERITY.get(record["outcome"], 5)
    return cef_line(record["action"], record["action"], sev, ext)


def cef_other(kind: str, data: dict[str, Any]) -> str:
    """The CEF line of a signed checkpoint or a test message (``cs6`` holds it as JSON)."""
    when = data.get("signed_at") or data.get("sent_at")
    ext = {
        "rt": epoch_ms(when) if when else None,
        "cat": data.get("category"),
        "cn1Label": "seq" if "seq" in data else None,
        "cn1": data.get("seq"),
        "cs5Label": "entryHash" if "entry_hash" in data else None,
        "cs5": data.get("entry_hash"),
        "cs6Label": kind,
        "cs6": ascii_json(data),
    }
    return cef_line(f"auditlog.{kind}", f"auditlog.{kind}", 1, ext)


# --- the formatter ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Formatter:
    """Renders items in one format, for a syslog transport (``syslog``) or HTTP (``payload``)."""

    format: Format = "rfc5424"
    hostname: str = field(default_factory=default_hostname)
    pen: int = EXAMPLE_PEN
    app_name: str = "auditlog"

    def __post_init__(self) -> None:
        # Header fields are refused here, once, rather than mangled in every message.
        for name, check in (("hostname", check_hostname), ("app_name", check_app_name)):
            try:
                check(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"syslog {name}: {exc}") from None

    def body(self, item: Item) -> str | dict[str, Any]:
        """The format's own rendering: CEF text, an OCSF object, or the record/checkpoint."""
        if self.format == "cef":
            return cef_event(item.data) if item.kind == "event" else cef_other(item.kind, item.data)
        if self.format == "ocsf":
            if item.kind == "event":
                return ocsf.event(item.data, PRODUCT_VERSION)
            return ocsf.other(item.kind, item.data, PRODUCT_VERSION)
        return item.data

    def syslog(self, item: Item) -> str:
        """The complete RFC 5424 message (without framing)."""
        if item.text is not None and self.format in ("rfc5424", "json"):
            msg = del_escaped(item.text)
        else:
            body = self.body(item)
            msg = body if isinstance(body, str) else ascii_json(body)
        if item.kind == "event":
            sev = SYSLOG_SEVERITY.get(item.data["outcome"], 5)
            sd = _event_sd(item.data, self.pen)
        elif item.kind == "checkpoint":
            sev, sd = 5, _checkpoint_sd(item.data, self.pen)
        else:
            sev, sd = 6, "-"
        ts = syslog_timestamp(item.time)
        return (
            f"<{FACILITY * 8 + sev}>1 {ts} {self.hostname} {self.app_name} - "
            f"{MSGID[item.kind]} {sd} {msg}"
        )

    def payload(self, item: Item) -> str | dict[str, Any]:
        """What an HTTP destination sends as the item: the syslog line for ``rfc5424``."""
        return self.syslog(item) if self.format == "rfc5424" else self.body(item)


def octet_frame(message: str) -> bytes:
    """RFC 6587 octet-counted frame: ``MSG-LEN SP SYSLOG-MSG``, MSG-LEN in UTF-8 bytes."""
    data = message.encode("utf-8")
    return b"%d %b" % (len(data), data)
